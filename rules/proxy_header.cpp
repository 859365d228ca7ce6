#include "proxy_header.h"

#include <algorithm>
#include <charconv>

namespace ftpw {
namespace {

constexpr std::string_view kV2Sig("\r\n\r\n\0\r\nQUIT\n", 12);
constexpr std::size_t kV1Max = 107;

ProxyHeader bad(std::string_view why) {
  ProxyHeader h;
  h.status = ProxyHeader::Status::bad;
  h.error = why;
  return h;
}

std::optional<std::uint16_t> parse_port(std::string_view s) {
  // 1 to 5 digits, no leading zero (but "0" itself), at most 65535.
  if (s.empty() || s.size() > 5 || (s.size() > 1 && s[0] == '0')) return std::nullopt;
  unsigned v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size() || v > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(v);
}

ProxyHeader parse_v1(std::string_view buf) {
  const std::size_t eol = buf.find("\r\n");
  if (eol == std::string_view::npos) {
    if (buf.size() >= kV1Max) return bad("v1 line longer than 107 bytes");
    if (buf.find('\n') != std::string_view::npos) return bad("v1 line not ended by CRLF");
    return {};
  }
  if (eol + 2 > kV1Max) return bad("v1 line longer than 107 bytes");
  std::string_view line = buf.substr(6, eol - 6);  // after "PROXY "
  ProxyHeader h;
  h.version = 1;
  h.length = eol + 2;
  if (line == "UNKNOWN" || line.rfind("UNKNOWN ", 0) == 0) {
    h.status = ProxyHeader::Status::done;
    return h;
  }
  std::string_view f[5];
  for (int i = 0; i < 5; ++i) {
    const std::size_t sp = line.find(' ');
    if ((sp == std::string_view::npos) != (i == 4)) return bad("v1 line is not PROTO SRC DST SPORT DPORT");
    f[i] = line.substr(0, sp);
    line = sp == std::string_view::npos ? std::string_view{} : line.substr(sp + 1);
  }
  const bool v4 = f[0] == "TCP4";
  if (!v4 && f[0] != "TCP6") return bad("v1 protocol is not TCP4, TCP6 or UNKNOWN");
  auto src = NetAddr::parse_host(f[1]), dst = NetAddr::parse_host(f[2]);
  auto sport = parse_port(f[3]), dport = parse_port(f[4]);
  if (!src || !dst || !sport || !dport) return bad("v1 address or port is malformed");
  if (src->is_v4() != v4 || dst->is_v4() != v4) return bad("v1 address does not match its protocol");
  src->port = *sport;
  dst->port = *dport;
  h.source = src;
  h.destination = dst;
  h.status = ProxyHeader::Status::done;
  return h;
}

ProxyHeader parse_v2(std::string_view buf) {
  if (buf.size() < 16) return {};
  const auto b = [&](std::size_t i) { return static_cast<std::uint8_t>(buf[i]); };
  if ((b(12) >> 4) != 2) return bad("v2 version is not 2");
  const unsigned cmd = b(12) & 0x0f;
  if (cmd > 1) return bad("v2 command is neither LOCAL nor PROXY");
  const std::size_t len = (static_cast<std::size_t>(b(14)) << 8) | b(15);
  if (len > kProxyV2MaxBody) return bad("v2 header longer than allowed");
  if (buf.size() < 16 + len) return {};
  ProxyHeader h;
  h.version = 2;
  h.length = 16 + len;
  h.status = ProxyHeader::Status::done;
  if (cmd == 0) return h;  // LOCAL: the balancer's own connection (a health check)
  const unsigned fam = b(13) >> 4, proto = b(13) & 0x0f;
  if (fam > 3 || proto > 2) return bad("v2 address family or protocol unknown");
  if (proto != 1 || (fam != 1 && fam != 2)) return h;  // not TCP over IP: the connection's own addresses stand
  const std::size_t alen = fam == 1 ? 12 : 36;
  if (len < alen) return bad("v2 addresses shorter than their family");
  NetAddr src, dst;
  src.family = dst.family = fam == 1 ? 4 : 6;
  const std::size_t n = fam == 1 ? 4 : 16;
  for (std::size_t i = 0; i < n; ++i) {
    src.bytes[i] = b(16 + i);
    dst.bytes[i] = b(16 + n + i);
  }
  src.port = static_cast<std::uint16_t>((b(16 + 2 * n) << 8) | b(17 + 2 * n));
  dst.port = static_cast<std::uint16_t>((b(18 + 2 * n) << 8) | b(19 + 2 * n));
  h.source = src;
  h.destination = dst;
  return h;  // TLVs after the addresses are skipped
}

}  // namespace

ProxyHeader parse_proxy_header(std::string_view buf, unsigned accept) {
  // Which version: decided by the first bytes, as soon as they rule one out.
  const std::size_t v2n = std::min(buf.size(), kV2Sig.size());
  const bool may_v2 = buf.substr(0, v2n) == kV2Sig.substr(0, v2n);
  const std::string_view v1sig = "PROXY ";
  const std::size_t v1n = std::min(buf.size(), v1sig.size());
  const bool may_v1 = buf.substr(0, v1n) == v1sig.substr(0, v1n);
  if (may_v2 && (accept & proxy_v2)) return buf.size() < kV2Sig.size() ? ProxyHeader{} : parse_v2(buf);
  if (may_v1 && (accept & proxy_v1)) return buf.size() < v1sig.size() ? ProxyHeader{} : parse_v1(buf);
  if (buf.empty()) return {};
  return bad((accept & proxy_v1) && (accept & proxy_v2) ? "no PROXY header"
             : (accept & proxy_v1)                      ? "no PROXY v1 header"
                                                        : "no PROXY v2 header");
}

std::string proxy_header_v1(const NetAddr& src, const NetAddr& dst) {
  const NetAddr s = src.unmapped(), d = dst.unmapped();
  const bool v4 = s.is_v4() && d.is_v4();
  // Mixed families: both as IPv6 (an IPv4 address in its mapped form).
  auto host = [v4](const NetAddr& a) { return v4 || a.is_v6() ? a.host_string() : "::ffff:" + a.host_string(); };
  return std::string("PROXY ") + (v4 ? "TCP4 " : "TCP6 ") + host(s) + " " + host(d) + " " + std::to_string(s.port) +
         " " + std::to_string(d.port) + "\r\n";
}

std::string proxy_header_v2(const NetAddr& src, const NetAddr& dst) {
  const NetAddr s = src.unmapped(), d = dst.unmapped();
  const bool v4 = s.is_v4() && d.is_v4();
  std::string out(kV2Sig);
  out += static_cast<char>(0x21);                 // version 2, PROXY
  out += static_cast<char>(v4 ? 0x11 : 0x21);     // TCP over IPv4 / IPv6
  const std::size_t n = v4 ? 4 : 16;
  const std::size_t len = 2 * n + 4;
  out += static_cast<char>(len >> 8);
  out += static_cast<char>(len & 0xff);
  auto bytes = [&](const NetAddr& a) {
    if (v4 || a.is_v6()) {
      out.append(reinterpret_cast<const char*>(a.bytes.data()), n);
    } else {  // IPv4 as ::ffff:a.b.c.d
      out.append(10, '\0');
      out.append(2, '\xff');
      out.append(reinterpret_cast<const char*>(a.bytes.data()), 4);
    }
  };
  bytes(s);
  bytes(d);
  for (std::uint16_t p : {s.port, d.port}) {
    out += static_cast<char>(p >> 8);
    out += static_cast<char>(p & 0xff);
  }
  return out;
}

ProxyHeader::Status ProxyHeaderReader::feed(std::string_view bytes) {
  if (header_.status != ProxyHeader::Status::incomplete) return header_.status;
  buf_.append(bytes);
  header_ = parse_proxy_header(std::string_view(buf_).substr(0, kProxyHeaderMax), accept_);
  if (header_.status == ProxyHeader::Status::incomplete && buf_.size() >= kProxyHeaderMax) {
    header_.status = ProxyHeader::Status::bad;
    header_.error = "PROXY header too long";
  }
  if (header_.status == ProxyHeader::Status::done) rest_ = buf_.substr(header_.length);
  if (header_.status != ProxyHeader::Status::incomplete) {
    buf_.clear();
    buf_.shrink_to_fit();
  }
  return header_.status;
}

}  // namespace ftpw
