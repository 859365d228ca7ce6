// The client's state machine (RFC 959 §5.4 and successors) as predicate bits:
// how a command's completion (or intermediate) reply moves the session's
// state. The rules read these bits; nothing else writes them.
#pragma once
#include <cstdint>

#include "rule_set.h"
#include "verbs.h"

namespace ftpw {

// The state after `verb` was answered `code` (`had_preliminary`: a 1xx came
// first; `epsv_all`: the command was EPSV ALL).
std::uint32_t after_completion(std::uint32_t state, Verb verb, bool epsv_all, int code, bool had_preliminary);

// The state once a transfer command got its first 1xx: the data setup and a
// restart marker are spent, the transfer runs.
constexpr std::uint32_t after_transfer_start(std::uint32_t state) {
  return (state | pbit(Predicate::transfer_running)) & ~(pbit(Predicate::data_ready) | pbit(Predicate::restart_pending));
}

}  // namespace ftpw
