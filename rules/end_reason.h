// Why a session ended (rules/end_reasons.def holds the list).
#pragma once
#include <cstdint>
#include <string_view>

namespace ftpw {

enum class EndReason : std::uint8_t {
#define FTPW_END_REASON(e, name, reply, doc) e,
#include "end_reasons.def"
#undef FTPW_END_REASON
};

constexpr std::string_view name_of(EndReason r) {
  switch (r) {
#define FTPW_END_REASON(e, name, reply, doc) \
  case EndReason::e:                  \
    return name;
#include "end_reasons.def"
#undef FTPW_END_REASON
  }
  return "unknown";
}

// The 421 the client hears when the session ends for `r` (a CRLF-ended line), or
// empty when the end is the client's or the server's own doing.
constexpr std::string_view reply_of(EndReason r) {
  switch (r) {
#define FTPW_END_REASON(e, name, reply, doc) \
  case EndReason::e:                         \
    return reply;
#include "end_reasons.def"
#undef FTPW_END_REASON
  }
  return "";
}

}  // namespace ftpw
