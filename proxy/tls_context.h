// The TLS contexts of one configuration ([tls]): the one the proxy serves
// clients with (its certificate, optional client-certificate CA) and the one
// it connects to the server with (CA, verification, SNI). Built when the
// configuration loads, shared by the snapshot's sessions, replaced whole on
// reload: a certificate or key that fails to load keeps the old contexts.
#pragma once
#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <vector>

#include "config.h"
#include "tls_engine.h"

namespace ftpw {

// One line for the log at start: the OpenSSL in use, and whether the kernel
// offers TLS offload (the `tls` upper-layer protocol) on this machine.
std::string tls_report();

class TlsContexts {
 public:
  // nullptr with `errors` filled when a file cannot be used; an empty
  // TlsContexts (no roles) when [tls] asks for nothing.
  static std::shared_ptr<const TlsContexts> load(const Config& cfg, std::vector<ConfigError>& errors);
  ~TlsContexts();
  TlsContexts(const TlsContexts&) = delete;
  TlsContexts& operator=(const TlsContexts&) = delete;

  bool serves_clients() const { return down_ != nullptr; }
  bool to_server() const { return up_ != nullptr; }
  // A server-side engine toward a client: its control connection (tickets
  // stamped with `tag`), or a data connection (no tickets: see README).
  std::unique_ptr<TlsEngine> client_control(const std::string& tag) const;
  std::unique_ptr<TlsEngine> client_data() const;
  // A client-side engine toward the server; `resume`: the control
  // connection's newest session, for its data connections; `server`: its
  // address, the name checked when neither upstream_sni nor upstream.address
  // names one (transparent mode).
  std::unique_ptr<TlsEngine> server_leg(SSL_SESSION* resume, const NetAddr& server) const;

 private:
  TlsContexts() = default;
  SSL_CTX* down_ = nullptr;  // the proxy as TLS server (toward clients)
  SSL_CTX* up_ = nullptr;    // the proxy as TLS client (toward the server)
  std::string sni_;          // sent to the server; also the name its certificate must carry
  std::string verify_name_;  // the host or IP the server's certificate is checked against
  bool verify_ = true;
};

}  // namespace ftpw
