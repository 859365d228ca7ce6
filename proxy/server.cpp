#include "server.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include "session.h"

namespace ftpw {

namespace {
constexpr std::uint64_t kTickMs = 250;
}

Server::Server(uv_loop_t* loop, std::shared_ptr<const Snapshot> snap, AuditLog& audit, Reloader reload)
    : loop_(loop), snap_(std::move(snap)), audit_(audit), reload_(std::move(reload)) {
  ports_ = std::make_unique<PortPool>(snap_->cfg.pasv_lo, snap_->cfg.pasv_hi);
}

std::string Server::next_session_id() {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%x-%06llx", static_cast<unsigned>(getpid()), static_cast<unsigned long long>(++seq_));
  return buf;
}

int Server::start(std::string& error) {
  listener_ = Listener::create(loop_, this);
  const bool reuseport = snap_->cfg.workers > 1;
  if (int rc = listener_->listen(snap_->cfg.listen_addr, 1024, reuseport); rc != 0) {
    error = "cannot listen on " + snap_->cfg.listen_addr.to_string() + ": " + uv_strerror(rc);
    listener_->close();
    listener_ = nullptr;
    return rc;
  }
  bound_ = *listener_->local();
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
  uv_timer_start(&timer_, [](uv_timer_t* t) { static_cast<Server*>(t->data)->tick(); }, kTickMs, kTickMs);
  for (auto* s : {&sigterm_, &sigint_, &sighup_}) {
    uv_signal_init(loop_, s);
    s->data = this;
  }
  uv_signal_start(&sigterm_, [](uv_signal_t* s, int) { static_cast<Server*>(s->data)->begin_drain(); }, SIGTERM);
  uv_signal_start(&sigint_, [](uv_signal_t* s, int) { static_cast<Server*>(s->data)->begin_drain(); }, SIGINT);
  uv_signal_start(&sighup_, [](uv_signal_t* s, int) { static_cast<Server*>(s->data)->reload(); }, SIGHUP);
  return 0;
}

void Server::on_connection(Listener& l) {
  struct Refuse : StreamHandler {  // answers 421 and closes; frees itself
    void on_data(Stream&, const char*, std::size_t) override {}
    void on_eof(Stream& s) override { s.close(); }
    void on_error(Stream& s, int) override { s.close(); }
    void on_shutdown(Stream& s) override { s.close(); }
    void on_closed(Stream&) override { delete this; }
  };
  Stream* st = l.accept(nullptr, 0);
  if (!st) return;
  auto peer = st->peer();
  const Config& c = snap_->cfg;
  std::string_view refuse;
  if (draining_) refuse = "421 Service not available, the proxy is shutting down.\r\n";
  else if (!peer) refuse = "421 Service not available.\r\n";
  else if (sessions_.size() >= static_cast<std::size_t>(c.max_sessions))
    refuse = "421 Too many users, try again later.\r\n";
  else if (per_ip_[ip_key(*peer)] >= c.max_sessions_per_ip)
    refuse = "421 Too many connections from your address.\r\n";
  if (!refuse.empty()) {
    ++counters.sessions_refused;
    auto* r = new Refuse;
    st->set_handler(r);
    audit_.write(Event("session_refused", "", peer ? peer->to_string() : "").str("reason", refuse.substr(4, refuse.size() - 6)));
    st->write(refuse);
    st->shutdown();
    return;
  }
  ++per_ip_[ip_key(*peer)];
  ++counters.sessions_total;
  auto* s = new Session(*this, snap_, st, *peer);
  sessions_.insert(s);
  s->start();
}

void Server::session_gone(Session* s) {
  sessions_.erase(s);
  auto it = per_ip_.find(ip_key(s->peer()));
  if (it != per_ip_.end() && --it->second <= 0) per_ip_.erase(it);
  maybe_stop();
}

void Server::on_listener_closed(Listener&) { maybe_stop(); }

void Server::tick() {
  ++ticks_;
  audit_.flush();
  const std::uint64_t now = now_ms();
  if (draining_ && now >= drain_deadline_ms_) {
    // Grace is over: the remaining sessions hear 421 and close.
    std::vector<Session*> v(sessions_.begin(), sessions_.end());
    for (Session* s : v) s->terminate("shutdown", "421 Service not available, the proxy is shutting down.\r\n");
  }
  if (ticks_ % (1000 / kTickMs) == 0 || draining_) {
    std::vector<Session*> v(sessions_.begin(), sessions_.end());
    for (Session* s : v)
      if (sessions_.count(s)) s->tick(now);
  }
}

void Server::begin_drain() {
  if (draining_) return;
  draining_ = true;
  drain_deadline_ms_ = now_ms() + static_cast<std::uint64_t>(snap_->cfg.shutdown_grace_s) * 1000;
  spdlog::info("shutting down: {} session(s) open, grace {} s", sessions_.size(), snap_->cfg.shutdown_grace_s);
  if (listener_) {
    listener_->close();
    listener_ = nullptr;
  }
  maybe_stop();
}

void Server::maybe_stop() {
  if (!draining_ || stopped_ || !sessions_.empty() || listener_) return;
  stopped_ = true;
  audit_.flush();
  uv_timer_stop(&timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
  for (auto* s : {&sigterm_, &sigint_, &sighup_}) uv_close(reinterpret_cast<uv_handle_t*>(s), nullptr);
}

void Server::reload() {
  std::string error;
  auto snap = reload_ ? reload_(error) : nullptr;
  if (!snap) {
    spdlog::error("reload refused, keeping the running configuration: {}", error);
    return;
  }
  if (!(snap->cfg.listen_addr == snap_->cfg.listen_addr))
    spdlog::warn("reload: listen address changes need a restart; still listening on {}", bound_.to_string());
  if (snap->cfg.pasv_lo != snap_->cfg.pasv_lo || snap->cfg.pasv_hi != snap_->cfg.pasv_hi)
    spdlog::warn("reload: passive_ports changes need a restart");
  snap_ = std::move(snap);
  spdlog::info("configuration reloaded: mode={} rules={}", snap_->cfg.mode, snap_->rules->rules().size());
}

}  // namespace ftpw
