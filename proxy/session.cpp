#include "session.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include "audit_schema.h"
#include "server.h"

namespace ftpw {
namespace {

constexpr std::string_view kUpstreamDown = "421 Service not available, the server cannot be reached.\r\n";
constexpr std::string_view kCutShort = "426 Connection closed; transfer aborted.\r\n";

std::uint64_t now_us() { return uv_hrtime() / 1000; }
constexpr std::size_t kHeldHigh = 256 * 1024;  // as a control leg's write queue

void tune_control_socket(Stream& s, bool oob_inline) {
  uv_tcp_nodelay(s.tcp(), 1);
  uv_tcp_keepalive(s.tcp(), 1, 60);
  if (oob_inline) {
    // TELNET Synch (ABOR's IAC DM) arrives as TCP urgent data; keep it in the
    // stream so the framer sees it and no byte of the line is lost.
    uv_os_fd_t fd;
    if (uv_fileno(reinterpret_cast<uv_handle_t*>(s.tcp()), &fd) == 0) {
      const int one = 1;
      setsockopt(fd, SOL_SOCKET, SO_OOBINLINE, &one, sizeof one);
    }
  }
}

}  // namespace

// ================================================================== Session

Session::Session(Worker& srv, std::shared_ptr<const Snapshot> snap, Stream* client, const NetAddr& peer)
    : srv_(srv),
      snap_(std::move(snap)),
      peer_(peer),
      client_(client),
      timers_(TimerLimits::from(snap_->cfg), srv.now_ms()) {
  id_ = srv_.next_session_id();
  peer_str_ = peer_.to_string();
  client_->set_handler(this);
  ++handles_;
  const Config& c = snap_->cfg;
  CoreSettings cs;
  cs.mode = c.mode_value;
  cs.client_framer.max_line = static_cast<std::size_t>(c.max_line);
  cs.allow_foreign_active = c.foreign_active;
  cs.max_bad_lines = static_cast<std::uint32_t>(c.max_bad_lines);
  core_ = std::make_unique<SessionCore>(cs, snap_->rules, SessionPeers{peer_, c.upstream_addr});
}

Session::~Session() = default;

uv_loop_t* Session::loop() const { return srv_.loop(); }
std::uint64_t Session::now_ms() const { return srv_.now_ms(); }
PortPool& Session::ports() { return srv_.ports(); }

void Session::audit(const Event& e) const { srv_.audit().write(e); }

void Session::start() {
  opened_ms_ = now_ms();
  timers_ = SessionTimers(TimerLimits::from(cfg()), opened_ms_);
  tune_control_socket(*client_, true);
  auto local = client_->local();
  audit(event(audit::ev::session_open).str(audit::f::local, local ? local->to_string() : "").str(audit::f::upstream,
                                                                               cfg().upstream_addr.to_string()));
  client_->pause(pause_not_ready);
  client_->start();
  slot_ = UpstreamSlot::queued;
  srv_.want_upstream(this);
}

void Session::connect_upstream() {
  slot_ = UpstreamSlot::held;
  timers_.upstream_connecting(now_ms());
  upstream_ = Stream::create(loop(), this, tag_upstream);
  ++handles_;
  sockaddr_storage ss;
  to_sockaddr(cfg().upstream_addr, ss);
  if (int rc = upstream_->connect(reinterpret_cast<sockaddr*>(&ss)); rc != 0) {
    spdlog::warn("session {}: connect to {} failed: {}", id_, cfg().upstream_addr.to_string(), uv_strerror(rc));
    terminate(EndReason::upstream_unreachable, kUpstreamDown);
  }
}

void Session::on_connect(Stream& s, int status) {
  if (&s != upstream_ || closing_) return;
  if (status != 0) {
    spdlog::warn("session {}: upstream {} unreachable: {}", id_, cfg().upstream_addr.to_string(), uv_strerror(status));
    terminate(EndReason::upstream_unreachable, kUpstreamDown);
    return;
  }
  tune_control_socket(*upstream_, false);
  upstream_->start();
  client_->resume(pause_not_ready);
  sync_client_pause();
}

void Session::sync_client_pause() {
  if (closing_ || !client_ || !upstream_) return;  // (the server's leg may be gone after its 221)
  // While the core holds the client's commands, keep reading up to a small
  // backlog so a client that hangs up is noticed; stop reading beyond it.
  if (core_->client_paused() && core_->client_backlog() >= static_cast<std::size_t>(cfg().max_line))
    client_->pause(pause_core_hold);
  else client_->resume(pause_core_hold);
  // Replies toward a client that does not read: stop reading the server, and
  // the client too (each line it sends may earn a reply from the proxy itself).
  if (client_->above_high()) {
    upstream_->pause(pause_peer_full);
    client_->pause(pause_own_full);
  }
  if (upstream_->above_high()) client_->pause(pause_peer_full);
  // Replies held behind a completion that waits for its data count as
  // queued toward the client: past the high watermark, stop reading both.
  if (held_.size() > kHeldHigh) {
    upstream_->pause(pause_peer_full);
    client_->pause(pause_own_full);
  }
}

void Session::on_data(Stream& s, const char* p, std::size_t n) {
  if (closing_) return;
  ++t_loop_activity;  // a reply or a command is likely to follow soon
  if (&s == client_) {
    timers_.client_spoke(now_ms());
    core_->on_client_bytes(std::string_view(p, n), now_us(), *this);
  } else {
    core_->on_server_bytes(std::string_view(p, n), now_us(), *this);
    // The server accepted and speaks (a 120 "ready in n minutes" counts): the
    // slot is free for the next connection, the login timeout takes over.
    if (slot_ == UpstreamSlot::held) release_slot();
  }
  if (pending_close_ && !closing_) {
    terminate(EndReason::login_failures, "421 Too many failed logins, closing control connection.\r\n");
    return;
  }
  if (!closing_) {
    sync_client_pause();
    finish_if_done();
  }
}

void Session::on_drain(Stream& s) {
  if (closing_) return;
  if (&s == client_) {
    if (upstream_) upstream_->resume(pause_peer_full);
    client_->resume(pause_own_full);
  } else {
    client_->resume(pause_peer_full);
  }
}

void Session::on_eof(Stream& s) {
  if (closing_) return;
  if (&s == client_) {
    // Half-close: what the client sent before its FIN (QUIT, say) is still
    // answered; the session ends once nothing is pending.
    client_eof_ = true;
    finish_if_done();
  } else {
    // The server closed its control connection: deliver what it said, then end.
    // If it still owed replies (it died), the client hears so; never a 226.
    if (quit_after_deferred_) {
      // 221 seen; the completion reply before it waits for its data to drain.
    } else if (core_->pending_commands() || xfer_.active) {
      has_deferred_ = false;
      terminate(EndReason::upstream_closed, "421 Service not available, connection to the server lost.\r\n");
    } else {
      close_session(EndReason::upstream_closed);
    }
  }
}

void Session::finish_if_done() {
  if (!client_eof_ || closing_) return;
  // Done when every command it sent (a QUIT held until the greeting, say)
  // has been answered.
  if (core_->pending_commands() == 0 && !has_deferred_ && core_->client_backlog() == 0) {
    close_session(EndReason::client_closed);
    return;
  }
  // A transfer with no data connection and none coming (never set up, or the
  // proxy gave up waiting for it) would wait for ever: the client has hung up
  // and cannot set one up. A data connection still being waited for is given
  // its time (a half-closed client may still connect; data.connect_timeout_s).
  const bool waiting_for_data = data_ && !data_->ended();
  if (core_->transfer_pending() && !last_data_.made && !waiting_for_data) close_session(EndReason::client_closed);
}

void Session::on_error(Stream& s, int err) {
  if (closing_) return;
  spdlog::debug("session {}: {} error: {}", id_, &s == client_ ? "client" : "upstream", uv_strerror(err));
  if (&s == upstream_) {
    if (quit_after_deferred_) {  // its 221 is in: the held replies still go out, then the session ends
      upstream_->close();
      return;
    }
    has_deferred_ = false;
    terminate(EndReason::upstream_error, "421 Service not available, connection to the server lost.\r\n");
    return;
  }
  close_session(EndReason::client_error);
}

void Session::on_shutdown(Stream& s) {
  if (&s == client_ && closing_) {
    client_->close();
    if (upstream_) upstream_->close();
  }
}

void Session::on_closed(Stream& s) {
  const bool was_upstream = &s == upstream_;
  if (&s == client_) client_ = nullptr;
  if (was_upstream) upstream_ = nullptr;
  --handles_;
  // The server's connection may go once it has answered QUIT; the session
  // then ends when its held replies have been delivered.
  if (!closing_ && !(was_upstream && quit_after_deferred_)) close_session(EndReason::connection_closed);
  if (handles_ == 0) {
    srv_.session_gone(this);
    delete this;
  }
}

void Session::terminate(EndReason reason, std::string_view reply) {
  if (closing_) return;
  if (client_ && !client_->closing() && !reply.empty()) {
    client_->write(reply);
    audit(event(audit::ev::reply).num(audit::f::code, reply_code(reply))
              .str(audit::f::text, reply_text(reply))
              .str(audit::f::source, "proxy"));
  }
  close_session(reason);
}

void Session::release_slot() {
  if (slot_ != UpstreamSlot::queued && slot_ != UpstreamSlot::held) return;
  const bool held = slot_ == UpstreamSlot::held;
  slot_ = UpstreamSlot::done;
  timers_.upstream_answered();
  srv_.release_upstream(this, held);
}

void Session::close_session(EndReason reason) {
  if (closing_) return;
  closing_ = true;
  t_loop_settle = true;
  timers_.closing(now_ms());
  release_slot();
  if (data_) data_->abort("session-closed");
  if (!logged_session_close_) {
    logged_session_close_ = true;
    audit(event(audit::ev::session_close)
              .str(audit::f::reason, name_of(reason))
              .num(audit::f::duration_ms, static_cast<std::int64_t>(now_ms() - opened_ms_))
              .num(audit::f::bytes_from_client, static_cast<std::int64_t>(client_ ? client_->bytes_in : 0))
              .num(audit::f::bytes_to_client, static_cast<std::int64_t>(client_ ? client_->bytes_out : 0)));
  }
  if (upstream_) {
    upstream_->pause(pause_draining);
    // Without a reply still owed to the client, the upstream goes now.
    upstream_->close();
  }
  if (client_) {
    client_->pause(pause_draining);
    if (client_->queued() == 0) client_->close();
    else client_->shutdown();  // flush what is owed (a 421, a 221), then close
  }
}

void Session::tick(std::uint64_t now) {
  timers_.set_logged_in(core_->logged_in(), now);
  const std::uint64_t since = core_->waiting_since_us();
  const std::uint64_t waited_ms = since != 0 ? (now_us() - since) / 1000 : 0;
  const Timer t = timers_.expired(now, waited_ms);
  if (t == Timer::close_grace) {  // a closing session that cannot flush is cut
    if (data_) data_->abort("session-closed");
    if (client_) client_->close();
    if (upstream_) upstream_->close();
    return;
  }
  if (t != Timer::none) audit(event(audit::ev::timeout).str(audit::f::timer, name_of(t)));
  switch (t) {
    case Timer::upstream_connect:
      // The server must accept and speak within the connect timeout (a
      // connection whose handshake a full listen queue swallowed never does).
      terminate(EndReason::upstream_connect_timeout, kUpstreamDown);
      return;
    case Timer::login:
      terminate(EndReason::login_timeout, "421 Login timeout, closing control connection.\r\n");
      return;
    case Timer::reply:
      terminate(EndReason::reply_timeout, "421 Service not available, the server does not answer.\r\n");
      return;
    case Timer::idle:
      terminate(EndReason::idle_timeout, "421 Idle timeout, closing control connection.\r\n");
      return;
    case Timer::data_connect:
      if (data_) data_->abort("data-connect-timeout");
      break;
    case Timer::data_stall:
      if (data_) data_->abort("data-stall-timeout");
      break;
    case Timer::none:
    case Timer::close_grace:
      break;
  }
  if (!closing_ && !xfer_.active && !data_ && !core_->transfer_running()) core_->shrink();
}

void Session::update_busy() { timers_.set_busy(xfer_.active || data_up_, now_ms()); }

// ---------------------------------------------------------------- CoreSink

void Session::on_command(const CommandEvent& c) {
  std::string verb = c.verb == Verb::unknown ? std::string(c.verb_text) : std::string(name_of(c.verb));
  Event e = event(audit::ev::command);
  e.str(audit::f::verb, verb);
  // SECURITY: the password (and account) never reaches any log.
  e.str(audit::f::arg, (c.verb == Verb::PASS || c.verb == Verb::ACCT) && !c.arg.empty() ? "****" : c.arg);
  audit(e);
}

void Session::on_reply(const ReplyEvent& r) {
  timers_.set_logged_in(core_->logged_in(), now_ms());  // a logout restarts the login period now
  Event e = event(audit::ev::reply);
  e.num(audit::f::code, r.code).str(audit::f::text, reply_text(r.raw));
  if (r.latency_us >= 0 && !r.from_proxy) e.num(audit::f::latency_us, r.latency_us);
  if (r.verb != Verb::unknown) e.str(audit::f::verb, name_of(r.verb));
  if (r.from_proxy) e.str(audit::f::source, "proxy");
  if (r.data_conn_reused) e.str(audit::f::annotation, "data_connection_already_open");
  audit(e);
  if (r.verb == Verb::PASS && r.code == 530 && !r.from_proxy) {
    audit(event(audit::ev::login_failed).str(audit::f::verb, "PASS").str(audit::f::arg, "****").num(audit::f::code, r.code));
    if (srv_.login_failed(peer_)) pending_close_ = true;
  }
}

void Session::on_finding(const Finding& f) {
  Event e = event(f.side == Side::client ? audit::ev::violation : audit::ev::server_finding);
  e.str(audit::f::rule, f.rule);
  e.str(audit::f::verb, f.verb != Verb::unknown ? name_of(f.verb) : f.verb_text);
  e.str(audit::f::action, f.action == FindingAction::rejected ? "rejected" : "logged");
  if (f.action == FindingAction::rejected && f.reply_code != 0) e.num(audit::f::reply_code, f.reply_code);
  e.str(audit::f::severity, name_of(f.severity)).str(audit::f::message, f.message);
  audit(e);
  if (f.side == Side::client) ++srv_.stats().violations;
}

void Session::send_to_server(std::string_view bytes) {
  if (upstream_ && !closing_) upstream_->write(bytes);
}

void Session::send_to_client(std::string_view bytes) {
  if (!client_ || closing_) return;
  // Replies keep their order: what follows a completion reply that waits for
  // its data to drain waits behind it.
  if (has_deferred_) held_.append(bytes);
  else client_->write(bytes);
}

void Session::send_to_client_after_data(std::string_view bytes) {
  deferred_.assign(bytes);
  has_deferred_ = true;
  // A failed transfer (425/426/451/5xx): the data connection has no reason to live.
  if (xfer_.code >= 300 && data_) data_->abort("transfer-failed");
  if (!data_ || data_->ended()) flush_deferred();
}

void Session::flush_deferred() {
  if (!has_deferred_) return;
  has_deferred_ = false;
  if (xfer_.active) {
    if (last_data_.cut && xfer_.code >= 200 && xfer_.code < 300) {
      // The server is done, but the data connection was cut (timeout, abort)
      // before it delivered everything: never a 2xx for a cut-short transfer.
      deferred_.assign(kCutShort);
      xfer_.code = 426;
      audit(event(audit::ev::reply).num(audit::f::code, 426).str(audit::f::text, reply_text(kCutShort)).str(audit::f::source, "proxy"));
    }
    const bool down = xfer_.download;
    const std::uint64_t bytes = down ? last_data_.down : last_data_.up;
    Event e = event(audit::ev::transfer);
    e.str(audit::f::verb, name_of(xfer_.verb))
        .str(audit::f::path, xfer_.path)
        .num(audit::f::bytes, static_cast<std::int64_t>(bytes))
        .str(audit::f::direction, down ? "download" : "upload")
        .num(audit::f::duration_us, static_cast<std::int64_t>(now_us() - xfer_.start_us))
        .str(audit::f::data_conn, xfer_.reused ? "reused" : "new")
        .num(audit::f::code, xfer_.code);
    audit(e);
    ++srv_.stats().transfers;
    xfer_ = Transfer{};
    last_data_ = DataResult{};  // used up: the next transfer needs a data connection of its own
    update_busy();  // the idle period starts now, as the completion reply goes out
  }
  send_to_client(deferred_);
  deferred_.clear();
  if (!held_.empty()) {
    const bool was_full = held_.size() > kHeldHigh;
    send_to_client(held_);
    held_.clear();
    if (was_full && client_ && upstream_ && !client_->above_high()) {
      upstream_->resume(pause_peer_full);
      client_->resume(pause_own_full);
    }
  }
  if (quit_after_deferred_) close_session(EndReason::quit);
  else if (!closing_) finish_if_done();
}

void Session::replace_data(DataChannel* d) {
  if (data_) data_->abort("replaced");
  data_ = d;
  last_data_ = DataResult{};
}

std::optional<NetAddr> Session::open_passive(const NetAddr& upstream) {
  if (closing_) return std::nullopt;
  auto local = client_ ? client_->local() : std::nullopt;
  if (!local) return std::nullopt;
  auto* d = new DataChannel(*this, DataChannel::Kind::passive, upstream);
  ++handles_;  // the channel counts as one until data_gone
  replace_data(d);
  std::optional<NetAddr> announce = cfg().public_addr;
  auto addr = d->open(*local, announce);
  if (!addr) d->abort("no-passive-port");
  return addr;
}

std::optional<NetAddr> Session::open_active(const NetAddr& client) {
  if (closing_) return std::nullopt;
  auto local = upstream_ ? upstream_->local() : std::nullopt;
  if (!local) return std::nullopt;
  auto* d = new DataChannel(*this, DataChannel::Kind::active, client);
  ++handles_;
  replace_data(d);
  auto addr = d->open(*local, std::nullopt);
  if (!addr) d->abort("no-active-port");
  return addr;
}

void Session::transfer_started(const TransferStart& t) {
  xfer_ = Transfer{};
  xfer_.active = true;
  xfer_.verb = t.verb;
  xfer_.path = std::string(t.path);
  xfer_.reused = t.reused;
  xfer_.download = t.download;
  xfer_.start_us = now_us();
  update_busy();
}

void Session::transfer_finished(int code) { xfer_.code = code; }

void Session::abort_data() {
  if (data_) data_->abort("abor");
}

void Session::close(EndReason reason) {
  // The core asks to close after its last words (421, 221): let them flush.
  // A completion reply still waiting for its data goes first.
  if (reason == EndReason::quit && has_deferred_) {
    quit_after_deferred_ = true;
    return;
  }
  // Last words (a 421) queued behind a reply still waiting for its data go
  // out now: the data connection is cut with the session.
  if (!held_.empty() && client_ && !closing_) client_->write(held_);
  held_.clear();
  close_session(reason);
}

void Session::data_opened(const DataChannel&, const NetAddr& client_side, const NetAddr& server_side) {
  last_data_.made = true;
  data_up_ = true;
  timers_.data_connected(now_ms());
  update_busy();
  core_->on_data_event(DataEvent::opened);
  audit(event(audit::ev::data_open).str(audit::f::client_side, client_side.to_string()).str(audit::f::server_side, server_side.to_string()));
}

void Session::data_server_leg() { core_->on_data_event(DataEvent::server_leg); }

void Session::data_ended(const DataChannel& d, std::string_view reason, bool delivered) {
  core_->on_data_event(DataEvent::closed);
  data_up_ = false;
  timers_.data_ended();
  update_busy();
  last_data_.down = d.downloaded();
  last_data_.up = d.uploaded();
  // Only a channel the proxy cut (timeout, ABOR) turns a 2xx into 426: a peer
  // that resets a data connection after the last byte loses nothing.
  last_data_.cut = d.cut();
  audit(event(audit::ev::data_close)
            .str(audit::f::reason, reason)
            .boolean(audit::f::complete, delivered)
            .num(audit::f::bytes_down, static_cast<std::int64_t>(d.downloaded()))
            .num(audit::f::bytes_up, static_cast<std::int64_t>(d.uploaded())));
  if (has_deferred_ && !closing_) flush_deferred();
  else finish_if_done();
}

void Session::data_gone(DataChannel* d) {
  if (data_ == d) data_ = nullptr;
  delete d;
  --handles_;
  if (handles_ == 0 && closing_) {
    srv_.session_gone(this);
    delete this;
  }
}

void Session::data_event(std::string_view rule, std::string_view message, const NetAddr& who) {
  audit(event(audit::ev::violation)
            .str(audit::f::rule, rule)
            .str(audit::f::verb, "")
            .str(audit::f::action, "rejected")
            .str(audit::f::peer, who.to_string())
            .str(audit::f::message, message));
  ++srv_.stats().violations;
}

}  // namespace ftpw
