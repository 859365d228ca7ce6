#include "worker.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "audit_schema.h"
#include "fd_budget.h"
#include "proxy_intake.h"
#include "session.h"

namespace ftpw {
namespace {
constexpr std::uint64_t kTickMs = 250;
}  // namespace

Worker::Worker(int index, std::shared_ptr<const Snapshot> snap, AuditLog& audit, Admission& admission,
               std::uint16_t pasv_lo, std::uint16_t pasv_hi)
    : index_(index), snap_(std::move(snap)), audit_(audit), admission_(admission) {
  uv_loop_init(&loop_);
  ports_ = std::make_unique<PortPool>(pasv_lo, pasv_hi);
  uv_timer_init(&loop_, &timer_);
  timer_.data = this;
  uv_async_init(&loop_, &async_, [](uv_async_t* a) { static_cast<Worker*>(a->data)->on_async(); });
  async_.data = this;
}

Worker::~Worker() {
  if (uv_loop_close(&loop_) == 0) return;
  // A loop that ran to its end has closed every handle; one that never ran
  // (start-up failed) still has its timer, async and listener. Anything else
  // left is a leak: say so, then close what is left so the loop can go.
  std::size_t open = 0;
  uv_walk(
      &loop_,
      [](uv_handle_t* h, void* n) {
        ++*static_cast<std::size_t*>(n);
        if (!uv_is_closing(h)) uv_close(h, nullptr);
      },
      &open);
  // (stderr directly: the logger may be shut down by now)
  if (ran_) std::fprintf(stderr, "ftpwarden: worker %d: %zu libuv handle(s) still open at exit\n", index_, open);
  uv_run(&loop_, UV_RUN_DEFAULT);
  if (int rc = uv_loop_close(&loop_); rc != 0)
    std::fprintf(stderr, "ftpwarden: worker %d: event loop not closed: %s\n", index_, uv_strerror(rc));
}

std::string Worker::next_session_id() {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%x-%d-%06llx", static_cast<unsigned>(getpid()), index_,
                static_cast<unsigned long long>(++seq_));
  return buf;
}

int Worker::listen(const NetAddr& addr, bool reuseport, std::string& error) {
  listener_ = Listener::create(&loop_, this);
  if (int rc = listener_->listen(addr, 1024, reuseport, snap_->cfg.transparent); rc != 0) {
    error = "cannot listen on " + addr.to_string() + ": " + uv_strerror(rc);
    listener_->close();
    listener_ = nullptr;
    return rc;
  }
  bound_ = *listener_->local();
  return 0;
}

void Worker::run() {
  ran_ = true;
  AuditLog::begin_batching();
  uv_timer_start(&timer_, [](uv_timer_t* t) { static_cast<Worker*>(t->data)->tick(); }, kTickMs, kTickMs);
  // Sleeping in epoll and being woken costs tens of microseconds on a
  // virtual machine whose vCPU halts when idle, twice per relayed round trip.
  // After control activity (t_loop_activity) the loop polls without blocking
  // for busy_poll_us, so a reply that follows a command soon is picked up at
  // once; otherwise it blocks as usual. While polling finds nothing the
  // thread yields its core.
  std::uint64_t seen = t_loop_activity, active_at = 0;
  for (;;) {
    const auto spin_ns = static_cast<std::uint64_t>(snap_->cfg.busy_poll_us) * 1000;
    const bool spin = spin_ns != 0 && uv_hrtime() - active_at < spin_ns;
    if (!spin) ++stats_.loop_wakeups;
    uv_run(&loop_, spin ? UV_RUN_NOWAIT : UV_RUN_ONCE);
    if (!uv_loop_alive(&loop_)) break;
    if (t_loop_settle) {
      // A session ended: whatever window is open (or was about to open, for
      // the activity that ended it) closes now.
      if (spin || t_loop_activity != seen) ++stats_.poll_windows_cut;
      t_loop_settle = false;
      seen = t_loop_activity;
      active_at = 0;
    } else if (t_loop_activity != seen) {
      if (spin_ns != 0 && !spin) ++stats_.poll_windows;
      seen = t_loop_activity;
      active_at = uv_hrtime();
    } else if (spin) {
      sched_yield();
    }
  }
  audit_.flush_batch();
}

void Worker::request_drain() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    drain_requested_ = true;
  }
  uv_async_send(&async_);
}

void Worker::request_snapshot(std::shared_ptr<const Snapshot> snap, std::function<void()> switched) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    new_snap_ = std::move(snap);
    switched_.push_back(std::move(switched));
  }
  uv_async_send(&async_);
}

void Worker::on_async() {
  bool drain;
  std::shared_ptr<const Snapshot> snap;
  std::vector<std::function<void()>> switched;
  {
    std::lock_guard<std::mutex> lock(mu_);
    drain = drain_requested_;
    snap = std::move(new_snap_);
    switched.swap(switched_);
  }
  if (snap) snap_ = std::move(snap);  // new sessions take it; open ones keep theirs
  for (auto& f : switched)
    if (f) f();
  if (drain) begin_drain();
}

void Worker::on_connection(Listener& l) {
  Stream* st = l.accept(nullptr, 0);
  if (!st) return;
  auto peer = st->peer();
  const unsigned accept = snap_->cfg.proxy_accept;
  if (!accept || !peer || draining_) return admit(st, peer, std::nullopt, {});
  // Behind a load balancer: who the client is comes first, in its header.
  ProxyIntake::start(
      &loop_, st, *peer, accept,
      [this](Stream* s, const NetAddr& client, std::optional<NetAddr> via, std::string early) {
        admit(s, client, via, std::move(early));
      },
      [this](const NetAddr& from, std::string_view why) {
        refused(Refusal::proxy_header, &from, why);
      });
}

