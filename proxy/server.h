// The proxy process: N workers, each an event loop with its own SO_REUSEPORT
// listener, sessions and slice of the passive port range. A session and its
// data connections stay on one loop; nothing on the data path takes a lock.
// Admission state (sessions per IP, failed logins) is shared under a mutex,
// touched only when a session opens, closes or fails a login.
#pragma once
#include <uv.h>

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "audit_log.h"
#include "config.h"
#include "net.h"
#include "port_pool.h"
#include "worker_stats.h"

namespace ftpw {

class Session;

// What all workers share: admission limits.
class Admission {
 public:
  // Reserves a session slot for `ip`, or returns the reason to refuse (a 421 line).
  std::string_view admit(const NetAddr& ip, const Config& c, std::uint64_t now_ms);
  void release(const NetAddr& ip);
  // A failed login from `ip`; true when the IP is now in its cool-down.
  bool login_failed(const NetAddr& ip, const Config& c, std::uint64_t now_ms);
  void sweep(const Config& c, std::uint64_t now_ms);
  std::size_t sessions() const { return total_.load(); }

 private:
  struct Failures {
    std::int64_t count = 0;
    std::uint64_t window_start_ms = 0, blocked_until_ms = 0;
  };
  std::mutex mu_;
  std::unordered_map<std::string, int> per_ip_;
  std::unordered_map<std::string, Failures> failures_;
  std::atomic<std::size_t> total_{0};
};

// One event loop's worth of proxy.
class Worker : public ListenerHandler {
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
  void request_snapshot(std::shared_ptr<const Snapshot> snap);

  uv_loop_t* loop() { return &loop_; }
  AuditLog& audit() { return audit_; }
  PortPool& ports() { return *ports_; }
  Admission& admission() { return admission_; }
  WorkerStats& stats() { return stats_; }
  const WorkerStats& stats() const { return stats_; }
  std::uint64_t now_ms() const { return uv_now(const_cast<uv_loop_t*>(&loop_)); }
  std::string next_session_id();
  void session_gone(Session* s);
  bool login_failed(const NetAddr& ip) { return admission_.login_failed(ip, snap_->cfg, now_ms()); }
  // Upstream connections still waiting for the server's first reply are
  // limited to upstream.max_connecting (split between the workers): a legacy
  // server's listen backlog is small. A session asks for a slot; it connects
  // when it gets one and gives it back once the server speaks or it is gone.
  void want_upstream(Session* s);
  void release_upstream(Session* s, bool held);

  void on_connection(Listener& l) override;
  void on_listener_closed(Listener& l) override;

 private:
  void tick();
  void begin_drain();
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
  std::uint64_t drain_deadline_ms_ = 0, ticks_ = 0, seq_ = 0;
  bool draining_ = false, stopped_ = false, ran_ = false;
  WorkerStats stats_;
};

// Owns the workers, their threads and the signals (on the main loop).
class Server {
 public:
  using Reloader = std::function<std::shared_ptr<const Snapshot>(std::string& error)>;
  Server(std::shared_ptr<const Snapshot> snap, AuditLog& audit, Reloader reload);
  ~Server();
  // Binds every worker's listener; returns 0 or a libuv error.
  int start(std::string& error);
  NetAddr bound() const { return bound_; }
  // Runs until SIGTERM/SIGINT has drained every worker.
  void run();

 private:
  void reload();
  void drain();
  StatTotals totals() const;
  std::string stats_line() const;  // the workers' totals and the audit log's drops

  std::shared_ptr<const Snapshot> snap_;
  AuditLog& audit_;
  Reloader reload_;
  Admission admission_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
  NetAddr bound_;
  uv_loop_t* main_ = nullptr;
  uv_signal_t sigterm_{}, sigint_{}, sighup_{}, sigusr1_{};
  uv_timer_t flush_{};
  uv_async_t done_{};
  std::atomic<int> running_{0};
};

}  // namespace ftpw
