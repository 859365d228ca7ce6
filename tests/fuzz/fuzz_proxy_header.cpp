// The PROXY protocol header parser: any bytes, any split, both versions;
// what it accepts round-trips through the encoders.
#include <cstdint>
#include <string_view>

#include "proxy_header.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ftpw;
  const std::string_view s(reinterpret_cast<const char*>(data), size);
  for (unsigned accept : {proxy_v1, proxy_v2, proxy_any}) {
    for (std::size_t n = 0; n <= s.size() && n <= kProxyHeaderMax + 1; ++n) {
      const auto h = parse_proxy_header(s.substr(0, n), accept);
      if (h.status == ProxyHeader::Status::done) {
        if (h.length == 0 || h.length > n || h.length > kProxyHeaderMax) __builtin_trap();
        if (h.source && h.destination && h.source->family == h.destination->family) {
          const auto again = parse_proxy_header(h.version == 1 ? proxy_header_v1(*h.source, *h.destination)
                                                               : proxy_header_v2(*h.source, *h.destination),
                                                accept);
          const auto same = [](const NetAddr& a, const NetAddr& b) { return a.same_host(b) && a.port == b.port; };
          if (again.status != ProxyHeader::Status::done || !same(*again.source, *h.source) ||
              !same(*again.destination, *h.destination))
            __builtin_trap();
        }
        break;
      }
      if (h.status == ProxyHeader::Status::bad) break;
    }
  }
  return 0;
}
