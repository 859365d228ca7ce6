// libuv plumbing: an owning TCP stream with counted read-pause reasons, a
// write path that owns its bytes, watermark events, and an idempotent close;
// a listener; sockaddr <-> NetAddr conversions. Nothing here knows FTP.
#pragma once
#include <uv.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "netaddr.h"
#include "tls_engine.h"

namespace ftpw {

class Stream;

// Sockets (Streams and Listeners) open in the process, all workers: what the
// descriptor reserve is checked against (proxy/fd_budget.h).
inline std::atomic<std::int64_t> g_sockets{0};

// Control traffic and new connections bump it: after such activity the
// worker's loop polls briefly instead of sleeping (see Worker::run). Data
// traffic does not: a trickling transfer would keep a worker polling for ever.
inline thread_local std::uint64_t t_loop_activity = 0;
// A session that ends sets it: nothing more is coming from it, so the worker
// stops polling now rather than hold a core its peers need to finish (the
// client reading the 221, the server exiting).
inline thread_local bool t_loop_settle = false;

// Callbacks of a Stream. Every callback runs from the event loop, never from
// inside a Stream method the owner called.
class StreamHandler {
 public:
  virtual ~StreamHandler() = default;
  virtual void on_data(Stream& s, const char* p, std::size_t n) = 0;
  virtual void on_eof(Stream& s) = 0;
  virtual void on_error(Stream& s, int err) = 0;
  virtual void on_connect(Stream& s, int status) { (void)s; (void)status; }
  virtual void on_drain(Stream& s) { (void)s; }          // write queue fell below the low watermark
  virtual void on_shutdown(Stream& s) { (void)s; }       // our FIN is out, queued bytes flushed
  // TLS (Stream::start_tls): the handshake completed. A failed one is
  // on_error(kTlsError), with the reason in s.tls()->error().
  virtual void on_tls_ready(Stream& s) { (void)s; }
  virtual void on_closed(Stream& s) = 0;                 // last callback; the Stream is freed after it
};

enum PauseReason : std::uint8_t {
  pause_peer_full = 1,     // the other side's write queue is above its high watermark
  pause_core_hold = 2,     // the protocol core waits for a reply before it can judge more
  pause_not_ready = 4,     // the other leg is not connected yet
  pause_draining = 8,      // the session is shutting down
  pause_relayed = 16,      // a socket relay moves this socket's bytes
  pause_own_full = 32,     // this socket's own write queue is above its high watermark
};

// on_error's code for a TLS failure (handshake, bad record, renegotiation).
inline constexpr int kTlsError = UV_EPROTO;

class Stream {
 public:
  // Memory is released after on_closed.
  static Stream* create(uv_loop_t* loop, StreamHandler* h, int tag);

  uv_tcp_t* tcp() { return &tcp_; }
  uv_stream_t* uv() { return reinterpret_cast<uv_stream_t*>(&tcp_); }
  int tag() const { return tag_; }
  void set_handler(StreamHandler* h) { handler_ = h; }

  int connect(const sockaddr* addr);
  void pause(std::uint8_t reason);
  void resume(std::uint8_t reason);
  std::uint8_t paused() const { return pause_mask_; }
  bool write(std::string_view bytes);  // false once closing
  std::size_t queued() const { return tcp_.write_queue_size + (tls_ ? tls_->held() : 0); }
  bool above_high() const { return queued() > high_; }
  void set_watermarks(std::size_t high, std::size_t low) {
    high_ = high;
    low_ = low;
  }
  // FIN after the queued writes; a TLS stream's close_notify first, unless
  // `notify` is false (the end being passed on was not a clean one).
  void shutdown(bool notify = true);
  void close();     // idempotent
  // From now on the bytes on this socket are TLS: reads deliver plaintext,
  // write() takes plaintext (held until the handshake is done). A client-role
  // engine sends its first flight now.
  void start_tls(std::unique_ptr<TlsEngine> tls);
  TlsEngine* tls() const { return tls_.get(); }
  // Ciphertext that arrived before TLS started (behind a PROXY header), as
  // if just read. For a handler already inside one of its callbacks.
  void feed_tls(const char* p, std::size_t n) { tls_read(p, n); }
  // Closes once the peer has closed too (its close_notify and FIN read, so
  // closing leaves nothing unread to turn into a reset), or after a short
  // wait. Nothing more reaches the handler but on_closed.
  void linger_close();
  bool closing() const { return closing_; }
  bool eof() const { return eof_; }
  bool shut() const { return shut_; }
  bool connected() const { return connected_; }
  void mark_connected() { connected_ = true; }
  int start();  // begin reading (subject to pause reasons)

  std::optional<NetAddr> peer() const;
  std::optional<NetAddr> local() const;
  // The destination the client dialled: conntrack's original one after a
  // redirect, else the local address (which under TPROXY is that destination).
  std::optional<NetAddr> original_destination() const;
  std::uint64_t bytes_in = 0, bytes_out = 0;

 private:
  Stream() = default;
  void update_reading();
  bool write_raw(std::string_view bytes);
  void tls_read(const char* p, std::size_t n);
  static void on_alloc(uv_handle_t*, std::size_t, uv_buf_t* buf);
  static void on_read(uv_stream_t*, ssize_t n, const uv_buf_t* buf);
  static void on_write(uv_write_t* req, int status);
  static void on_close(uv_handle_t* h);

  uv_tcp_t tcp_{};
  StreamHandler* handler_ = nullptr;
  int tag_ = 0;
  std::size_t high_ = 256 * 1024, low_ = 64 * 1024;
  std::uint8_t pause_mask_ = 0;
  bool started_ = false, reading_ = false, closing_ = false, eof_ = false, shut_ = false, connected_ = false;
  bool want_drain_ = false, shutdown_pending_ = false;
  std::unique_ptr<TlsEngine> tls_;
  std::string rx_plain_;  // plaintext of the current read
  bool lingering_ = false;
  uv_timer_t* linger_timer_ = nullptr;
};

class Listener;
class ListenerHandler {
 public:
  virtual ~ListenerHandler() = default;
  virtual void on_connection(Listener& l) = 0;
  virtual void on_listener_closed(Listener& l) = 0;
};

class Listener {
 public:
  static Listener* create(uv_loop_t* loop, ListenerHandler* h);
  // Binds and listens; port 0 picks one. Returns 0 or a libuv error.
  // `transparent`: IP_TRANSPARENT, best effort (TPROXY; needs CAP_NET_ADMIN).
  int listen(const NetAddr& addr, int backlog, bool reuseport = false, bool transparent = false);
  // Accepts into a new Stream owned by `h`; nullptr on failure.
  Stream* accept(StreamHandler* h, int tag);
  std::optional<NetAddr> local() const;
  void close();
  bool closing() const { return closing_; }
  uv_tcp_t* tcp() { return &tcp_; }

 private:
  Listener() = default;
  uv_tcp_t tcp_{};
  ListenerHandler* handler_ = nullptr;
  bool closing_ = false;
};

// IP_TRANSPARENT / IPV6_TRANSPARENT on a socket; false without CAP_NET_ADMIN.
bool set_transparent(int fd, int family);

// Conversions
bool to_sockaddr(const NetAddr& a, sockaddr_storage& out);
std::optional<NetAddr> from_sockaddr(const sockaddr* sa);
// Resolves "host:port" (names allowed, for the upstream) synchronously at start-up.
std::optional<NetAddr> resolve_host_port(const std::string& s, std::string& error);

}  // namespace ftpw
