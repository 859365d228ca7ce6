// Reply assembly (split into lines on LF) and the 227/228/229 address parsers.
#include <cstdint>
#include <string_view>

#include "reply.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view s(reinterpret_cast<const char*>(data), size);
  (void)ftpw::parse_227(s);
  (void)ftpw::parse_228(s);
  (void)ftpw::parse_229(s);
  ftpw::ReplyLimits lim;
  lim.max_lines = 16;
  lim.max_bytes = 512;
  ftpw::ReplyAssembler a(lim);
  while (!s.empty()) {
    auto nl = s.find('\n');
    ftpw::Reply r;
    if (a.feed(s.substr(0, nl), r)) {
      (void)ftpw::reply_text(r.raw);
      (void)ftpw::parse_227(r.first_text);
    }
    if (nl == std::string_view::npos) break;
    s.remove_prefix(nl + 1);
  }
  return 0;
}
