#include "netaddr.h"

#include <arpa/inet.h>  // inet_pton / inet_ntop: pure conversions, no I/O

#include <cstring>

namespace ftpw {

NetAddr NetAddr::v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d, std::uint16_t port) {
  NetAddr r;
  r.family = 4;
  r.bytes[0] = a;
  r.bytes[1] = b;
  r.bytes[2] = c;
  r.bytes[3] = d;
  r.port = port;
  return r;
}

NetAddr NetAddr::unmapped() const {
  static constexpr std::uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (family == 6 && std::memcmp(bytes.data(), prefix, 12) == 0)
    return v4(bytes[12], bytes[13], bytes[14], bytes[15], port);
  return *this;
}

bool NetAddr::same_host(const NetAddr& o) const {
  NetAddr a = unmapped(), b = o.unmapped();
  if (a.family != b.family) return false;
  return std::memcmp(a.bytes.data(), b.bytes.data(), a.family == 4 ? 4 : 16) == 0;
}

bool operator==(const NetAddr& a, const NetAddr& b) { return a.same_host(b) && a.port == b.port; }

std::string NetAddr::host_string() const {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (family == 4)
    inet_ntop(AF_INET, bytes.data(), buf, sizeof buf);
  else if (family == 6)
    inet_ntop(AF_INET6, bytes.data(), buf, sizeof buf);
  return buf;
}

std::string NetAddr::to_string() const {
  if (family == 6) return "[" + host_string() + "]:" + std::to_string(port);
  return host_string() + ":" + std::to_string(port);
}

std::optional<NetAddr> NetAddr::parse_host(std::string_view host, std::uint16_t port) {
  char buf[64];
  if (host.empty() || host.size() >= sizeof buf) return std::nullopt;
  std::memcpy(buf, host.data(), host.size());
  buf[host.size()] = 0;
  NetAddr r;
  r.port = port;
  if (inet_pton(AF_INET, buf, r.bytes.data()) == 1) {
    r.family = 4;
    return r;
  }
  if (inet_pton(AF_INET6, buf, r.bytes.data()) == 1) {
    r.family = 6;
    return r;
  }
  return std::nullopt;
}

std::optional<NetAddr> NetAddr::parse_host_port(std::string_view s) {
  std::string_view host, port;
  if (!s.empty() && s.front() == '[') {
    auto close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') return std::nullopt;
    host = s.substr(1, close - 1);
    port = s.substr(close + 2);
  } else {
    auto colon = s.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
  }
  if (port.empty() || port.size() > 5) return std::nullopt;
  unsigned p = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return std::nullopt;
    p = p * 10 + static_cast<unsigned>(c - '0');
  }
  if (p > 65535) return std::nullopt;
  return parse_host(host, static_cast<std::uint16_t>(p));
}

}  // namespace ftpw
