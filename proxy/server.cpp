#include "server.h"

#include <spdlog/spdlog.h>

#include "audit_schema.h"
#include "fd_budget.h"
#include "prometheus.h"
#include "sd_notify.h"
#include "socket_relay.h"

namespace ftpw {

Server::Server(std::shared_ptr<const Snapshot> snap, AuditLog& audit, Reloader reload)
    : snap_(std::move(snap)), audit_(audit), reload_(std::move(reload)) {}

Server::~Server() {
  for (auto& t : threads_)
    if (t.joinable()) t.join();
}

int Server::start(std::string& error) {
  const Config& c = snap_->cfg;
  RelayBudget::set_limit(static_cast<std::size_t>(c.relay_memory_mib) << 20);
  const int n = static_cast<int>(c.workers);
  // Each worker gets its own slice of the passive range.
  const int span = c.pasv_hi - c.pasv_lo + 1;
  if (span < n) {
    error = "passive_ports has fewer ports than workers";
    return UV_EINVAL;
  }
  NetAddr addr = c.listen_addr;
  for (int i = 0; i < n; ++i) {
    const auto lo = static_cast<std::uint16_t>(c.pasv_lo + span * i / n);
    const auto hi = static_cast<std::uint16_t>(c.pasv_lo + span * (i + 1) / n - 1);
    workers_.push_back(std::make_unique<Worker>(i, snap_, audit_, admission_, lo, hi));
    if (int rc = workers_.back()->listen(addr, n > 1, error); rc != 0) return rc;
    addr = workers_.back()->bound();  // port 0: the others join the port the first one got
  }
  bound_ = workers_.front()->bound();
  // Signals are caught from here on, before the caller announces the
  // listener: one sent at once is handled when run() starts the loop.
  main_ = uv_default_loop();
  for (auto* sig : {&sigterm_, &sigint_, &sighup_, &sigusr1_, &sigusr2_}) {
    uv_signal_init(main_, sig);
    sig->data = this;
  }
  uv_signal_start(&sigterm_, [](uv_signal_t* s, int) { static_cast<Server*>(s->data)->drain(); }, SIGTERM);
  uv_signal_start(&sigint_, [](uv_signal_t* s, int) { static_cast<Server*>(s->data)->drain(); }, SIGINT);
  uv_signal_start(&sighup_, [](uv_signal_t* s, int) { static_cast<Server*>(s->data)->reload(); }, SIGHUP);
  uv_signal_start(&sigusr1_, [](uv_signal_t* s, int) { static_cast<Server*>(s->data)->audit_.reopen(); }, SIGUSR1);
  uv_signal_start(&sigusr2_, [](uv_signal_t* s, int) {
    spdlog::info("stats: {}", static_cast<Server*>(s->data)->stats_line());
  }, SIGUSR2);
  if (c.metrics_addr) {
    metrics_ = std::make_unique<MetricsServer>(main_, [this](std::string_view path) { return endpoint(path); });
    if (int rc = metrics_->listen(*c.metrics_addr, error); rc != 0) return rc;
  }
  FdBudget::count_base(g_sockets.load());
  return 0;
}

HttpAnswer Server::endpoint(std::string_view path) const {
  if (path == "/metrics") {
    const MetricsExtras x{audit_.dropped(), FTPW_VERSION, snap_->rules->version()};
    return {200, prometheus_text(totals(), x), "text/plain; version=0.0.4; charset=utf-8"};
  }
  if (path == "/healthz") return {200, "ok\n"};
  if (path == "/ready") {
    if (ready()) return {200, "ready\n"};
    return {503, draining_ ? "draining\n" : "upstream unreachable\n"};
  }
  return {404, "not found: /metrics, /healthz, /ready\n"};
}

namespace {
// One connect to the server while the readiness probe says it failed: the
// probe must come back on its own once the server does, even when no
// session arrives to find out (a balancer that took the instance out sends
// none).
struct UpstreamProbe : StreamHandler {
  Admission* admission;
  Stream** slot;  // the server's pointer to the probe in flight
  void on_data(Stream&, const char*, std::size_t) override {}
  void on_eof(Stream& s) override { s.close(); }
  void on_error(Stream& s, int) override { s.close(); }
  void on_connect(Stream& s, int status) override {
    if (status == 0) admission->upstream_outcome(true);
    s.close();
  }
  void on_closed(Stream&) override {
    *slot = nullptr;
    delete this;
  }
};
}  // namespace

void Server::probe_upstream() {
  if (draining_ || probe_ || snap_->cfg.transparent || admission_.upstream() != Admission::Upstream::failed) return;
  auto* h = new UpstreamProbe;
  h->admission = &admission_;
  h->slot = &probe_;
  probe_ = Stream::create(main_, h, 0);
  sockaddr_storage ss;
  to_sockaddr(snap_->cfg.upstream_addr, ss);
  if (probe_->connect(reinterpret_cast<sockaddr*>(&ss)) != 0) probe_->close();
}

bool Server::ready() const {
  // Taking sessions, and the server answered the last connect (or none was tried).
  return !draining_ && admission_.upstream() != Admission::Upstream::failed;
}

void Server::run() {
  // Audit events reach the file within a second.
  uv_timer_init(main_, &flush_);
  flush_.data = this;
  uv_timer_start(&flush_, [](uv_timer_t* t) {
    auto* self = static_cast<Server*>(t->data);
    self->audit_.flush();
    if (++self->flushes_ % 8 == 0) self->probe_upstream();  // every 2 s
  }, 250, 250);
  uv_timer_init(main_, &watchdog_);
  watchdog_.data = this;
  if (const std::uint64_t usec = sd_watchdog_usec(); usec > 0) {
    const std::uint64_t every_ms = std::max<std::uint64_t>(1, usec / 2000);  // half the interval
    uv_timer_start(&watchdog_, [](uv_timer_t* t) { static_cast<Server*>(t->data)->watchdog(); }, every_ms, every_ms);
  }
  uv_async_init(main_, &switched_, [](uv_async_t* a) { static_cast<Server*>(a->data)->switched(); });
  switched_.data = this;
  uv_async_init(main_, &done_, [](uv_async_t* a) {
    auto* self = static_cast<Server*>(a->data);
    if (self->running_.load() > 0) return;
    for (auto* s : {&self->sigterm_, &self->sigint_, &self->sighup_, &self->sigusr1_, &self->sigusr2_})
      uv_close(reinterpret_cast<uv_handle_t*>(s), nullptr);
    for (auto* h : {reinterpret_cast<uv_handle_t*>(&self->flush_), reinterpret_cast<uv_handle_t*>(&self->watchdog_),
                    reinterpret_cast<uv_handle_t*>(&self->done_), reinterpret_cast<uv_handle_t*>(&self->switched_)})
      uv_close(h, nullptr);
    if (self->metrics_) self->metrics_->close();
    if (self->probe_) self->probe_->close();
  });
  done_.data = this;
  running_ = static_cast<int>(workers_.size());
  for (auto& w : workers_) {
    Worker* wp = w.get();
    threads_.emplace_back([this, wp] {
      wp->run();
      --running_;
      uv_async_send(&done_);
    });
  }
  sd_notify("READY=1\nSTATUS=taking sessions");
  uv_run(main_, UV_RUN_DEFAULT);
  for (auto& t : threads_) t.join();
  threads_.clear();
  spdlog::info("stats at exit: {}", stats_line());
  audit_.flush();
  uv_loop_close(main_);
}

std::string Server::stats_line() const {
  return totals().to_string() + " audit_records_dropped=" + std::to_string(audit_.dropped());
}

StatTotals Server::totals() const {
  StatTotals t;
  for (const auto& w : workers_) w->stats().add_to(t);
  return t;
}

void Server::drain() {
  if (!draining_) sd_notify("STOPPING=1\nSTATUS=draining");
  draining_ = true;
  spdlog::info("shutting down: {} session(s) open, grace {} s", admission_.sessions(), snap_->cfg.shutdown_grace_s);
  for (auto& w : workers_) w->request_drain();
}

void Server::reload() {
  if (draining_) {
    spdlog::warn("reload ignored: draining");
    return;
  }
  sd_notify("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(monotonic_usec()));
  std::string error;
  auto snap = reload_ ? reload_(error) : nullptr;
  if (!snap) {
    spdlog::error("reload refused, keeping the running configuration: {}", error);
    sd_notify("READY=1\nSTATUS=reload refused, running the previous configuration");
    return;
  }
  if (!(snap->cfg.listen_addr == snap_->cfg.listen_addr))
    spdlog::warn("reload: listen address changes need a restart; still listening on {}", bound_.to_string());
  if (snap->cfg.pasv_lo != snap_->cfg.pasv_lo || snap->cfg.pasv_hi != snap_->cfg.pasv_hi ||
      snap->cfg.workers != snap_->cfg.workers)
    spdlog::warn("reload: passive_ports and workers changes need a restart");
  if (snap->cfg.metrics_listen != snap_->cfg.metrics_listen || snap->cfg.process_user != snap_->cfg.process_user ||
      snap->cfg.process_group != snap_->cfg.process_group)
    spdlog::warn("reload: metrics.listen and process changes need a restart");
  if (snap->rules->version() != snap_->rules->version()) {
    spdlog::info("rules changed: {} -> {} (new sessions)", snap_->rules->version(), snap->rules->version());
    audit_.write(Event(audit::ev::rules_reloaded, "", "")
                     .str(audit::f::rules_version, snap->rules->version())
                     .str(audit::f::old, snap_->rules->version())
                     .str(audit::f::new_, snap->rules->version()));
  }
  snap_ = std::move(snap);
  // Buffers already grown keep their memory; new growth follows the new limit.
  RelayBudget::set_limit(static_cast<std::size_t>(snap_->cfg.relay_memory_mib) << 20);
  // Reloaded once every worker has switched: a connection each one accepts
  // from then on takes the new configuration, one before it the old.
  switching_ += static_cast<int>(workers_.size());
  for (auto& w : workers_)
    w->request_snapshot(snap_, [this] {
      if (--switching_ == 0) uv_async_send(&switched_);
    });
}

void Server::watchdog() {
  // Alive means every worker's loop has run its housekeeping tick since the
  // last ping, not just this main loop: a stuck worker stops the pings and
  // systemd restarts the service.
  bool all = true;
  ticks_seen_.resize(workers_.size(), 0);
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    const std::uint64_t t = workers_[i]->stats().loop_ticks.get();
    all = all && t != ticks_seen_[i];
  }
  if (!all) return;
  for (std::size_t i = 0; i < workers_.size(); ++i) ticks_seen_[i] = workers_[i]->stats().loop_ticks.get();
  sd_notify("WATCHDOG=1");
}

void Server::switched() {
  if (switching_.load() != 0) return;
  spdlog::info("configuration reloaded: mode={} rules={}", snap_->cfg.mode, snap_->rules->rules().size());
  sd_notify("READY=1\nSTATUS=taking sessions");
}

}  // namespace ftpw
