// A network address as FTP carries it (PORT/EPRT/227/229/228): family, bytes, port.
// Pure value type; formatting and parsing without sockets.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ftpw {

struct NetAddr {
  std::uint8_t family = 0;  // 4 or 6; 0 = unset
  std::array<std::uint8_t, 16> bytes{};
  std::uint16_t port = 0;

  bool is_v4() const { return family == 4; }
  bool is_v6() const { return family == 6; }
  // An IPv4-mapped IPv6 address (::ffff:a.b.c.d) compares equal to its IPv4 form.
  bool same_host(const NetAddr& o) const;
  std::string host_string() const;  // "192.0.2.1" or "2001:db8::1"
  std::string to_string() const;    // "192.0.2.1:21" or "[2001:db8::1]:21"
  NetAddr unmapped() const;         // ::ffff:a.b.c.d -> a.b.c.d

  static NetAddr v4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d, std::uint16_t port);
  // "a.b.c.d" or an IPv6 literal (no brackets). No DNS.
  static std::optional<NetAddr> parse_host(std::string_view host, std::uint16_t port = 0);
  // "a.b.c.d:port", "[v6]:port"
  static std::optional<NetAddr> parse_host_port(std::string_view s);
};

bool operator==(const NetAddr& a, const NetAddr& b);

}  // namespace ftpw
