#include "framer.h"

#include <cstring>

namespace ftpw {
namespace {
constexpr unsigned char IAC = 255, DONT = 254, WILL = 251, SB = 250, DM = 242, IP = 244;
}

void LineFramer::reset() {
  state_ = State::text;
  buf_.clear();
  pending_problems_ = 0;
  pending_telnet_ = 0;
  discarded_ = 0;
  line_start_ = offset_;
}

void LineFramer::append(char c) {
  if (buf_.size() < opt_.max_line) {
    buf_.push_back(c);
  } else {
    pending_problems_ |= bit(FrameProblem::line_too_long);
    ++discarded_;
  }
}

void LineFramer::finish(Line& out, std::uint64_t consumed_in_chunk) {
  offset_ += consumed_in_chunk;
  out.text = buf_;
  out.problems = pending_problems_;
  out.telnet = pending_telnet_;
  out.offset = line_start_;
  out.raw_length = offset_ - line_start_;
  // buf_ keeps the bytes until the next call; cleared lazily at its start.
  pending_problems_ = 0;
  pending_telnet_ = 0;
  discarded_ = 0;
  line_start_ = offset_;
  state_ = State::text;
}

FrameStatus LineFramer::next(std::string_view& in, Line& out) {
  // A line returned from buf_ by the previous call is dead now.
  if (state_ == State::text && pending_problems_ == 0 && pending_telnet_ == 0 && discarded_ == 0 &&
      line_start_ == offset_)
    buf_.clear();

  // Fast path: nothing buffered and a clean "text CRLF" inside the input; the line
  // is returned as a view into the caller's bytes, with no copy.
  if (buf_.empty() && state_ == State::text && pending_problems_ == 0 && pending_telnet_ == 0) {
    const char* p = in.data();
    const std::size_t n = in.size();
    const std::size_t limit = n < opt_.max_line + 2 ? n : opt_.max_line + 2;
    for (std::size_t i = 0; i < limit; ++i) {
      const unsigned char c = static_cast<unsigned char>(p[i]);
      if (c > '\r' && c != IAC) continue;
      if (c == '\n') {
        if (i > 0 && p[i - 1] == '\r') {
          out.text = std::string_view(p, i - 1);
          out.problems = 0;
          out.telnet = 0;
          out.offset = offset_;
          out.raw_length = i + 1;
          offset_ += i + 1;
          line_start_ = offset_;
          in.remove_prefix(i + 1);
          return FrameStatus::line;
        }
        break;
      }
      if (c == '\r') {
        if (i + 1 < n && p[i + 1] == '\n') continue;
        break;
      }
      if (c == 0 || c == IAC) break;
    }
  }
  return slow(in, out);
}

FrameStatus LineFramer::slow(std::string_view& in, Line& out) {
  std::size_t i = 0;
  const std::size_t n = in.size();
  while (i < n) {
    const unsigned char c = static_cast<unsigned char>(in[i++]);
    switch (state_) {
      case State::text:
        if (c == '\r') {
          state_ = State::cr;
        } else if (c == '\n' && opt_.lf_in_text) {
          pending_problems_ |= bit(FrameProblem::bare_lf);
          append(' ');
        } else if (c == '\n') {
          if (!opt_.lf_terminates) pending_problems_ |= bit(FrameProblem::bare_lf);
          finish(out, i);
          in.remove_prefix(i);
          return FrameStatus::line;
        } else if (c == 0) {
          pending_problems_ |= bit(FrameProblem::nul_in_line);
        } else if (c == IAC && opt_.telnet) {
          state_ = State::iac;
        } else {
          append(static_cast<char>(c));
        }
        break;
      case State::cr:
        if (c == '\n') {
          finish(out, i);
          in.remove_prefix(i);
          return FrameStatus::line;
        }
        // CR not followed by LF: never a terminator, never part of the text.
        // (CR NUL is TELNET's bare CR; it is reported the same way.)
        pending_problems_ |= bit(FrameProblem::bare_cr);
        state_ = State::text;
        --i;  // re-examine this byte as text
        if (c == 0) ++i;  // CR NUL: the NUL belongs to the CR
        break;
      case State::iac:
        state_ = State::text;
        if (c == IAC) {
          pending_telnet_ |= telnet_escaped_ff;
          append(static_cast<char>(c));
        } else if (c == IP) {
          pending_telnet_ |= telnet_ip;
        } else if (c == DM) {
          pending_telnet_ |= telnet_dm;
        } else if (c >= WILL && c <= DONT) {
          pending_telnet_ |= telnet_negotiation;
          state_ = State::iac_option;
        } else {
          (void)SB;  // SB and every other command are not FTP's business
          pending_problems_ |= bit(FrameProblem::bad_iac);
        }
        break;
      case State::iac_option:
        state_ = State::text;
        break;
    }
  }
  offset_ += n;
  in.remove_prefix(n);
  return FrameStatus::need_more;
}

}  // namespace ftpw
