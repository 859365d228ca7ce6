// The PROXY protocol header parser: any bytes, any split, both versions;
// what it accepts round-trips through the encoders; the reader that gathers
// a connection's reads decides as the parser does on the whole, and keeps
// exactly what came behind the header.
#include <cstdint>
#include <algorithm>
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
    // The reader, fed in chunks whose sizes come from the first byte.
    ProxyHeaderReader r(accept);
    const std::size_t step = s.empty() ? 1 : 1 + static_cast<unsigned char>(s[0]) % 97;
    auto st = ProxyHeader::Status::incomplete;
    std::size_t fed = 0;
    while (fed < s.size() && st == ProxyHeader::Status::incomplete) {
      const std::size_t n = std::min(step, s.size() - fed);
      st = r.feed(s.substr(fed, n));
      fed += n;
    }
    if (st == ProxyHeader::Status::done &&
        r.take_rest() != s.substr(r.header().length, fed - r.header().length))
      __builtin_trap();
  }
  return 0;
}
