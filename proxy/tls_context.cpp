#include "tls_context.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <fstream>
#include <new>
#include <sstream>

namespace ftpw {
namespace {

std::string last_ssl_error() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

int password_cb(char* buf, int size, int, void* userdata) {
  const auto* pw = static_cast<const std::string*>(userdata);
  const int n = static_cast<int>(std::min<std::size_t>(pw->size(), static_cast<std::size_t>(size)));
  std::copy_n(pw->data(), n, buf);
  return n;
}

// Every ticket a client-facing control connection issues carries its FTP
// session's id (checked when a data connection resumes it).
int stamp_ticket(SSL* s, void*) {
  if (TlsEngine* e = TlsEngine::of(s)) e->stamp(SSL_get_session(s));
  return 1;
}

// A ticket a client presents. The usual answers (OpenSSL's own when no
// callback is set), but a control connection resuming a session another FTP
// session was given gets a renewed ticket: stamp_ticket marks it as this
// session's, and that is the one its data connections must resume.
SSL_TICKET_RETURN check_ticket(SSL* s, SSL_SESSION* ss, const unsigned char*, size_t, SSL_TICKET_STATUS status,
                               void*) {
  switch (status) {
    case SSL_TICKET_EMPTY:
    case SSL_TICKET_NO_DECRYPT:
      return SSL_TICKET_RETURN_IGNORE_RENEW;
    case SSL_TICKET_SUCCESS:
    case SSL_TICKET_SUCCESS_RENEW: {
      const TlsEngine* e = TlsEngine::of(s);
      const bool foreign = e && !e->tag().empty() && !TlsEngine::stamped(ss, e->tag());
      return status == SSL_TICKET_SUCCESS_RENEW || foreign ? SSL_TICKET_RETURN_USE_RENEW : SSL_TICKET_RETURN_USE;
    }
    default:
      return SSL_TICKET_RETURN_ABORT;
  }
}

// Toward the server: keep the newest session its control connection got.
int keep_new_session(SSL* s, SSL_SESSION* sess) {
  TlsEngine* e = TlsEngine::of(s);
  if (!e) return 0;
  e->keep_session(sess);
  return 1;  // the engine holds the reference now
}

// "file:line:column: " of a key set in a file, else "section.key: ".
std::string at(const Config& cfg, const std::string& key) {
  auto it = cfg.origin.find(key);
  return (it != cfg.origin.end() ? it->second + ": " + key : key) + ": ";
}

bool common_setup(SSL_CTX* ctx, const Config& cfg, const char* which, std::vector<ConfigError>& errors) {
  const int min = cfg.tls_min_version == "1.3" ? TLS1_3_VERSION : TLS1_2_VERSION;
  SSL_CTX_set_min_proto_version(ctx, min);
  // SECURITY: no renegotiation (a client could otherwise make the proxy redo
  // handshakes at will, and TLS 1.2's renegotiation has a history of attacks).
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  if (!cfg.tls_ciphers.empty() && SSL_CTX_set_cipher_list(ctx, cfg.tls_ciphers.c_str()) != 1) {
    errors.push_back({at(cfg, "tls.ciphers") + which + ": " + last_ssl_error()});
    return false;
  }
  if (!cfg.tls_ciphersuites.empty() && SSL_CTX_set_ciphersuites(ctx, cfg.tls_ciphersuites.c_str()) != 1) {
    errors.push_back({at(cfg, "tls.ciphersuites") + which + ": " + last_ssl_error()});
    return false;
  }
  return true;
}

bool read_password(const std::string& path, std::string& out, std::vector<ConfigError>& errors) {
  std::ifstream f(path);
  if (!f) {
    errors.push_back({"tls.key_password_file: cannot read " + path});
    return false;
  }
  std::getline(f, out);
  while (!out.empty() && (out.back() == '\r' || out.back() == '\n')) out.pop_back();
  return true;
}

}  // namespace

std::string tls_report() {
  std::ifstream ulp("/proc/sys/net/ipv4/tcp_available_ulp");
  std::string ulps;
  std::getline(ulp, ulps);
  const bool ktls = (" " + ulps + " ").find(" tls ") != std::string::npos;
  return std::string("TLS: ") + OpenSSL_version(OPENSSL_VERSION) + "; records are encrypted in user space" +
         (ktls ? " (the kernel offers TLS offload; not used through memory BIOs)"
               : " (this kernel offers no TLS offload: no 'tls' in net.ipv4.tcp_available_ulp)");
}

TlsContexts::~TlsContexts() {
  if (down_) SSL_CTX_free(down_);
  if (up_) SSL_CTX_free(up_);
}

std::shared_ptr<const TlsContexts> TlsContexts::load(const Config& cfg, std::vector<ConfigError>& errors) {
  std::shared_ptr<TlsContexts> t(new TlsContexts());
  const std::size_t before = errors.size();
  if (cfg.tls_client_value != TlsClient::off || cfg.implicit_tls) {
    t->down_ = SSL_CTX_new(TLS_server_method());
    SSL_CTX* ctx = t->down_;
    if (!common_setup(ctx, cfg, "client side", errors)) return nullptr;
    std::string password;
    if (!cfg.tls_key_password_file.empty()) {
      if (!read_password(cfg.tls_key_password_file, password, errors)) return nullptr;
      SSL_CTX_set_default_passwd_cb(ctx, password_cb);
      SSL_CTX_set_default_passwd_cb_userdata(ctx, &password);
    } else {
      // An encrypted key without its password file is an error, never a prompt.
      static std::string none;
      SSL_CTX_set_default_passwd_cb(ctx, password_cb);
      SSL_CTX_set_default_passwd_cb_userdata(ctx, &none);
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg.tls_cert.c_str()) != 1)
      errors.push_back({at(cfg, "tls.cert") + cfg.tls_cert + ": " + last_ssl_error()});
    else if (SSL_CTX_use_PrivateKey_file(ctx, cfg.tls_key.c_str(), SSL_FILETYPE_PEM) != 1)
      errors.push_back({at(cfg, "tls.key") + cfg.tls_key + ": " + last_ssl_error()});
    else if (SSL_CTX_check_private_key(ctx) != 1)
      errors.push_back({at(cfg, "tls.key") + cfg.tls_key + " does not match " + cfg.tls_cert});
    SSL_CTX_set_default_passwd_cb(ctx, nullptr);
    SSL_CTX_set_default_passwd_cb_userdata(ctx, nullptr);
    if (!cfg.tls_ca.empty()) {
      if (SSL_CTX_load_verify_locations(ctx, cfg.tls_ca.c_str(), nullptr) != 1) {
        errors.push_back({at(cfg, "tls.ca") + cfg.tls_ca + ": " + last_ssl_error()});
      } else {
        // Asked for, checked when given (a client without one still gets in:
        // the audit log says who presented what).
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
        if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(cfg.tls_ca.c_str()))
          SSL_CTX_set_client_CA_list(ctx, names);
      }
    }
    static const unsigned char kSidContext[] = "ftpwarden";
    SSL_CTX_set_session_id_context(ctx, kSidContext, sizeof kSidContext - 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_timeout(ctx, 24 * 3600);  // a session lasts as long as its control connection
    SSL_CTX_set_session_ticket_cb(ctx, stamp_ticket, check_ticket, nullptr);
  }
  if (cfg.tls_upstream_value) {
    t->up_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX* ctx = t->up_;
    if (!common_setup(ctx, cfg, "server side", errors)) return nullptr;
    t->verify_ = cfg.tls_verify_upstream;
    if (t->verify_) {
      const bool ok = cfg.tls_upstream_ca.empty() ? SSL_CTX_set_default_verify_paths(ctx) == 1
                                                  : SSL_CTX_load_verify_locations(ctx, cfg.tls_upstream_ca.c_str(),
                                                                                  nullptr) == 1;
      if (!ok) errors.push_back({at(cfg, "tls.upstream_ca") + cfg.tls_upstream_ca + ": " + last_ssl_error()});
      SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    }
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, keep_new_session);
    t->sni_ = cfg.tls_upstream_sni;
    t->verify_name_ = cfg.tls_upstream_sni.empty() ? cfg.upstream_host : cfg.tls_upstream_sni;
  }
  if (errors.size() != before) return nullptr;
  return t;
}

