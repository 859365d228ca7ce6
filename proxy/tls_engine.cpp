#include "tls_engine.h"

#include <openssl/err.h>
#include <openssl/x509.h>

#include <algorithm>

namespace ftpw {
namespace {

// What a handshake may bring before it completes: a ClientHello and a client
// certificate chain fit many times over; a peer that keeps sending without
// finishing is cut off.
constexpr std::size_t kMaxHandshakeBytes = 256 * 1024;

thread_local char t_plain[32 * 1024];

}  // namespace

TlsEngine::TlsEngine(SSL* ssl, Role role) : ssl_(ssl) {
  in_ = BIO_new(BIO_s_mem());
  out_ = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(in_, -1);  // empty: "retry", not EOF
  SSL_set_bio(ssl_, in_, out_);
  SSL_set_app_data(ssl_, this);
  if (role == Role::server) SSL_set_accept_state(ssl_);
  else SSL_set_connect_state(ssl_);
}

TlsEngine::~TlsEngine() {
  // A connection that ended without failing keeps its session resumable (an
  // SSL freed without a shutdown would take it out of every cache: the next
  // data connection could then not resume it).
  if (done_ && !failed_) SSL_set_shutdown(ssl_, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  SSL_set_app_data(ssl_, nullptr);
  SSL_free(ssl_);
  if (latest_) SSL_SESSION_free(latest_);
}

TlsEngine* TlsEngine::of(const SSL* ssl) { return static_cast<TlsEngine*>(SSL_get_app_data(ssl)); }

void TlsEngine::set_tag(std::string tag) { tag_ = std::move(tag); }

void TlsEngine::stamp(SSL_SESSION* s) const {
  if (s && !tag_.empty()) SSL_SESSION_set1_ticket_appdata(s, tag_.data(), tag_.size());
}

bool TlsEngine::stamped(SSL_SESSION* s, std::string_view tag) {
  void* data = nullptr;
  std::size_t len = 0;
  if (!s || SSL_SESSION_get0_ticket_appdata(s, &data, &len) != 1 || !data) return false;
  return std::string_view(static_cast<const char*>(data), len) == tag;
}

bool TlsEngine::resumed_tag(std::string_view tag) const { return resumed() && stamped(SSL_get_session(ssl_), tag); }

void TlsEngine::keep_session(SSL_SESSION* s) {
  if (latest_) SSL_SESSION_free(latest_);
  latest_ = s;
}

void TlsEngine::offer_session(SSL_SESSION* s) {
  if (!s) return;
  // A copy of its own: what this connection's handshake does to its session
  // (a renewed ticket, a failure) never touches the one the control
  // connection and the other data connections resume.
  if (SSL_SESSION* copy = SSL_SESSION_dup(s)) {
    SSL_set_session(ssl_, copy);
    SSL_SESSION_free(copy);
  }
}

bool TlsEngine::fail(const char* what, int rc) {
  failed_ = true;
  const int e = SSL_get_error(ssl_, rc);
  unsigned long code = ERR_peek_last_error();
  char buf[256];
  if (code != 0) {
    ERR_error_string_n(code, buf, sizeof buf);
    error_ = std::string(what) + ": " + buf;
  } else {
    error_ = std::string(what) + ": " + (e == SSL_ERROR_SYSCALL ? "unexpected end of the connection" : "protocol error");
  }
  if (SSL_get_verify_result(ssl_) != X509_V_OK && SSL_get_verify_result(ssl_) != X509_V_ERR_UNSPECIFIED)
    error_ += std::string(" (") + X509_verify_cert_error_string(SSL_get_verify_result(ssl_)) + ")";
  ERR_clear_error();
  return false;
}

void TlsEngine::drain_out(std::string& out) {
  // Read out (not reset: a reset zeroes the whole buffer each time).
  const std::size_t n = BIO_ctrl_pending(out_);
  if (n == 0) return;
  const std::size_t at = out.size();
  out.resize(at + n);
  const int got = BIO_read(out_, out.data() + at, static_cast<int>(n));
  out.resize(at + static_cast<std::size_t>(got > 0 ? got : 0));
}

void TlsEngine::release_handshake_buffers() {
  // The memory BIOs keep the capacity of the largest flight they carried (a
  // certificate chain, tickets): once the handshake is over and both are
  // empty, fresh ones take their place, so an idle session holds little.
  if (!done_ || slim_ || BIO_ctrl_pending(in_) != 0 || BIO_ctrl_pending(out_) != 0) return;
  slim_ = true;
  in_ = BIO_new(BIO_s_mem());
  out_ = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(in_, -1);
  SSL_set_bio(ssl_, in_, out_);  // frees the old ones
}

void TlsEngine::begin(std::string& out) {
  std::string none;
  advance(none, out);
}

bool TlsEngine::advance(std::string& plain, std::string& out) {
  if (failed_) return false;
  ERR_clear_error();  // SSL_get_error reads the thread's queue: only this call's errors may be on it
  if (!done_) {
    const int rc = SSL_do_handshake(ssl_);
    drain_out(out);  // the alert too, when it failed
    if (rc != 1) {
      const int e = SSL_get_error(ssl_, rc);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return true;
      return fail("TLS handshake failed", rc);
    }
    done_ = just_done_ = true;
    // A new session carries this FTP session's id (resumption by session ID
    // finds this very object in the cache); a resumed one is left as it is:
    // its renewed ticket is stamped (proxy/tls_context.cpp).
    if (!resumed()) stamp(SSL_get_session(ssl_));
    if (!held_.empty()) {
      std::string h;
      h.swap(held_);
      if (!send(h, out)) return false;
      flushed_ += h.size();
    }
  }
  for (;;) {
    const int n = SSL_read(ssl_, t_plain, sizeof t_plain);
    if (n > 0) {
      plain.append(t_plain, static_cast<std::size_t>(n));
      continue;
    }
    drain_out(out);  // post-handshake messages (tickets, key updates) may need an answer
    const int e = SSL_get_error(ssl_, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      release_handshake_buffers();
      return true;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
      peer_closed_ = true;
      return true;
    }
    return fail("TLS read failed", n);
  }
}

TlsEngine::Status TlsEngine::feed(const char* p, std::size_t n, std::string& plain, std::string& out) {
  if (failed_) return Status::error;
  if (!done_ && (handshake_bytes_ += n) > kMaxHandshakeBytes) {
    failed_ = true;
    error_ = "TLS handshake failed: more than 256 KiB before it completed";
    return Status::error;
  }
  BIO_write(in_, p, static_cast<int>(n));
  if (!advance(plain, out)) return Status::error;
  return peer_closed_ ? Status::closed : Status::ok;
}

bool TlsEngine::send(std::string_view plain, std::string& out) {
  if (failed_) return false;
  if (!done_) {
    held_.append(plain);
    return true;
  }
  ERR_clear_error();
  while (!plain.empty()) {
    const int chunk = static_cast<int>(std::min<std::size_t>(plain.size(), 1 << 20));
    const int n = SSL_write(ssl_, plain.data(), chunk);
    if (n <= 0) {
      drain_out(out);
      return fail("TLS write failed", n);
    }
    plain.remove_prefix(static_cast<std::size_t>(n));
  }
  drain_out(out);
  return true;
}

void TlsEngine::close_notify(std::string& out) {
  if (notified_ || failed_ || !done_) return;
  notified_ = true;
  ERR_clear_error();
  (void)SSL_shutdown(ssl_);
  ERR_clear_error();
  drain_out(out);
}

std::string TlsEngine::version() const { return SSL_get_version(ssl_); }

std::string TlsEngine::cipher() const {
  const char* c = SSL_get_cipher_name(ssl_);
  return c ? c : "";
}

bool TlsEngine::resumed() const { return SSL_session_reused(ssl_) == 1; }

std::string TlsEngine::peer_subject() const {
  X509* cert = SSL_get1_peer_certificate(ssl_);
  if (!cert) return {};
  char buf[512];
  X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof buf);
  X509_free(cert);
  return buf;
}

}  // namespace ftpw
