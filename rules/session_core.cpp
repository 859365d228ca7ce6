#include "session_core.h"

#include <cstring>

namespace ftpw {
namespace {

constexpr std::string_view kFramingReply[] = {
    "500 Command line not terminated by CRLF.\r\n",  // bare_lf
    "500 Bare CR inside a command line.\r\n",        // bare_cr
    "500 NUL byte inside a command line.\r\n",       // nul_in_line
    "500 Command line too long.\r\n",                // line_too_long
    "500 Invalid TELNET sequence.\r\n",              // bad_iac (reported through the telnet-bad rule)
};
constexpr std::string_view kFloodReply = "421 Too many invalid commands, closing control connection.\r\n";
constexpr std::string_view kAuthReply = "534 TLS is not available through this proxy.\r\n";
constexpr std::string_view kBounceReply = "504 The data address must be your own, with a port of 1024 or above.\r\n";
constexpr std::string_view kBadArgReply = "501 Syntax error in parameters or arguments.\r\n";
constexpr std::string_view kNoDataReply = "425 Can't open data connection.\r\n";
constexpr std::string_view kPasvV6Reply = "522 Use EPSV on this connection.\r\n";
constexpr std::string_view kReplyOverflow = "421 Reply from the server too long, closing control connection.\r\n";

bool opens_data(Verb v) {
  switch (v) {
    case Verb::PASV:
    case Verb::EPSV:
    case Verb::LPSV:
    case Verb::PORT:
    case Verb::EPRT:
    case Verb::LPRT:
      return true;
    default:
      return false;
  }
}

bool feat_line_is_tls(std::string_view line) {
  while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
  auto tok = line.substr(0, line.find(' '));
  return iequals(tok, "AUTH") || iequals(tok, "PBSZ") || iequals(tok, "PROT") || iequals(tok, "CCC");
}

}  // namespace

SessionCore::SessionCore(CoreSettings settings, std::shared_ptr<const RuleSet> rules, SessionPeers peers)
    : settings_(std::move(settings)),
      rules_(std::move(rules)),
      peers_(peers),
      client_framer_(settings_.client_framer),
      server_framer_(settings_.server_framer),
      assembler_(settings_.reply_limits) {
  paused_ = !settings_.observe;
}

void SessionCore::shrink() {
  client_framer_.shrink();
  server_framer_.shrink();
  assembler_.shrink();
  if (client_backlog_.empty()) client_backlog_.shrink_to_fit();
  scratch_.clear();
  scratch_.shrink_to_fit();
}

void SessionCore::push_pending(const Pending& p) {
  fifo_[(head_ + count_) % fifo_.size()] = p;
  ++count_;
}

void SessionCore::update_pause() {
  bool waiting = false;
  for (std::size_t i = 0; i < count_; ++i)
    if (!fifo_[(head_ + i) % fifo_.size()].replied) waiting = true;
  if (draining_) {
    // Nothing more will answer: forget what waits, judge the rest in order.
    head_ = count_ = 0;
    waiting = false;
  }
  paused_ = closed_ || (!greeted_ && !settings_.observe) || waiting || count_ == fifo_.size();
}

void SessionCore::finish(std::uint64_t now_us, CoreSink& sink) {
  draining_ = true;
  update_pause();
  pump_client(now_us, sink);
}

bool SessionCore::take_queued_quit() {
  for (std::size_t i = 1; i < count_; ++i) {
    if (fifo_[(head_ + i) % fifo_.size()].verb != Verb::QUIT) continue;
    for (std::size_t j = i; j + 1 < count_; ++j)
      fifo_[(head_ + j) % fifo_.size()] = fifo_[(head_ + j + 1) % fifo_.size()];
    --count_;
    return true;
  }
  return false;
}

bool SessionCore::active_allowed(const NetAddr& a) const {
  // SECURITY: FTP bounce (CERT CA-1997-27, RFC 2577): the client may only name
  // its own address, on an unprivileged port, unless the operator listed it.
  if (!settings_.check_active_peer || peers_.client.family == 0) return true;
  if (a.port < 1024) return false;
  if (a.same_host(peers_.client)) return true;
  for (const auto& ok : settings_.allow_foreign_active)
    if (a.same_host(ok)) return true;
  return false;
}

void SessionCore::on_data_event(DataEvent e) {
  if (e == DataEvent::server_leg || e == DataEvent::opened) server_leg_seen_ = true;
}

std::uint64_t SessionCore::waiting_since_us() const {
  for (std::size_t i = 0; i < count_; ++i) {
    const Pending& p = fifo_[(head_ + i) % fifo_.size()];
    if (!p.replied) return p.sent_us ? p.sent_us : 1;  // (a multi-line reply in progress included)
  }
  return 0;
}

bool SessionCore::transfer_pending() const {
  for (std::size_t i = 0; i < count_; ++i)
    if (is_transfer(fifo_[(head_ + i) % fifo_.size()].verb)) return true;
  return false;
}

void SessionCore::finding(CoreSink& sink, std::string_view rule, std::string_view msg, Severity sev, Side side,
                          const Command* cmd, FindingAction act, int code, std::uint64_t offset) {
  Finding f{rule, msg, sev, side, cmd ? cmd->verb : Verb::unknown, cmd ? cmd->verb_text : std::string_view{},
            act, code, offset};
  sink.on_finding(f);
}

// ---------------------------------------------------------------- client side

void SessionCore::on_client_bytes(std::string_view bytes, std::uint64_t now_us, CoreSink& sink) {
  if (closed_) return;
  if (client_backlog_.empty() && !paused_) {
    // Common path: frame straight from the caller's buffer.
    Line line;
    while (!paused_ && !closed_ && client_framer_.next(bytes, line) == FrameStatus::line)
      handle_client_line(line, now_us, sink);
    if (bytes.empty() || closed_) return;
  }
  client_backlog_.append(bytes);
  pump_client(now_us, sink);
}

void SessionCore::pump_client(std::uint64_t now_us, CoreSink& sink) {
  if (in_pump_) return;
  in_pump_ = true;
  std::string_view in = client_backlog_;
  Line line;
  while (!paused_ && !closed_ && !in.empty()) {
    if (client_framer_.next(in, line) != FrameStatus::line) break;
    // handle_client_line never touches client_backlog_, so `in` stays valid.
    handle_client_line(line, now_us, sink);
  }
  client_backlog_.erase(0, client_backlog_.size() - in.size());
  in_pump_ = false;
}

std::string_view SessionCore::normalized(std::string_view text, std::string_view urgent_prefix) {
  // What goes to the server is exactly what the rules saw: the decoded line,
  // with a literal 0xFF re-escaped as IAC IAC and one CRLF.
  scratch_.assign(urgent_prefix);
  if (text.find('\xff') == std::string_view::npos) {
    scratch_.append(text);
  } else {
    for (char c : text) {
      scratch_.push_back(c);
      if (c == '\xff') scratch_.push_back(c);
    }
  }
  scratch_.append("\r\n");
  return scratch_;
}

void SessionCore::proxy_reply(std::string_view line, const Command& cmd, std::uint64_t offset, CoreSink& sink) {
  if (settings_.observe) return;
  sink.send_to_client(line);
  ReplyEvent ev{reply_code(line), line, cmd.verb, 0, true, false, offset};
  sink.on_reply(ev);
}

void SessionCore::handle_client_line(const Line& line, std::uint64_t now_us, CoreSink& sink) {
  if (settings_.observe && !greeted_) greeted_ = true;  // transcript without a greeting
  Command cmd;
  const std::uint32_t framing = line.problems & ~bit(FrameProblem::bad_iac);
  if (framing != 0) {
    // SECURITY: a line whose boundaries or bytes are ambiguous never reaches the
    // server, in either mode: what the server would make of it is unknowable.
    unsigned first = 0;
    while (!(framing & (1u << first))) ++first;
    const auto p = static_cast<FrameProblem>(first);
    parse_command(line.text, cmd);
    sink.on_command({cmd.verb, cmd.verb_text, cmd.arg, line.offset});
    finding(sink, name_of(p), describe(p), Severity::error, Side::client, &cmd,
            settings_.observe ? FindingAction::logged : FindingAction::rejected, settings_.observe ? 0 : 500,
            line.offset);
    proxy_reply(kFramingReply[first], cmd, line.offset, sink);
    if (!settings_.observe && ++bad_lines_ > settings_.max_bad_lines) {
      finding(sink, "bad-line-flood", "too many invalid command lines", Severity::error, Side::client, &cmd,
              FindingAction::rejected, 421, line.offset);
      proxy_reply(kFloodReply, cmd, line.offset, sink);
      closed_ = true;
      paused_ = true;
      sink.close(EndReason::bad_line_flood);
    }
    return;
  }

  std::uint32_t line_state = 0;
  if (line.has(FrameProblem::bad_iac)) line_state |= pbit(Predicate::telnet_bad);
  if (parse_command(line.text, cmd) != CommandError::none) {
    line_state |= pbit(Predicate::syntax_bad);
    cmd.verb_text = line.text.substr(0, line.text.find(' '));
  }
  sink.on_command({cmd.verb, cmd.verb_text, cmd.arg, line.offset});

  // Typed arguments: a malformed one is a fact the rules can use.
  bool epsv_all = false;
  std::optional<NetAddr> active_addr;
  switch (cmd.verb) {
    case Verb::PORT:
    case Verb::EPRT:
    case Verb::LPRT: {
      auto a = parse_active_arg(cmd.verb, cmd.arg);
      if (a.ok()) active_addr = a.value;
      else line_state |= pbit(Predicate::arg_bad);
      break;
    }
    case Verb::REST:
      if (!parse_rest_arg(cmd.arg).ok()) line_state |= pbit(Predicate::arg_bad);
      break;
    case Verb::TYPE:
      if (!parse_type_arg(cmd.arg).ok()) line_state |= pbit(Predicate::arg_bad);
      break;
    case Verb::MODE:
      if (!parse_mode_arg(cmd.arg).ok()) line_state |= pbit(Predicate::arg_bad);
      break;
    case Verb::STRU:
      if (!parse_stru_arg(cmd.arg).ok()) line_state |= pbit(Predicate::arg_bad);
      break;
    case Verb::EPSV: {
      auto e = parse_epsv_arg(cmd.arg);
      if (!e.ok()) line_state |= pbit(Predicate::arg_bad);
      else epsv_all = e.value.all;
      break;
    }
    case Verb::PBSZ:
      if (!parse_pbsz_arg(cmd.arg).ok()) line_state |= pbit(Predicate::arg_bad);
      break;
    case Verb::PROT:
      if (!parse_prot_arg(cmd.arg).ok()) line_state |= pbit(Predicate::arg_bad);
      break;
    case Verb::AUTH:
      if (!parse_auth_arg(cmd.arg).ok()) line_state |= pbit(Predicate::arg_bad);
      break;
    default:
      break;
  }

  // Rules: every firing rule is reported; the first that rejects answers.
  const std::uint32_t st = state_ | line_state;
  const Rule* rejecting = nullptr;
  for (std::uint16_t idx : rules_->for_verb(cmd.verb)) {
    const Rule& r = rules_->rules()[idx];
    if (!r.fires(st)) continue;
    const RuleAction act = r.action(settings_.mode);
    if (act == RuleAction::ignore) continue;
    const bool reject = act == RuleAction::reject && !settings_.observe && !rejecting;
    finding(sink, r.id, r.description, r.severity, Side::client, &cmd,
            reject ? FindingAction::rejected : FindingAction::logged, reject ? r.reply_code : 0, line.offset);
    if (reject) rejecting = &r;
  }
  if (rejecting) {
    proxy_reply(rejecting->reply_line, cmd, line.offset, sink);
    apply_completion(cmd.verb, epsv_all, rejecting->reply_code, false);
    return;
  }
  if (settings_.observe) {
    // The linter only mirrors: built-in checks below are reported, nothing is answered.
    if (active_addr && !active_allowed(*active_addr))
      finding(sink, "port-bounce", "data address is not the client's own or uses a port below 1024",
              Severity::error, Side::client, &cmd, FindingAction::logged, 0, line.offset);
    push_pending({cmd.verb, cmd.verb, false, false, epsv_all, now_us});
    if (is_transfer(cmd.verb)) transfer_path_.assign(cmd.arg);
    if (cmd.verb == Verb::USER) state_ |= pbit(Predicate::user_sent);
    update_pause();
    return;
  }

  // Built-in behaviour the proxy needs to stay in control of the session.
  if (cmd.verb == Verb::AUTH && settings_.refuse_tls) {
    // The control channel must never turn into bytes the proxy cannot read.
    proxy_reply(kAuthReply, cmd, line.offset, sink);
    apply_completion(cmd.verb, false, 534, false);
    return;
  }
  std::string_view to_send;
  Verb sent = cmd.verb;
  if (cmd.verb == Verb::PORT || cmd.verb == Verb::EPRT || cmd.verb == Verb::LPRT) {
    if (!active_addr) {
      finding(sink, "active-syntax", "malformed data address", Severity::error, Side::client, &cmd,
              FindingAction::rejected, 501, line.offset);
      proxy_reply(kBadArgReply, cmd, line.offset, sink);
      apply_completion(cmd.verb, false, 501, false);
      return;
    }
    if (!active_allowed(*active_addr)) {
      finding(sink, "port-bounce", "data address is not the client's own or uses a port below 1024",
              Severity::error, Side::client, &cmd, FindingAction::rejected, 504, line.offset);
      proxy_reply(kBounceReply, cmd, line.offset, sink);
      apply_completion(cmd.verb, false, 504, false);
      return;
    }
    auto mine = sink.open_active(*active_addr);
    if (!mine) {
      proxy_reply(kNoDataReply, cmd, line.offset, sink);
      apply_completion(cmd.verb, false, 425, false);
      return;
    }
    if (cmd.verb == Verb::PORT && !mine->unmapped().is_v4()) sent = Verb::EPRT;
    scratch_ = format_active_command(sent, *mine);
    to_send = scratch_;
  } else {
    std::string_view urgent;
    if (cmd.verb == Verb::ABOR) {
      if (transfer_running()) sink.abort_data();
      if (line.telnet & (telnet_ip | telnet_dm)) urgent = "\xff\xf4\xff\xf2";
    }
    to_send = normalized(line.text, urgent);
  }
  if (is_transfer(cmd.verb)) transfer_path_.assign(cmd.arg);
  if (cmd.verb == Verb::USER) state_ |= pbit(Predicate::user_sent);
  // A new data setup: a 125 from now on needs a connection made for it. (Not
  // at its reply: a server may connect for PORT before its 200 is read.)
  if (opens_data(cmd.verb)) server_leg_seen_ = false;
  push_pending({cmd.verb, sent, false, false, epsv_all, now_us});
  update_pause();
  sink.send_to_server(to_send);
}

// ---------------------------------------------------------------- server side

void SessionCore::on_server_bytes(std::string_view bytes, std::uint64_t now_us, CoreSink& sink) {
  Line line;
  while (!closed_ && server_framer_.next(bytes, line) == FrameStatus::line) {
    Reply r;
    if (line.problems & (bit(FrameProblem::nul_in_line) | bit(FrameProblem::bare_cr) | bit(FrameProblem::bad_iac)))
      finding(sink, "reply-framing", "server reply line with NUL, bare CR or a TELNET sequence; normalised",
              Severity::warning, Side::server, nullptr, FindingAction::logged, 0, line.offset);
    if (!assembler_.in_multiline()) reply_offset_ = line.offset;
    if (assembler_.feed(line.text, r)) handle_reply(r, now_us, sink);
  }
  if (!closed_ && !paused_ && !client_backlog_.empty()) pump_client(now_us, sink);
}

void SessionCore::forward_reply(const Reply& r, const Pending* p, std::int64_t latency, CoreSink& sink,
                                bool after_data) {
  std::string_view raw = r.raw;
  if (!settings_.observe && p && p->verb == Verb::FEAT && r.code == 211 && r.multiline && settings_.refuse_tls) {
    scratch_.clear();
    std::string_view rest = r.raw;
    while (!rest.empty()) {
      const auto end = rest.find("\r\n");
      const std::string_view l = rest.substr(0, end + 2);
      const bool edge = l.size() >= 4 && reply_code(l) == 211 && (l[3] == '-' || l[3] == ' ');
      if (edge || !feat_line_is_tls(l.substr(0, l.size() - 2))) scratch_.append(l);
      rest.remove_prefix(l.size());
    }
    raw = scratch_;
  }
  if (!settings_.observe) {
    if (after_data) sink.send_to_client_after_data(raw);
    else sink.send_to_client(raw);
  }
  ReplyEvent ev{r.code, raw, p ? p->verb : Verb::unknown, latency, false, r.code == 125, reply_offset_};
  sink.on_reply(ev);
}

void SessionCore::apply_completion(Verb verb, bool epsv_all, int code, bool had_preliminary) {
  auto set = [&](Predicate p, bool on) {
    if (on) state_ |= pbit(p);
    else state_ &= ~pbit(p);
  };
  const bool ok = code >= 200 && code < 300;
  // "Directly after" states last exactly one command.
  set(Predicate::user_accepted, verb == Verb::USER && code == 331);
  set(Predicate::account_requested, code == 332);
  set(Predicate::rename_pending, verb == Verb::RNFR && code == 350);
  switch (verb) {
    case Verb::USER:
      set(Predicate::logged_in, code == 230);
      break;
    case Verb::PASS:
    case Verb::ACCT:
      if (code == 230 || code == 202) set(Predicate::logged_in, true);
      break;
    case Verb::REIN:
      if (code == 220) state_ = 0;
      break;
    case Verb::REST:
      set(Predicate::restart_pending, code == 350);
      break;
    case Verb::PASV:
    case Verb::LPSV:
      if (code == 227 || code == 228) set(Predicate::data_ready, true);
      break;
    case Verb::EPSV:
      if (epsv_all && code == 200) set(Predicate::epsv_all, true);
      if (code == 229) set(Predicate::data_ready, true);
      break;
    case Verb::PORT:
    case Verb::EPRT:
    case Verb::LPRT:
      if (code == 200) set(Predicate::data_ready, true);
      break;
    case Verb::AUTH:
      if (code == 234) set(Predicate::auth_done, true);
      break;
    case Verb::PBSZ:
      if (code == 200) set(Predicate::pbsz_done, true);
      break;
    case Verb::TYPE:
      break;
    default:
      if (is_transfer(verb)) {
        set(Predicate::transfer_running, false);
        // The data setup is spent once the server used it (or tried to).
        if (had_preliminary || ok || code == 425 || code == 426) set(Predicate::data_ready, false);
        set(Predicate::restart_pending, false);
      } else if (!ok || verb != Verb::NOOP) {
        // Any other command drops a pending restart marker (RFC 959 §4.1.3).
        set(Predicate::restart_pending, false);
      }
      break;
  }
}

bool SessionCore::forward_passive_reply(const Pending& p, const Reply& r, std::uint64_t now_us, CoreSink& sink) {
  (void)now_us;
  const std::int64_t latency = static_cast<std::int64_t>(now_us - p.sent_us);
  NetAddr target;
  bool parsed = false;
  if (r.code == 227) {
    auto a = parse_227(r.first_text);
    parsed = a.ok();
    target = a.value;
  } else if (r.code == 228) {
    auto a = parse_228(r.first_text);
    parsed = a.ok();
    target = a.value;
  } else if (r.code == 229) {
    auto port = parse_229(r.first_text);
    parsed = port.ok() && peers_.upstream.family != 0;
    target = peers_.upstream;
    target.port = port.value;
  }
  Command cmd;
  cmd.verb = p.verb;
  cmd.verb_text = name_of(p.verb);
  if (!parsed) {
    finding(sink, "pasv-malformed", "passive reply without a usable address", Severity::warning, Side::server, &cmd,
            FindingAction::logged, 0, reply_offset_);
    sink.send_to_client(kNoDataReply);
    sink.on_reply({425, kNoDataReply, p.verb, latency, true, false, reply_offset_});
    apply_completion(p.verb, false, 425, false);
    return true;
  }
  if (peers_.upstream.family != 0 && !target.same_host(peers_.upstream)) {
    // SECURITY: never follow a passive address elsewhere than the server itself.
    finding(sink, "pasv-foreign-address", "passive reply names an address other than the server's; using the server's",
            Severity::warning, Side::server, &cmd, FindingAction::logged, 0, reply_offset_);
    const std::uint16_t port = target.port;
    target = peers_.upstream;
    target.port = port;
  }
  std::optional<NetAddr> mine;
  if (target.port < 1024) {
    finding(sink, "pasv-low-port", "passive reply names a port below 1024", Severity::warning, Side::server, &cmd,
            FindingAction::rejected, 425, reply_offset_);
  } else {
    mine = sink.open_passive(target);
  }
  std::string out;
  if (mine && p.verb == Verb::PASV && !mine->unmapped().is_v4()) {
    out = std::string(kPasvV6Reply);
  } else if (mine) {
    out = p.verb == Verb::PASV ? format_227(*mine) : p.verb == Verb::LPSV ? format_228(*mine) : format_229(mine->port);
  } else {
    out = std::string(kNoDataReply);
  }
  const int code = reply_code(out);
  sink.send_to_client(out);
  sink.on_reply({code, out, p.verb, latency, false, false, reply_offset_});
  apply_completion(p.verb, false, code, false);
  return true;
}

void SessionCore::handle_reply(const Reply& r, std::uint64_t now_us, CoreSink& sink) {
  if (r.problem == ReplyProblem::too_many_lines || r.problem == ReplyProblem::too_long) {
    finding(sink, name_of(r.problem), "multi-line reply beyond the configured limit", Severity::error, Side::server,
            nullptr, FindingAction::rejected, 421, reply_offset_);
    if (!settings_.observe) sink.send_to_client(kReplyOverflow);
    closed_ = true;
    paused_ = true;
    sink.close(EndReason::reply_overflow);
    return;
  }
  if (r.problem == ReplyProblem::malformed) {
    finding(sink, "reply-malformed", "server line is not a reply (ddd text)", Severity::warning, Side::server,
            nullptr, FindingAction::logged, 0, reply_offset_);
    if (!settings_.observe) sink.send_to_client(r.raw);
    return;
  }
  if (!greeted_) {
    if (r.code == 220) greeted_ = true;
    else if (r.code != 120 && r.code != 421)
      finding(sink, "reply-unexpected", "greeting is not 120, 220 or 421", Severity::warning, Side::server, nullptr,
              FindingAction::logged, 0, reply_offset_);
    forward_reply(r, nullptr, -1, sink, false);
    update_pause();
    if (r.code == 421) sink.close(EndReason::upstream_421);
    return;
  }
  if (count_ == 0) {
    // SECURITY: a reply nobody asked for would be taken by the client as the
    // answer to its next command (a file name carrying "\n226 ..." in a 257,
    // say). Enforce mode drops it; 421 (closing) always passes.
    const bool drop = r.code != 421 && settings_.mode == Mode::enforce && !settings_.observe;
    if (r.code != 421)
      finding(sink, "reply-unsolicited",
              drop ? "reply without a pending command; not forwarded" : "reply without a pending command",
              Severity::warning, Side::server, nullptr, drop ? FindingAction::rejected : FindingAction::logged, 0,
              reply_offset_);
    if (!drop) forward_reply(r, nullptr, -1, sink, false);
    return;
  }
  if (r.code == 221 && !r.multiline && fifo_[head_].preliminary && is_transfer(fifo_[head_].verb) &&
      take_queued_quit()) {
    // RFC 959 §4.1.1: a QUIT sent during a transfer is answered after the
    // transfer's result. A server that answers 221 first (pyftpdlib) would
    // have the client take it for the transfer's reply: the 221 waits until
    // the completion has gone out, and the session ends after it.
    Command quit;
    quit.verb = Verb::QUIT;
    quit.verb_text = name_of(Verb::QUIT);
    finding(sink, "reply-quit-before-transfer-end",
            "221 to QUIT before the running transfer's completion reply (RFC 959 §4.1.1); held until after it",
            Severity::warning, Side::server, &quit, FindingAction::logged, 0, reply_offset_);
    held_quit_.assign(r.raw);
    held_quit_offset_ = reply_offset_;
    update_pause();
    return;
  }
  Pending& p = fifo_[head_];
  const std::int64_t latency = static_cast<std::int64_t>(now_us - p.sent_us);
  Command cmd;
  cmd.verb = p.verb;
  cmd.verb_text = name_of(p.verb);
  const Verb answered = p.sent;
  if (answered != Verb::unknown && !info(answered).allowed.has(r.code)) {
    std::string msg = "reply " + std::to_string(r.code) + " is not one RFC 959 §5.4 or its successors allow for " +
                      std::string(name_of(answered));
    finding(sink, "reply-unexpected", msg, Severity::warning, Side::server, &cmd, FindingAction::logged, 0,
            reply_offset_);
  }
  if (r.preliminary()) {
    if (p.preliminary && r.code != 110)
      finding(sink, "reply-preliminary-repeated", "a second 1xx reply before the completion", Severity::warning,
              Side::server, &cmd, FindingAction::logged, 0, reply_offset_);
    if (r.code == 125 && !settings_.observe && !server_leg_seen_)
      finding(sink, "reply-125-without-data", "125 but no data connection to the server is open", Severity::warning,
              Side::server, &cmd, FindingAction::logged, 0, reply_offset_);
    const bool first = !p.preliminary;
    p.replied = true;
    p.preliminary = true;
    if (is_transfer(p.verb) && first) {
      state_ |= pbit(Predicate::transfer_running);
      state_ &= ~(pbit(Predicate::data_ready) | pbit(Predicate::restart_pending));
      sink.transfer_started({p.verb, transfer_path_, r.code == 125, is_download(p.verb)});
    }
    forward_reply(r, &p, latency, sink, false);
    update_pause();
    return;
  }
  // A completion or intermediate reply ends the command.
  const Pending done = p;
  head_ = (head_ + 1) % fifo_.size();
  --count_;
  if (!settings_.observe && (done.verb == Verb::PASV || done.verb == Verb::EPSV || done.verb == Verb::LPSV) &&
      !done.epsv_all) {
    if (r.code == 227 || r.code == 228 || r.code == 229) {
      forward_passive_reply(done, r, now_us, sink);
      update_pause();
      return;
    }
    if (r.klass() == 5 && done.sent == done.verb && done.verb != Verb::LPSV && peers_.upstream.family != 0) {
      // The server lacks this passive command: ask with the other one (EPSV <-> PASV).
      ReplyEvent ev{r.code, r.raw, done.sent, latency, false, false, reply_offset_};
      sink.on_reply(ev);
      Pending again = done;
      again.sent = done.verb == Verb::EPSV ? Verb::PASV : Verb::EPSV;
      again.replied = false;
      if (again.sent == Verb::PASV && !peers_.upstream.unmapped().is_v4()) {
        forward_reply(r, &done, latency, sink, false);
        apply_completion(done.verb, false, r.code, false);
        update_pause();
        return;
      }
      push_pending(again);
      // Re-queue at the front: it is the only command in flight while paused.
      if (count_ > 1) {
        const std::size_t last = (head_ + count_ - 1) % fifo_.size();
        for (std::size_t i = count_ - 1; i > 0; --i) {
          const std::size_t a = (head_ + i) % fifo_.size(), b = (head_ + i - 1) % fifo_.size();
          std::swap(fifo_[a], fifo_[b]);
        }
        (void)last;
      }
      update_pause();
      sink.send_to_server(again.sent == Verb::PASV ? "PASV\r\n" : "EPSV\r\n");
      return;
    }
  }
  const bool transfer_end = is_transfer(done.verb) && done.preliminary;
  apply_completion(done.verb, done.epsv_all, r.code, done.preliminary);
  if (transfer_end) sink.transfer_finished(r.code);
  forward_reply(r, &done, latency, sink, transfer_end);
  update_pause();
  if (transfer_end && !held_quit_.empty()) {
    // The QUIT the server answered early: its 221 now, then the end.
    if (!settings_.observe) sink.send_to_client(held_quit_);
    sink.on_reply({221, held_quit_, Verb::QUIT, -1, false, false, held_quit_offset_});
    held_quit_.clear();
    sink.close(EndReason::quit);
    return;
  }
  if (r.code == 421) sink.close(EndReason::upstream_421);
  // RFC 959 §4.1.1: QUIT answered 221 ends the session; the server closes
  // the connection after it. Said here so the session's end is named for the
  // client's QUIT, not for the server's close that follows.
  else if (done.verb == Verb::QUIT && r.code == 221) sink.close(EndReason::quit);
}

}  // namespace ftpw
