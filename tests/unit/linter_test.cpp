#include "linter.h"

#include <gtest/gtest.h>

#include "core_harness.h"

using namespace ftpw;

TEST(Linter, TranscriptFindingsWithLines) {
  auto rules = test::load_rules("rules/default.toml");
  auto res = lint(
      "# a session\n"
      "S: 220 hi\n"
      "C: PASS x\n"
      "S: 503 no\n"
      "\n"
      "C: USER u\n"
      "S: 331 pw\n"
      "C: PASS p\n"
      "S: 230 ok\n"
      "C: RNTO b\n"
      "S: 503 no\n",
      rules);
  ASSERT_TRUE(res.usable);
  ASSERT_EQ(res.findings.size(), 2u);
  EXPECT_EQ(res.findings[0].line, 3u);
  EXPECT_EQ(res.findings[0].rule, "pass-needs-user");
  EXPECT_EQ(res.findings[1].line, 10u);
  EXPECT_EQ(res.findings[1].rule, "rnto-needs-rnfr");
  EXPECT_TRUE(res.has_errors());
}

TEST(Linter, MultiLineReplyAndServerFinding) {
  auto res = lint("S: 220 hi\nC: FEAT\nS: 211-Features:\nS:  EPSV\nS: 211 End\nC: NOOP\nS: 227 what\n",
                  test::load_rules("rules/default.toml"));
  ASSERT_EQ(res.findings.size(), 1u);
  EXPECT_EQ(res.findings[0].rule, "reply-unexpected");
  EXPECT_EQ(res.findings[0].line, 7u);
  EXPECT_FALSE(res.has_errors());
}

TEST(Linter, CleanSessionHasNoFindings) {
  auto res = lint(
      "S: 220 hi\nC: USER u\nS: 331 pw\nC: PASS p\nS: 230 ok\nC: EPSV\nS: 229 (|||4000|)\nC: RETR f\n"
      "S: 150 ok\nS: 226 ok\nC: QUIT\nS: 221 bye\n",
      test::load_rules("rules/default.toml"));
  EXPECT_TRUE(res.findings.empty()) << res.findings[0].rule;
}

TEST(Linter, PipelinedCommandsMapToTheirLines) {
  auto res = lint("S: 220 hi\nC: USER u\nC: PASS p\nS: 530 no\nS: 503 no\n", test::load_rules("rules/default.toml"));
  ASSERT_EQ(res.findings.size(), 1u);
  EXPECT_EQ(res.findings[0].line, 3u);
}

TEST(Linter, Unusable) {
  auto rules = test::load_rules("rules/default.toml");
  EXPECT_FALSE(lint("hello\nworld\n", rules).usable);
  EXPECT_FALSE(lint(std::string("C: \0x", 5), rules).usable);
  EXPECT_FALSE(lint("", rules).usable);
}

TEST(Linter, AuditLogJsonLines) {
  auto res = lint(
      R"({"ts":"t","session":"s1","event":"session_open"}
{"ts":"t","session":"s1","event":"reply","code":220,"text":"220 hi"}
{"ts":"t","session":"s2","event":"reply","code":220,"text":"220 hi"}
{"ts":"t","session":"s1","event":"command","verb":"PASS","arg":"****"}
{"ts":"t","session":"s2","event":"command","verb":"USER","arg":"u"}
{"ts":"t","session":"s1","event":"reply","code":503,"text":"503 no"}
{"ts":"t","session":"s2","event":"reply","code":211,"text":"211-a\n b\n211 end"}
)",
      test::load_rules("rules/default.toml"));
  ASSERT_TRUE(res.usable);
  ASSERT_EQ(res.findings.size(), 2u);
  EXPECT_EQ(res.findings[0].rule, "pass-needs-user");
  EXPECT_EQ(res.findings[0].line, 4u);
  EXPECT_EQ(res.findings[1].rule, "reply-unexpected");
  EXPECT_EQ(res.findings[1].line, 7u);
}

TEST(Linter, JsonReader) {
  std::vector<JsonField> f;
  ASSERT_TRUE(parse_flat_json(R"({"a":"x\"y\u0041","n":12,"b":true})", f));
  ASSERT_EQ(f.size(), 3u);
  EXPECT_EQ(f[0].str, "x\"yA");
  EXPECT_EQ(f[1].str, "12");
  EXPECT_FALSE(parse_flat_json("{\"a\":", f));
  EXPECT_FALSE(parse_flat_json("[1]", f));
}

TEST(Linter, SeveralSessionsInOneTranscript) {
  auto rules = test::load_rules("rules/default.toml");
  const char* two = "# session 1\n"
                    "S: 220 hi\n"
                    "C: USER u\n"
                    "S: 331 pw\n"
                    "C: PASS p\n"
                    "S: 230 ok\n"
                    "C: QUIT\n"
                    "S: 221 bye\n"
                    "# session 2\n"
                    "S: 220 hi\n"
                    "C: USER u\n"
                    "S: 331 pw\n"
                    "C: PASS p\n"
                    "S: 230 ok\n"
                    "C: RNTO b\n"
                    "S: 503 no\n";
  auto res = lint(two, rules);
  ASSERT_TRUE(res.usable);
  // Each session starts fresh: the second greeting is no unsolicited reply,
  // and the second login is judged on its own.
  ASSERT_EQ(res.findings.size(), 1u) << res.findings.front().rule;
  EXPECT_EQ(res.findings[0].rule, "rnto-needs-rnfr");
  EXPECT_EQ(res.findings[0].line, 15u);
}
