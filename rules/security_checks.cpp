#include "security_checks.h"

#include "command.h"

namespace ftpw {
namespace {

bool feat_line_is_tls(std::string_view line) {
  while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
  auto tok = line.substr(0, line.find(' '));
  return iequals(tok, "AUTH") || iequals(tok, "PBSZ") || iequals(tok, "PROT") || iequals(tok, "CCC");
}

}  // namespace

bool active_target_allowed(const NetAddr& target, const NetAddr& client, const std::vector<NetAddr>& allowed_foreign) {
  if (client.family == 0) return true;
  if (target.port < 1024) return false;
  if (target.same_host(client)) return true;
  for (const auto& ok : allowed_foreign)
    if (target.same_host(ok)) return true;
  return false;
}

PassiveTarget passive_target(const Reply& r, const NetAddr& upstream) {
  PassiveTarget t;
  if (r.code == 227) {
    auto a = parse_227(r.first_text);
    t.parsed = a.ok();
    t.addr = a.value;
  } else if (r.code == 228) {
    auto a = parse_228(r.first_text);
    t.parsed = a.ok();
    t.addr = a.value;
  } else if (r.code == 229) {
    auto port = parse_229(r.first_text);
    t.parsed = port.ok() && upstream.family != 0;
    t.addr = upstream;
    t.addr.port = port.value;
  }
  if (!t.parsed) return t;
  if (upstream.family != 0 && !t.addr.same_host(upstream)) {
    // SECURITY: never follow a passive address elsewhere than the server itself.
    t.foreign = true;
    const std::uint16_t port = t.addr.port;
    t.addr = upstream;
    t.addr.port = port;
  }
  t.low_port = t.addr.port < 1024;
  return t;
}

std::string_view strip_tls_features(std::string_view raw, std::string& out) {
  out.clear();
  std::string_view rest = raw;
  while (!rest.empty()) {
    const auto end = rest.find("\r\n");
    const std::string_view l = rest.substr(0, end + 2);
    const bool edge = l.size() >= 4 && reply_code(l) == 211 && (l[3] == '-' || l[3] == ' ');
    if (edge || !feat_line_is_tls(l.substr(0, l.size() - 2))) out.append(l);
    rest.remove_prefix(l.size());
  }
  return out;
}

std::string_view with_tls_features(std::string_view raw, std::string& out) {
  std::string stripped;
  strip_tls_features(raw, stripped);
  // The proxy's own features go just before the closing "211 End" line.
  const auto last = stripped.rfind("\r\n", stripped.size() >= 3 ? stripped.size() - 3 : 0);
  const std::size_t at = last == std::string::npos ? 0 : last + 2;
  out.assign(stripped, 0, at);
  out.append(" AUTH TLS\r\n AUTH SSL\r\n PBSZ\r\n PROT\r\n");
  out.append(stripped, at, std::string::npos);
  return out;
}

}  // namespace ftpw
