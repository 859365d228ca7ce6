// The built-in safety checks that no rule file can switch off: what a data
// address may name (FTP bounce, RFC 2577), where a passive reply may send the
// proxy, and which features the client must not be offered.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "netaddr.h"
#include "reply.h"

namespace ftpw {

// SECURITY: FTP bounce (CERT CA-1997-27, RFC 2577): PORT/EPRT/LPRT may only
// name the client's own address, on an unprivileged port, unless the operator
// listed the third party. `client` of family 0 (unknown, as in a transcript)
// allows everything.
bool active_target_allowed(const NetAddr& target, const NetAddr& client, const std::vector<NetAddr>& allowed_foreign);

// A passive reply (227, 228, 229) read against the server's control address.
struct PassiveTarget {
  bool parsed = false;   // it names a usable address
  bool foreign = false;  // it named another host: `addr` is the server's instead
  bool low_port = false; // below 1024: not followed
  NetAddr addr;
};
PassiveTarget passive_target(const Reply& r, const NetAddr& upstream);

// FEAT's 211 without the TLS features (AUTH, PBSZ, PROT, CCC) the proxy
// refuses; `out` holds the result.
std::string_view strip_tls_features(std::string_view raw, std::string& out);
// FEAT's 211 offering the TLS the proxy terminates itself (AUTH TLS, AUTH
// SSL, PBSZ, PROT), whatever the server listed; `out` holds the result.
std::string_view with_tls_features(std::string_view raw, std::string& out);

}  // namespace ftpw
