#include "completion.h"

namespace ftpw {

std::uint32_t after_completion(std::uint32_t state, Verb verb, bool epsv_all, int code, bool had_preliminary) {
  auto set = [&](Predicate p, bool on) {
    if (on) state |= pbit(p);
    else state &= ~pbit(p);
  };
  const bool ok = code >= 200 && code < 300;
  // "Directly after" states last exactly one command.
  set(Predicate::user_accepted, verb == Verb::USER && code == 331);
  set(Predicate::account_requested, code == 332);
  set(Predicate::rename_pending, verb == Verb::RNFR && code == 350);
  switch (verb) {
    case Verb::USER:
      set(Predicate::logged_in, code == 230);
      break;
    case Verb::PASS:
    case Verb::ACCT:
      if (code == 230 || code == 202) set(Predicate::logged_in, true);
      break;
    case Verb::REIN:
      if (code == 220) state = 0;
      break;
    case Verb::REST:
      set(Predicate::restart_pending, code == 350);
      break;
    case Verb::PASV:
    case Verb::LPSV:
      if (code == 227 || code == 228) set(Predicate::data_ready, true);
      break;
    case Verb::EPSV:
      if (epsv_all && code == 200) set(Predicate::epsv_all, true);
      if (code == 229) set(Predicate::data_ready, true);
      break;
    case Verb::PORT:
    case Verb::EPRT:
    case Verb::LPRT:
      if (code == 200) set(Predicate::data_ready, true);
      break;
    case Verb::AUTH:
      if (code == 234) set(Predicate::auth_done, true);
      break;
    case Verb::PBSZ:
      if (code == 200) set(Predicate::pbsz_done, true);
      break;
    case Verb::TYPE:
      break;
    default:
      if (is_transfer(verb)) {
        set(Predicate::transfer_running, false);
        // The data setup is spent once the server used it (or tried to).
        if (had_preliminary || ok || code == 425 || code == 426) set(Predicate::data_ready, false);
        set(Predicate::restart_pending, false);
      } else if (!ok || verb != Verb::NOOP) {
        // Any other command drops a pending restart marker (RFC 959 §4.1.3).
        set(Predicate::restart_pending, false);
      }
      break;
  }
  return state;
}

}  // namespace ftpw
