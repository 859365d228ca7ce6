#include "data_channel.h"

#include "proxy_header.h"

#include <algorithm>

#include <spdlog/spdlog.h>

namespace ftpw {

DataChannel::DataChannel(DataOwner& s, Kind kind, const NetAddr& target) : s_(s), kind_(kind), target_(target) {}

DataChannel::~DataChannel() {
  if (tls_.resume) SSL_SESSION_free(tls_.resume);
}

void DataChannel::set_tls(DataTls tls) {
  if (tls_.resume) SSL_SESSION_free(tls_.resume);
  tls_ = std::move(tls);
  if (tls_.resume) SSL_SESSION_up_ref(tls_.resume);
  if (tls_.client || tls_.server) stream_only_ = true;  // TLS bytes go through the streams, not the socket relay
}

void DataChannel::server_may_handshake() {
  server_go_ = true;
  start_server_tls();
}

void DataChannel::start_server_tls() {
  if (!tls_.server || !server_go_ || !server_ || !server_->connected() || server_->tls() || ended_) return;
  server_->start_tls(tls_.ctx->server_leg(tls_.resume, s_.upstream()));
  server_->resume(pause_not_ready);  // its handshake is read now
}

bool DataChannel::legs_ready() const {
  auto ready = [](const Stream* st, bool tls) { return !tls || (st->tls() && st->tls()->handshake_done()); };
  return connected() && ready(client_, tls_.client) && ready(server_, tls_.server);
}

void DataChannel::on_tls_ready(Stream& s) {
  if (ended_) return;
  s_.data_tls(&s == client_, true);
  if (&s == client_) {
    resumed_ = s.tls()->resumed_tag(tls_.reuse_tag);
    s_.data_client_tls(resumed_);  // the owner's core judges it (require_session_reuse)
    if (ended_) {
      spdlog::info("session {}: data connection from {}: TLS session not resumed from the control connection; closed",
                   s_.log_id(), from_.to_string());
      return;
    }
  }
  both_up();
}

void DataChannel::close_leg(Stream* st, bool delivered) {
  if (!st) return;
  // A TLS leg that delivered everything waits for the peer's close_notify:
  // closing on unread bytes would reset the connection under them.
  if (delivered && st->tls()) st->linger_close();
  else st->close();
}

std::optional<NetAddr> DataChannel::open(const NetAddr& bind_host, const std::optional<NetAddr>& announce) {
  listener_ = Listener::create(s_.loop(), this);
  ++handles_;
  NetAddr bind = bind_host;
  if (kind_ == Kind::passive) {
    PortPool& pool = s_.ports();
    port_ = pool.acquire([&](std::uint16_t port) {
      bind.port = port;
      return listener_->listen(bind, 4, false, s_.cfg().transparent) == 0;
    });
    if (port_ < 0) {
      spdlog::warn("no free passive port in {}", s_.cfg().passive_ports);
      return std::nullopt;
    }
  } else {
    bind.port = 0;
    if (listener_->listen(bind, 4) != 0) return std::nullopt;
  }
  auto local = listener_->local();
  if (!local) return std::nullopt;
  NetAddr out = announce ? *announce : *local;
  out.port = local->port;
  return out;
}

void DataChannel::on_connection(Listener& l) {
  if (ended_) return;
  Stream* st = l.accept(this, kind_ == Kind::passive ? client_leg : server_leg);
  if (!st) return;
  ++handles_;
  if (kind_ == Kind::passive && s_.cfg().proxy_accept) {
    // Through the balancer: who connected is in the header that comes first.
    // A few may wait for theirs at once; past that the one that has waited
    // longest is closed, so silent connections can neither pile up nor keep
    // the client's own (whose header comes with it) from being read.
    if (pending_.size() >= kMaxPending) {
      Stream* oldest = pending_.front().first;
      pending_.erase(pending_.begin());
      oldest->close();
    }
    pending_.push_back({st, ProxyHeaderReader(s_.cfg().proxy_accept)});
    st->start();
    return;
  }
  auto peer = st->peer();
  if (peer_allowed(st, peer)) accepted(st, *peer);
}

bool DataChannel::peer_allowed(Stream* st, const std::optional<NetAddr>& peer) {
  // SECURITY: only the session's own client (passive) or its server (active)
  // may connect; anyone else is closed unread and unanswered, the listener
  // keeps waiting for the right peer (data-port theft).
  const NetAddr& expected = kind_ == Kind::passive ? s_.peer() : s_.upstream();
  if (peer && peer->same_host(expected)) return true;
  s_.data_event("data-peer-mismatch", "data connection from an unexpected address closed", peer ? *peer : NetAddr{});
  st->close();
  return false;
}

void DataChannel::header_data(std::size_t i, const char* p, std::size_t n) {
  auto& [st, reader] = pending_[i];
  Stream* s = st;
  const auto status = reader.feed(std::string_view(p, n));  // what follows the header is the client's data
  if (status == ProxyHeader::Status::incomplete) return;
  const ProxyHeader h = reader.header();
  std::string rest = reader.take_rest();
  pending_.erase(pending_.begin() + static_cast<std::ptrdiff_t>(i));
  if (status != ProxyHeader::Status::done) {
    auto peer = s->peer();
    s_.data_event("proxy-header", "data connection without a valid PROXY header closed", peer ? *peer : NetAddr{});
    s->close();
    return;
  }
  const auto who = h.source ? std::optional<NetAddr>(*h.source) : s->peer();
  if (!peer_allowed(s, who)) return;
  for (auto& [other, unused] : pending_) other->close();  // the session's client is here: no one else
  pending_.clear();
  early_ = std::move(rest);
  accepted(s, *who);
}

void DataChannel::accepted(Stream* st, const NetAddr& from) {
  from_ = from;
  // Passive: the proxy connects to the server now; active: the server has
  // connected. Either way the server may say 125 from here on.
  s_.data_server_leg();
  if (kind_ == Kind::passive) client_ = st;
  else server_ = st;
  // A client's TLS leg reads its handshake now (plaintext that comes before
  // the other leg is ready waits: on_data); a server's TLS leg waits for the
  // server's 1xx (start_server_tls).
  const bool tls_now = kind_ == Kind::passive && tls_.client;
  if (tls_now) st->start_tls(tls_.ctx->client_data());
  else st->pause(pause_not_ready);
  st->start();
  if (kind_ == Kind::active) start_server_tls();
  listener_->close();
  listener_ = nullptr;
  // Connect the other leg at once, so a server that sees its data connection
  // open answers 125 (RFC 959 §4.2.2), as it would without the proxy.
  Stream* leg = Stream::create(s_.loop(), this, kind_ == Kind::passive ? server_leg : client_leg);
  ++handles_;
  if (kind_ == Kind::passive) server_ = leg;
  else client_ = leg;
  sockaddr_storage ss;
  to_sockaddr(target_, ss);
  if (leg->connect(reinterpret_cast<sockaddr*>(&ss)) != 0) {
    end("connect-failed", false);
    return;
  }
  if (tls_now && !early_.empty()) {
    // What came behind the client's PROXY header is the start of its handshake.
    std::string hello;
    hello.swap(early_);
    st->feed_tls(hello.data(), hello.size());
  }
}

bool DataChannel::write_first(Stream& s, std::string_view bytes) {
  // Ahead of a socket relay that writes to the descriptor itself: sent now,
  // or the relay is not used for this connection (the bytes wait in order).
  uv_buf_t b = uv_buf_init(const_cast<char*>(bytes.data()), static_cast<unsigned>(bytes.size()));
  const int n = uv_try_write(s.uv(), &b, 1);
  const std::size_t done = n > 0 ? static_cast<std::size_t>(n) : 0;
  if (done == bytes.size()) return true;
  s.write(bytes.substr(done));
  return false;
}

void DataChannel::on_connect(Stream& s, int status) {
  if (ended_) return;
  if (status != 0) {
    spdlog::debug("data connect to {} failed: {}", target_.to_string(), uv_strerror(status));
    end("connect-failed", false);
    return;
  }
  if (&s == server_ && kind_ == Kind::passive && s_.cfg().proxy_send) {
    // The server learns whose data connection this is.
    if (!write_first(s, proxy_header(s_.cfg().proxy_send, from_, target_)))
      stream_only_ = true;
  }
  const bool tls = &s == client_ ? tls_.client : tls_.server;
  if (tls) {
    if (&s == client_) s.start_tls(tls_.ctx->client_data());
    else s.pause(pause_not_ready);  // until the server's 1xx
    s.start();
    start_server_tls();
    return;  // both_up once the handshakes are done
  }
  s.start();
  both_up();
}

void DataChannel::both_up() {
  if (announced_ || !legs_ready()) return;
  // Announce the connection before relaying: the socket relay may move
  // everything and end the channel (data_close) from within its start, after
  // which neither leg has a peer address any more.
  auto c = client_->peer(), v = server_->peer();
  announced_ = true;
  s_.data_opened(*this, c ? *c : NetAddr{}, v ? *v : NetAddr{});
  if (!early_.empty()) {
    // What the client sent right after its PROXY header (within the upload cap).
    if (cap_cuts_ && early_.size() > cap_) early_.resize(static_cast<std::size_t>(cap_));
    if (tls_.server) server_->write(early_);  // encrypted: through the stream
    else if (!write_first(*server_, early_)) stream_only_ = true;
    up_ += early_.size();
    early_.clear();
  }
  if (!early_down_.empty()) {
    client_->write(early_down_);
    down_ += early_down_.size();
    early_down_.clear();
  }
  if (early_eof_client_) server_->shutdown(!client_->tls() || client_->tls()->peer_closed());
  if (early_eof_server_) client_->shutdown(!server_->tls() || server_->tls()->peer_closed());
  uv_os_fd_t cfd, sfd;
  const Config& cfg = s_.cfg();
  if (cfg.relay_kind != RelayKind::stream && !stream_only_ && SocketRelay::supported() &&
      uv_fileno(reinterpret_cast<uv_handle_t*>(client_->tcp()), &cfd) == 0 &&
      uv_fileno(reinterpret_cast<uv_handle_t*>(server_->tcp()), &sfd) == 0) {
    client_->pause(pause_relayed);
    server_->pause(pause_relayed);
    const auto kind = cfg.relay_kind == RelayKind::splice ? SocketRelay::Kind::splice : SocketRelay::Kind::copy;
    relay_base_up_ = up_;  // the relay counts from zero: what went before counts against the cap
    if (cap_cuts_) relay_.limit(0, cap_ - std::min(up_, cap_));
    if (relay_.start(s_.loop(), cfd, sfd, kind, static_cast<std::size_t>(cfg.relay_buffer_kib) << 10, this)) {
      handles_ += relay_.handles();
    } else {
      client_->resume(pause_relayed);
      server_->resume(pause_relayed);
    }
  }
  client_->resume(pause_not_ready);
  server_->resume(pause_not_ready);
}

void DataChannel::limit_upload(std::uint64_t bytes, bool cut) {
  cap_ = bytes;
  cap_cuts_ = cut;
  if (cut && relay_.running()) relay_.limit(0, bytes - std::min(relay_base_up_, bytes));  // (set at start() otherwise)
  upload_moved();
}

void DataChannel::upload_moved() {
  if (!cap_cuts_ && !cap_reported_ && up_ > cap_) {
    cap_reported_ = true;
    s_.data_upload_over();
  }
}

void DataChannel::on_data(Stream& s, const char* p, std::size_t n) {
  if (ended_) return;
  for (std::size_t i = 0; i < pending_.size(); ++i)
    if (pending_[i].first == &s) return header_data(i, p, n);
  Stream* o = other(s);
  if (!o || o->closing()) return;
  if (!announced_) {
    // A TLS leg's first plaintext, before the other leg is ready: it waits,
    // and so does the rest of that leg's bytes.
    (&s == client_ ? early_ : early_down_).append(p, n);
    s.pause(pause_not_ready);
    return;
  }
  if (&s == client_ && cap_cuts_ && (capped_ || up_ + n > cap_)) {
    // Past the upload cap: what fits goes, then the FIN after it, and the
    // client is read no more; the channel ends once that is flushed.
    n = capped_ || up_ >= cap_ ? 0 : static_cast<std::size_t>(cap_ - up_);
    capped_ = true;
    s.pause(pause_peer_full);
    if (n) {
      up_ += n;
      s_.data_moved();
      o->write(std::string_view(p, n));
    }
    o->shutdown();
    return;
  }
  if (&s == server_) down_ += n;
  else up_ += n;
  if (&s == client_) upload_moved();
  s_.data_moved();
  o->write(std::string_view(p, n));
  if (o->above_high()) s.pause(pause_peer_full);
}

void DataChannel::on_drain(Stream& s) {
  if (Stream* o = other(s)) o->resume(pause_peer_full);
}

bool DataChannel::drop_pending(Stream& s) {
  for (std::size_t i = 0; i < pending_.size(); ++i)
    if (pending_[i].first == &s) {
      pending_.erase(pending_.begin() + static_cast<std::ptrdiff_t>(i));
      s.close();
      return true;
    }
  return false;
}

void DataChannel::on_eof(Stream& s) {
  if (ended_ || drop_pending(s)) return;
  if (!announced_) {  // a TLS leg ended before the other was ready: passed on then
    (&s == client_ ? early_eof_client_ : early_eof_server_) = true;
    return;
  }
  // Half-close: pass the FIN on once what was read before it is written. A
  // TLS leg that ended without its close_notify (possibly cut short) is
  // passed on as such: the far side's TLS, if any, gets no close_notify
  // either, and judges for itself.
  if (Stream* o = other(s)) o->shutdown(!s.tls() || s.tls()->peer_closed());
}

void DataChannel::on_shutdown(Stream&) {
  // One direction delivered completely: the transfer is over.
  if (!ended_) end(capped_ ? "upload-cap" : "complete", !capped_);
}

void DataChannel::on_error(Stream& s, int err) {
  if (drop_pending(s)) return;
  if (ended_) return;
  if (err == kTlsError && s.tls()) {
    const bool client = &s == client_;
    spdlog::info("session {}: data connection: {} TLS failed: {}", s_.log_id(), client ? "client" : "server",
                 s.tls()->error());
    s_.data_tls(client, false);
    // The server's leg failed under the transfer: whatever the server says
    // of it, the client did not get it all (a 2xx becomes 426).
    if (!client) cut_ = true;
    end(client ? "tls-failed" : "upstream-tls-failed", false);
    return;
  }
  end(uv_err_name(err), false);
}

void DataChannel::abort(std::string_view reason) {
  if (ended_) return;
  cut_ = true;
  end(reason, false);
}

void DataChannel::on_relayed(int dir, std::size_t n) {
  (dir == 0 ? up_ : down_) += n;
  s_.data_moved();
  if (dir == 0) upload_moved();
}

void DataChannel::on_relay_end(bool ok, const char* reason) {
  if (!ended_) end(reason, ok);
}

void DataChannel::on_relay_handle_closed() {
  --handles_;
  maybe_gone();  // last statement: it may free this object
}

void DataChannel::end(std::string_view reason, bool delivered) {
  ended_ = true;
  if (reason == "upload-cap") cut_ = true;  // the proxy refused the rest
  relay_.stop();
  if (listener_) {
    listener_->close();
    listener_ = nullptr;
  }
  close_leg(client_, delivered);
  close_leg(server_, delivered);
  for (auto& [st, unused] : pending_) st->close();
  pending_.clear();
  // The handles are closing: the session may now send the reply that follows
  // the data. This object lives on until their close callbacks (maybe_gone).
  s_.data_ended(*this, std::string(reason), delivered);
}

void DataChannel::on_closed(Stream& s) {
  --handles_;
  if (&s != client_ && &s != server_) {  // a thief's connection, closed unread
    drop_pending(s);
    maybe_gone();
    return;
  }
  if (&s == client_) client_ = nullptr;
  if (&s == server_) server_ = nullptr;
  if (!ended_) end("closed", false);
  maybe_gone();  // last statement: it may free this object
}

void DataChannel::on_listener_closed(Listener&) {
  if (port_ >= 0) s_.ports().release(static_cast<std::uint16_t>(port_));
  port_ = -1;
  --handles_;
  maybe_gone();
}

void DataChannel::maybe_gone() {
  if (ended_ && handles_ == 0) s_.data_gone(this);
}

}  // namespace ftpw
