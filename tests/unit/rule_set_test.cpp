#include "rule_set.h"

#include <gtest/gtest.h>

using namespace ftpw;

namespace {
std::string first_error(std::string_view toml) {
  std::vector<RuleSet::Error> errors;
  auto rs = RuleSet::load_string(toml, "r.toml", errors);
  EXPECT_FALSE(rs.has_value());
  return errors.empty() ? "" : errors[0].message;
}
}  // namespace

TEST(RuleSet, LoadsAndCompiles) {
  std::vector<RuleSet::Error> errors;
  auto rs = RuleSet::load_string(R"(
[[rule]]
id = "no-dele"
description = "read-only"
verbs = ["DELE", "rmd"]
audit = "log"
enforce = "reject"
reply = 550
reply_text = "Read-only."
)", "r.toml", errors);
  ASSERT_TRUE(rs) << errors[0].message;
  ASSERT_EQ(rs->rules().size(), 1u);
  EXPECT_EQ(rs->for_verb(Verb::DELE).size(), 1u);
  EXPECT_EQ(rs->for_verb(Verb::RMD).size(), 1u);
  EXPECT_EQ(rs->for_verb(Verb::RETR).size(), 0u);
  EXPECT_EQ(rs->rules()[0].reply_line, "550 Read-only.\r\n");
  EXPECT_EQ(rs->rules()[0].origin, "r.toml:2:1");
}

TEST(RuleSet, StarAndExcept) {
  std::vector<RuleSet::Error> errors;
  auto rs = RuleSet::load_string("[[rule]]\nid='x'\nverbs=['*']\nexcept=['USER']\n", "r.toml", errors);
  ASSERT_TRUE(rs);
  EXPECT_EQ(rs->for_verb(Verb::USER).size(), 0u);
  EXPECT_EQ(rs->for_verb(Verb::unknown).size(), 1u);
  EXPECT_EQ(rs->for_verb(Verb::NOOP).size(), 1u);
}

TEST(RuleSet, UnknownKeyWithPosition) {
  EXPECT_EQ(first_error("[[rule]]\nid = 'x'\nverbs = ['USER']\nsevrity = 'error'\n"),
            "r.toml:4:1: unknown key 'sevrity' in rule");
  EXPECT_EQ(first_error("bogus = 1\n"), "r.toml:1:1: unknown key 'bogus'");
}

TEST(RuleSet, BadTypes) {
  EXPECT_EQ(first_error("[[rule]]\nid = 5\nverbs = ['USER']\n"), "r.toml:2:6: 'id' must be a string");
  EXPECT_EQ(first_error("[[rule]]\nid = 'x'\nverbs = 'USER'\n"), "r.toml:3:9: 'verbs' must be an array of verbs");
  EXPECT_EQ(first_error("[[rule]]\nid = 'x'\nverbs = ['USER']\nreply = '503'\n"),
            "r.toml:4:9: 'reply' must be an integer reply code 400-599");
  EXPECT_EQ(first_error("[[rule]]\nid = 'x'\nverbs = ['FOO']\n"), "r.toml:3:10: unknown verb 'FOO'");
  EXPECT_EQ(first_error("[[rule]]\nid = 'x'\nverbs = ['USER']\nwhen = ['sunny']\n"),
            "r.toml:4:9: unknown predicate 'sunny'");
  EXPECT_EQ(first_error("[[rule]]\nid = 'x'\nverbs = ['USER']\naudit = 'shout'\n"),
            "r.toml:4:9: 'audit' must be allow, log, reject or ignore");
}

TEST(RuleSet, DuplicateId) {
  EXPECT_EQ(first_error("[[rule]]\nid = 'x'\nverbs = ['USER']\n[[rule]]\nid = 'x'\nverbs = ['PASS']\n"),
            "r.toml:4:1: duplicate rule id 'x' (first defined at r.toml:1:1)");
}

TEST(RuleSet, DuplicateIdAcrossFiles) {
  std::vector<RuleSet::Error> errors;
  auto rs = RuleSet::load({{"a.toml", "[[rule]]\nid='x'\nverbs=['USER']\n"}, {"b.toml", "[[rule]]\nid='x'\nverbs=['USER']\n"}},
                          errors);
  EXPECT_FALSE(rs);
  ASSERT_FALSE(errors.empty());
  EXPECT_EQ(errors[0].message.substr(0, 9), "b.toml:1:");
}

TEST(RuleSet, TomlSyntaxError) {
  auto e = first_error("[[rule]\nid = 'x'\n");
  EXPECT_EQ(e.substr(0, 9), "r.toml:1:");
}

TEST(RuleSet, MissingIdOrVerbs) {
  EXPECT_NE(first_error("[[rule]]\nverbs = ['USER']\n").find("without 'id'"), std::string::npos);
  EXPECT_NE(first_error("[[rule]]\nid = 'x'\n").find("without 'verbs'"), std::string::npos);
}
