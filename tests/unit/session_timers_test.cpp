// The session's timers against a driven clock: each period starts at its
// event, whatever the phase of the ticks that check it. Ticks come at
// kPhase + k * 1000 ms, as the worker's once-a-second check does; each test
// places its event just before or after a tick, where a clock that restarts a
// period at a tick instead of at the event would fire a tick early.
#include <gtest/gtest.h>

#include <optional>

#include "session_timers.h"

using namespace ftpw;

namespace {

constexpr std::uint64_t kPhase = 10;  // ticks at 10, 1010, 2010, ...

TimerLimits limits() {
  TimerLimits l;
  l.upstream_connect_ms = 1500;
  l.login_ms = 1500;
  l.reply_ms = 1500;
  l.idle_ms = 1500;
  l.data_connect_ms = 1500;
  l.data_stall_ms = 1500;
  l.close_grace_ms = 1500;
  return l;
}

// The first tick at or after `from` (up to `until`) at which `t` reports `want`.
std::optional<std::uint64_t> first_tick(const SessionTimers& t, Timer want, std::uint64_t from, std::uint64_t until,
                                        std::uint64_t reply_sent = 0) {
  for (std::uint64_t tick = kPhase; tick <= until; tick += 1000) {
    if (tick < from) continue;
    const std::uint64_t waited = reply_sent && tick > reply_sent ? tick - reply_sent : 0;
    if (t.expired(tick, waited) == want) return tick;
  }
  return std::nullopt;
}

}  // namespace

TEST(SessionTimers, IdleStartsWhenTheTransferEndsNotAtTheLastTick) {
  // A transfer runs from 500 to 1990 (ticks at 1010 see it running); the
  // idle period starts at 1990, so 1.5 s of idleness is first seen at 4010,
  // not at 3010 (1010 + 1500 < 3010 < 1990 + 1500).
  SessionTimers t(limits(), 0);
  t.set_logged_in(true, 0);
  t.client_spoke(500);
  t.set_busy(true, 500);
  for (std::uint64_t tick = kPhase; tick < 1990; tick += 1000) EXPECT_EQ(t.expired(tick, 0), Timer::none);
  t.set_busy(false, 1990);
  EXPECT_EQ(t.idle_since_ms(), 1990u);
  EXPECT_EQ(first_tick(t, Timer::idle, 1990, 10000), 4010u);
}

TEST(SessionTimers, IdleNeverFiresWhileBusy) {
  SessionTimers t(limits(), 0);
  t.set_logged_in(true, 0);
  t.set_busy(true, 5);
  EXPECT_EQ(first_tick(t, Timer::idle, 0, 100000), std::nullopt);
}

TEST(SessionTimers, IdleRestartsWithEachClientLine) {
  SessionTimers t(limits(), 0);
  t.set_logged_in(true, 0);
  t.client_spoke(1005);  // just before the tick at 1010
  EXPECT_EQ(first_tick(t, Timer::idle, 0, 10000), 3010u);
  t.client_spoke(3011);  // just after it
  EXPECT_EQ(first_tick(t, Timer::idle, 3011, 10000), 5010u);
}

TEST(SessionTimers, BusyAgainKeepsTheIdleClockOff) {
  SessionTimers t(limits(), 0);
  t.set_logged_in(true, 0);
  t.set_busy(true, 100);
  t.set_busy(false, 1020);  // a transfer ends just after a tick...
  t.set_busy(true, 1030);   // ...and the next one begins at once
  EXPECT_EQ(first_tick(t, Timer::idle, 1030, 20000), std::nullopt);
  t.set_busy(false, 2990);
  EXPECT_EQ(first_tick(t, Timer::idle, 2990, 20000), 5010u);
}

TEST(SessionTimers, LoginCountsFromTheSessionOpening) {
  SessionTimers t(limits(), 1011);  // opened just after a tick
  t.client_spoke(1500);             // talking does not log anyone in
  EXPECT_EQ(first_tick(t, Timer::login, 0, 10000), 3010u);
  t.set_logged_in(true, 0);
  EXPECT_EQ(first_tick(t, Timer::login, 0, 100000), std::nullopt);
}