std::optional<NetAddr> Worker::destination(const Stream& st) const {
  auto dst = st.original_destination();
  // A connection made to the proxy itself, not redirected to it: it has no
  // server to go to (and relaying it to itself would loop).
  if (!dst || (dst->port == bound_.port && dst == st.local())) return std::nullopt;
  return dst;
}

bool Worker::allowed_upstream(const NetAddr& dst) const {
  for (const auto& net : snap_->cfg.allowed_nets)
    if (net.contains(dst)) return true;
  return false;
}

void Worker::refused(Refusal r, const NetAddr* peer, std::string_view why) {
  ++stats_.sessions_refused;
  ++stats_.refused[static_cast<std::size_t>(r)];
  audit_.write(Event(audit::ev::session_refused, "", peer ? peer->to_string() : "")
                   .str(audit::f::rules_version, snap_->rules->version())
                   .str(audit::f::reason, why));
}

void Worker::admit(Stream* st, std::optional<NetAddr> peer, std::optional<NetAddr> via, std::string early) {
  struct Refuse : StreamHandler {  // answers 421 and closes; frees itself
    void on_data(Stream&, const char*, std::size_t) override {}
    void on_eof(Stream& s) override { s.close(); }
    void on_error(Stream& s, int) override { s.close(); }
    void on_shutdown(Stream& s) override { s.close(); }
    void on_closed(Stream&) override { delete this; }
  };
  std::optional<Refusal> refusal;
  std::optional<NetAddr> upstream;  // transparent: where this client meant to go
  if (draining_) refusal = Refusal::shutting_down;
  else if (!peer) refusal = Refusal::no_peer;
  else if (!FdBudget::room(g_sockets.load(std::memory_order_relaxed))) refusal = Refusal::out_of_fds;
  else if (snap_->cfg.transparent && !(upstream = destination(*st))) refusal = Refusal::not_redirected;
  else if (upstream && !allowed_upstream(*upstream)) refusal = Refusal::destination_not_allowed;
  if (!refusal && peer) refusal = admission_.admit(*peer, snap_->cfg, now_ms());
  if (refusal) {
    const std::string_view refuse = reply_of(*refusal);
    refused(*refusal, peer ? &*peer : nullptr, refuse.substr(4, refuse.size() - 6));
    st->set_handler(new Refuse);
    // Implicit FTPS: a client waiting for a handshake cannot read a clear 421.
    if (!snap_->cfg.implicit_tls) st->write(refuse);
    st->shutdown();
    return;
  }
  ++stats_.sessions_total;
  ++stats_.sessions_open;
  auto* s = new Session(*this, snap_, st, *peer, via, upstream);
  sessions_.insert(s);
  s->start();
  if (!early.empty()) s->on_data(*st, early.data(), early.size());
}

void Worker::want_upstream(Session* s) {
  connect_queue_.push_back(s);
  dispatch_connects();
}

void Worker::release_upstream(Session* s, bool held) {
  if (held) --connecting_;
  else if (auto it = std::find(connect_queue_.begin(), connect_queue_.end(), s); it != connect_queue_.end())
    connect_queue_.erase(it);
  dispatch_connects();
}

void Worker::dispatch_connects() {
  if (dispatching_) return;  // a connect that fails at once releases from inside
  if (draining_ && now_ms() >= drain_deadline_ms_) return;  // they are all being closed
  dispatching_ = true;
  const Config& c = snap_->cfg;
  const auto limit = static_cast<std::size_t>(std::max<std::int64_t>(
      1, (c.upstream_max_connecting + c.workers - 1) / std::max<std::int64_t>(1, c.workers)));
  while (connecting_ < limit && !connect_queue_.empty()) {
    Session* next = connect_queue_.front();
    connect_queue_.pop_front();
    ++connecting_;
    next->connect_upstream();
  }
  dispatching_ = false;
}

void Worker::session_gone(Session* s) {
  audit_.flush_batch();  // a finished session's events are not held back
  sessions_.erase(s);
  --stats_.sessions_open;
  admission_.release(s->peer());
  maybe_stop();
}

void Worker::on_listener_closed(Listener&) { maybe_stop(); }

void Worker::tick() {
  ++ticks_;
  ++stats_.loop_ticks;
  const std::uint64_t now = now_ms();
  if (draining_ && now >= drain_deadline_ms_) {
    // Grace is over: the remaining sessions hear 421 and close.
    std::vector<Session*> v(sessions_.begin(), sessions_.end());
    for (Session* s : v)
      if (sessions_.count(s)) s->terminate(EndReason::shutdown);
  }
  if (index_ == 0 && ticks_ % (60000 / kTickMs) == 0) admission_.sweep(snap_->cfg, now);
  if (ticks_ % (1000 / kTickMs) == 0 || draining_) {
    std::vector<Session*> v(sessions_.begin(), sessions_.end());
    for (Session* s : v)
      if (sessions_.count(s)) s->tick();
  }
  audit_.flush_batch();  // events reach the logger within a tick
}

void Worker::begin_drain() {
  if (draining_) return;
  draining_ = true;
  drain_deadline_ms_ = now_ms() + static_cast<std::uint64_t>(snap_->cfg.shutdown_grace_s) * 1000;
  if (listener_) {
    listener_->close();
    listener_ = nullptr;
  }
  maybe_stop();
}

void Worker::maybe_stop() {
  if (!draining_ || stopped_ || !sessions_.empty() || listener_) return;
  stopped_ = true;
  uv_timer_stop(&timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
}

}  // namespace ftpw
