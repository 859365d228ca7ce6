#include "session_timers.h"

namespace ftpw {

std::string_view name_of(Timer t) {
  switch (t) {
    case Timer::none: return "none";
    case Timer::upstream_connect: return "upstream_connect";
    case Timer::login: return "login";
    case Timer::reply: return "reply";
    case Timer::idle: return "idle";
    case Timer::data_connect: return "data_connect";
    case Timer::data_stall: return "data_stall";
    case Timer::close_grace: return "close_grace";
  }
  return "none";
}

SessionTimers::SessionTimers(const TimerLimits& limits, std::uint64_t now_ms)
    : limits_(limits), login_since_ms_(now_ms), idle_since_ms_(now_ms) {}

void SessionTimers::upstream_connecting(std::uint64_t now_ms) {
  connecting_ = true;
  connect_started_ms_ = now_ms;
}

void SessionTimers::client_spoke(std::uint64_t now_ms) {
  if (now_ms > idle_since_ms_) idle_since_ms_ = now_ms;
}

void SessionTimers::set_busy(bool busy, std::uint64_t now_ms) {
  if (busy_ && !busy) idle_since_ms_ = now_ms;  // the transfer ended: idle from now
  busy_ = busy;
}

void SessionTimers::data_listening(std::uint64_t now_ms) {
  data_ = DataState::listening;
  data_since_ms_ = data_last_ms_ = now_ms;
}

void SessionTimers::data_connected(std::uint64_t now_ms) {
  data_ = DataState::connected;
  data_last_ms_ = now_ms;
}

void SessionTimers::closing(std::uint64_t now_ms) {
  closing_ = true;
  closing_since_ms_ = now_ms;
}

Timer SessionTimers::expired(std::uint64_t now, std::uint64_t reply_waited_ms) const {
  if (closing_) return past(now, closing_since_ms_, limits_.close_grace_ms) ? Timer::close_grace : Timer::none;
  if (connecting_ && past(now, connect_started_ms_, limits_.upstream_connect_ms)) return Timer::upstream_connect;
  if (!logged_in_ && past(now, login_since_ms_, limits_.login_ms)) return Timer::login;
  if (reply_waited_ms > limits_.reply_ms) return Timer::reply;
  if (!busy_ && past(now, idle_since_ms_, limits_.idle_ms)) return Timer::idle;
  if (data_ == DataState::listening && past(now, data_since_ms_, limits_.data_connect_ms)) return Timer::data_connect;
  if (data_ == DataState::connected && past(now, data_last_ms_, limits_.data_stall_ms)) return Timer::data_stall;
  return Timer::none;
}

}  // namespace ftpw
