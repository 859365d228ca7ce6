// Server replies: assembling single- and multi-line replies from framed lines
// (RFC 959 §4.2), the typed addresses of 227 / 228 / 229, and the formatters the
// proxy uses to rewrite data-setup commands and replies.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "command.h"
#include "framer.h"
#include "netaddr.h"

namespace ftpw {

enum class ReplyProblem : std::uint8_t {
  none,
  malformed,       // a line outside a multi-line reply that is not "ddd" / "ddd text" / "ddd-text"
  too_many_lines,  // multi-line reply beyond max_lines
  too_long,        // multi-line reply beyond max_bytes
};
std::string_view name_of(ReplyProblem p);

struct Reply {
  int code = 0;
  std::string_view raw;        // every line with CRLF, as it goes to the client
  std::string_view first_text; // text of the first line after "ddd-" / "ddd "
  std::uint32_t lines = 0;
  bool multiline = false;
  ReplyProblem problem = ReplyProblem::none;

  int klass() const { return code / 100; }
  bool preliminary() const { return klass() == 1; }
  bool intermediate() const { return klass() == 3; }
  bool positive() const { return klass() == 1 || klass() == 2 || klass() == 3; }
};

struct ReplyLimits {
  std::uint32_t max_lines = 10000;
  std::size_t max_bytes = 1 << 20;
};

class ReplyAssembler {
 public:
  explicit ReplyAssembler(ReplyLimits lim = {}) : lim_(lim) {}
  // Feeds one framed line. Returns true when `out` holds a complete reply (or a
  // problem); views in `out` stay valid until the next call.
  bool feed(std::string_view line, Reply& out);
  bool in_multiline() const { return open_code_ != 0; }
  void shrink() {
    if (open_code_ == 0) {
      raw_.clear();
      raw_.shrink_to_fit();
    }
  }

 private:
  ReplyLimits lim_;
  std::string raw_;
  int open_code_ = 0;
  std::uint32_t lines_ = 0;
  std::size_t first_text_len_ = 0;
  bool overflow_ = false;
};

// The reply code a line starts with (100..599), or 0 when it starts with none.
// The one place reply codes are read from text.
int reply_code(std::string_view line);

// Joins a reply's raw lines with "\n" (no trailing newline), for logs.
std::string reply_text(std::string_view raw);

// 227 Entering Passive Mode (h1,h2,h3,h4,p1,p2): the numbers may stand without
// parentheses (RFC 1123 §4.1.2.6 asks clients to scan for them).
Parsed<NetAddr> parse_227(std::string_view text);
// 229 Entering Extended Passive Mode (|||port|) -> port only (RFC 2428 §3)
Parsed<std::uint16_t> parse_229(std::string_view text);
// 228 Entering Long Passive Mode (af,hal,h...,pal,p1,p2) (RFC 1639)
Parsed<NetAddr> parse_228(std::string_view text);

std::string format_227(const NetAddr& a);            // IPv4 only
std::string format_228(const NetAddr& a);
std::string format_229(std::uint16_t port);
std::string format_active_command(Verb v, const NetAddr& a);  // PORT / EPRT / LPRT line with CRLF

}  // namespace ftpw
