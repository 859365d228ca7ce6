// The PROXY protocol header: both versions, every way a header can be
// short, long, malformed or of the wrong version, and the encoders.
#include <gtest/gtest.h>

#include "proxy_header.h"

using namespace ftpw;
using S = ProxyHeader::Status;
using namespace std::string_view_literals;
using namespace std::string_literals;

namespace {
const std::string kSig("\r\n\r\n\0\r\nQUIT\n", 12);
std::string v2(unsigned char cmd, unsigned char fam, const std::string& body) {
  std::string h = kSig;
  h += static_cast<char>(cmd);
  h += static_cast<char>(fam);
  h += static_cast<char>(body.size() >> 8);
  h += static_cast<char>(body.size() & 0xff);
  return h + body;
}
}  // namespace

TEST(ProxyHeader, V1Tcp4AndTcp6) {
  const std::string in = "PROXY TCP4 192.0.2.1 198.51.100.2 51000 21\r\nUSER x\r\n";
  auto h = parse_proxy_header(in, proxy_any);
  ASSERT_EQ(h.status, S::done);
  EXPECT_EQ(h.version, 1u);
  EXPECT_EQ(h.length, in.find("USER"));
  EXPECT_EQ(h.source->to_string(), "192.0.2.1:51000");
  EXPECT_EQ(h.destination->to_string(), "198.51.100.2:21");
  h = parse_proxy_header("PROXY TCP6 2001:db8::1 2001:db8::2 1 65535\r\n", proxy_v1);
  ASSERT_EQ(h.status, S::done);
  EXPECT_EQ(h.source->to_string(), "[2001:db8::1]:1");
  h = parse_proxy_header("PROXY UNKNOWN\r\n", proxy_v1);
  EXPECT_EQ(h.status, S::done);
  EXPECT_FALSE(h.source);
  EXPECT_EQ(parse_proxy_header("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", proxy_v1).status, S::done);
}

TEST(ProxyHeader, V1Incomplete) {
  const std::string in = "PROXY TCP4 192.0.2.1 198.51.100.2 51000 21\r\n";
  for (std::size_t n = 0; n < in.size(); ++n)
    EXPECT_EQ(parse_proxy_header(in.substr(0, n), proxy_any).status, S::incomplete) << n;
}

TEST(ProxyHeader, V1Bad) {
  for (std::string_view s : {"PROXY TCP4 192.0.2.1 198.51.100.2 51000\r\n", "PROXY TCP4 192.0.2.1 198.51.100.2 51000 21 x\r\n",
                             "PROXY TCP5 192.0.2.1 198.51.100.2 1 2\r\n", "PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n",
                             "PROXY TCP4 192.0.2.1 198.51.100.2 65536 2\r\n", "PROXY TCP4 192.0.2.1 198.51.100.2 01 2\r\n",
                             "PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n", "PROXY TCP4 host 198.51.100.2 1 2\r\n",
                             "PROXY TCP4  192.0.2.1 198.51.100.2 1 2\r\n", "USER anonymous\r\n", "GET / HTTP/1.0\r\n"})
    EXPECT_EQ(parse_proxy_header(s, proxy_any).status, S::bad) << s;
  // No CRLF within 107 bytes.
  EXPECT_EQ(parse_proxy_header("PROXY TCP4 " + std::string(120, '1'), proxy_v1).status, S::bad);
  // A v1 header where only v2 may come.
  EXPECT_EQ(parse_proxy_header("PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r\n", proxy_v2).status, S::bad);
}

TEST(ProxyHeader, V2ProxyLocalAndUnsupportedFamilies) {
  const std::string a4 = "\xc0\x00\x02\x01\xc6\x33\x64\x02\xc7\x38\x00\x15"s;  // 192.0.2.1:51000 -> 198.51.100.2:21
  auto h = parse_proxy_header(v2(0x21, 0x11, a4) + "more", proxy_v2);
  ASSERT_EQ(h.status, S::done);
  EXPECT_EQ(h.version, 2u);
  EXPECT_EQ(h.length, 28u);
  EXPECT_EQ(h.source->to_string(), "192.0.2.1:51000");
  EXPECT_EQ(h.destination->to_string(), "198.51.100.2:21");
  // TLVs after the addresses are skipped.
  h = parse_proxy_header(v2(0x21, 0x11, a4 + "\x01\x00\x02h2"s), proxy_any);
  ASSERT_EQ(h.status, S::done);
  EXPECT_EQ(h.length, 33u);
  // LOCAL: no addresses, the connection's own stand.
  h = parse_proxy_header(v2(0x20, 0x00, ""), proxy_v2);
  EXPECT_EQ(h.status, S::done);
  EXPECT_FALSE(h.source);
  // UDP and AF_UNIX: passed, addresses not used.
  EXPECT_FALSE(parse_proxy_header(v2(0x21, 0x12, a4), proxy_v2).source);
  EXPECT_EQ(parse_proxy_header(v2(0x21, 0x31, std::string(216, 'x')), proxy_v2).status, S::done);
  // IPv6
  std::string a6(36, '\0');
  a6[15] = 1;
  a6[31] = 2;
  a6[32] = 0x13;
  a6[33] = (char)0x88;
  a6[35] = 21;
  h = parse_proxy_header(v2(0x21, 0x21, a6), proxy_v2);
  ASSERT_EQ(h.status, S::done);
  EXPECT_EQ(h.source->to_string(), "[::1]:5000");
  EXPECT_EQ(h.destination->to_string(), "[::2]:21");
}

