// The rule loader (toml++ underneath): errors are values, never crashes.
#include <cstdint>
#include <string_view>

#include "rule_set.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<ftpw::RuleSet::Error> e;
  (void)ftpw::RuleSet::load_string(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz", e);
  return 0;
}
