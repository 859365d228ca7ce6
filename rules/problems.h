// Named problems of each layer of the core. The snake_case names are stable:
// they appear in the audit log (`violation.rule`), in lint output and in tests.
#pragma once
#include <cstdint>
#include <string_view>

namespace ftpw {

// Framing problems of one control line (bit flags: a line can carry several).
#define FTPW_FRAME_PROBLEMS(X)                                                  \
  X(bare_lf, "line terminated by LF without CR")                               \
  X(bare_cr, "CR not followed by LF inside a line")                            \
  X(nul_in_line, "NUL byte inside a line")                                     \
  X(line_too_long, "line longer than the configured limit")                    \
  X(bad_iac, "TELNET IAC sequence other than IAC IAC, IP, DM or negotiation")

enum class FrameProblem : std::uint8_t {
#define X(name, text) name,
  FTPW_FRAME_PROBLEMS(X)
#undef X
  count_
};

constexpr std::uint32_t bit(FrameProblem p) { return 1u << static_cast<unsigned>(p); }

constexpr std::string_view name_of(FrameProblem p) {
  switch (p) {
#define X(name, text) \
  case FrameProblem::name: return #name;
    FTPW_FRAME_PROBLEMS(X)
#undef X
    default: return "unknown";
  }
}

constexpr std::string_view describe(FrameProblem p) {
  switch (p) {
#define X(name, text) \
  case FrameProblem::name: return text;
    FTPW_FRAME_PROBLEMS(X)
#undef X
    default: return "unknown";
  }
}

// Errors of the typed argument parsers.
enum class ArgError : std::uint8_t {
  none,
  missing,         // structure required, argument empty
  syntax,          // characters or field count wrong
  out_of_range,    // a number beyond its field (octet > 255, port > 65535, offset overflow)
  unsupported,     // well-formed but a value the RFC does not define (TYPE X, EPRT af 9)
};

constexpr std::string_view name_of(ArgError e) {
  switch (e) {
    case ArgError::none: return "none";
    case ArgError::missing: return "missing";
    case ArgError::syntax: return "syntax";
    case ArgError::out_of_range: return "out_of_range";
    case ArgError::unsupported: return "unsupported";
  }
  return "unknown";
}

}  // namespace ftpw
