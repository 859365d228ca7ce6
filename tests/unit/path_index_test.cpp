// The path index: it may only take out a rule whose path globs cannot match
// the command's path, never one that would; it stays exact whatever the
// globs' shapes (prefixes of each other, '//', wildcards up front, `~/`).
#include <gtest/gtest.h>

#include "rule_set.h"
#include "server_path.h"

using namespace ftpw;

namespace {

const char* kGlobs[] = {"/srv/ftp/**",   "/srv//ftp/in/*", "/srv/ftpx/**", "/srv/*/team/**", "/*/ftp/**",
                        "/srv",          "~/incoming/**",  "/pub/*.iso",   "/pub/a b/**",    "/p\xc3\xa9/**",
                        "/srv/ftp/in/x", "/**"};
const char* kPaths[] = {"/",           "/srv",          "/srv/ftp",      "/srv/ftp/in",  "/srv/ftp/in/x",
                        "/srv/ftpx/a", "/srv/ftpxy",    "/srv/a/team/b", "/x/ftp/y",     "/pub/d.iso",
                        "/pub/a b/c",  "/p\xe9/f",      "/p\xc3\xa9/f", "/home/u/incoming/f",
                        "/srvx/ftp"};

std::shared_ptr<const RuleSet> one_rule_per_glob(bool with_not_paths) {
  std::string t;
  int i = 0;
  for (const char* g : kGlobs) {
    t += "[[rule]]\nid = \"r" + std::to_string(i++) + "\"\nverbs = [\"DELE\"]\npaths = [\"" + g + "\"]\n";
    if (with_not_paths) t += "not_paths = [\"/srv/ftp/in/**\"]\n";
    t += "enforce = \"reject\"\n";
  }
  // One rule with two globs of different starts.
  t += "[[rule]]\nid = \"two\"\nverbs = [\"DELE\"]\npaths = [\"/pub/**\", \"/srv/ftp/in/**\"]\n";
  std::vector<RuleSet::Error> e;
  auto rs = RuleSet::load_string(t, "paths.toml", e);
  EXPECT_TRUE(rs) << (e.empty() ? "" : e[0].message);
  return rs ? std::make_shared<const RuleSet>(std::move(*rs)) : nullptr;
}

bool bit(const RuleSet::Mask& m, std::size_t i) { return (m[i / 64] >> (i % 64)) & 1; }

}  // namespace

TEST(PathIndex, NeverTakesOutARuleThatMatchesAndKeepsOnlyThoseThatMay) {
  for (bool not_paths : {false, true}) {
    auto rules = one_rule_per_glob(not_paths);
    ASSERT_TRUE(rules);
    const PathIndex& idx = rules->path_index();
    RuleSet::Mask cand;
    for (const char* path : kPaths) {
      idx.candidates(std::string_view(path), cand);
      for (std::size_t i = 0; i < rules->rules().size(); ++i) {
        const Rule& r = rules->rules()[i];
        const bool matches = r.match.path_matches(std::string_view(path), "/home/u");
        if (!bit(idx.indexed(), i)) continue;  // always tried
        if (matches) {
          EXPECT_TRUE(bit(cand, i)) << r.id << " on " << path;
        }
        // Exact on the literal start: a candidate has a glob whose literal
        // start is a leading run of the path's segments.
        bool starts = false;
        for (const auto& p : r.match.path_prefixes)
          starts = starts || (std::string_view(path).substr(0, p.size()) == p &&
                              (std::string_view(path).size() == p.size() || path[p.size()] == '/'));
        EXPECT_EQ(bit(cand, i), starts) << r.id << " on " << path;
      }
    }
    // A command that names no path matches no path rule.
    idx.candidates(std::nullopt, cand);
    for (auto w : cand) EXPECT_EQ(w, 0u);
  }
}

TEST(PathIndex, WhatItIndexes) {
  auto rules = one_rule_per_glob(false);
  ASSERT_TRUE(rules);
  const auto& idx = rules->path_index();
  for (std::size_t i = 0; i < rules->rules().size(); ++i) {
    const std::string& id = rules->rules()[i].id;
    // A wildcard in the first segment, `~/` or "/**": no literal start.
    const bool unindexed = id == "r4" || id == "r6" || id == "r11";
    EXPECT_EQ(bit(idx.indexed(), i), !unindexed) << id;
  }
  EXPECT_EQ(rules->rules()[1].match.path_prefixes[0], "/srv/ftp/in");  // '//' folded as in a path
}

TEST(PathIndex, ADoubleSlashInAGlobStillMatches) {
  auto rules = one_rule_per_glob(false);
  ASSERT_TRUE(rules);
  const Rule& r1 = rules->rules()[1];
  EXPECT_TRUE(r1.match.path_matches(std::string_view("/srv/ftp/in/f"), "/"));
}
