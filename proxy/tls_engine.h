// One TLS connection driven through memory BIOs: ciphertext in from the
// socket, plaintext out to the owner; plaintext in from the owner, ciphertext
// out to the socket. It never touches a socket, so libuv keeps owning the
// descriptor and its reads and writes (proxy/net.h's Stream drives it).
#pragma once
#include <openssl/ssl.h>

#include <cstddef>
#include <string>
#include <string_view>

namespace ftpw {

class TlsEngine {
 public:
  enum class Role { server, client };
  // `ssl` is taken over (its BIOs are set here).
  TlsEngine(SSL* ssl, Role role);
  ~TlsEngine();
  TlsEngine(const TlsEngine&) = delete;
  TlsEngine& operator=(const TlsEngine&) = delete;

  enum class Status { ok, closed, error };
  // Ciphertext from the peer. Plaintext it carried is appended to `plain`;
  // records to send back (handshake, alerts, tickets) to `out`. `closed`: the
  // peer's close_notify came; `error`: the connection is unusable (error()).
  Status feed(const char* p, std::size_t n, std::string& plain, std::string& out);
  // Plaintext to send: appended to `out` encrypted (held until the handshake
  // is done). False: the connection is unusable.
  bool send(std::string_view plain, std::string& out);
  // Starts the handshake (the client's ClientHello) into `out`.
  void begin(std::string& out);
  // Our close_notify into `out` (once).
  void close_notify(std::string& out);

  bool handshake_done() const { return done_; }
  bool peer_closed() const { return peer_closed_; }  // its close_notify came
  // True once, right after the handshake completed (the caller reports it).
  bool take_just_done() {
    const bool j = just_done_;
    just_done_ = false;
    return j;
  }
  const std::string& error() const { return error_; }
  // Plaintext waiting for the handshake (counts as queued for backpressure).
  std::size_t held() const { return held_.size(); }
  // Plaintext held until the handshake that went out since the last call.
  std::size_t take_flushed() {
    const std::size_t n = flushed_;
    flushed_ = 0;
    return n;
  }
  SSL* ssl() const { return ssl_; }
  std::string version() const;
  std::string cipher() const;
  bool resumed() const;
  std::string peer_subject() const;  // "" when the peer presented no certificate

  // Session binding (RFC 4217 §10): a server-side control connection stamps
  // `tag` (the FTP session's id) into every TLS session it hands out, and a
  // data connection checks that what it resumed carries the same stamp.
  void set_tag(std::string tag);
  const std::string& tag() const { return tag_; }
  bool resumed_tag(std::string_view tag) const;
  static bool stamped(SSL_SESSION* s, std::string_view tag);  // `s` carries `tag`
  // Client side: the newest session the server gave (for the data
  // connections to resume), or nullptr; the engine keeps owning it.
  SSL_SESSION* latest_session() const { return latest_; }
  void offer_session(SSL_SESSION* s);  // SSL_set_session on a new client-side engine
  // Called from OpenSSL's callbacks (proxy/tls_context.cpp).
  static TlsEngine* of(const SSL* ssl);
  void stamp(SSL_SESSION* s) const;
  void keep_session(SSL_SESSION* s);  // takes the reference

 private:
  bool advance(std::string& plain, std::string& out);  // handshake, then reads
  void drain_out(std::string& out);
  void release_handshake_buffers();
  bool fail(const char* what, int rc);

  SSL* ssl_;
  BIO* in_ = nullptr;   // ciphertext from the peer (owned by ssl_)
  BIO* out_ = nullptr;  // ciphertext to the peer (owned by ssl_)
  bool done_ = false, just_done_ = false, failed_ = false, notified_ = false, peer_closed_ = false;
  std::string held_;    // plaintext sent before the handshake finished
  std::string tag_;
  SSL_SESSION* latest_ = nullptr;
  std::size_t flushed_ = 0;
  std::size_t handshake_bytes_ = 0;  // ciphertext fed before the handshake completed
  bool slim_ = false;                // the handshake's BIOs were replaced by fresh ones
  std::string error_;
};

}  // namespace ftpw
