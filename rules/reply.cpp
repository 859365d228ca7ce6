#include "reply.h"

namespace ftpw {
namespace {
bool is_digit(char c) { return c >= '0' && c <= '9'; }
}  // namespace

int reply_code(std::string_view line) {
  if (line.size() < 3 || !is_digit(line[0]) || !is_digit(line[1]) || !is_digit(line[2])) return 0;
  if (line[0] < '1' || line[0] > '5') return 0;
  return (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
}

std::string_view name_of(ReplyProblem p) {
  switch (p) {
    case ReplyProblem::none: return "none";
    case ReplyProblem::malformed: return "reply_malformed";
    case ReplyProblem::too_many_lines: return "reply_too_many_lines";
    case ReplyProblem::too_long: return "reply_too_long";
  }
  return "unknown";
}

bool ReplyAssembler::feed(std::string_view line, Reply& out) {
  if (open_code_ == 0) {
    raw_.clear();
    lines_ = 0;
    overflow_ = false;
    const int code = reply_code(line);
    const char sep = line.size() > 3 ? line[3] : ' ';
    raw_.append(line);
    raw_.append("\r\n");
    lines_ = 1;
    out = Reply{};
    if (code == 0 || (sep != ' ' && sep != '-')) {
      out.problem = ReplyProblem::malformed;
      out.raw = raw_;
      out.lines = 1;
      return true;
    }
    first_text_len_ = line.size() > 4 ? line.size() - 4 : 0;
    if (sep == '-') {
      open_code_ = code;
      return false;
    }
    out.code = code;
    out.raw = raw_;
    out.first_text = std::string_view(raw_).substr(line.size() > 4 ? 4 : line.size(), first_text_len_);
    out.lines = 1;
    return true;
  }
  // Inside a multi-line reply: only "ddd " (same code) or exactly "ddd" ends it.
  ++lines_;
  const bool last = line.size() >= 3 && reply_code(line) == open_code_ && (line.size() == 3 || line[3] == ' ');
  if (!overflow_) {
    if (lines_ > lim_.max_lines || raw_.size() + line.size() + 2 > lim_.max_bytes) {
      overflow_ = true;
    } else {
      raw_.append(line);
      raw_.append("\r\n");
    }
  }
  if (overflow_) {
    // The reply is cut off: the caller closes the session, so nothing more is kept.
    out = Reply{};
    out.code = open_code_;
    out.problem = lines_ > lim_.max_lines ? ReplyProblem::too_many_lines : ReplyProblem::too_long;
    out.raw = raw_;
    out.lines = lines_;
    out.multiline = true;
    open_code_ = 0;
    return true;
  }
  if (!last) return false;
  out = Reply{};
  out.code = open_code_;
  out.raw = raw_;
  out.first_text = std::string_view(raw_).substr(4, first_text_len_);
  out.lines = lines_;
  out.multiline = true;
  open_code_ = 0;
  return true;
}

std::string reply_text(std::string_view raw) {
  std::string s;
  s.reserve(raw.size());
  while (!raw.empty()) {
    auto pos = raw.find("\r\n");
    std::string_view l = raw.substr(0, pos);
    if (!s.empty()) s.push_back('\n');
    s.append(l);
    if (pos == std::string_view::npos) break;
    raw.remove_prefix(pos + 2);
  }
  return s;
}

namespace {
// Reads up to `count` comma-separated numbers (<= 255) starting at the first digit.
bool scan_numbers(std::string_view s, std::uint8_t* out, std::size_t count, ArgError& err) {
  std::size_t i = 0;
  for (std::size_t k = 0; k < count; ++k) {
    if (k > 0) {
      if (i >= s.size() || s[i] != ',') {
        err = ArgError::syntax;
        return false;
      }
      ++i;
    }
    unsigned v = 0;
    std::size_t d = 0;
    while (i < s.size() && is_digit(s[i]) && d < 4) {
      v = v * 10 + static_cast<unsigned>(s[i] - '0');
      ++i;
      ++d;
    }
    if (d == 0 || d > 3) {
      err = ArgError::syntax;
      return false;
    }
    if (v > 255) {
      err = ArgError::out_of_range;
      return false;
    }
    out[k] = static_cast<std::uint8_t>(v);
  }
  return true;
}
}  // namespace

Parsed<NetAddr> parse_227(std::string_view text) {
  // Skip the reply code, find the first digit of the address.
  if (text.size() >= 4 && reply_code(text) == 227) text.remove_prefix(4);
  std::size_t i = 0;
  while (i < text.size() && !is_digit(text[i])) ++i;
  if (i == text.size()) return {{}, ArgError::missing};
  std::uint8_t b[6];
  ArgError err = ArgError::none;
  if (!scan_numbers(text.substr(i), b, 6, err)) return {{}, err};
  return {NetAddr::v4(b[0], b[1], b[2], b[3], static_cast<std::uint16_t>(b[4] << 8 | b[5])), ArgError::none};
}

Parsed<std::uint16_t> parse_229(std::string_view text) {
  auto open = text.find('(');
  if (open == std::string_view::npos) return {0, ArgError::missing};
  std::string_view s = text.substr(open + 1);
  if (s.size() < 5) return {0, ArgError::syntax};
  const char d = s[0];
  if (d < 33 || d > 126 || s[1] != d || s[2] != d) return {0, ArgError::syntax};
  s.remove_prefix(3);
  unsigned v = 0;
  std::size_t n = 0;
  while (n < s.size() && is_digit(s[n]) && n < 6) v = v * 10 + static_cast<unsigned>(s[n++] - '0');
  if (n == 0 || n > 5 || n + 1 >= s.size() || s[n] != d || s[n + 1] != ')') return {0, ArgError::syntax};
  if (v > 65535 || v == 0) return {0, ArgError::out_of_range};
  return {static_cast<std::uint16_t>(v), ArgError::none};
}

Parsed<NetAddr> parse_228(std::string_view text) {
  auto open = text.find('(');
  if (open == std::string_view::npos) return {{}, ArgError::missing};
  auto close = text.find(')', open);
  if (close == std::string_view::npos) return {{}, ArgError::syntax};
  return parse_lprt_arg(text.substr(open + 1, close - open - 1));
}

std::string format_227(const NetAddr& a) {
  const NetAddr v = a.unmapped();
  std::string s = "227 Entering Passive Mode (";
  for (int i = 0; i < 4; ++i) {
    s += std::to_string(v.bytes[static_cast<std::size_t>(i)]);
    s += ',';
  }
  s += std::to_string(v.port >> 8) + "," + std::to_string(v.port & 0xff) + ").\r\n";
  return s;
}

std::string format_228(const NetAddr& a) {
  const NetAddr v = a.unmapped();
  const int hal = v.is_v4() ? 4 : 16;
  std::string s = "228 Entering Long Passive Mode (" + std::to_string(v.is_v4() ? 4 : 6) + "," + std::to_string(hal);
  for (int i = 0; i < hal; ++i) s += "," + std::to_string(v.bytes[static_cast<std::size_t>(i)]);
  s += ",2," + std::to_string(v.port >> 8) + "," + std::to_string(v.port & 0xff) + ")\r\n";
  return s;
}

std::string format_229(std::uint16_t port) {
  return "229 Entering Extended Passive Mode (|||" + std::to_string(port) + "|)\r\n";
}

std::string format_active_command(Verb v, const NetAddr& a) {
  const NetAddr u = a.unmapped();
  if (v == Verb::PORT && u.is_v4()) {
    std::string s = "PORT ";
    for (int i = 0; i < 4; ++i) s += std::to_string(u.bytes[static_cast<std::size_t>(i)]) + ",";
    return s + std::to_string(u.port >> 8) + "," + std::to_string(u.port & 0xff) + "\r\n";
  }
  if (v == Verb::LPRT) {
    const int hal = u.is_v4() ? 4 : 16;
    std::string s = "LPRT " + std::to_string(u.is_v4() ? 4 : 6) + "," + std::to_string(hal);
    for (int i = 0; i < hal; ++i) s += "," + std::to_string(u.bytes[static_cast<std::size_t>(i)]);
    return s + ",2," + std::to_string(u.port >> 8) + "," + std::to_string(u.port & 0xff) + "\r\n";
  }
  return "EPRT |" + std::string(u.is_v4() ? "1" : "2") + "|" + u.host_string() + "|" + std::to_string(u.port) + "|\r\n";
}

}  // namespace ftpw
