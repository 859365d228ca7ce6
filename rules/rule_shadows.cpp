// RuleSet::shadow_warnings: the policy rules that can never decide, for
// check-config. A reading of the loaded set, apart from loading it.
#include <re2/re2.h>

#include "rule_set.h"

namespace ftpw {

namespace {

template <class T>
bool none_or_same(const std::vector<T>& a, const std::vector<T>& b) {
  return a.empty() || a == b;
}

}  // namespace

std::vector<std::string> RuleSet::shadow_warnings() const {
  std::vector<std::string> out;
  auto decides = [](const Rule& r) { return r.audit != RuleAction::ignore && r.enforce != RuleAction::ignore; };
  for (std::size_t b = 0; b < rules_.size(); ++b) {
    const Rule& later = rules_[b];
    if (!later.policy) continue;
    for (std::size_t a = 0; a < b; ++a) {
      const Rule& first = rules_[a];
      if (!first.policy || !decides(first)) continue;
      // Every verb of the later rule is one of the first's, with no argument condition the later lacks.
      bool verbs = true;
      for (std::size_t v = 0; v < kVerbCount && verbs; ++v) {
        const bool in_later = (matches_[b].all || matches_[b].in[v]) && !matches_[b].except[v];
        const bool in_first = (matches_[a].all || matches_[a].in[v]) && !matches_[a].except[v];
        if (in_later && (!in_first || (first.verb_cond[v] != ArgCondition::any &&
                                       first.verb_cond[v] != later.verb_cond[v])))
          verbs = false;
      }
      const auto same_arg = !first.match.arg || (later.match.arg && first.match.arg->pattern() ==
                                                                       later.match.arg->pattern());
      auto cidrs = [](const std::vector<Cidr>& v) {
        std::vector<std::string> s;
        for (const auto& c : v) s.push_back(c.net.host_string() + "/" + std::to_string(c.prefix));
        return s;
      };
      if (verbs && (first.when & later.when) == first.when && (first.unless & later.unless) == first.unless &&
          none_or_same(first.match.users, later.match.users) &&
          none_or_same(cidrs(first.match.clients), cidrs(later.match.clients)) && same_arg &&
          none_or_same(first.match.paths, later.match.paths) &&
          none_or_same(first.match.not_paths, later.match.not_paths)) {
        out.push_back(later.origin + ": warning: rule '" + later.id + "' can never decide: rule '" + first.id +
                      "' (" + first.origin + ") matches whenever it does and comes first");
        break;
      }
    }
  }
  return out;
}

}  // namespace ftpw
