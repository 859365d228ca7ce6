// The proxy process: N workers (proxy/worker.h), each an event loop on its
// own thread; on the main loop the signals (SIGTERM/SIGINT drain, SIGHUP
// reloads, SIGUSR1 reopens the audit log, SIGUSR2 prints the counters), the
// metrics endpoint (proxy/metrics_server.h) and systemd's notifications
// (READY, RELOADING, STOPPING, WATCHDOG: proxy/sd_notify.h).
#pragma once
#include <uv.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "admission.h"
#include "audit_log.h"
#include "config.h"
#include "metrics_server.h"
#include "worker.h"
#include "stats.h"

namespace ftpw {

// Owns the workers, their threads and the signals (on the main loop).
class Server {
 public:
  using Reloader = std::function<std::shared_ptr<const Snapshot>(std::string& error)>;
  Server(std::shared_ptr<const Snapshot> snap, AuditLog& audit, Reloader reload);
  ~Server();
  // Binds every worker's listener; returns 0 or a libuv error.
  int start(std::string& error);
  NetAddr bound() const { return bound_; }
  std::optional<NetAddr> metrics_bound() const { return metrics_ ? metrics_->bound() : std::nullopt; }
  // Runs until SIGTERM/SIGINT has drained every worker.
  void run();

 private:
  void reload();
  void drain();
  void switched();  // on the main loop, once every worker took the reloaded configuration
  void watchdog();  // WATCHDOG=1 when every worker's loop has ticked since the last one
  StatTotals totals() const;
  std::string stats_line() const;  // the workers' totals and the audit log's drops
  HttpAnswer endpoint(std::string_view path) const;
  bool ready() const;
  void probe_upstream();  // while the last upstream connect failed: try one

  std::shared_ptr<const Snapshot> snap_;
  AuditLog& audit_;
  Reloader reload_;
  Admission admission_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
  NetAddr bound_;
  uv_loop_t* main_ = nullptr;
  uv_signal_t sigterm_{}, sigint_{}, sighup_{}, sigusr1_{}, sigusr2_{};
  uv_timer_t flush_{}, watchdog_{};
  uv_async_t done_{}, switched_{};
  std::atomic<int> running_{0};
  std::atomic<int> switching_{0};  // workers yet to take the reloaded configuration
  bool draining_ = false;
  std::unique_ptr<MetricsServer> metrics_;
  std::vector<std::uint64_t> ticks_seen_;  // each worker's loop_ticks at the last watchdog ping
  Stream* probe_ = nullptr;                 // the readiness probe's connect in flight
  std::uint64_t flushes_ = 0;
};

}  // namespace ftpw
