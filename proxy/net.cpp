#include "net.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cstdlib>
#include <cstring>
#include <new>

namespace ftpw {
namespace {

// Reads are consumed synchronously in on_read (copied only if a write has to
// wait), so one buffer per loop thread serves every stream.
thread_local char g_read_buf[64 * 1024];
// Ciphertext of the write at hand (TLS streams).
thread_local std::string t_tls_out;
constexpr std::uint64_t kLingerMs = 2000;

struct WriteReq {
  uv_write_t req;
  std::size_t len;
  char data[1];
};

}  // namespace

Stream* Stream::create(uv_loop_t* loop, StreamHandler* h, int tag) {
  g_sockets.fetch_add(1, std::memory_order_relaxed);
  auto* s = new Stream();
  s->handler_ = h;
  s->tag_ = tag;
  uv_tcp_init(loop, &s->tcp_);
  s->tcp_.data = s;
  return s;
}

int Stream::connect(const sockaddr* addr) {
  auto* req = new uv_connect_t;
  req->data = this;
  int rc = uv_tcp_connect(req, &tcp_, addr, [](uv_connect_t* r, int status) {
    auto* self = static_cast<Stream*>(r->data);
    delete r;
    ++t_loop_activity;
    if (status == 0 && !self->closing_) self->connected_ = true;
    if (status != UV_ECANCELED) self->handler_->on_connect(*self, status);
  });
  if (rc != 0) delete req;
  return rc;
}

int Stream::start() {
  started_ = true;
  connected_ = true;
  update_reading();
  return 0;
}

void Stream::pause(std::uint8_t reason) {
  pause_mask_ |= reason;
  update_reading();
}

void Stream::resume(std::uint8_t reason) {
  pause_mask_ &= static_cast<std::uint8_t>(~reason);
  update_reading();
}

void Stream::update_reading() {
  const bool want = started_ && !closing_ && !eof_ && pause_mask_ == 0;
  if (want && !reading_) {
    if (uv_read_start(uv(), on_alloc, on_read) == 0) reading_ = true;
  } else if (!want && reading_) {
    uv_read_stop(uv());
    reading_ = false;
  }
}

void Stream::on_alloc(uv_handle_t*, std::size_t, uv_buf_t* buf) {
  buf->base = g_read_buf;
  buf->len = sizeof g_read_buf;
}

void Stream::on_read(uv_stream_t* st, ssize_t n, const uv_buf_t* buf) {
  auto* self = static_cast<Stream*>(st->data);
  if (n > 0 && self->tls_) {
    self->tls_read(buf->base, static_cast<std::size_t>(n));
    return;
  }
  if (n > 0) {
    self->bytes_in += static_cast<std::uint64_t>(n);
    self->handler_->on_data(*self, buf->base, static_cast<std::size_t>(n));
    return;
  }
  if (n == 0) return;  // EAGAIN: nothing read, not EOF
  uv_read_stop(st);
  self->reading_ = false;
  if (self->lingering_) {
    self->close();
    return;
  }
  if (n == UV_EOF) {
    self->eof_ = true;
    self->handler_->on_eof(*self);
  } else {
    self->handler_->on_error(*self, static_cast<int>(n));
  }
}

void Stream::tls_read(const char* p, std::size_t n) {
  rx_plain_.clear();
  t_tls_out.clear();
  const auto st = tls_->feed(p, n, rx_plain_, t_tls_out);
  bytes_out += tls_->take_flushed();
  write_raw(t_tls_out);
  if (lingering_) {
    if (st != TlsEngine::Status::ok) close();
    return;
  }
  if (tls_->take_just_done()) {
    handler_->on_tls_ready(*this);
    if (closing_) return;
  }
  if (!rx_plain_.empty()) {
    bytes_in += rx_plain_.size();
    handler_->on_data(*this, rx_plain_.data(), rx_plain_.size());
    if (closing_) return;
  }
  if (st == TlsEngine::Status::ok) return;
  uv_read_stop(uv());
  reading_ = false;
  if (st == TlsEngine::Status::closed) {  // close_notify: the peer's end of stream
    eof_ = true;
    handler_->on_eof(*this);
  } else {
    handler_->on_error(*this, kTlsError);
  }
}

void Stream::start_tls(std::unique_ptr<TlsEngine> tls) {
  tls_ = std::move(tls);
  t_tls_out.clear();
  tls_->begin(t_tls_out);
  write_raw(t_tls_out);
}

bool Stream::write(std::string_view d) {
  if (closing_) return false;
  if (d.empty()) return true;
  if (!tls_) {
    bytes_out += d.size();
    return write_raw(d);
  }
  // Plaintext counts once encrypted (held until the handshake: see tls_read).
  if (tls_->handshake_done()) bytes_out += d.size();
  t_tls_out.clear();
  if (!tls_->send(d, t_tls_out)) return false;
  return write_raw(t_tls_out);
}

bool Stream::write_raw(std::string_view d) {
  if (closing_) return false;
  if (d.empty()) return true;
  if (tcp_.write_queue_size == 0) {
    uv_buf_t b = uv_buf_init(const_cast<char*>(d.data()), static_cast<unsigned>(d.size()));
    const int n = uv_try_write(uv(), &b, 1);
    if (n > 0) d.remove_prefix(static_cast<std::size_t>(n));
    if (d.empty()) return true;
    // On a hard error uv_write below reports it through on_write.
  }
  auto* req = static_cast<WriteReq*>(std::malloc(sizeof(WriteReq) + d.size()));
  if (!req) throw std::bad_alloc();
  req->req.data = this;
  req->len = d.size();
  std::memcpy(req->data, d.data(), d.size());
  uv_buf_t b = uv_buf_init(req->data, static_cast<unsigned>(d.size()));
  if (uv_write(&req->req, uv(), &b, 1, on_write) != 0) {
    std::free(req);
    return false;
  }
  if (above_high()) want_drain_ = true;
  return true;
}

void Stream::on_write(uv_write_t* r, int status) {
  auto* req = reinterpret_cast<WriteReq*>(r);
  auto* self = static_cast<Stream*>(r->data);
  std::free(req);
  if (status < 0) {
    if (status != UV_ECANCELED && !self->closing_) self->handler_->on_error(*self, status);
    return;
  }
  if (self->want_drain_ && self->queued() <= self->low_ && !self->closing_) {
    self->want_drain_ = false;
    self->handler_->on_drain(*self);
  }
}

void Stream::shutdown(bool notify) {
  if (closing_ || shut_ || shutdown_pending_) return;
  if (tls_ && notify) {
    t_tls_out.clear();
    tls_->close_notify(t_tls_out);
    write_raw(t_tls_out);
  }
  auto* req = new uv_shutdown_t;
  req->data = this;
  shutdown_pending_ = true;
  if (uv_shutdown(req, uv(), [](uv_shutdown_t* r, int status) {
        auto* self = static_cast<Stream*>(r->data);
        delete r;
        self->shutdown_pending_ = false;
        self->shut_ = true;
        if (status != UV_ECANCELED && !self->closing_) self->handler_->on_shutdown(*self);
      }) != 0) {
    delete req;
    shutdown_pending_ = false;
    shut_ = true;
  }
}

void Stream::linger_close() {
  if (closing_) return;
  if (!tls_ || eof_ || lingering_) {
    if (!lingering_) close();
    return;
  }
  lingering_ = true;
  shutdown();  // our close_notify and FIN, if not sent yet
  pause_mask_ = 0;
  started_ = true;
  update_reading();
  linger_timer_ = new uv_timer_t;
  uv_timer_init(tcp_.loop, linger_timer_);
  linger_timer_->data = this;
  uv_timer_start(linger_timer_, [](uv_timer_t* t) { static_cast<Stream*>(t->data)->close(); }, kLingerMs, 0);
}

void Stream::close() {
  if (closing_) return;
  closing_ = true;
  reading_ = false;
  if (linger_timer_) {
    uv_close(reinterpret_cast<uv_handle_t*>(linger_timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    linger_timer_ = nullptr;
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), on_close);
}

void Stream::on_close(uv_handle_t* h) {
  g_sockets.fetch_sub(1, std::memory_order_relaxed);
  auto* self = static_cast<Stream*>(h->data);
  self->handler_->on_closed(*self);
  delete self;
}

std::optional<NetAddr> Stream::peer() const {
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return std::nullopt;
  return from_sockaddr(reinterpret_cast<sockaddr*>(&ss));
}

bool set_transparent(int fd, int family) {
  const int one = 1;
  return family == AF_INET6 ? ::setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof one) == 0
                            : ::setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof one) == 0;
}

