// SessionCore, FTPS (RFC 4217, RFC 2228) as the proxy terminates it: the
// client's AUTH, PBSZ, PROT and CCC are answered here, never forwarded (they
// are about the connection to the proxy); `tls.required` and `tls.data`
// gate commands; toward the server, with `tls.upstream`, the proxy protects
// its own control connection (AUTH TLS, PBSZ 0, PROT P) before the client
// sees the greeting.
#include "completion.h"
#include "session_core.h"

namespace ftpw {
namespace {

constexpr std::string_view kRefused = "534 TLS is not available through this proxy.\r\n";
constexpr std::string_view kTlsRequired = "530 TLS required: send AUTH TLS first.\r\n";
constexpr std::string_view kAlreadyProtected = "503 The control connection is already protected.\r\n";
constexpr std::string_view kPbszFirst = "503 Send PBSZ after AUTH.\r\n";
constexpr std::string_view kProtFirst = "503 Send PROT after PBSZ.\r\n";
constexpr std::string_view kPbszOk = "200 PBSZ=0\r\n";
constexpr std::string_view kProtPrivate = "200 Protection level set to Private.\r\n";
constexpr std::string_view kProtClear = "200 Protection level set to Clear.\r\n";
constexpr std::string_view kProtRefusedP = "536 Protection level Private is not allowed here.\r\n";
constexpr std::string_view kProtUnsupported = "536 Only PROT C and PROT P are supported.\r\n";
constexpr std::string_view kCccRefused = "533 CCC refused: the control connection stays protected.\r\n";
constexpr std::string_view kReinRefused = "502 REIN is not available on a protected session.\r\n";
constexpr std::string_view kMechanism = "504 AUTH TLS or AUTH SSL only.\r\n";
constexpr std::string_view kAuthBusy = "503 AUTH only when no reply is owed: not during a transfer.\r\n";
constexpr std::string_view kProtRequired = "521 Data connections must be protected: send PROT P.\r\n";

// What a client may send before its handshake when TLS is required.
bool allowed_before_tls(Verb v) {
  return v == Verb::AUTH || v == Verb::FEAT || v == Verb::SYST || v == Verb::HELP || v == Verb::NOOP ||
         v == Verb::QUIT;
}

}  // namespace

bool SessionCore::handle_tls_command(const Command& cmd, std::uint64_t offset, CoreSink& sink) {
  auto answer = [&](std::string_view line, int code) {
    proxy_reply(line, cmd, offset, sink);
    complete(cmd.verb, false, code, false);
    return true;
  };
  if (!terminates_tls()) {
    // The control channel must never turn into bytes the proxy cannot read.
    if (cmd.verb == Verb::AUTH && settings_.refuse_tls) return answer(kRefused, 534);
    if (settings_.tls.upstream) {
      // The proxy's own TLS toward the server is not the client's to change:
      // a PROT C or CCC reaching the server would leave the two out of step.
      switch (cmd.verb) {
        case Verb::PBSZ: return answer(kPbszFirst, 503);
        case Verb::PROT: return answer(kProtFirst, 503);
        case Verb::CCC: return answer(kCccRefused, 533);
        case Verb::REIN: return answer(kReinRefused, 502);
        default: break;
      }
    }
    return false;
  }
  if (settings_.tls.required && !client_protected_ && !allowed_before_tls(cmd.verb)) {
    finding(sink, "tls-required", "a command before AUTH TLS where TLS is required", Severity::error, Side::client,
            &cmd, FindingAction::rejected, 530, offset);
    return answer(kTlsRequired, 530);
  }
  switch (cmd.verb) {
    case Verb::AUTH: {
      if (client_protected_) return answer(kAlreadyProtected, 503);
      const auto mech = parse_auth_arg(cmd.arg);
      if (!mech.ok()) return answer(kMechanism, 504);
      // Not while a reply is owed (a transfer's completion would come inside
      // the TLS the client is still negotiating).
      if (!pending_.empty() || has_completion_ || transfer_.active()) return answer(kAuthBusy, 503);
      answer("234 Proceed with negotiation.\r\n", 234);
      // AUTH SSL and TLS-P (draft-murray-auth-ftp-ssl) protect data connections too.
      if (mech.value == AuthMech::ssl || mech.value == AuthMech::tls_p) prot_p_ = true;
      // Nothing the client sent behind AUTH is read as a command: it is the
      // start of its handshake, or an injection the handshake refuses.
      tls_wait_client_ = tls_handoff_ = true;
      update_pause();
      return true;
    }
    case Verb::PBSZ:
      if (!client_protected_) return answer(kPbszFirst, 503);
      return answer(kPbszOk, 200);
    case Verb::PROT: {
      if (!(state_ & pbit(Predicate::pbsz_done))) return answer(kProtFirst, 503);
      const auto level = parse_prot_arg(cmd.arg);
      if (!level.ok() || (level.value != 'P' && level.value != 'C')) return answer(kProtUnsupported, 536);
      if (level.value == 'P' && settings_.tls.data == DataProtection::clear) return answer(kProtRefusedP, 536);
      if (prot_p_ != (level.value == 'P') && data_live_) {
        // A data connection set up under the old level is not used under
        // the new one: the next transfer needs a new PASV/PORT.
        sink.abort_data("protection-changed");
        state_ &= ~pbit(Predicate::data_ready);
      }
      prot_p_ = level.value == 'P';
      return answer(prot_p_ ? kProtPrivate : kProtClear, 200);
    }
    case Verb::CCC:
      return answer(kCccRefused, 533);
    case Verb::REIN:
      if (client_protected_) return answer(kReinRefused, 502);
      return false;
    default:
      break;
  }
  if (settings_.tls.data == DataProtection::required && is_transfer(cmd.verb) && !prot_p_) {
    finding(sink, "prot-p-required", "a transfer without PROT P where data connections must be protected",
            Severity::error, Side::client, &cmd, FindingAction::rejected, 521, offset);
    return answer(kProtRequired, 521);
  }
  return false;
}

void SessionCore::hand_off_tls(CoreSink& sink) {
  tls_handoff_ = false;
  if (!client_backlog_.empty() || client_framer_.mid_line()) {
    // SECURITY: bytes sent behind AUTH, before the client could have read
    // the 234, are never taken as commands of the protected session (the
    // STARTTLS injection, CVE-2011-0411). No client needs to do that.
    const Command cmd = command_of(Verb::AUTH);
    finding(sink, "tls-injection", "bytes behind AUTH before its 234: the session is closed", Severity::error,
            Side::client, &cmd, FindingAction::rejected, 0, client_framer_.offset());
    closed_ = paused_ = true;
    close(EndReason::client_tls_failed, sink);
    return;
  }
  client_framer_.reset();
  sink.start_tls(Side::client);
}

void SessionCore::on_tls_ready(Side side, std::uint64_t now_us, CoreSink& sink) {
  if (closed_) return;
  if (side == Side::client) {
    client_protected_ = true;
    tls_wait_client_ = false;
    update_pause();
    if (!paused_ && !client_backlog_.empty()) pump_client(now_us, sink);
  } else if (upstream_tls_ == UpstreamTls::handshaking) {
    upstream_tls_ = UpstreamTls::pbsz_sent;
    pending_.push({Verb::PBSZ, Verb::PBSZ, false, false, false, now_us, true});
    sink.send_to_server("PBSZ 0\r\n");
  }
  after_input(now_us, sink);
}

bool SessionCore::upstream_tls_pending() const {
  return upstream_tls_ != UpstreamTls::off && upstream_tls_ != UpstreamTls::done;
}

bool SessionCore::upstream_tls_reply(const Reply& r, std::uint64_t now_us, CoreSink& sink) {
  if (upstream_tls_ == UpstreamTls::done) return false;
  if (upstream_tls_ == UpstreamTls::off) {
    if (greeted_ || r.code != 220) return false;  // 120 and 421 pass as they would
    held_greeting_.assign(r.raw);
    upstream_tls_ = UpstreamTls::auth_sent;
    pending_.push({Verb::AUTH, Verb::AUTH, false, false, false, now_us, true});
    sink.send_to_server("AUTH TLS\r\n");
    return true;
  }
  if (r.preliminary()) return true;
  const bool ok = upstream_tls_ == UpstreamTls::auth_sent ? r.code == 234 : r.code == 200;
  if (!pending_.empty()) pending_.pop();
  if (!ok || upstream_tls_ == UpstreamTls::handshaking) {
    const Command cmd = command_of(upstream_tls_ == UpstreamTls::auth_sent   ? Verb::AUTH
                                   : upstream_tls_ == UpstreamTls::pbsz_sent ? Verb::PBSZ
                                                                             : Verb::PROT);
    finding(sink, "upstream-tls-refused",
            "the server refused the proxy's " + std::string(name_of(cmd.verb)) + " (tls.upstream = on): " +
                std::string(reply_text(r.raw)),
            Severity::error, Side::server, &cmd, FindingAction::logged, 0, reply_offset_);
    end(EndReason::upstream_tls_refused, sink);
    return true;
  }
  switch (upstream_tls_) {
    case UpstreamTls::auth_sent:
      if (server_framer_.mid_line() || !server_backlog_.empty()) {
        // Bytes behind the 234 before the proxy's ClientHello: no server does that.
        const Command cmd = command_of(Verb::AUTH);
        finding(sink, "upstream-tls-refused", "bytes behind the server's 234, before the handshake", Severity::error,
                Side::server, &cmd, FindingAction::logged, 0, reply_offset_);
        end(EndReason::upstream_tls_refused, sink);
        return true;
      }
      upstream_tls_ = UpstreamTls::handshaking;
      sink.start_tls(Side::server);
      break;
    case UpstreamTls::pbsz_sent:
      upstream_tls_ = UpstreamTls::prot_sent;
      pending_.push({Verb::PROT, Verb::PROT, false, false, false, now_us, true});
      sink.send_to_server("PROT P\r\n");
      break;
    default: {
      // Protected: now the client hears the server's greeting.
      upstream_tls_ = UpstreamTls::done;
      greeted_ = true;
      to_client(held_greeting_, sink);
      sink.on_reply({220, held_greeting_, Verb::unknown, -1, false, false, 0});
      update_pause();
      break;
    }
  }
  return true;
}

}  // namespace ftpw
