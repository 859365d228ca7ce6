// The PROXY protocol header (HAProxy's doc/proxy-protocol.txt), versions 1
// (text) and 2 (binary), as a load balancer puts it in front of each
// connection it passes on: who the client really is. Parsing is I/O-free and
// strict: a header that is not exactly one of the two forms is bad, and
// nothing beyond kProxyHeaderMax bytes is ever needed to decide.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "netaddr.h"

namespace ftpw {

// A v1 line is at most 107 bytes; a v2 header 16 bytes plus its addresses
// and TLVs, taken here up to 512 bytes after the fixed part.
constexpr std::size_t kProxyV2MaxBody = 512;
constexpr std::size_t kProxyHeaderMax = 16 + kProxyV2MaxBody;

enum ProxyVersions : unsigned { proxy_v1 = 1, proxy_v2 = 2, proxy_any = 3 };

struct ProxyHeader {
  enum class Status { incomplete, done, bad };
  Status status = Status::incomplete;
  unsigned version = 0;        // 1 or 2 once done
  std::size_t length = 0;      // bytes the header takes (done)
  // The client's address and the address it connected to. Unset for v2
  // LOCAL and v1 UNKNOWN (and v2 families other than TCP over IPv4/IPv6):
  // the connection's own addresses stand.
  std::optional<NetAddr> source, destination;
  std::string_view error;      // why bad
};

// `accept`: which versions may come (ProxyVersions bits).
ProxyHeader parse_proxy_header(std::string_view buf, unsigned accept);

// The header saying `src` connected to `dst` (both the same family).
std::string proxy_header_v1(const NetAddr& src, const NetAddr& dst);
std::string proxy_header_v2(const NetAddr& src, const NetAddr& dst);
// A connection's first bytes until its PROXY header is whole (or cannot be):
// feed each read; once done, `rest` holds what came behind the header in the
// same reads (the client's first bytes). Never more than one read past
// kProxyHeaderMax is held.
class ProxyHeaderReader {
 public:
  explicit ProxyHeaderReader(unsigned accept) : accept_(accept) {}
  // incomplete: wait for more; done: header(), take_rest(); bad: error()
  // (too long without a complete header included).
  ProxyHeader::Status feed(std::string_view bytes);
  const ProxyHeader& header() const { return header_; }
  std::string take_rest() { return std::move(rest_); }
  std::string_view error() const { return header_.error; }

 private:
  unsigned accept_;
  std::string buf_, rest_;
  ProxyHeader header_;
};

// The one of `version` (1 or 2).
inline std::string proxy_header(unsigned version, const NetAddr& src, const NetAddr& dst) {
  return version == 1 ? proxy_header_v1(src, dst) : proxy_header_v2(src, dst);
}

}  // namespace ftpw