std::optional<NetAddr> Stream::original_destination() const {
  // Where the client meant to connect before the firewall redirected it
  // (nftables redirect/dnat: conntrack's original tuple). 80 is
  // SO_ORIGINAL_DST (linux/netfilter_ipv4.h) and IP6T_SO_ORIGINAL_DST.
  constexpr int kSoOriginalDst = 80;
  uv_os_fd_t fd;
  if (uv_fileno(reinterpret_cast<const uv_handle_t*>(&tcp_), &fd) != 0) return std::nullopt;
  const auto here = local();
  if (!here) return std::nullopt;
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  const int level = here->is_v6() ? SOL_IPV6 : SOL_IP;
  if (::getsockopt(fd, level, kSoOriginalDst, &ss, &len) == 0) return from_sockaddr(reinterpret_cast<sockaddr*>(&ss));
  return here;  // not translated (TPROXY: the local address is the destination)
}

std::optional<NetAddr> Stream::local() const {
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getsockname(&tcp_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return std::nullopt;
  return from_sockaddr(reinterpret_cast<sockaddr*>(&ss));
}

Listener* Listener::create(uv_loop_t* loop, ListenerHandler* h) {
  g_sockets.fetch_add(1, std::memory_order_relaxed);
  auto* l = new Listener();
  l->handler_ = h;
  uv_tcp_init(loop, &l->tcp_);
  l->tcp_.data = l;
  return l;
}

int Listener::listen(const NetAddr& addr, int backlog, bool reuseport, bool transparent) {
  sockaddr_storage ss{};
  to_sockaddr(addr, ss);
  uv_os_fd_t existing;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(&tcp_), &existing) == 0) {
    // A second try on the same handle (another passive port): its socket exists.
    if (transparent) set_transparent(existing, ss.ss_family);
  } else if (reuseport || transparent) {
    // Options that must be set before bind: create the socket ourselves.
    const int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return uv_translate_sys_error(errno);
    const int one = 1;
    if (reuseport) {
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    }
    // TPROXY: accept connections to (and bind) addresses that are not this
    // host's. Needs CAP_NET_ADMIN; without it only redirected connections
    // (whose destination is this host) can be taken, which need no option.
    if (transparent) set_transparent(fd, ss.ss_family);
    if (int rc = uv_tcp_open(&tcp_, fd); rc != 0) {
      ::close(fd);
      return rc;
    }
  }
  int rc = uv_tcp_bind(&tcp_, reinterpret_cast<sockaddr*>(&ss), 0);
  if (rc != 0) return rc;
  return uv_listen(reinterpret_cast<uv_stream_t*>(&tcp_), backlog, [](uv_stream_t* s, int status) {
    auto* self = static_cast<Listener*>(s->data);
    ++t_loop_activity;
    if (status == 0 && !self->closing_) self->handler_->on_connection(*self);
  });
}

