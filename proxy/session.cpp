#include "session.h"

#include "proxy_header.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include "audit_schema.h"
#include "tls_context.h"

namespace ftpw {
namespace {

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

// The one place the configuration becomes the core's settings.
CoreSettings core_settings(const Config& c) {
  auto ms = [](std::int64_t s) { return static_cast<std::uint64_t>(s) * 1000; };
  CoreSettings cs;
  cs.mode = c.mode_value;
  cs.client_framer.max_line = static_cast<std::size_t>(c.max_line);
  cs.allow_foreign_active = c.foreign_active;
  cs.max_bad_lines = static_cast<std::uint32_t>(c.max_bad_lines);
  cs.command_rate = static_cast<std::uint32_t>(c.command_rate);
  cs.command_burst = static_cast<std::uint32_t>(c.command_burst);
  cs.timers.upstream_connect_ms = static_cast<std::uint64_t>(c.upstream_connect_timeout_ms);
  cs.timers.login_ms = ms(c.login_timeout_s);
  cs.timers.reply_ms = ms(c.reply_timeout_s);
  cs.timers.idle_ms = ms(c.idle_timeout_s);
  cs.timers.data_connect_ms = ms(c.data_connect_timeout_s);
  cs.timers.data_stall_ms = ms(c.data_stall_timeout_s);
  cs.tls.terminate = c.tls_client_value != TlsClient::off;
  cs.tls.required = c.tls_client_value == TlsClient::required;
  cs.tls.implicit = c.implicit_tls;
  cs.tls.data = c.tls_data_value == TlsData::required ? DataProtection::required
                : c.tls_data_value == TlsData::clear  ? DataProtection::clear
                                                      : DataProtection::client;
  cs.tls.upstream = c.tls_upstream_value;
  cs.tls.require_reuse = c.tls_require_session_reuse;
  return cs;
}

}  // namespace

Session::Session(SessionHost& host, std::shared_ptr<const Snapshot> snap, Stream* client, const NetAddr& peer,
                 std::optional<NetAddr> via, std::optional<NetAddr> upstream)
    : host_(host), snap_(std::move(snap)), peer_(peer), via_(via), client_(client) {
  upstream_addr_ = upstream ? *upstream : snap_->cfg.upstream_addr;
  id_ = host_.next_session_id();
  peer_str_ = peer_.to_string();
  client_->set_handler(this);
  ++handles_;
  core_ = std::make_unique<SessionCore>(core_settings(cfg()), snap_->rules, SessionPeers{peer_, upstream_addr_},
                                        now_us());
}

Session::~Session() = default;

Event Session::event(std::string_view name) const {
  Event e(name, id_, peer_str_);
  e.str(audit::f::rules_version, snap_->rules->version());
  return e;
}

void Session::start() {
  opened_ms_ = uv_now(loop());
  tune_control_socket(*client_, true);
  auto local = client_->local();
  Event open = event(audit::ev::session_open);
  open.str(audit::f::local, local ? local->to_string() : "").str(audit::f::upstream, upstream_addr_.to_string());
  if (via_) open.str(audit::f::via, via_->to_string());
  audit(open);
  client_->pause(pause_not_ready);
  if (cfg().implicit_tls) client_->start_tls(snap_->tls->client_control(id_));
  client_->start();
  slot_ = UpstreamSlot::queued;
  host_.want_upstream(this);
}

void Session::connect_upstream() {
  slot_ = UpstreamSlot::held;
  core_->on_upstream_connecting(now_us());
  upstream_ = Stream::create(loop(), this, tag_upstream);
  ++handles_;
  sockaddr_storage ss;
  to_sockaddr(upstream_addr_, ss);
  if (int rc = upstream_->connect(reinterpret_cast<sockaddr*>(&ss)); rc != 0) {
    spdlog::warn("session {}: connect to {} failed: {}", id_, upstream_addr_.to_string(), uv_strerror(rc));
    upstream_failed();
    terminate(EndReason::upstream_unreachable);
  }
}

void Session::on_connect(Stream& s, int status) {
  if (&s != upstream_ || closing_) return;
  if (status != 0) {
    spdlog::warn("session {}: upstream {} unreachable: {}", id_, upstream_addr_.to_string(), uv_strerror(status));
    upstream_failed();
    terminate(EndReason::upstream_unreachable);
    return;
  }
  host_.upstream_outcome(true);
  tune_control_socket(*upstream_, false);
  if (cfg().proxy_send) {
    // The server learns who the client is before any FTP.
    const auto local = client_->local();
    const NetAddr to = local ? *local : NetAddr{};
    upstream_->write(proxy_header(cfg().proxy_send, peer_, to));
  }
  upstream_->start();
  client_->resume(pause_not_ready);
  sync_backpressure();
}

void Session::sync_backpressure() {
  if (closing_ || !client_ || !upstream_) return;  // (the server's leg may be gone after its 221)
  // Replies toward a client that does not read: stop reading the server, and
  // the client too (each line it sends may earn a reply from the proxy itself).
  if (client_->above_high()) {
    upstream_->pause(pause_peer_full);
    client_->pause(pause_own_full);
  }
  if (upstream_->above_high()) client_->pause(pause_peer_full);
}

void Session::after_core() {
  if (login_limit_ && !closing_) core_->on_login_limit(*this);
  if (!closing_) sync_backpressure();
}

void Session::on_data(Stream& s, const char* p, std::size_t n) {
  if (closing_) return;
  ++t_loop_activity;  // a reply or a command is likely to follow soon
  if (&s == client_) {
    core_->on_client_bytes(std::string_view(p, n), now_us(), *this);
  } else {
    core_->on_server_bytes(std::string_view(p, n), now_us(), *this);
    // The server accepted and speaks (a 120 "ready in n minutes" counts): the
    // slot is free for the next connection, the login timeout takes over.
    if (slot_ == UpstreamSlot::held) release_slot();
  }
  after_core();
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
  // Half-close: what the client sent before its FIN (QUIT, say) is still
  // answered; the core says when the session is done.
  if (&s == client_) core_->on_client_eof(now_us(), *this);
  else core_->on_server_gone(EndReason::upstream_closed, now_us(), *this);
}

void Session::on_tls_ready(Stream& s) {
  if (closing_) return;
  const bool client = &s == client_;
  const TlsEngine& t = *s.tls();
  Event e = event(audit::ev::tls);
  e.str(audit::f::side, client ? "client" : "server")
      .str(audit::f::version, t.version())
      .str(audit::f::cipher, t.cipher())
      .boolean(audit::f::resumed, t.resumed());
  if (const auto subject = t.peer_subject(); !subject.empty()) e.str(audit::f::peer_cert, subject);
  audit(e);
  ++host_.stats().tls_handshakes[TlsLegLabels::of(client, false)];
  core_->on_tls_ready(client ? Side::client : Side::server, now_us(), *this);
  after_core();
}

void Session::on_error(Stream& s, int err) {
  if (closing_) return;
  if (err == kTlsError && s.tls()) {
    const bool client = &s == client_;
    tls_error_ = s.tls()->error();
    spdlog::info("session {}: {} TLS failed: {}", id_, client ? "client" : "server", tls_error_);
    ++host_.stats().tls_failures[TlsLegLabels::of(client, false)];
    if (client) close_session(EndReason::client_tls_failed);
    else core_->end(EndReason::upstream_tls_refused, *this);
    return;
  }
  spdlog::debug("session {}: {} error: {}", id_, &s == client_ ? "client" : "upstream", uv_strerror(err));
  if (&s == upstream_) {
    core_->on_server_gone(EndReason::upstream_error, now_us(), *this);
    if (!closing_ && upstream_) upstream_->close();  // the core waits for held replies to go out
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
  if (!closing_) {
    if (was_upstream) core_->on_server_gone(EndReason::connection_closed, now_us(), *this);
    else close_session(EndReason::connection_closed);
  }
  if (handles_ == 0) {
    host_.session_gone(this);
    delete this;
  }
}

void Session::terminate(EndReason reason) {
  if (!closing_) core_->end(reason, *this);
}

void Session::release_slot() {
  if (slot_ != UpstreamSlot::queued && slot_ != UpstreamSlot::held) return;
  const bool held = slot_ == UpstreamSlot::held;
  slot_ = UpstreamSlot::done;
  host_.release_upstream(this, held);
}

void Session::close_session(EndReason reason) {
  if (closing_) return;
  closing_ = true;
  if (counted_user_) host_.user_logout(*counted_user_);
  counted_user_.reset();
  t_loop_settle = true;
  core_->on_closing(now_us());
  release_slot();
  if (data_) data_->abort("session-closed");
  if (!logged_session_close_) {
    logged_session_close_ = true;
    audit(event(audit::ev::session_close)
              .str(audit::f::reason, name_of(reason))
              .num(audit::f::duration_ms, static_cast<std::int64_t>(uv_now(loop()) - opened_ms_))
              .num(audit::f::bytes_from_client, static_cast<std::int64_t>(client_ ? client_->bytes_in : 0))
              .num(audit::f::bytes_to_client, static_cast<std::int64_t>(client_ ? client_->bytes_out : 0))
              .str_if(audit::f::message, tls_error_));
  }
  if (upstream_) {
    upstream_->pause(pause_draining);
    upstream_->close();
  }
  if (client_) {
    client_->pause(pause_draining);
    if (client_->queued() == 0) client_->close();
    else client_->shutdown();  // flush what is owed (a 421, a 221), then close
  }
}

void Session::tick() { core_->on_tick(now_us(), *this); }

// ---------------------------------------------------------------- CoreSink

void Session::on_command(const CommandEvent& c) {
  std::string verb = c.verb == Verb::unknown ? std::string(c.verb_text) : std::string(name_of(c.verb));
  Event e = event(audit::ev::command);
  e.str(audit::f::verb, verb);
  // SECURITY: the password (and account) never reaches any log.
  e.str(audit::f::arg, (c.verb == Verb::PASS || c.verb == Verb::ACCT) && !c.arg.empty() ? "****" : c.arg);
  if (!c.rule.empty()) e.str(audit::f::rule, c.rule);
  if (!c.path.empty()) e.str(audit::f::path, c.path);
  audit(e);
  ++host_.stats().commands[static_cast<std::size_t>(c.verb)];
}

void Session::on_reply(const ReplyEvent& r) {
  Event e = event(audit::ev::reply);
  e.num(audit::f::code, r.code).str(audit::f::text, reply_text(r.raw));
  if (r.latency_us >= 0 && !r.from_proxy) e.num(audit::f::latency_us, r.latency_us);
  if (r.verb != Verb::unknown) e.str(audit::f::verb, name_of(r.verb));
  if (r.from_proxy) e.str(audit::f::source, "proxy");
  if (r.data_conn_reused) e.str(audit::f::annotation, "data_connection_already_open");
  audit(e);
  WorkerStats& st = host_.stats();
  ++st.replies[ReplyClassLabels::of(r.code)];
  if (r.latency_us >= 0 && !r.from_proxy) st.reply_latency_us.observe(static_cast<std::uint64_t>(r.latency_us));
}

void Session::on_login_failed() {
  audit(event(audit::ev::login_failed).str(audit::f::verb, "PASS").str(audit::f::arg, "****").num(audit::f::code, 530));
  if (host_.login_failed(peer_)) login_limit_ = true;
}

bool Session::on_logged_in(std::string_view user) {
  if (counted_user_) host_.user_logout(*counted_user_);  // a new login in the same session
  counted_user_.reset();
  if (!host_.user_login(std::string(user))) return false;
  counted_user_ = std::string(user);
  return true;
}

void Session::on_finding(const Finding& f) {
  Event e = event(f.side == Side::client ? audit::ev::violation : audit::ev::server_finding);
  e.str(audit::f::rule, f.rule);
  e.str(audit::f::verb, f.verb != Verb::unknown ? name_of(f.verb) : f.verb_text);
  e.str(audit::f::action, f.action == FindingAction::rejected ? "rejected" : "logged");
  if (f.action == FindingAction::rejected && f.reply_code != 0) e.num(audit::f::reply_code, f.reply_code);
  e.str(audit::f::severity, name_of(f.severity)).str(audit::f::message, f.message);
  if (!f.path.empty()) e.str(audit::f::path, f.path);
  if (!f.cause.empty()) e.str(audit::f::cause, f.cause);
  audit(e);
  if (f.side == Side::client) ++host_.stats().violations;
  host_.stats().findings.count(f.rule, f.side == Side::client, f.action == FindingAction::rejected);
}

void Session::on_transfer(const TransferRecord& t) {
  audit(event(audit::ev::transfer)
            .str(audit::f::verb, name_of(t.verb))
            .str(audit::f::path, t.path)
            .num(audit::f::bytes, static_cast<std::int64_t>(t.bytes))
            .str(audit::f::direction, t.download ? "download" : "upload")
            .num(audit::f::duration_us, static_cast<std::int64_t>(t.duration_us))
            .str(audit::f::data_conn, t.reused ? "reused" : "new")
            .num(audit::f::code, t.code)
            .boolean(audit::f::protected_, t.protected_data));
  WorkerStats& st = host_.stats();
  ++st.transfers;
  ++st.data_connections[t.reused ? 1 : 0];
  ++st.transfers_by[TransferLabels::of(t.verb, t.reused)];
  st.transfer_duration_ms.observe(t.duration_us / 1000);
}

void Session::on_timeout(Timer t) {
  audit(event(audit::ev::timeout).str(audit::f::timer, name_of(t)));
  if (t == Timer::upstream_connect) upstream_failed();
}

void Session::upstream_failed() {
  ++host_.stats().upstream_connect_failures;
  host_.upstream_outcome(false);
}

void Session::send_to_server(std::string_view bytes) {
  if (upstream_ && !closing_) upstream_->write(bytes);
}

void Session::send_to_client(std::string_view bytes) {
  if (client_ && !closing_) client_->write(bytes);
}

void Session::abort_data(std::string_view reason) {
  if (data_) data_->abort(reason);
}

void Session::limit_upload(std::uint64_t bytes, bool cut) {
  // The STOR usually follows its data setup; with PORT/PASV after it (not
  // RFC order, but seen), the next channel takes the cap.
  if (data_ && !data_->ended()) data_->limit_upload(bytes, cut);
  else next_cap_ = std::make_pair(bytes, cut);
}

void Session::data_tls(bool client_leg, bool ok) {
  auto& by = ok ? host_.stats().tls_handshakes : host_.stats().tls_failures;
  ++by[TlsLegLabels::of(client_leg, true)];
}

void Session::data_client_tls(bool resumed) {
  core_->on_data({DataEvent::client_tls, 0, 0, false, DataEnd::complete, resumed}, now_us(), *this);
}

void Session::data_upload_over() { core_->on_data({DataEvent::upload_over}, now_us(), *this); }

void Session::start_tls(Side side) {
  if (closing_) return;
  if (side == Side::client) {
    if (client_) client_->start_tls(snap_->tls->client_control(id_));
  } else if (upstream_) {
    upstream_->start_tls(snap_->tls->server_leg(nullptr, upstream_addr_));
  }
}

void Session::transfer_started() {
  if (data_) data_->server_may_handshake();
}

void Session::hold_reads(Side side, bool hold) {
  Stream* s = side == Side::client ? client_ : upstream_;
  if (!s || closing_) return;
  if (hold) s->pause(pause_core_hold);
  else s->resume(pause_core_hold);
}

void Session::close(EndReason reason) { close_session(reason); }

void Session::close_now() {
  if (data_) data_->abort("session-closed");
  if (client_) client_->close();
  if (upstream_) upstream_->close();
}

}  // namespace ftpw
