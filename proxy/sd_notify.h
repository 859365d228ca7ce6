// systemd's notification protocol (sd_notify(3)): one datagram with
// "KEY=value" lines to the AF_UNIX socket named by $NOTIFY_SOCKET (a path,
// or '@' for the abstract namespace). Without that variable every call does
// nothing, so the daemon runs the same under any supervisor.
#pragma once
#include <cstdint>
#include <string_view>

namespace ftpw {

// True when the message was sent.
bool sd_notify(std::string_view state);
// The watchdog interval systemd asked for ($WATCHDOG_USEC, for this process
// when $WATCHDOG_PID is unset or names it), in microseconds; 0 when none.
std::uint64_t sd_watchdog_usec();
// CLOCK_MONOTONIC in microseconds, for RELOADING=1's MONOTONIC_USEC.
std::uint64_t monotonic_usec();

}  // namespace ftpw