Stream* Listener::accept(StreamHandler* h, int tag) {
  Stream* s = Stream::create(tcp_.loop, h, tag);
  if (uv_accept(reinterpret_cast<uv_stream_t*>(&tcp_), s->uv()) != 0) {
    s->set_handler(nullptr);
    // Never accepted: close without telling anyone.
    struct Silent : StreamHandler {
      void on_data(Stream&, const char*, std::size_t) override {}
      void on_eof(Stream&) override {}
      void on_error(Stream&, int) override {}
      void on_closed(Stream&) override {}
    };
    static Silent silent;
    s->set_handler(&silent);
    s->close();
    return nullptr;
  }
  return s;
}

std::optional<NetAddr> Listener::local() const {
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getsockname(&tcp_, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return std::nullopt;
  return from_sockaddr(reinterpret_cast<sockaddr*>(&ss));
}

void Listener::close() {
  if (closing_) return;
  closing_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), [](uv_handle_t* h) {
    g_sockets.fetch_sub(1, std::memory_order_relaxed);
    auto* self = static_cast<Listener*>(h->data);
    self->handler_->on_listener_closed(*self);
    delete self;
  });
}

bool to_sockaddr(const NetAddr& a, sockaddr_storage& out) {
  std::memset(&out, 0, sizeof out);
  if (a.family == 4) {
    auto* s = reinterpret_cast<sockaddr_in*>(&out);
    s->sin_family = AF_INET;
    s->sin_port = htons(a.port);
    std::memcpy(&s->sin_addr, a.bytes.data(), 4);
    return true;
  }
  if (a.family == 6) {
    auto* s = reinterpret_cast<sockaddr_in6*>(&out);
    s->sin6_family = AF_INET6;
    s->sin6_port = htons(a.port);
    std::memcpy(&s->sin6_addr, a.bytes.data(), 16);
    return true;
  }
  return false;
}

std::optional<NetAddr> from_sockaddr(const sockaddr* sa) {
  NetAddr a;
  if (sa->sa_family == AF_INET) {
    auto* s = reinterpret_cast<const sockaddr_in*>(sa);
    a.family = 4;
    std::memcpy(a.bytes.data(), &s->sin_addr, 4);
    a.port = ntohs(s->sin_port);
    return a;
  }
  if (sa->sa_family == AF_INET6) {
    auto* s = reinterpret_cast<const sockaddr_in6*>(sa);
    a.family = 6;
    std::memcpy(a.bytes.data(), &s->sin6_addr, 16);
    a.port = ntohs(s->sin6_port);
    return a.unmapped();
  }
  return std::nullopt;
}

std::optional<NetAddr> resolve_host_port(const std::string& s, std::string& error) {
  if (auto a = NetAddr::parse_host_port(s)) return a;
  auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    error = "expected HOST:PORT, got '" + s + "'";
    return std::nullopt;
  }
  std::string host = s.substr(0, colon), port = s.substr(colon + 1);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0 || !res) {
    error = "cannot resolve '" + s + "': " + gai_strerror(rc);
    return std::nullopt;
  }
  auto a = from_sockaddr(res->ai_addr);
  freeaddrinfo(res);
  if (!a) error = "cannot resolve '" + s + "'";
  return a;
}

}  // namespace ftpw
