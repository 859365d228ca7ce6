#include "core_harness.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace ftpw::test {

std::shared_ptr<const RuleSet> load_rules(const std::string& file) {
  std::ifstream in(std::string(FTPW_SOURCE_DIR) + "/" + file);
  std::ostringstream ss;
  ss << in.rdbuf();
  std::vector<RuleSet::Error> errors;
  auto rs = RuleSet::load_string(ss.str(), file, errors);
  if (!rs) throw std::runtime_error("cannot load " + file + (errors.empty() ? "" : ": " + errors[0].message));
  return std::make_shared<const RuleSet>(std::move(*rs));
}

}  // namespace ftpw::test
