#include "framer.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace ftpw;

namespace {
struct Out {
  std::string text;
  std::uint32_t problems;
  std::uint8_t telnet;
  std::uint64_t offset;
  bool operator==(const Out& o) const {
    return text == o.text && problems == o.problems && telnet == o.telnet && offset == o.offset;
  }
};

std::vector<Out> frame_chunks(const std::vector<std::string>& chunks, FramerOptions opt = {}) {
  LineFramer f(opt);
  std::vector<Out> out;
  for (const auto& c : chunks) {
    std::string_view in = c;
    Line l;
    while (f.next(in, l) == FrameStatus::line) out.push_back({std::string(l.text), l.problems, l.telnet, l.offset});
    EXPECT_TRUE(in.empty());
  }
  return out;
}

// Feeds the input whole, byte by byte, and split at every offset: the lines must not change.
std::vector<Out> frame_every_way(const std::string& input, FramerOptions opt = {}) {
  auto whole = frame_chunks({input}, opt);
  std::vector<std::string> bytes;
  for (char c : input) bytes.emplace_back(1, c);
  EXPECT_EQ(frame_chunks(bytes, opt), whole) << "byte by byte";
  for (std::size_t i = 1; i < input.size(); ++i)
    EXPECT_EQ(frame_chunks({input.substr(0, i), input.substr(i)}, opt), whole) << "split at " << i;
  return whole;
}
}  // namespace

TEST(Framer, SplitsOnCrlf) {
  auto v = frame_every_way("USER a\r\nPASS b\r\n");
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].text, "USER a");
  EXPECT_EQ(v[1].text, "PASS b");
  EXPECT_EQ(v[1].offset, 8u);
  EXPECT_EQ(v[0].problems, 0u);
}

TEST(Framer, IncompleteLineWaits) {
  auto v = frame_chunks({"NOOP"});
  EXPECT_TRUE(v.empty());
}

TEST(Framer, BareLfEndsTheLineAndIsFlagged) {
  auto v = frame_every_way("USER a\nPASS b\r\n");
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].text, "USER a");
  EXPECT_EQ(v[0].problems, bit(FrameProblem::bare_lf));
  EXPECT_EQ(v[1].problems, 0u);
}

TEST(Framer, BareLfLenientTerminates) {
  FramerOptions o;
  o.lf_terminates = true;
  auto v = frame_every_way("USER a\nPASS b\r\n", o);
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].problems, 0u);
}

TEST(Framer, BareCrIsFlaggedAndNeverTerminates) {
  auto v = frame_every_way("RETR a\rDELE b\r\n");
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].text, "RETR aDELE b");
  EXPECT_EQ(v[0].problems, bit(FrameProblem::bare_cr));
}

TEST(Framer, CrNulIsBareCr) {
  auto v = frame_every_way(std::string("A\r\0B\r\n", 6));
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].text, "AB");
  EXPECT_EQ(v[0].problems, bit(FrameProblem::bare_cr));
}

TEST(Framer, NulIsFlagged) {
  auto v = frame_every_way(std::string("CWD a\0b\r\n", 9));
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].text, "CWD ab");
  EXPECT_EQ(v[0].problems, bit(FrameProblem::nul_in_line));
}

TEST(Framer, TooLongLineIsBoundedAndRestDiscarded) {
  FramerOptions o;
  o.max_line = 16;
  std::string longline = "STOR " + std::string(100, 'x') + "\r\nNOOP\r\n";
  auto v = frame_every_way(longline, o);
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].text.size(), 16u);
  EXPECT_EQ(v[0].problems, bit(FrameProblem::line_too_long));
  EXPECT_EQ(v[1].text, "NOOP");
  EXPECT_EQ(v[1].problems, 0u);
}

TEST(Framer, ExactlyMaxLineIsFine) {
  FramerOptions o;
  o.max_line = 8;
  auto v = frame_every_way("12345678\r\n123456789\r\n", o);
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].problems, 0u);
  EXPECT_EQ(v[1].problems, bit(FrameProblem::line_too_long));
}

TEST(Framer, IacIacIsLiteralFF) {
  auto v = frame_every_way("CWD a\xff\xff" "b\r\n");
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].text, "CWD a\xff" "b");
  EXPECT_EQ(v[0].problems, 0u);
  EXPECT_EQ(v[0].telnet, telnet_escaped_ff);
}

TEST(Framer, AborPreambleStripped) {
  auto v = frame_every_way("\xff\xf4\xff\xf2" "ABOR\r\n");
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].text, "ABOR");
  EXPECT_EQ(v[0].telnet, telnet_ip | telnet_dm);
  EXPECT_EQ(v[0].problems, 0u);
}

TEST(Framer, NegotiationStripped) {
  auto v = frame_every_way("\xff\xfb\x01NOOP\xff\xfe\x03\r\n");
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].text, "NOOP");
  EXPECT_EQ(v[0].telnet, telnet_negotiation);
}

TEST(Framer, OtherIacIsBadIac) {
  auto v = frame_every_way("NO\xff\xf1OP\r\n");  // IAC NOP
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].text, "NOOP");
  EXPECT_EQ(v[0].problems, bit(FrameProblem::bad_iac));
}

TEST(Framer, IacCannotHideCrlf) {
  // IAC CR: the CR is taken as the (bad) TELNET command, so the LF after it is
  // bare: the line is flagged twice and the next line stays a line of its own.
  auto v = frame_every_way("RETR x\xff\r\nDELE y\r\n");
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].problems, bit(FrameProblem::bad_iac) | bit(FrameProblem::bare_lf));
  EXPECT_EQ(v[1].text, "DELE y");
}

TEST(Framer, TelnetOffPassesFF) {
  FramerOptions o;
  o.telnet = false;
  auto v = frame_every_way("CWD \xff\r\n", o);
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].text, "CWD \xff");
}

TEST(Framer, ManyLinesInOneChunk) {
  std::string s;
  for (int i = 0; i < 100; ++i) s += "NOOP\r\n";
  auto v = frame_chunks({s});
  EXPECT_EQ(v.size(), 100u);
  EXPECT_EQ(v[99].offset, 99u * 6);
}

TEST(Framer, EmptyLine) {
  auto v = frame_every_way("\r\n");
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].text, "");
}

TEST(Framer, LfInTextEndsNoLine) {
  FramerOptions o;
  o.lf_in_text = true;
  LineFramer f(o);
  std::string_view in = "257 \"/x\n226 Transfer complete.\" created\r\nnext\r\n";
  Line l;
  ASSERT_EQ(f.next(in, l), FrameStatus::line);
  EXPECT_EQ(l.text, "257 \"/x 226 Transfer complete.\" created");
  EXPECT_TRUE(l.has(FrameProblem::bare_lf));
  ASSERT_EQ(f.next(in, l), FrameStatus::line);
  EXPECT_EQ(l.text, "next");
  EXPECT_TRUE(l.clean());
}
