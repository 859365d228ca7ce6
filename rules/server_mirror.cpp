// SessionCore, the server's side: framing and assembling its replies, matching
// each to the command it answers, checking it against what RFC 959 §5.4 and
// its successors allow, and forwarding it (a transfer's completion waits for
// its data connection).
#include "completion.h"
#include "security_checks.h"
#include "server_path.h"
#include "session_core.h"

namespace ftpw {

void SessionCore::on_server_bytes(std::string_view bytes, std::uint64_t now_us, CoreSink& sink) {
  timers_.upstream_answered();
  if (closed_) return;
  if (server_backlog_.empty() && !awaited_ && !in_server_pump_) {
    // Common path: frame straight from the caller's buffer.
    in_server_pump_ = true;
    read_replies(bytes, now_us, sink);
    in_server_pump_ = false;
  }
  // What came while a data listener is awaited waits for it.
  if (!bytes.empty() && !closed_) server_backlog_.append(bytes);
  if (!closed_ && !paused_ && !client_backlog_.empty()) pump_client(now_us, sink);
  after_input(now_us, sink);
}

void SessionCore::pump_server(std::uint64_t now_us, CoreSink& sink) {
  if (in_server_pump_) return;
  in_server_pump_ = true;
  std::string_view in = server_backlog_;
  read_replies(in, now_us, sink);  // never touches server_backlog_: `in` stays valid
  server_backlog_.erase(0, server_backlog_.size() - in.size());
  in_server_pump_ = false;
}

void SessionCore::read_replies(std::string_view& in, std::uint64_t now_us, CoreSink& sink) {
  Line line;
  while (!closed_ && !awaited_ && server_framer_.next(in, line) == FrameStatus::line) {
    Reply r;
    if (line.problems & (bit(FrameProblem::nul_in_line) | bit(FrameProblem::bare_cr) | bit(FrameProblem::bad_iac) |
                         bit(FrameProblem::bare_lf)))
      finding(sink, "reply-framing",
              "server reply line with NUL, bare CR, bare LF or a TELNET sequence; normalised (a bare LF ends no "
              "line: it is kept as a space)",
              Severity::warning, Side::server, nullptr, FindingAction::logged, 0, line.offset);
    if (!assembler_.in_multiline()) reply_offset_ = line.offset;
    if (assembler_.feed(line.text, r)) handle_reply(r, now_us, sink);
  }
}

void SessionCore::forward_reply(const Reply& r, const Pending* p, std::int64_t latency, std::uint64_t now_us,
                                CoreSink& sink, bool completion) {
  std::string_view raw = r.raw;
  if (!settings_.observe && p && p->verb == Verb::FEAT && r.code == 211 && r.multiline) {
    // The client is offered the TLS the proxy itself speaks, whatever the server does.
    if (terminates_tls()) raw = with_tls_features(r.raw, scratch_);
    else if (settings_.refuse_tls) raw = strip_tls_features(r.raw, scratch_);
  }
  if (!settings_.observe) {
    if (completion) hold_completion(raw, now_us, sink);
    else to_client(raw, sink);
  }
  sink.on_reply({r.code, raw, p ? p->verb : Verb::unknown, latency, false, r.code == 125, reply_offset_});
  if (p && p->verb == Verb::PASS && r.code == 530) sink.on_login_failed();
}

bool SessionCore::track_paths(const Pending& done, const Reply& r, CoreSink& sink, std::uint64_t now_us) {
  if (!rules_->uses_paths()) return false;
  switch (done.verb) {
    case Verb::CWD:
    case Verb::XCWD:
      if (r.code == 250) cwd_ = cwd_target_;  // anything else: it did not move
      break;
    case Verb::CDUP:
    case Verb::XCUP:
      if (r.code == 250 || r.code == 200) cwd_ = cwd_target_;
      break;
    case Verb::PWD:
    case Verb::XPWD:
      if (r.code == 257) {
        if (auto dir = parse_257_path(r.first_text)) {
          resolve_path("/", *dir, cwd_);
          // The proxy's own PWD after login names the login directory (a
          // transcript's first PWD after login does, when nothing else did).
          if (done.internal || !home_known_) {
            home_ = cwd_;
            home_known_ = true;
          }
        }
      }
      break;
    case Verb::USER:
    case Verb::PASS:
    case Verb::ACCT:
      if (r.code == 230 && !settings_.observe) {
        // Logged in: learn the login directory before the next command is judged.
        home_known_ = false;
        cwd_ = home_ = "/";
        pending_.push({Verb::PWD, Verb::PWD, false, false, false, now_us, true});
        update_pause();
        sink.send_to_server("PWD\r\n");
        return true;
      }
      break;
    default:
      break;
  }
  return false;
}

bool SessionCore::hold_early_quit(const Reply& r, CoreSink& sink) {
  // RFC 959 §4.1.1: a QUIT sent during a transfer is answered after the
  // transfer's result. A server that answers 221 first (pyftpdlib) would
  // have the client take it for the transfer's reply: the 221 waits until
  // the completion has gone out, and the session ends after it.
  if (r.code != 221 || r.multiline || !pending_.front().preliminary || !is_transfer(pending_.front().verb) ||
      !pending_.take_queued_quit())
    return false;
  const Command quit = command_of(Verb::QUIT);
  finding(sink, "reply-quit-before-transfer-end",
          "221 to QUIT before the running transfer's completion reply (RFC 959 §4.1.1); held until after it",
          Severity::warning, Side::server, &quit, FindingAction::logged, 0, reply_offset_);
  held_quit_.assign(r.raw);
  held_quit_offset_ = reply_offset_;
  update_pause();
  return true;
}

void SessionCore::handle_preliminary(const Reply& r, Pending& p, std::int64_t latency, std::uint64_t now_us,
                                     CoreSink& sink) {
  const Command cmd = command_of(p.verb);
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
    state_ = after_transfer_start(state_);
    if (!settings_.observe) {
      transfer_.start(p.verb, transfer_path_, r.code == 125, is_download(p.verb), now_us, data_protected_);
      sink.transfer_started();
      update_busy(now_us);
    }
  }
  forward_reply(r, &p, latency, now_us, sink, false);
  update_pause();
}

