// The linter's input readers (transcripts, JSON Lines) over the core.
#include <cstdint>
#include <memory>
#include <string_view>

#include "linter.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static std::shared_ptr<const ftpw::RuleSet> rules = [] {
    std::vector<ftpw::RuleSet::Error> e;
    return std::make_shared<const ftpw::RuleSet>(
        *ftpw::RuleSet::load_string("[[rule]]\nid='p'\nverbs=['PASS']\nunless=['user-accepted']\n", "fuzz", e));
  }();
  std::string_view s(reinterpret_cast<const char*>(data), size);
  (void)ftpw::lint(s, rules);
  std::vector<ftpw::JsonField> f;
  (void)ftpw::parse_flat_json(s, f);
  return 0;
}
