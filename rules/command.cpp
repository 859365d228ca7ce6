#include "command.h"

namespace ftpw {
namespace {

bool is_alpha(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
char upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }

// Reads a decimal number of at most max_digits digits; false if none or too many.
bool read_number(std::string_view& s, std::uint64_t& v, std::size_t max_digits) {
  std::size_t i = 0;
  v = 0;
  while (i < s.size() && is_digit(s[i])) {
    if (i == max_digits) return false;
    v = v * 10 + static_cast<std::uint64_t>(s[i] - '0');
    ++i;
  }
  if (i == 0) return false;
  s.remove_prefix(i);
  return true;
}

// Reads "n,n,n,..." of `count` numbers each <= 255 into out[].
ArgError read_byte_list(std::string_view& s, std::uint8_t* out, std::size_t count) {
  for (std::size_t k = 0; k < count; ++k) {
    if (k > 0) {
      if (s.empty() || s.front() != ',') return ArgError::syntax;
      s.remove_prefix(1);
    }
    std::uint64_t v;
    if (!read_number(s, v, 3)) return ArgError::syntax;
    if (v > 255) return ArgError::out_of_range;
    out[k] = static_cast<std::uint8_t>(v);
  }
  return ArgError::none;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (upper(a[i]) != upper(b[i])) return false;
  return true;
}

CommandError parse_command(std::string_view line, Command& out) {
  out = Command{};
  if (line.empty()) return CommandError::empty;
  std::size_t i = 0;
  while (i < line.size() && line[i] != ' ') ++i;
  std::string_view verb = line.substr(0, i);
  if (verb.empty() || verb.size() > 8) return CommandError::bad_verb;
  for (char c : verb)
    if (!is_alpha(c)) return CommandError::bad_verb;
  out.verb_text = verb;
  out.verb = lookup_verb(verb);
  if (i < line.size()) {
    out.has_arg = true;
    out.arg = line.substr(i + 1);
  }
  return CommandError::none;
}

Parsed<NetAddr> parse_port_arg(std::string_view arg) {
  Parsed<NetAddr> r;
  arg = trim(arg);
  if (arg.empty()) return {{}, ArgError::missing};
  std::uint8_t b[6];
  if ((r.error = read_byte_list(arg, b, 6)) != ArgError::none) return r;
  if (!arg.empty()) return {{}, ArgError::syntax};
  r.value = NetAddr::v4(b[0], b[1], b[2], b[3], static_cast<std::uint16_t>(b[4] << 8 | b[5]));
  return r;
}

Parsed<NetAddr> parse_lprt_arg(std::string_view arg) {
  Parsed<NetAddr> r;
  arg = trim(arg);
  if (arg.empty()) return {{}, ArgError::missing};
  std::uint8_t head[2];
  if ((r.error = read_byte_list(arg, head, 2)) != ArgError::none) return r;
  const std::uint8_t af = head[0], hal = head[1];
  if (!((af == 4 && hal == 4) || (af == 6 && hal == 16))) return {{}, ArgError::unsupported};
  if (arg.empty() || arg.front() != ',') return {{}, ArgError::syntax};
  arg.remove_prefix(1);
  std::uint8_t host[16];
  if ((r.error = read_byte_list(arg, host, hal)) != ArgError::none) return r;
  if (arg.empty() || arg.front() != ',') return {{}, ArgError::syntax};
  arg.remove_prefix(1);
  std::uint8_t pal;
  if ((r.error = read_byte_list(arg, &pal, 1)) != ArgError::none) return r;
  if (pal != 2) return {{}, ArgError::unsupported};
  if (arg.empty() || arg.front() != ',') return {{}, ArgError::syntax};
  arg.remove_prefix(1);
  std::uint8_t p[2];
  if ((r.error = read_byte_list(arg, p, 2)) != ArgError::none) return r;
  if (!arg.empty()) return {{}, ArgError::syntax};
  r.value.family = af == 4 ? 4 : 6;
  for (std::size_t k = 0; k < hal; ++k) r.value.bytes[k] = host[k];
  r.value.port = static_cast<std::uint16_t>(p[0] << 8 | p[1]);
  return r;
}

Parsed<NetAddr> parse_eprt_arg(std::string_view arg) {
  if (arg.empty()) return {{}, ArgError::missing};
  const char d = arg.front();
  if (d < 33 || d > 126) return {{}, ArgError::syntax};
  // <d>af<d>addr<d>port<d>
  std::string_view fields[3];
  std::string_view rest = arg.substr(1);
  for (auto& f : fields) {
    auto pos = rest.find(d);
    if (pos == std::string_view::npos) return {{}, ArgError::syntax};
    f = rest.substr(0, pos);
    rest.remove_prefix(pos + 1);
  }
  if (!rest.empty()) return {{}, ArgError::syntax};
  std::string_view af = fields[0], port = fields[2];
  std::uint64_t afn, portn;
  if (!read_number(af, afn, 3) || !af.empty()) return {{}, ArgError::syntax};
  if (afn != 1 && afn != 2) return {{}, ArgError::unsupported};
  if (!read_number(port, portn, 5) || !port.empty()) return {{}, ArgError::syntax};
  if (portn > 65535) return {{}, ArgError::out_of_range};
  auto host = NetAddr::parse_host(fields[1], static_cast<std::uint16_t>(portn));
  if (!host || host->family != (afn == 1 ? 4 : 6)) return {{}, ArgError::syntax};
  return {*host, ArgError::none};
}

Parsed<NetAddr> parse_active_arg(Verb v, std::string_view arg) {
  switch (v) {
    case Verb::PORT: return parse_port_arg(arg);
    case Verb::LPRT: return parse_lprt_arg(arg);
    case Verb::EPRT: return parse_eprt_arg(arg);
    default: return {{}, ArgError::unsupported};
  }
}

Parsed<std::uint64_t> parse_rest_arg(std::string_view arg) {
  arg = trim(arg);
  if (arg.empty()) return {0, ArgError::missing};
  std::uint64_t v = 0;
  for (char c : arg) {
    if (!is_digit(c)) return {0, ArgError::syntax};
    const std::uint64_t d = static_cast<std::uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return {0, ArgError::out_of_range};
    v = v * 10 + d;
  }
  return {v, ArgError::none};
}

Parsed<TypeArg> parse_type_arg(std::string_view arg) {
  arg = trim(arg);
  if (arg.empty()) return {{}, ArgError::missing};
  TypeArg t;
  t.code = upper(arg[0]);
  std::string_view rest = trim(arg.substr(1));
  switch (t.code) {
    case 'A':
    case 'E':
      if (rest.empty()) return {t, ArgError::none};
      if (rest.size() != 1) return {{}, ArgError::syntax};
      t.format = upper(rest[0]);
      if (t.format != 'N' && t.format != 'T' && t.format != 'C') return {{}, ArgError::unsupported};
      return {t, ArgError::none};
    case 'I':
      if (!rest.empty()) return {{}, ArgError::syntax};
      return {t, ArgError::none};
    case 'L': {
      std::uint64_t n;
      if (!read_number(rest, n, 3) || !rest.empty()) return {{}, ArgError::syntax};
      if (n == 0 || n > 255) return {{}, ArgError::out_of_range};
      t.byte_size = static_cast<std::uint8_t>(n);
      return {t, ArgError::none};
    }
    default:
      return {{}, ArgError::unsupported};
  }
}

namespace {
Parsed<char> parse_letter(std::string_view arg, std::string_view allowed) {
  arg = trim(arg);
  if (arg.empty()) return {0, ArgError::missing};
  if (arg.size() != 1) return {0, ArgError::syntax};
  const char c = upper(arg[0]);
  if (allowed.find(c) == std::string_view::npos) return {0, ArgError::unsupported};
  return {c, ArgError::none};
}
}  // namespace

Parsed<char> parse_mode_arg(std::string_view arg) { return parse_letter(arg, "SBC"); }
Parsed<char> parse_stru_arg(std::string_view arg) { return parse_letter(arg, "FRP"); }
Parsed<char> parse_prot_arg(std::string_view arg) { return parse_letter(arg, "CSEP"); }

Parsed<EpsvArg> parse_epsv_arg(std::string_view arg) {
  arg = trim(arg);
  EpsvArg e;
  if (arg.empty()) return {e, ArgError::none};
  if (iequals(arg, "ALL")) {
    e.all = true;
    return {e, ArgError::none};
  }
  std::uint64_t n;
  std::string_view s = arg;
  if (!read_number(s, n, 3) || !s.empty()) return {{}, ArgError::syntax};
  if (n != 1 && n != 2) return {{}, ArgError::unsupported};
  e.af = static_cast<std::uint8_t>(n);
  return {e, ArgError::none};
}

Parsed<AuthMech> parse_auth_arg(std::string_view arg) {
  arg = trim(arg);
  if (arg.empty()) return {{}, ArgError::missing};
  if (iequals(arg, "TLS")) return {AuthMech::tls, ArgError::none};
  if (iequals(arg, "SSL")) return {AuthMech::ssl, ArgError::none};
  if (iequals(arg, "TLS-C")) return {AuthMech::tls_c, ArgError::none};
  if (iequals(arg, "TLS-P")) return {AuthMech::tls_p, ArgError::none};
  return {{}, ArgError::unsupported};
}

Parsed<std::uint32_t> parse_pbsz_arg(std::string_view arg) {
  arg = trim(arg);
  if (arg.empty()) return {0, ArgError::missing};
  std::uint64_t n;
  std::string_view s = arg;
  if (!read_number(s, n, 19) || !s.empty()) return {0, ArgError::syntax};
  if (n > UINT32_MAX) return {0, ArgError::out_of_range};
  return {static_cast<std::uint32_t>(n), ArgError::none};
}

}  // namespace ftpw
