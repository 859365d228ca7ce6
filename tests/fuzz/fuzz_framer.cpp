// Framer: arbitrary bytes in arbitrary chunks; the first byte picks options and
// chunk size. Invariants: every byte is consumed, lines never exceed max_line.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "framer.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  ftpw::FramerOptions o;
  o.max_line = 8 + (data[0] & 0x3f);
  o.telnet = data[0] & 0x40;
  o.lf_terminates = data[0] & 0x80;
  o.lf_in_text = size > 1 && (data[1] & 0x80);
  const std::size_t chunk = 1 + (size > 1 ? data[1] % 17 : 0);
  ftpw::LineFramer f(o);
  std::string_view all(reinterpret_cast<const char*>(data) + 1, size - 1);
  while (!all.empty()) {
    std::string_view in = all.substr(0, chunk);
    all.remove_prefix(in.size());
    ftpw::Line l;
    while (f.next(in, l) == ftpw::FrameStatus::line) {
      if (l.text.size() > o.max_line) std::abort();
      if (o.lf_in_text && l.text.find('\n') != std::string_view::npos) std::abort();  // an LF is never text
    }
    if (!in.empty()) std::abort();
  }
  return 0;
}