namespace {
SSL* new_ssl(SSL_CTX* ctx) {
  SSL* ssl = SSL_new(ctx);
  if (!ssl) throw std::bad_alloc();
  return ssl;
}
}  // namespace

std::unique_ptr<TlsEngine> TlsContexts::client_control(const std::string& tag) const {
  auto e = std::make_unique<TlsEngine>(new_ssl(down_), TlsEngine::Role::server);
  e->set_tag(tag);
  return e;
}

std::unique_ptr<TlsEngine> TlsContexts::client_data() const {
  SSL* ssl = new_ssl(down_);
  // No tickets on data connections: a client that closes without reading
  // them makes its kernel answer with a reset, and the upload's tail is lost.
  SSL_set_num_tickets(ssl, 0);
  return std::make_unique<TlsEngine>(ssl, TlsEngine::Role::server);
}

std::unique_ptr<TlsEngine> TlsContexts::server_leg(SSL_SESSION* resume, const NetAddr& server) const {
  SSL* ssl = new_ssl(up_);
  const std::string name = verify_name_.empty() ? server.host_string() : verify_name_;
  const bool is_ip = NetAddr::parse_host(name).has_value();
  if (!sni_.empty() || (!is_ip && !name.empty())) SSL_set_tlsext_host_name(ssl, (sni_.empty() ? name : sni_).c_str());
  if (verify_ && !name.empty()) {
    X509_VERIFY_PARAM* p = SSL_get0_param(ssl);
    if (is_ip) X509_VERIFY_PARAM_set1_ip_asc(p, name.c_str());
    else X509_VERIFY_PARAM_set1_host(p, name.c_str(), 0);
  }
  auto e = std::make_unique<TlsEngine>(ssl, TlsEngine::Role::client);
  e->offer_session(resume);
  return e;
}

}  // namespace ftpw