void SessionCore::handle_reply(const Reply& r, std::uint64_t now_us, CoreSink& sink) {
  if (r.problem == ReplyProblem::too_many_lines || r.problem == ReplyProblem::too_long) {
    finding(sink, name_of(r.problem), "multi-line reply beyond the configured limit", Severity::error, Side::server,
            nullptr, FindingAction::rejected, 421, reply_offset_);
    to_client(reply_of(EndReason::reply_overflow), sink);
    closed_ = paused_ = true;
    close(EndReason::reply_overflow, sink);
    return;
  }
  if (r.problem == ReplyProblem::malformed) {
    finding(sink, "reply-malformed", "server line is not a reply (ddd text)", Severity::warning, Side::server,
            nullptr, FindingAction::logged, 0, reply_offset_);
    to_client(r.raw, sink);
    return;
  }
  if (settings_.tls.upstream && !settings_.observe && upstream_tls_reply(r, now_us, sink)) return;
  if (!greeted_) {
    if (r.code == 220) greeted_ = true;
    else if (r.code != 120 && r.code != 421)
      finding(sink, "reply-unexpected", "greeting is not 120, 220 or 421", Severity::warning, Side::server, nullptr,
              FindingAction::logged, 0, reply_offset_);
    forward_reply(r, nullptr, -1, now_us, sink, false);
    update_pause();
    if (r.code == 421) close(EndReason::upstream_421, sink);
    return;
  }
  if (pending_.empty()) {
    // SECURITY: a reply nobody asked for would be taken by the client as the
    // answer to its next command (a file name carrying "\n226 ..." in a 257,
    // say). Enforce mode drops it; 421 (closing) always passes.
    const bool drop = r.code != 421 && settings_.mode == Mode::enforce && !settings_.observe;
    if (r.code != 421)
      finding(sink, "reply-unsolicited",
              drop ? "reply without a pending command; not forwarded" : "reply without a pending command",
              Severity::warning, Side::server, nullptr, drop ? FindingAction::rejected : FindingAction::logged, 0,
              reply_offset_);
    if (!drop) forward_reply(r, nullptr, -1, now_us, sink, false);
    return;
  }
  if (pending_.front().internal) {
    // The proxy's own PWD after login: learnt from, never forwarded or logged.
    if (r.preliminary()) return;
    const Pending done = pending_.pop();
    track_paths(done, r, sink, now_us);
    update_pause();
    return;
  }
  if (hold_early_quit(r, sink)) return;
  Pending& p = pending_.front();
  const std::int64_t latency = static_cast<std::int64_t>(now_us - p.sent_us);
  const Verb answered = p.sent;
  if (answered != Verb::unknown && !info(answered).allowed.has(r.code)) {
    const Command cmd = command_of(p.verb);
    std::string msg = "reply " + std::to_string(r.code) + " is not one RFC 959 §5.4 or its successors allow for " +
                      std::string(name_of(answered));
    finding(sink, "reply-unexpected", msg, Severity::warning, Side::server, &cmd, FindingAction::logged, 0,
            reply_offset_);
  }
  if (p.flagged >= 0 && (r.klass() == 2 || r.klass() == 3 || (r.preliminary() && is_transfer(p.verb)))) {
    // Audit mode let a command a sequence rule flags through, and the server
    // went along with it: a legacy server that does not check its sequences.
    const Command cmd = command_of(p.verb);
    const std::string msg = "the server answered " + std::to_string(r.code) + " to a command rule '" +
                            rules_->rules()[static_cast<std::size_t>(p.flagged)].id + "' flags";
    finding(sink, "server-accepted-out-of-sequence", msg, Severity::warning, Side::server, &cmd,
            FindingAction::logged, 0, reply_offset_);
  }
  p.flagged = -1;
  if (r.preliminary()) {
    handle_preliminary(r, p, latency, now_us, sink);
    return;
  }
  // A completion or intermediate reply ends the command.
  const Pending done = pending_.pop();
  if (!settings_.observe && (done.verb == Verb::PASV || done.verb == Verb::EPSV || done.verb == Verb::LPSV) &&
      !done.epsv_all) {
    if (r.code == 227 || r.code == 228 || r.code == 229) {
      setup_passive(done, r, latency, sink);
      update_pause();
      return;
    }
    if (retry_passive(done, r, latency, now_us, sink)) return;
  }
  const bool transfer_end = is_transfer(done.verb) && done.preliminary;
  if (transfer_end && cap_hit_ && !settings_.observe) {
    // The upload was cut at its cap: whatever the server says about it, the
    // client hears the cap rule's reply.
    const Rule& rule = *cap_rule_;
    cap_hit_ = false;
    cap_rule_ = nullptr;
    complete(done.verb, done.epsv_all, rule.reply_code, done.preliminary);
    transfer_.complete(rule.reply_code);
    hold_completion(rule.reply_line, now_us, sink);
    sink.on_reply({rule.reply_code, rule.reply_line, done.verb, -1, true, false, reply_offset_});
    update_pause();
    return;
  }
  if (transfer_end) cap_rule_ = nullptr;
  if (is_transfer(done.verb) && !done.preliminary && (r.code == 425 || r.code == 426) && !client_aborted_)
    // The server refused the transfer for want of its data connection.
    data_failure(stranger_ ? "data-peer-mismatch" : foreign_passive_ ? "foreign-passive-address" : "server-aborted",
                 sink, done.verb);
  complete(done.verb, done.epsv_all, r.code, done.preliminary);
  if (transfer_end) transfer_.complete(r.code);
  if (r.code == 230 && (done.verb == Verb::USER || done.verb == Verb::PASS || done.verb == Verb::ACCT) &&
      !sink.on_logged_in(user_)) {
    // One session too many for this user: the client never sees the 230,
    // only the 421 that ends the session.
    end(EndReason::user_sessions, sink);
    return;
  }
  forward_reply(r, &done, latency, now_us, sink, transfer_end && !settings_.observe);
  if (track_paths(done, r, sink, now_us)) return;
  update_pause();
  if (transfer_end && !held_quit_.empty()) {
    // The QUIT the server answered early: its 221 now, then the end.
    to_client(held_quit_, sink);
    sink.on_reply({221, held_quit_, Verb::QUIT, -1, false, false, held_quit_offset_});
    held_quit_.clear();
    close(EndReason::quit, sink);
    return;
  }
  if (r.code == 421) close(EndReason::upstream_421, sink);
  // RFC 959 §4.1.1: QUIT answered 221 ends the session; the server closes
  // the connection after it. Said here so the session's end is named for the
  // client's QUIT, not for the server's close that follows.
  else if (done.verb == Verb::QUIT && r.code == 221) close(EndReason::quit, sink);
}

}  // namespace ftpw
