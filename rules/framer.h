// Control-line framer for one direction of an FTP control connection.
//
// Stack: TELNET (RFC 854) decoding -> CRLF framing -> one Line. The caller pushes
// bytes with next(); it returns need_more (all input consumed, no complete line)
// or line (one complete line in `out`; `in` advanced past its terminator).
// The framer never buffers more than max_line bytes; longer lines are reported
// as line_too_long with their first max_line bytes and the rest is discarded up
// to the terminator. Problems are typed flags on the line, never exceptions.
//
// Contract: Line::text points either into the caller's input or into the
// framer's own buffer; it is valid until the next call to next() or reset().
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "problems.h"

namespace ftpw {

enum TelnetFlag : std::uint8_t {
  telnet_ip = 1,           // IAC IP (interrupt process), ABOR preamble
  telnet_dm = 2,           // IAC DM (data mark, the Synch), ABOR preamble
  telnet_negotiation = 4,  // IAC WILL/WONT/DO/DONT <option>
  telnet_escaped_ff = 8,   // IAC IAC seen (a literal 0xFF in the text)
};

struct Line {
  std::string_view text;        // without terminator, TELNET decoded
  std::uint32_t problems = 0;   // bit(FrameProblem)
  std::uint8_t telnet = 0;      // TelnetFlag bits
  std::uint64_t offset = 0;     // stream offset of the line's first raw byte
  std::uint64_t raw_length = 0; // raw bytes consumed, terminator included

  bool has(FrameProblem p) const { return (problems & bit(p)) != 0; }
  bool clean() const { return problems == 0; }
};

enum class FrameStatus : std::uint8_t { need_more, line };

struct FramerOptions {
  std::size_t max_line = 4096;  // bytes of decoded text
  bool telnet = true;           // decode IAC sequences
  bool lf_terminates = false;   // leniency: bare LF ends a line without a problem flag
  // RFC 959 framing for a peer whose lines must end in CRLF: a bare LF ends
  // nothing, it is a byte of the line (flagged bare_lf, kept as a space so
  // whoever reads the line next frames it the same way).
  bool lf_in_text = false;
};

class LineFramer {
 public:
  explicit LineFramer(FramerOptions opt = {}) : opt_(opt) {}

  FrameStatus next(std::string_view& in, Line& out);

  // True while a partial line is buffered (bytes consumed without a line yet).
  bool mid_line() const { return state_ != State::text || !buf_.empty() || pending_problems_ != 0 || discarded_ != 0; }
  std::uint64_t offset() const { return offset_; }
  void reset();
  // Releases the internal buffer's memory (for idle sessions).
  void shrink() {
    if (buf_.empty()) buf_.shrink_to_fit();
  }

 private:
  enum class State : std::uint8_t { text, cr, iac, iac_option };
  FrameStatus slow(std::string_view& in, Line& out);
  void append(char c);
  void finish(Line& out, std::uint64_t consumed_in_chunk);

  FramerOptions opt_;
  State state_ = State::text;
  std::string buf_;
  std::uint32_t pending_problems_ = 0;
  std::uint8_t pending_telnet_ = 0;
  std::uint64_t discarded_ = 0;    // bytes beyond max_line in the current line
  std::uint64_t offset_ = 0;       // stream offset of the next unconsumed byte
  std::uint64_t line_start_ = 0;   // stream offset where the current line began
};

}  // namespace ftpw
