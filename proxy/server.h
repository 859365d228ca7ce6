// One event loop's worth of proxy: the control listener, the sessions, the
// passive port pool, the timers and signals (SIGTERM drain, SIGHUP reload).
#pragma once
#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "audit_log.h"
#include "config.h"
#include "net.h"
#include "port_pool.h"

namespace ftpw {

class Session;

struct Counters {
  std::uint64_t sessions_total = 0, sessions_refused = 0, violations = 0, transfers = 0;
};

class Server : public ListenerHandler {
 public:
  using Reloader = std::function<std::shared_ptr<const Snapshot>(std::string& error)>;
  Server(uv_loop_t* loop, std::shared_ptr<const Snapshot> snap, AuditLog& audit, Reloader reload);
  // Binds the listener; returns 0 or a libuv error. Prints nothing.
  int start(std::string& error);
  NetAddr bound() const { return bound_; }
  uv_loop_t* loop() const { return loop_; }
  AuditLog& audit() { return audit_; }
  PortPool& ports() { return *ports_; }
  std::uint64_t now_ms() const { return uv_now(loop_); }
  std::string next_session_id();
  void session_gone(Session* s);
  Counters counters;

  void on_connection(Listener& l) override;
  void on_listener_closed(Listener& l) override;

 private:
  void tick();
  void begin_drain();
  void maybe_stop();
  void reload();
  std::string ip_key(const NetAddr& a) const { return a.host_string(); }

  uv_loop_t* loop_;
  std::shared_ptr<const Snapshot> snap_;
  AuditLog& audit_;
  Reloader reload_;
  Listener* listener_ = nullptr;
  NetAddr bound_;
  std::unique_ptr<PortPool> ports_;
  std::unordered_set<Session*> sessions_;
  std::unordered_map<std::string, int> per_ip_;
  uv_timer_t timer_{};
  uv_signal_t sigterm_{}, sigint_{}, sighup_{};
  std::uint64_t drain_deadline_ms_ = 0, ticks_ = 0, seq_ = 0;
  bool draining_ = false, stopped_ = false;
};

}  // namespace ftpw
