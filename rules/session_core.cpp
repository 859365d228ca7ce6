// SessionCore: the facts the caller reports (data connection, clock, a side
// going away), a transfer's end, and the session's end. The client's commands
// are in client_mirror.cpp, the server's replies in server_mirror.cpp.
#include "session_core.h"

#include "completion.h"

namespace ftpw {
namespace {

constexpr std::string_view kCutShort = "426 Connection closed; transfer aborted.\r\n";
constexpr std::string_view kTlsRefused = "425 Data connection refused: its TLS did not resume the control connection's session.\r\n";
constexpr std::string_view kTlsFailed = "425 Data connection refused: its TLS handshake failed.\r\n";

}  // namespace

SessionCore::SessionCore(CoreSettings settings, std::shared_ptr<const RuleSet> rules, SessionPeers peers,
                         std::uint64_t now_us)
    : settings_(std::move(settings)),
      rules_(std::move(rules)),
      peers_(peers),
      client_framer_(settings_.client_framer),
      server_framer_(settings_.server_framer),
      assembler_(settings_.reply_limits),
      timers_(settings_.timers, now_us / 1000) {
  paused_ = !settings_.observe;
  if (settings_.tls.implicit && !settings_.observe) {
    // Implicit FTPS: protected from the first byte, as if AUTH had succeeded.
    client_protected_ = true;
    state_ |= pbit(Predicate::auth_done);
  }
}

void SessionCore::shrink() {
  client_framer_.shrink();
  server_framer_.shrink();
  assembler_.shrink();
  if (client_backlog_.empty()) client_backlog_.shrink_to_fit();
  scratch_.clear();
  scratch_.shrink_to_fit();
}

void SessionCore::update_pause() {
  if (draining_) pending_.clear();  // nothing more will answer: judge the rest in order
  paused_ = closed_ || (!greeted_ && !settings_.observe) || pending_.waiting() || pending_.full() || awaited_ ||
            tls_wait_client_;
}

void SessionCore::update_busy(std::uint64_t now_us) {
  // A transfer running or a data connection up: the session is not idle.
  timers_.set_busy(transfer_.active() || data_up_, now_us / 1000);
}

void SessionCore::after_input(std::uint64_t now_us, CoreSink& sink) {
  if (tls_handoff_) hand_off_tls(sink);
  timers_.set_logged_in(logged_in(), now_us / 1000);  // a logout restarts the login period now
  check_finished(sink);
  if (closed_ || ended_ || settings_.observe) return;
  // Reads to hold: the client's while its judged-later backlog holds a line's
  // worth, both sides' while the replies behind a waiting completion are
  // past their bound.
  const bool full = held_.size() > settings_.max_held_replies;
  const bool client = full || (paused_ && client_backlog_.size() >= settings_.client_framer.max_line);
  if (client != held_client_) sink.hold_reads(Side::client, held_client_ = client);
  if (full != held_server_) sink.hold_reads(Side::server, held_server_ = full);
}

void SessionCore::finish(std::uint64_t now_us, CoreSink& sink) {
  draining_ = true;
  update_pause();
  pump_client(now_us, sink);
}

void SessionCore::finding(CoreSink& sink, std::string_view rule, std::string_view msg, Severity sev, Side side,
                          const Command* cmd, FindingAction act, int code, std::uint64_t offset,
                          std::string_view path, std::string_view cause) {
  Finding f{rule, msg, sev, side, cmd ? cmd->verb : Verb::unknown, cmd ? cmd->verb_text : std::string_view{},
            act, code, offset, path, cause};
  sink.on_finding(f);
}

void SessionCore::complete(Verb verb, bool epsv_all, int code, bool had_preliminary) {
  state_ = after_completion(state_, verb, epsv_all, code, had_preliminary);
}

// ---------------------------------------------------------------- output

void SessionCore::to_client(std::string_view bytes, CoreSink& sink) {
  if (settings_.observe) return;
  // Replies keep their order: what follows a completion reply that waits for
  // its data waits behind it.
  if (has_completion_) held_.append(bytes);
  else sink.send_to_client(bytes);
}

void SessionCore::proxy_reply(std::string_view line, const Command& cmd, std::uint64_t offset, CoreSink& sink) {
  if (settings_.observe) return;
  to_client(line, sink);
  sink.on_reply({reply_code(line), line, cmd.verb, 0, true, false, offset});
}

void SessionCore::hold_completion(std::string_view raw, std::uint64_t now_us, CoreSink& sink) {
  completion_.assign(raw);
  has_completion_ = true;
  // A failed transfer (425/426/451/5xx): the data connection has no reason to live.
  if (transfer_.code() >= 300 && data_live_) sink.abort_data("transfer-failed");
  if (has_completion_ && !data_live_) release_completion(now_us, sink);
}

void SessionCore::release_completion(std::uint64_t now_us, CoreSink& sink) {
  if (!has_completion_) return;
  has_completion_ = false;
  if (transfer_.active()) {
    const bool cut = transfer_.cut_short() || transfer_.was_cut();
    if ((transfer_.code() == 226 || transfer_.code() == 250) && !transfer_.data_made_since_setup() &&
        !server_leg_seen_) {
      // The data connection has ended, and none was ever made for it.
      const Command cmd = command_of(transfer_.verb());
      finding(sink, "server-completed-without-data", "the server reported a transfer complete that had no data connection",
              Severity::warning, Side::server, &cmd, FindingAction::logged, 0, reply_offset_);
    }
    if (data_tls_refused_ != DataEnd::complete) {
      // The client's data connection failed its TLS: whatever the server
      // made of the connection the proxy closed, the client hears why.
      const std::string_view line = data_tls_refused_ == DataEnd::tls_not_resumed ? kTlsRefused : kTlsFailed;
      data_tls_refused_ = DataEnd::complete;
      completion_.assign(line);
      transfer_.complete(425);
      sink.on_reply({425, line, Verb::unknown, -1, true, false, reply_offset_});
    } else if (transfer_.cut_short()) {
      // The server is done, but the proxy cut the data connection (timeout,
      // ABOR) before it delivered everything: never a 2xx for that.
      completion_.assign(kCutShort);
      sink.on_reply({426, kCutShort, Verb::unknown, -1, true, false, reply_offset_});
    }
    const TransferRecord rec = transfer_.finish(now_us);
    if ((rec.code == 425 || rec.code == 426) && !client_aborted_) {
      // What the proxy saw of why (a stranger, a passive address it would
      // not follow, a cut it made), else the server's own doing. An ABOR
      // the client asked for is no failure.
      data_failure(stranger_ ? "data-peer-mismatch" : foreign_passive_ ? "foreign-passive-address"
                   : cut ? "cut-by-proxy" : "server-aborted", sink, rec.verb);
    }
    sink.on_transfer(rec);
    update_busy(now_us);  // the idle period starts now, as the completion reply goes out
  }
  sink.send_to_client(completion_);
  completion_.clear();
  if (!held_.empty()) {
    sink.send_to_client(held_);
    held_.clear();
  }
  if (quit_after_completion_) {
    ended_ = true;
    sink.close(EndReason::quit);
  } else {
    check_finished(sink);
  }
}

void SessionCore::upload_capped(bool cut, CoreSink& sink) {
  if (!cap_rule_ || cap_hit_) return;
  const Rule& r = *cap_rule_;
  const Command cmd = command_of(transfer_.active() ? transfer_.verb() : Verb::STOR);
  finding(sink, r.id, r.description, r.severity, Side::client, &cmd, cut ? FindingAction::rejected : FindingAction::logged,
          cut ? r.reply_code : 0, reply_offset_, cap_path_);
  if (!cut) {
    cap_rule_ = nullptr;  // logged once; the transfer runs to its end
    return;
  }
  // The data legs are closed: the server hears ABOR (its answers are the
  // proxy's own business), the client gets the rule's 552 for its upload.
  cap_hit_ = true;
  pending_.push({Verb::ABOR, Verb::ABOR, false, false, false, 0, true});
  update_pause();
  sink.send_to_server("ABOR\r\n");
}

void SessionCore::data_failure(std::string_view cause, CoreSink& sink, Verb verb) {
  if (data_failure_reported_ || settings_.observe) return;
  data_failure_reported_ = true;
  // The client's side: it never connected, or connected from elsewhere.
  const bool client = cause == "client-never-connected" || cause == "data-peer-mismatch" ||
                      cause == "client-unreachable" || cause == "tls-not-resumed" || cause == "tls-handshake-failed";
  Command cmd;
  cmd.verb = verb != Verb::unknown ? verb : transfer_.active() ? transfer_.verb() : Verb::unknown;
  cmd.verb_text = cmd.verb == Verb::unknown ? std::string_view{} : name_of(cmd.verb);
  finding(sink, "data-failure", "the data connection failed", Severity::warning, client ? Side::client : Side::server,
          &cmd, FindingAction::logged, 0, reply_offset_, {}, cause);
}

// ---------------------------------------------------------------- the end

void SessionCore::finish_after_server_quit(std::uint64_t now_us, CoreSink& sink) {
  // Only the server's own completion reply says a transfer is whole (a FIN
  // is all a server that died would leave too): the client hears that it
  // went unconfirmed, has every byte that came, then the 221.
  constexpr std::string_view kUnconfirmed =
      "426 Transfer not confirmed: the server closed its control connection after 221.\r\n";
  const Pending done = pending_.pop();
  complete(done.verb, done.epsv_all, 426, done.preliminary);
  transfer_.complete(426);
  // The 221 goes out right behind the completion, even if the session ends
  // as the completion is released (a client that has half-closed).
  held_.append(held_quit_);
  sink.on_reply({426, kUnconfirmed, done.verb, -1, true, false, reply_offset_});
  sink.on_reply({221, held_quit_, Verb::QUIT, -1, false, false, held_quit_offset_});
  held_quit_.clear();
  server_left_after_quit_ = false;
  hold_completion(kUnconfirmed, now_us, sink);  // released at once: the data connection is over
  close(EndReason::quit, sink);
}

void SessionCore::close(EndReason reason, CoreSink& sink) {
  // The session ends after its last words (421, 221). A 221 waits for the
  // completion reply that is waiting for its data.
  if (reason == EndReason::quit && has_completion_) {
    quit_after_completion_ = true;
    return;
  }
  // Last words queued behind a completion still waiting for its data go out
  // now: the data connection is cut with the session.
  if (!held_.empty()) sink.send_to_client(held_);
  held_.clear();
  if (ended_) return;
  ended_ = true;
  sink.close(reason);
}

void SessionCore::end(EndReason reason, CoreSink& sink) {
  if (ended_) return;
  has_completion_ = quit_after_completion_ = false;
  completion_.clear();
  held_.clear();
  const std::string_view reply = reply_of(reason);
  if (!reply.empty() && !settings_.observe) {
    sink.send_to_client(reply);
    sink.on_reply({reply_code(reply), reply, Verb::unknown, -1, true, false, 0});
  }
  closed_ = paused_ = ended_ = true;
  sink.close(reason);
}

void SessionCore::check_finished(CoreSink& sink) {
  if (!client_eof_ || closed_ || ended_) return;
  // Done when every command the client sent before it hung up (a QUIT held
  // until the greeting, say) has been answered.
  if (pending_commands() == 0 && !has_completion_ && client_backlog_.empty()) {
    ended_ = true;
    sink.close(EndReason::client_closed);
    return;
  }
  // A transfer with no data connection and none coming (never set up, or the
  // proxy gave up waiting for it) would wait for ever: the client has hung up
  // and cannot set one up. A data connection still being waited for is given
  // its time (a half-closed client may still connect; data.connect_timeout_s).
  if (pending_.transfer_pending() && !transfer_.data_made_since_setup() && !data_live_) {
    ended_ = true;
    sink.close(EndReason::client_closed);
  }
}

void SessionCore::on_client_eof(std::uint64_t now_us, CoreSink& sink) {
  client_eof_ = true;
  after_input(now_us, sink);
}

void SessionCore::on_server_gone(EndReason why, std::uint64_t now_us, CoreSink& sink) {
  (void)now_us;
  if (closed_ || ended_) return;
  // Its 221 is in: the completion before it still goes out once its data
  // has drained, then the session ends.
  if (quit_after_completion_) return;
  if (upstream_tls_pending()) {
    // Gone during the proxy's own AUTH TLS: the client, still without a
    // greeting, hears why.
    end(EndReason::upstream_tls_refused, sink);
    return;
  }
  if (why == EndReason::upstream_closed && !held_quit_.empty() && transfer_.active() && !pending_.empty() &&
      pending_.front().preliminary) {
    // It said goodbye (221, held) during a transfer and hung up without the
    // transfer's completion: the transfer still finishes for the client.
    server_left_after_quit_ = true;
    const Command quit = command_of(Verb::QUIT);
    finding(sink, "server-closed-before-completion",
            "the server closed its control connection after 221 without the running transfer's completion reply",
            Severity::warning, Side::server, &quit, FindingAction::logged, 0, reply_offset_);
    if (!data_live_) finish_after_server_quit(now_us, sink);
    return;
  }
  if (why == EndReason::upstream_error) {
    end(why, sink);
  } else if (why == EndReason::upstream_closed && (pending_commands() != 0 || transfer_.active())) {
    // It died owing replies: the client hears so, never a 226.
    end(why, sink);
  } else {
    ended_ = true;
    sink.close(why);
  }
}

// ---------------------------------------------------------------- data and clock

void SessionCore::on_upstream_connecting(std::uint64_t now_us) { timers_.upstream_connecting(now_us / 1000); }

void SessionCore::on_data(const DataFact& f, std::uint64_t now_us, CoreSink& sink) {
  switch (f.event) {
    case DataEvent::server_leg:
      server_leg_seen_ = true;
      return;
    case DataEvent::opened:
      server_leg_seen_ = true;
      transfer_.data_made();
      data_up_ = true;
      timers_.data_connected(now_us / 1000);
      update_busy(now_us);
      return;
    case DataEvent::stranger:
      stranger_ = true;
      return;
    case DataEvent::client_tls:
      if (settings_.tls.require_reuse && !f.resumed) {
        // SECURITY: the data connection must come from the client that owns
        // the control connection (RFC 4217 §10): resuming that connection's
        // TLS session proves it. Anyone else's is closed; the transfer 425.
        data_tls_refused_ = DataEnd::tls_not_resumed;
        data_failure("tls-not-resumed", sink);
        sink.abort_data("tls-not-resumed");
      }
      return;
    case DataEvent::upload_over:
      upload_capped(false, sink);
      return;
    case DataEvent::closed:
      if (f.end == DataEnd::capped) upload_capped(true, sink);
      if (f.end == DataEnd::connect_timeout)
        data_failure(data_kind_ == DataRequest::Kind::passive ? "client-never-connected" : "server-refused-proxy", sink);
      else if (f.end == DataEnd::tls_failed || f.end == DataEnd::tls_not_resumed) {
        data_tls_refused_ = f.end;
        data_failure(f.end == DataEnd::tls_failed ? "tls-handshake-failed" : "tls-not-resumed", sink);
      } else if (f.end == DataEnd::connect_failed)
        data_failure(data_kind_ == DataRequest::Kind::passive ? "server-passive-unreachable" : "client-unreachable",
                     sink);
      data_up_ = data_live_ = false;
      timers_.data_ended();
      update_busy(now_us);
      transfer_.data_closed(f);
      if (server_left_after_quit_ && !ended_) {
        finish_after_server_quit(now_us, sink);
        return;
      }
      if (has_completion_ && !ended_) release_completion(now_us, sink);
      after_input(now_us, sink);
      return;
  }
}

void SessionCore::on_tick(std::uint64_t now_us, CoreSink& sink) {
  const std::uint64_t now_ms = now_us / 1000;
  timers_.set_logged_in(logged_in(), now_ms);
  const std::uint64_t since = pending_.waiting_since_us();
  const std::uint64_t waited_ms = since != 0 && now_us > since ? (now_us - since) / 1000 : 0;
  const Timer t = timers_.expired(now_ms, waited_ms);
  if (t == Timer::close_grace) {  // a closing session that cannot flush is cut
    sink.close_now();
    return;
  }
  if (t != Timer::none) sink.on_timeout(t);
  switch (t) {
    case Timer::upstream_connect:
      // The server must accept and speak within the connect timeout (a
      // connection whose handshake a full listen queue swallowed never does).
      end(EndReason::upstream_connect_timeout, sink);
      return;
    case Timer::login:
      end(EndReason::login_timeout, sink);
      return;
    case Timer::reply:
      end(EndReason::reply_timeout, sink);
      return;
    case Timer::idle:
      end(EndReason::idle_timeout, sink);
      return;
    case Timer::data_connect:
      sink.abort_data("data-connect-timeout");
      break;
    case Timer::data_stall:
      sink.abort_data("data-stall-timeout");
      break;
    case Timer::none:
    case Timer::close_grace:
      break;
  }
  if (!closed_ && !transfer_.active() && !data_live_ && !transfer_running()) shrink();
}

}  // namespace ftpw
