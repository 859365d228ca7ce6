// One event loop's worth of proxy: its own SO_REUSEPORT listener, its
// sessions and its slice of the passive port range. A session and its data
// connections stay on one loop; nothing on the data path takes a lock.
#pragma once
#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "admission.h"
#include "audit_log.h"
#include "config.h"
#include "net.h"
#include "port_pool.h"
#include "session_host.h"
#include "stats.h"

namespace ftpw {

class Worker : public ListenerHandler, public SessionHost {
 public:
  Worker(int index, std::shared_ptr<const Snapshot> snap, AuditLog& audit, Admission& admission,
         std::uint16_t pasv_lo, std::uint16_t pasv_hi);
  ~Worker() override;
  // Binds the listener on this worker's loop (called before run()).
  int listen(const NetAddr& addr, bool reuseport, std::string& error);
  NetAddr bound() const { return bound_; }
  void run();                 // runs the loop until drained (on this thread)
  // Thread-safe requests from the coordinator.
  void request_drain();
  // `switched` runs on this worker's thread once new sessions take `snap`.
  void request_snapshot(std::shared_ptr<const Snapshot> snap, std::function<void()> switched = {});

  const WorkerStats& stats() const { return stats_; }
  std::uint64_t now_ms() const { return uv_now(const_cast<uv_loop_t*>(&loop_)); }

  // SessionHost. Upstream connections still waiting for the server's first
  // reply are limited to upstream.max_connecting, split between the workers:
  // a legacy server's listen backlog is small.
  uv_loop_t* loop() override { return &loop_; }
  AuditLog& audit() override { return audit_; }
  PortPool& ports() override { return *ports_; }
  WorkerStats& stats() override { return stats_; }
  std::string next_session_id() override;
  bool login_failed(const NetAddr& ip) override { return admission_.login_failed(ip, snap_->cfg, now_ms()); }
  bool user_login(const std::string& user) override { return admission_.user_login(user, snap_->cfg); }
  void user_logout(const std::string& user) override { admission_.user_logout(user); }
  void want_upstream(Session* s) override;
  void release_upstream(Session* s, bool held) override;
  void session_gone(Session* s) override;
  void upstream_outcome(bool ok) override { admission_.upstream_outcome(ok); }

  void on_connection(Listener& l) override;
  void on_listener_closed(Listener& l) override;

 private:
  void tick();
  void begin_drain();
  // A connection whose client is known (its own address, or its PROXY
  // header's): a session, or refused with the reason's 421.
  void admit(Stream* st, std::optional<NetAddr> peer, std::optional<NetAddr> via, std::string early);
  void refused(Refusal r, const NetAddr* peer, std::string_view why);
  // Transparent mode: the server a connection was meant for (nullopt: it was
  // made to the proxy itself), and whether upstream.allowed lets it through.
  std::optional<NetAddr> destination(const Stream& st) const;
  bool allowed_upstream(const NetAddr& dst) const;
  void maybe_stop();
  void dispatch_connects();
  void on_async();

  int index_;
  uv_loop_t loop_{};
  std::shared_ptr<const Snapshot> snap_;
  AuditLog& audit_;
  Admission& admission_;
  Listener* listener_ = nullptr;
  NetAddr bound_;
  std::unique_ptr<PortPool> ports_;
  std::unordered_set<Session*> sessions_;
  std::deque<Session*> connect_queue_;
  std::size_t connecting_ = 0;
  bool dispatching_ = false;
  uv_timer_t timer_{};
  uv_async_t async_{};
  std::mutex mu_;                                   // guards the two requests below
  bool drain_requested_ = false;
  std::shared_ptr<const Snapshot> new_snap_;
  std::vector<std::function<void()>> switched_;  // the requests' callbacks, run once new_snap_ is in
  std::uint64_t drain_deadline_ms_ = 0, ticks_ = 0, seq_ = 0;
  bool draining_ = false, stopped_ = false, ran_ = false;
  WorkerStats stats_;
};

}  // namespace ftpw
