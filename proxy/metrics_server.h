// The metrics endpoint: a small HTTP/1.x server on the main event loop.
// GET (and HEAD) only; the request head is capped at kMaxHead bytes (431
// past it), a client that has not sent it within kHeadTimeoutMs gets 408,
// at most kMaxClients are served at once (the next ones are closed at once);
// every answer closes its connection. Paths and what they answer come from
// the owner (proxy/server.cpp): /metrics, /healthz, /ready.
#pragma once
#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "net.h"

namespace ftpw {

struct HttpAnswer {
  int status = 404;
  std::string body;
  std::string_view content_type = "text/plain; charset=utf-8";
};

class MetricsServer : public ListenerHandler {
 public:
  using Handler = std::function<HttpAnswer(std::string_view path)>;
  static constexpr std::size_t kMaxHead = 8192;
  static constexpr std::uint64_t kHeadTimeoutMs = 5000;
  static constexpr int kMaxClients = 32;

  MetricsServer(uv_loop_t* loop, Handler handler) : loop_(loop), handler_(std::move(handler)) {}
  int listen(const NetAddr& addr, std::string& error);
  std::optional<NetAddr> bound() const { return listener_ ? listener_->local() : std::nullopt; }
  // Stops listening and closes every client; the loop then finishes them.
  void close();

  void on_connection(Listener& l) override;
  void on_listener_closed(Listener& l) override;

 private:
  class Client;
  friend class Client;
  uv_loop_t* loop_;
  Handler handler_;
  Listener* listener_ = nullptr;
  int clients_ = 0;
  Client* first_ = nullptr;  // the open clients, a list
  bool closed_ = false;
};

std::string_view http_reason(int status);

}  // namespace ftpw
