#include "metrics_server.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "http_request.h"

namespace ftpw {

std::string_view http_reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Error";
  }
}

// One scrape: read the head, answer, close.
class MetricsServer::Client : public StreamHandler {
 public:
  Client(MetricsServer& owner) : owner_(owner) {
    uv_timer_init(owner.loop_, &timer_);
    timer_.data = this;
    next_ = owner.first_;
    if (next_) next_->prev_ = this;
    owner.first_ = this;
    ++owner.clients_;
  }
  Stream* stream = nullptr;

  void start() {
    uv_timer_start(&timer_, [](uv_timer_t* t) { static_cast<Client*>(t->data)->answer({408, "request timeout\n"}, false); },
                   kHeadTimeoutMs, 0);
    stream->start();
  }
  void abort() {
    if (stream) stream->close();
  }

  void on_data(Stream&, const char* p, std::size_t n) override {
    if (answered_) return;
    // Never more than one byte past the cap is kept.
    head_.append(p, std::min(n, kMaxHead + 1 - head_.size()));
    const auto h = parse_http_request_head(std::string_view(head_).substr(0, kMaxHead));
    if (h.status == HttpRequestHead::Status::bad) return answer({400, "bad request\n"}, false);
    if (h.status == HttpRequestHead::Status::incomplete) {
      if (head_.size() > kMaxHead) answer({431, "request head too large\n"}, false);
      return;
    }
    if (h.method != "GET" && h.method != "HEAD") return answer({405, "GET only\n"}, false);
    answer(owner_.handler_(h.path), h.method == "HEAD");
  }
  // Closed once the answer is out and the client has hung up (closing with
  // its bytes unread would reset the connection before it read the answer;
  // closing with the answer queued would cut it short).
  void on_eof(Stream& s) override {
    if (!answered_ || s.shut()) s.close();
  }
  void on_shutdown(Stream& s) override {
    if (s.eof()) s.close();
  }
  void on_error(Stream& s, int) override { s.close(); }
  void on_closed(Stream&) override { finish(); }
  // Unlinks itself and is freed once its timer is closed.
  void finish() {
    stream = nullptr;
    uv_timer_stop(&timer_);
    if (prev_) prev_->next_ = next_;
    else owner_.first_ = next_;
    if (next_) next_->prev_ = prev_;
    --owner_.clients_;
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), [](uv_handle_t* h) { delete static_cast<Client*>(h->data); });
  }

 private:
  void answer(const HttpAnswer& a, bool head_only) {
    if (answered_ || !stream) return;
    answered_ = true;
    uv_timer_stop(&timer_);  // what comes after the head is read and dropped
    std::string out = "HTTP/1.1 " + std::to_string(a.status) + " " + std::string(http_reason(a.status)) +
                      "\r\nContent-Type: " + std::string(a.content_type) +
                      "\r\nContent-Length: " + std::to_string(a.body.size()) + "\r\nConnection: close\r\n";
    if (a.status == 405) out += "Allow: GET, HEAD\r\n";
    out += "\r\n";
    if (!head_only) out += a.body;
    stream->write(out);
    stream->shutdown();
    // A client that never reads its answer is cut after the same delay.
    uv_timer_start(&timer_, [](uv_timer_t* t) { static_cast<Client*>(t->data)->abort(); }, kHeadTimeoutMs, 0);
  }

  MetricsServer& owner_;
  uv_timer_t timer_{};
  std::string head_;
  bool answered_ = false;
  Client *prev_ = nullptr, *next_ = nullptr;
  friend class MetricsServer;
};

int MetricsServer::listen(const NetAddr& addr, std::string& error) {
  listener_ = Listener::create(loop_, this);
  if (int rc = listener_->listen(addr, 64); rc != 0) {
    error = "metrics: cannot listen on " + addr.to_string() + ": " + uv_strerror(rc);
    listener_->close();
    listener_ = nullptr;
    return rc;
  }
  return 0;
}

void MetricsServer::on_connection(Listener& l) {
  auto* c = new Client(*this);
  c->stream = l.accept(c, 0);
  if (!c->stream) {
    c->finish();  // nothing to close but the timer
    return;
  }
  if (closed_ || clients_ > kMaxClients) {
    c->stream->close();
    return;
  }
  c->start();
}

void MetricsServer::on_listener_closed(Listener&) { listener_ = nullptr; }

void MetricsServer::close() {
  closed_ = true;
  if (listener_) listener_->close();
  for (Client* c = first_; c; c = c->next_) c->abort();
}

}  // namespace ftpw
