#include "path_index.h"

#include "rule_set.h"

namespace ftpw {

void PathIndex::build(const std::vector<Rule>& rules) {
  starts_.clear();
  const std::size_t words = (rules.size() + 63) / 64;
  indexed_.assign(words, 0);
  for (std::size_t i = 0; i < rules.size(); ++i) {
    const PolicyMatch& m = rules[i].match;
    if (!rules[i].policy || m.paths.empty()) continue;
    bool all_literal = true;  // every glob has a literal start: the rule can be indexed
    for (const auto& p : m.path_prefixes) all_literal = all_literal && !p.empty();
    if (!all_literal) continue;
    const std::uint64_t bit = std::uint64_t{1} << (i % 64);
    indexed_[i / 64] |= bit;
    for (const auto& p : m.path_prefixes) {
      // Every shorter run of the start is a key too (with the rules that
      // start there, if any), so a lookup that misses ends the walk.
      for (std::size_t end = 1; end <= p.size(); ++end)
        if (end == p.size() || p[end] == '/') starts_[p.substr(0, end)].resize(words, 0);
      starts_[p][i / 64] |= bit;
    }
  }
}

void PathIndex::candidates(std::optional<std::string_view> path, Mask& out) const {
  out.assign(indexed_.size(), 0);
  if (!path) return;
  const std::string_view p = *path;  // absolute and normalised: "/a/b", or "/"
  // Each leading run of whole segments: "/a", then "/a/b".
  for (std::size_t end = 1; end <= p.size(); ++end) {
    if (end != p.size() && p[end] != '/') continue;
    const auto it = starts_.find(p.substr(0, end));
    if (it == starts_.end()) return;  // no glob starts with this run, nor with a longer one
    for (std::size_t w = 0; w < out.size(); ++w) out[w] |= it->second[w];
  }
}

}  // namespace ftpw
