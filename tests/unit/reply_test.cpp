#include "reply.h"

#include <gtest/gtest.h>

#include <vector>

using namespace ftpw;

namespace {
std::vector<std::pair<int, std::string>> assemble(const std::vector<std::string>& lines, ReplyLimits lim = {}) {
  ReplyAssembler a(lim);
  std::vector<std::pair<int, std::string>> out;
  for (const auto& l : lines) {
    Reply r;
    if (a.feed(l, r)) out.emplace_back(r.problem == ReplyProblem::none ? r.code : -static_cast<int>(r.problem), std::string(r.raw));
  }
  return out;
}
}  // namespace

TEST(Reply, SingleLine) {
  auto v = assemble({"220 ready", "331 pw"});
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].first, 220);
  EXPECT_EQ(v[0].second, "220 ready\r\n");
}

TEST(Reply, CodeOnly) {
  auto v = assemble({"200"});
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].first, 200);
}

TEST(Reply, MultiLineRfc959EndRule) {
  // Lines in between may start with digits, even with another code and a space.
  auto v = assemble({"211-Features:", " EPSV", "123 not the end", "211-still not", "211x neither", "211 End"});
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].first, 211);
  EXPECT_EQ(v[0].second, "211-Features:\r\n EPSV\r\n123 not the end\r\n211-still not\r\n211x neither\r\n211 End\r\n");
  EXPECT_EQ(reply_text(v[0].second), "211-Features:\n EPSV\n123 not the end\n211-still not\n211x neither\n211 End");
}

TEST(Reply, MultiLineEndsWithBareCode) {
  auto v = assemble({"214-help", "214"});
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].first, 214);
}

TEST(Reply, Malformed) {
  auto v = assemble({"hello", "99 x", "600 x", "2000x"});
  ASSERT_EQ(v.size(), 4u);
  for (auto& r : v) EXPECT_EQ(r.first, -static_cast<int>(ReplyProblem::malformed));
}

TEST(Reply, TooManyLines) {
  ReplyLimits lim;
  lim.max_lines = 3;
  auto v = assemble({"211-a", "b", "c", "d", "211 end"}, lim);
  ASSERT_GE(v.size(), 1u);
  EXPECT_EQ(v[0].first, -static_cast<int>(ReplyProblem::too_many_lines));
}

TEST(Reply, TooLong) {
  ReplyLimits lim;
  lim.max_bytes = 20;
  auto v = assemble({"211-a", std::string(30, 'x'), "211 end"}, lim);
  ASSERT_GE(v.size(), 1u);
  EXPECT_EQ(v[0].first, -static_cast<int>(ReplyProblem::too_long));
}

TEST(Reply, Parse227) {
  auto a = parse_227("227 Entering Passive Mode (127,0,0,1,156,64).");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a.value.to_string(), "127.0.0.1:40000");
  EXPECT_TRUE(parse_227("Entering Passive Mode 10,0,0,1,4,0").ok());
  EXPECT_EQ(parse_227("Entering Passive Mode").error, ArgError::missing);
  EXPECT_EQ(parse_227("Entering Passive Mode (1,2,3,4,5)").error, ArgError::syntax);
  EXPECT_EQ(parse_227("Entering Passive Mode (1,2,3,400,5,6)").error, ArgError::out_of_range);
}

TEST(Reply, Parse229) {
  EXPECT_EQ(parse_229("Entering Extended Passive Mode (|||6446|)").value, 6446);
  EXPECT_EQ(parse_229("x (!!!6446!)").value, 6446);
  EXPECT_EQ(parse_229("x (|||0|)").error, ArgError::out_of_range);
  EXPECT_EQ(parse_229("x (|||70000|)").error, ArgError::out_of_range);
  EXPECT_EQ(parse_229("x (||6446|)").error, ArgError::syntax);
  EXPECT_EQ(parse_229("x").error, ArgError::missing);
}

TEST(Reply, Parse228) {
  auto a = parse_228("Entering Long Passive Mode (4,4,127,0,0,1,2,4,1)");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a.value.to_string(), "127.0.0.1:1025");
}

TEST(Reply, FormatRoundTrips) {
  auto addr = *NetAddr::parse_host_port("10.1.2.3:50001");
  EXPECT_EQ(format_227(addr), "227 Entering Passive Mode (10,1,2,3,195,81).\r\n");
  EXPECT_EQ(parse_227(format_227(addr)).value, addr);
  EXPECT_EQ(parse_228(format_228(addr)).value, addr);
  EXPECT_EQ(parse_229(format_229(50001)).value, 50001);
  EXPECT_EQ(format_active_command(Verb::PORT, addr), "PORT 10,1,2,3,195,81\r\n");
  EXPECT_EQ(format_active_command(Verb::EPRT, addr), "EPRT |1|10.1.2.3|50001|\r\n");
  auto v6 = *NetAddr::parse_host_port("[::1]:2000");
  EXPECT_EQ(format_active_command(Verb::EPRT, v6), "EPRT |2|::1|2000|\r\n");
  std::string lprt = format_active_command(Verb::LPRT, v6);
  EXPECT_EQ(parse_lprt_arg(std::string_view(lprt).substr(5, lprt.size() - 7)).value, v6);
}
