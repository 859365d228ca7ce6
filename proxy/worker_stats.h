// What each worker counts, declared once: the struct, the totals line the
// operational log prints (on SIGUSR1 and at exit, with the audit log's
// dropped records after them) and the tests that read
// it all come from this list. Each worker owns its counters and touches them
// on its own thread only; the totals are summed when they are read.
#pragma once
#include <atomic>
#include <cstdint>
#include <string>

namespace ftpw {

// X(name, what it counts)
#define FTPW_WORKER_STATS(X)                                                          \
  X(sessions_total, "sessions accepted")                                              \
  X(sessions_refused, "connections refused (limits, shutting down)")                  \
  X(violations, "client violations and data-peer mismatches")                         \
  X(transfers, "transfers ended (completion reply sent)")                             \
  X(loop_wakeups, "times the event loop blocked waiting for events")                 \
  X(loop_ticks, "runs of the worker's 250 ms housekeeping timer")                     \
  X(poll_windows, "busy-poll windows opened by control traffic")                      \
  X(poll_windows_cut, "busy-poll windows closed early because a session ended")

// One writer (the worker's thread), any reader: relaxed loads and stores,
// no locked instruction on the hot path.
class StatCounter {
 public:
  void operator++() { add(1); }
  void add(std::uint64_t n) { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  std::uint64_t get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

// A reading of the counters: summed over workers, printed.
struct StatTotals {
#define FTPW_STAT_FIELD(name, doc) std::uint64_t name = 0;
  FTPW_WORKER_STATS(FTPW_STAT_FIELD)
#undef FTPW_STAT_FIELD
  // "name=value ..." in declaration order.
  std::string to_string() const {
    std::string s;
#define FTPW_STAT_TEXT(name, doc) s += (s.empty() ? "" : " ") + std::string(#name "=") + std::to_string(name);
    FTPW_WORKER_STATS(FTPW_STAT_TEXT)
#undef FTPW_STAT_TEXT
    return s;
  }
};

struct WorkerStats {
#define FTPW_STAT_FIELD(name, doc) StatCounter name;
  FTPW_WORKER_STATS(FTPW_STAT_FIELD)
#undef FTPW_STAT_FIELD
  void add_to(StatTotals& t) const {
#define FTPW_STAT_ADD(name, doc) t.name += name.get();
    FTPW_WORKER_STATS(FTPW_STAT_ADD)
#undef FTPW_STAT_ADD
  }
};

}  // namespace ftpw
