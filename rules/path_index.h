// Which policy rules a command's resolved path can still match, all rules at
// once: every absolute path glob starts with whole literal segments
// ("/srv/ftp" in "/srv/ftp/*/incoming/**"), and a path can only match a glob
// whose literal start is one of the path's own leading segment runs
// ("/srv", "/srv/ftp", ...). The index maps each such start to the rules
// that have it, so a lookup per segment of the path (one, when no glob
// starts with its first segment) rules out every rule it cannot match,
// however many there are. Rules with a glob that starts
// with a wildcard or `~/`, and rules with only `not_paths`, are not indexed
// and always stay candidates (their globs are then tried one by one).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ftpw {

struct Rule;

class PathIndex {
 public:
  using Mask = std::vector<std::uint64_t>;
  void build(const std::vector<Rule>& rules);
  // Rules the index speaks for (a rule outside it is never taken out).
  const Mask& indexed() const { return indexed_; }
  bool empty() const { return starts_.empty(); }
  // Into `out` (mask words; reused): the indexed rules that `path` may
  // match; none when the command names no path.
  void candidates(std::optional<std::string_view> path, Mask& out) const;

 private:
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, Mask, Hash, std::equal_to<>> starts_;
  Mask indexed_;
};

}  // namespace ftpw