TEST(SessionTimers, UpstreamConnectCountsFromTheConnectUntilTheServerSpeaks) {
  SessionTimers t(limits(), 0);
  t.upstream_connecting(1011);
  EXPECT_EQ(first_tick(t, Timer::upstream_connect, 0, 10000), 3010u);
  t.upstream_answered();
  EXPECT_NE(t.expired(3010, 0), Timer::upstream_connect);
}

TEST(SessionTimers, ReplyCountsFromTheForwardedCommand) {
  SessionTimers t(limits(), 0);
  t.set_logged_in(true, 0);
  t.client_spoke(1011);
  // The command went out at 1011; the reply clock is the core's own.
  EXPECT_EQ(first_tick(t, Timer::reply, 0, 10000, 1011), 3010u);
  EXPECT_EQ(t.expired(2010, 999), Timer::none);
  EXPECT_EQ(t.expired(2010, 1501), Timer::reply);
}

TEST(SessionTimers, DataConnectCountsFromTheListener) {
  SessionTimers t(limits(), 0);
  t.set_logged_in(true, 0);
  t.set_busy(true, 0);  // keep idle out of the way
  t.data_listening(1011);
  EXPECT_EQ(first_tick(t, Timer::data_connect, 0, 10000), 3010u);
  t.data_connected(2000);
  EXPECT_NE(t.expired(3010, 0), Timer::data_connect);
}

TEST(SessionTimers, DataStallCountsFromTheLastByteMoved) {
  SessionTimers t(limits(), 0);
  t.set_logged_in(true, 0);
  t.set_busy(true, 0);
  t.data_listening(100);
  t.data_connected(200);
  t.data_moved(1011);  // the last byte moves just after a tick
  EXPECT_EQ(first_tick(t, Timer::data_stall, 0, 10000), 3010u);
  t.data_moved(3005);
  EXPECT_EQ(first_tick(t, Timer::data_stall, 3005, 10000), 5010u);
  t.data_ended();
  EXPECT_EQ(first_tick(t, Timer::data_stall, 0, 100000), std::nullopt);
}

TEST(SessionTimers, CloseGraceCountsFromTheClosingAndHidesTheOthers) {
  SessionTimers t(limits(), 0);  // never logged in: login would fire at 2010
  t.closing(1011);
  EXPECT_EQ(first_tick(t, Timer::login, 0, 10000), std::nullopt);
  EXPECT_EQ(first_tick(t, Timer::close_grace, 0, 10000), 3010u);
}

TEST(SessionTimers, ExpiryIsStrictlyPastTheLimit) {
  SessionTimers t(limits(), 0);
  t.set_logged_in(true, 0);
  EXPECT_EQ(t.expired(1500, 0), Timer::none);
  EXPECT_EQ(t.expired(1501, 0), Timer::idle);
  EXPECT_EQ(t.expired(1501, 1500), Timer::idle);  // reply at its limit is not expired
  EXPECT_EQ(t.expired(1501, 1501), Timer::reply);
}

TEST(SessionTimers, NamesAreTheAuditLogsTimerField) {
  EXPECT_EQ(name_of(Timer::upstream_connect), "upstream_connect");
  EXPECT_EQ(name_of(Timer::data_stall), "data_stall");
  EXPECT_EQ(name_of(Timer::idle), "idle");
}

TEST(SessionTimers, LoginStartsAgainWhenTheSessionLogsOut) {
  // Logged in early; a new USER (or REIN) at 5000 logs out: the login period
  // counts from then, not from the session's opening.
  SessionTimers t(limits(), 0);
  t.set_logged_in(true, 500);
  t.set_logged_in(false, 5000);
  EXPECT_EQ(first_tick(t, Timer::login, 5000, 20000), 7010u);
}