TEST(ProxyHeader, V2IncompleteAndBad) {
  const std::string a4(12, '\1');
  const std::string full = v2(0x21, 0x11, a4);
  for (std::size_t n = 0; n < full.size(); ++n)
    EXPECT_EQ(parse_proxy_header(full.substr(0, n), proxy_v2).status, S::incomplete) << n;
  EXPECT_EQ(parse_proxy_header(v2(0x31, 0x11, a4), proxy_v2).status, S::bad);          // version 3
  EXPECT_EQ(parse_proxy_header(v2(0x22, 0x11, a4), proxy_v2).status, S::bad);          // command 2
  EXPECT_EQ(parse_proxy_header(v2(0x21, 0x41, a4), proxy_v2).status, S::bad);          // family 4
  EXPECT_EQ(parse_proxy_header(v2(0x21, 0x11, a4.substr(0, 8)), proxy_v2).status, S::bad);  // short addresses
  EXPECT_EQ(parse_proxy_header(v2(0x21, 0x11, std::string(600, 'x')), proxy_v2).status, S::bad);  // too long
  EXPECT_EQ(parse_proxy_header(full, proxy_v1).status, S::bad);  // v2 where only v1 may come
  EXPECT_EQ(parse_proxy_header("\r\n\r\n\0\r\nQUIX\n"sv, proxy_v2).status, S::bad);
}

TEST(ProxyHeader, EncodersRoundTrip) {
  const NetAddr s = *NetAddr::parse_host_port("192.0.2.1:51000"), d = *NetAddr::parse_host_port("198.51.100.2:21");
  EXPECT_EQ(proxy_header_v1(s, d), "PROXY TCP4 192.0.2.1 198.51.100.2 51000 21\r\n");
  for (const std::string& enc : {proxy_header_v1(s, d), proxy_header_v2(s, d)}) {
    auto h = parse_proxy_header(enc, proxy_any);
    ASSERT_EQ(h.status, S::done);
    EXPECT_EQ(h.length, enc.size());
    EXPECT_EQ(*h.source, s);
    EXPECT_EQ(*h.destination, d);
  }
  const NetAddr s6 = *NetAddr::parse_host_port("[2001:db8::7]:4000");
  auto h = parse_proxy_header(proxy_header_v2(s6, d), proxy_v2);  // mixed: both as IPv6
  ASSERT_EQ(h.status, S::done);
  EXPECT_EQ(*h.source, s6);
  EXPECT_TRUE(h.destination->same_host(d));
  h = parse_proxy_header(proxy_header_v1(s6, d), proxy_v1);
  ASSERT_EQ(h.status, S::done);
  EXPECT_TRUE(h.destination->same_host(d));
}

TEST(ProxyHeaderReader, ByteByByteThenWhatCameBehind) {
  ProxyHeaderReader r(proxy_any);
  const std::string in = "PROXY TCP4 203.0.113.7 192.0.2.1 40000 21\r\nUSER x\r\n";
  for (std::size_t i = 0; i < 40; ++i) ASSERT_EQ(r.feed(std::string_view(in).substr(i, 1)), S::incomplete);
  ASSERT_EQ(r.feed(std::string_view(in).substr(40)), S::done);  // the header's end and the first command
  EXPECT_EQ(r.header().source->to_string(), "203.0.113.7:40000");
  EXPECT_EQ(r.take_rest(), "USER x\r\n");
  EXPECT_EQ(r.feed("more"), ProxyHeader::Status::done);  // decided once
}

TEST(ProxyHeaderReader, NoHeaderWithinTheBoundIsBad) {
  ProxyHeaderReader r(proxy_v1);
  EXPECT_EQ(r.feed("PROXY TCP4 "), ProxyHeader::Status::incomplete);
  EXPECT_EQ(r.feed(std::string(kProxyHeaderMax, '1')), ProxyHeader::Status::bad);
  EXPECT_FALSE(r.error().empty());
  ProxyHeaderReader g(proxy_v1);
  EXPECT_EQ(g.feed("GET / HTTP/1.1\r\n"), ProxyHeader::Status::bad);
}
