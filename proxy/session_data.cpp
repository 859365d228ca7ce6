// Session, its data channel side: the listener it asks a DataChannel for,
// and what the channel reports (DataOwner), passed on to the core.
#include "audit_schema.h"
#include "session.h"
#include "tls_context.h"

namespace ftpw {

void Session::open_data(const DataRequest& req) {
  const bool passive = req.kind == DataRequest::Kind::passive;
  // The listener faces the side that will connect to it, on the proxy's
  // address that side already reaches.
  Stream* facing = passive ? client_ : upstream_;
  const auto local = !closing_ && facing ? facing->local() : std::nullopt;
  if (!local) {
    core_->on_data_listening(std::nullopt, now_us(), *this);
    return;
  }
  if (data_) data_->abort("replaced");
  auto* d = new DataChannel(*this, passive ? DataChannel::Kind::passive : DataChannel::Kind::active, req.target);
  ++handles_;  // the channel counts as one until data_gone
  data_ = d;
  if (next_cap_) {
    d->limit_upload(next_cap_->first, next_cap_->second);
    next_cap_.reset();
  }
  if (req.protect || cfg().tls_upstream_value) {
    DataTls t;
    t.ctx = snap_->tls;
    t.client = req.protect;
    t.server = cfg().tls_upstream_value;
    t.reuse_tag = id_;
    if (t.server && upstream_ && upstream_->tls()) t.resume = upstream_->tls()->latest_session();
    d->set_tls(std::move(t));
  }
  // Announced: the public address if one is set; in transparent mode the
  // server's own (the client believes it talks to it, and the firewall
  // redirects the passive range too); else the listener's.
  std::optional<NetAddr> announce;
  if (passive) announce = cfg().public_addr ? cfg().public_addr : cfg().transparent ? std::optional(upstream_addr_) : std::nullopt;
  const auto addr = d->open(*local, announce);
  if (!addr) d->abort(passive ? "no-passive-port" : "no-active-port");
  core_->on_data_listening(addr, now_us(), *this);
}

// ---------------------------------------------------------------- DataOwner

void Session::data_moved() { core_->on_data_moved(now_us()); }

void Session::data_opened(const DataChannel& d, const NetAddr& client_side, const NetAddr& server_side) {
  core_->on_data({DataEvent::opened}, now_us(), *this);
  Event e = event(audit::ev::data_open);
  e.str(audit::f::client_side, client_side.to_string())
      .str(audit::f::server_side, server_side.to_string())
      .boolean(audit::f::protected_, d.client_protected());
  if (d.client_protected()) e.boolean(audit::f::resumed, d.client_resumed());
  audit(e);
}

void Session::data_server_leg() { core_->on_data({DataEvent::server_leg}, now_us(), *this); }

void Session::data_ended(const DataChannel& d, std::string_view reason, bool delivered) {
  audit(event(audit::ev::data_close)
            .str(audit::f::reason, reason)
            .boolean(audit::f::complete, delivered)
            .num(audit::f::bytes_down, static_cast<std::int64_t>(d.downloaded()))
            .num(audit::f::bytes_up, static_cast<std::int64_t>(d.uploaded())));
  host_.stats().bytes[0].add(d.downloaded());
  host_.stats().bytes[1].add(d.uploaded());
  // Only a channel the proxy cut (timeout, ABOR) turns a 2xx into 426: a peer
  // that resets a data connection after the last byte loses nothing.
  const DataEnd how = reason == "data-connect-timeout" ? DataEnd::connect_timeout
                      : reason == "connect-failed"     ? DataEnd::connect_failed
                      : reason == "upload-cap"         ? DataEnd::capped
                      : reason == "tls-failed"         ? DataEnd::tls_failed
                      : reason == "tls-not-resumed"    ? DataEnd::tls_not_resumed
                      : d.cut()                        ? DataEnd::cut
                      : delivered                      ? DataEnd::complete
                                                       : DataEnd::peer_error;
  if (how == DataEnd::tls_not_resumed) ++host_.stats().tls_failures[TlsLegLabels::of(true, true)];
  core_->on_data({DataEvent::closed, d.downloaded(), d.uploaded(), d.cut(), how}, now_us(), *this);
  after_core();
}

void Session::data_gone(DataChannel* d) {
  if (data_ == d) data_ = nullptr;
  delete d;
  --handles_;
  if (handles_ == 0 && closing_) {
    host_.session_gone(this);
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
  ++host_.stats().violations;
  host_.stats().findings.count(rule, true, true);
  core_->on_data({DataEvent::stranger}, now_us(), *this);
}

}  // namespace ftpw
