// SessionCore, data setup: both sides only ever see the proxy. A PORT/EPRT's
// address becomes one the proxy listens on toward the server; a passive
// reply's address becomes one it listens on toward the client. The core asks
// for the listener (CoreSink::open_data) and finishes the command when the
// caller reports its address (on_data_listening).
#include "completion.h"
#include "security_checks.h"
#include "session_core.h"

namespace ftpw {
namespace {

constexpr std::string_view kNoDataReply = "425 Can't open data connection.\r\n";
constexpr std::string_view kPasvV6Reply = "522 Use EPSV on this connection.\r\n";

}  // namespace

void SessionCore::setup_active(const Command& cmd, const NetAddr& target, bool epsv_all, std::uint64_t offset,
                               std::uint64_t now_us, CoreSink& sink) {
  awaited_ = AwaitedData{true, cmd.verb, epsv_all, 0, offset, now_us};
  data_kind_ = DataRequest::Kind::active;
  foreign_passive_ = stranger_ = data_failure_reported_ = client_aborted_ = false;
  update_pause();
  data_protected_ = prot_p_ && client_protected_;
  data_tls_refused_ = DataEnd::complete;
  sink.open_data({DataRequest::Kind::active, target, data_protected_});
}

void SessionCore::setup_passive(const Pending& p, const Reply& r, std::int64_t latency, CoreSink& sink) {
  const Command cmd = command_of(p.verb);
  const PassiveTarget t = passive_target(r, peers_.upstream);
  if (!t.parsed) {
    finding(sink, "pasv-malformed", "passive reply without a usable address", Severity::warning, Side::server, &cmd,
            FindingAction::logged, 0, reply_offset_);
    to_client(kNoDataReply, sink);
    sink.on_reply({425, kNoDataReply, p.verb, latency, true, false, reply_offset_});
    complete(p.verb, false, 425, false);
    return;
  }
  if (t.foreign)
    finding(sink, "pasv-foreign-address", "passive reply names an address other than the server's; using the server's",
            Severity::warning, Side::server, &cmd, FindingAction::logged, 0, reply_offset_);
  awaited_ = AwaitedData{false, p.verb, false, latency, reply_offset_, 0};
  data_kind_ = DataRequest::Kind::passive;
  stranger_ = data_failure_reported_ = client_aborted_ = false;
  foreign_passive_ = t.foreign;
  if (t.low_port) {
    finding(sink, "pasv-low-port", "passive reply names a port below 1024", Severity::warning, Side::server, &cmd,
            FindingAction::rejected, 425, reply_offset_);
    awaited_.reset();
    to_client(kNoDataReply, sink);
    sink.on_reply({425, kNoDataReply, p.verb, latency, false, false, reply_offset_});
    complete(p.verb, false, 425, false);
    return;
  }
  update_pause();
  data_protected_ = prot_p_ && client_protected_;
  data_tls_refused_ = DataEnd::complete;
  sink.open_data({DataRequest::Kind::passive, t.addr, data_protected_});
}

void SessionCore::on_data_listening(const std::optional<NetAddr>& mine, std::uint64_t now_us, CoreSink& sink) {
  if (!awaited_) return;
  const AwaitedData a = *awaited_;
  awaited_.reset();
  transfer_.data_reset();  // a new data connection: nothing made for it yet
  data_live_ = mine.has_value();
  if (mine) timers_.data_listening(now_us / 1000);
  if (a.active) {
    const Command cmd = command_of(a.verb);
    if (!mine) {
      proxy_reply(kNoDataReply, cmd, a.offset, sink);
      complete(a.verb, false, 425, false);
    } else {
      const Verb sent = a.verb == Verb::PORT && !mine->unmapped().is_v4() ? Verb::EPRT : a.verb;
      scratch_ = format_active_command(sent, *mine);
      // A new data setup: a 125 from now on needs a connection made for it.
      server_leg_seen_ = false;
      pending_.push({a.verb, sent, false, false, a.epsv_all, a.sent_us});
      update_pause();
      sink.send_to_server(scratch_);
    }
  } else {
    std::string out;
    if (mine && a.verb == Verb::PASV && !mine->unmapped().is_v4()) out = std::string(kPasvV6Reply);
    else if (mine) out = a.verb == Verb::PASV ? format_227(*mine) : a.verb == Verb::LPSV ? format_228(*mine)
                                                                                          : format_229(mine->port);
    else out = std::string(kNoDataReply);
    const int code = reply_code(out);
    to_client(out, sink);
    sink.on_reply({code, out, a.verb, a.latency, false, false, a.offset});
    complete(a.verb, false, code, false);
  }
  update_pause();
  // Input that waited for the listener (when the caller answered later).
  if (!in_server_pump_ && !server_backlog_.empty()) pump_server(now_us, sink);
  if (!in_pump_ && !paused_ && !client_backlog_.empty()) pump_client(now_us, sink);
  after_input(now_us, sink);
}

bool SessionCore::retry_passive(const Pending& done, const Reply& r, std::int64_t latency, std::uint64_t now_us,
                                CoreSink& sink) {
  // The server lacks this passive command: ask with the other one (EPSV <-> PASV).
  if (r.klass() != 5 || done.sent != done.verb || done.verb == Verb::LPSV || peers_.upstream.family == 0)
    return false;
  sink.on_reply({r.code, r.raw, done.sent, latency, false, false, reply_offset_});
  Pending again = done;
  again.sent = done.verb == Verb::EPSV ? Verb::PASV : Verb::EPSV;
  again.replied = false;
  if (again.sent == Verb::PASV && !peers_.upstream.unmapped().is_v4()) {
    forward_reply(r, &done, latency, now_us, sink, false);
    complete(done.verb, false, r.code, false);
    update_pause();
    return true;
  }
  // At the front: it is the only command in flight while the client waits.
  pending_.push_front(again);
  update_pause();
  sink.send_to_server(again.sent == Verb::PASV ? "PASV\r\n" : "EPSV\r\n");
  return true;
}

}  // namespace ftpw
