// The metrics endpoint's request head parser: any bytes, any split.
#include <cstdint>
#include <string_view>

#include "http_request.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view s(reinterpret_cast<const char*>(data), size);
  // Every prefix, as the bytes would arrive one at a time.
  for (std::size_t n = 0; n <= s.size() && n <= 512; ++n) {
    const auto h = ftpw::parse_http_request_head(s.substr(0, n));
    if (h.status == ftpw::HttpRequestHead::Status::complete && (h.path.empty() || h.path.front() != '/')) __builtin_trap();
  }
  (void)ftpw::parse_http_request_head(s);
  return 0;
}
