// A session's timers as deadlines counted from the moment each period began.
//
// The session core reports what happened and when (client bytes, a transfer
// starting or ending, a data connection opening, moving bytes, closing) and
// asks expired(now) on each tick which timer, if any, has run out. Nothing
// here depends on when the ticks come: every period starts at the event that
// starts it, so a tick can only notice an expiry late (by at most its
// interval), never early. Pure and clock-free, so tests drive the clock.
#pragma once
#include <cstdint>
#include <string_view>

namespace ftpw {

enum class Timer : std::uint8_t {
  none,
  upstream_connect,  // connect + the server's first reply
  login,             // session open -> logged in
  reply,             // a forwarded command -> its first reply
  idle,              // nothing from the client and no transfer
  data_connect,      // data listener open -> both legs connected
  data_stall,        // connected data connection -> no byte either way
  close_grace,       // closing session that cannot flush
};
std::string_view name_of(Timer t);

struct TimerLimits {
  std::uint64_t upstream_connect_ms = 5000;
  std::uint64_t login_ms = 60000;
  std::uint64_t reply_ms = 120000;
  std::uint64_t idle_ms = 900000;
  std::uint64_t data_connect_ms = 30000;
  std::uint64_t data_stall_ms = 300000;
  std::uint64_t close_grace_ms = 5000;
};

class SessionTimers {
 public:
  // The session opened at `now_ms`: the login and idle periods start.
  SessionTimers(const TimerLimits& limits, std::uint64_t now_ms);

  void upstream_connecting(std::uint64_t now_ms);
  void upstream_answered() { connecting_ = false; }
  // Logged in or not (a USER or REIN after login logs out: the login
  // period starts again then).
  void set_logged_in(bool in, std::uint64_t now_ms) {
    if (logged_in_ && !in) login_since_ms_ = now_ms;
    logged_in_ = in;
  }
  void client_spoke(std::uint64_t now_ms);
  // A transfer is running or a data connection is up: the session is not
  // idle. When that ends, the idle period starts then, exactly.
  void set_busy(bool busy, std::uint64_t now_ms);
  void data_listening(std::uint64_t now_ms);
  void data_connected(std::uint64_t now_ms);
  void data_moved(std::uint64_t now_ms) { data_last_ms_ = now_ms; }
  void data_ended() { data_ = DataState::none; }
  void closing(std::uint64_t now_ms);

  // The first timer that has run out at `now_ms`. `reply_waited_ms`: how
  // long the oldest command still waiting for its first reply has waited
  // (0 when none waits; measured by the caller on the core's own clock).
  Timer expired(std::uint64_t now_ms, std::uint64_t reply_waited_ms) const;
  // When the idle period began (valid while not busy).
  std::uint64_t idle_since_ms() const { return idle_since_ms_; }

 private:
  enum class DataState : std::uint8_t { none, listening, connected };
  static bool past(std::uint64_t now, std::uint64_t since, std::uint64_t limit) {
    return now > since && now - since > limit;
  }

  TimerLimits limits_;
  std::uint64_t login_since_ms_;
  std::uint64_t connect_started_ms_ = 0;
  std::uint64_t idle_since_ms_;
  std::uint64_t data_since_ms_ = 0, data_last_ms_ = 0;
  std::uint64_t closing_since_ms_ = 0;
  DataState data_ = DataState::none;
  bool connecting_ = false, logged_in_ = false, busy_ = false, closing_ = false;
};

}  // namespace ftpw
