// What each worker counts, declared once. The struct, the totals line the
// operational log prints (on SIGUSR2 and at exit), the Prometheus series the
// metrics endpoint serves (proxy/prometheus.h) and the tests that read them
// all come from the lists below. Each worker owns its counters and touches
// them on its own thread only, with relaxed atomics and no locked instruction
// (a finding's rule, a name not known in advance, takes a worker-local lock:
// findings are rare, the relay never takes it). A reading sums the workers.
//
// The totals line: `name=value` for each counter and gauge, `name.label=value`
// for each label of a labelled family and each histogram bucket (`le_N`,
// cumulative, with `count` and `sum`) that is not zero.
//
// Series names are stable: a series may be added, never renamed. A metric
// name "" keeps a stat out of the endpoint (its sum is another series').
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include "verbs.h"

namespace ftpw {

// The bounded label sets: a value outside a set counts under its first label.
// Each set: `size`, `label(i)` (the totals line's form) and `key` (the
// Prometheus label's name); a set of two labels gives `keys` and `labels(i)`.
struct VerbLabels {  // the verb table; a verb not in it is "other"
  static constexpr std::size_t size = kVerbCount;
  static constexpr std::string_view key = "verb";
  static std::string_view label(std::size_t i) { return i == 0 ? "other" : name_of(static_cast<Verb>(i)); }
};
struct ReplyClassLabels {
  static constexpr std::size_t size = 5;
  static constexpr std::string_view key = "class";
  static std::string_view label(std::size_t i) {
    static constexpr std::string_view n[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    return n[i];
  }
  static std::size_t of(int code) { return code >= 100 && code < 600 ? static_cast<std::size_t>(code / 100 - 1) : 0; }
};
struct DirectionLabels {
  static constexpr std::size_t size = 2;
  static constexpr std::string_view key = "direction";
  static std::string_view label(std::size_t i) { return i == 0 ? "download" : "upload"; }
};
struct DataConnLabels {
  static constexpr std::size_t size = 2;
  static constexpr std::string_view key = "data_conn";
  static std::string_view label(std::size_t i) { return i == 0 ? "new" : "reused"; }
};
// Transfers by verb and data connection: index verb * 2 + reused.
struct TransferLabels {
  static constexpr std::size_t size = VerbLabels::size * DataConnLabels::size;
  static std::size_t of(Verb v, bool reused) { return static_cast<std::size_t>(v) * 2 + (reused ? 1 : 0); }
  static std::string label(std::size_t i) {
    return std::string(VerbLabels::label(i / 2)) + "." + std::string(DataConnLabels::label(i % 2));
  }
  static constexpr std::array<std::string_view, 2> keys{VerbLabels::key, DataConnLabels::key};
  static std::array<std::string_view, 2> labels(std::size_t i) {
    return {VerbLabels::label(i / 2), DataConnLabels::label(i % 2)};
  }
};
// TLS handshakes by connection: control toward the client or the server,
// data toward the client or the server.
struct TlsLegLabels {
  static constexpr std::size_t size = 4;
  static constexpr std::string_view key = "leg";
  static std::string_view label(std::size_t i) {
    static constexpr std::string_view n[] = {"client", "server", "client_data", "server_data"};
    return n[i];
  }
  static std::size_t of(bool client, bool data) { return (client ? 0 : 1) + (data ? 2 : 0); }
};
// Why a connection was refused before it became a session (proxy/worker.cpp).
// X(enumerator, label, the 421 it hears; "" for the session end's own
// (rules/end_reasons.def), nullptr for none: closed without a byte)
#define FTPW_REFUSALS(X)                                                                           \
  X(max_sessions, "max-sessions", "421 Too many users, try again later.\r\n")                        \
  X(max_sessions_per_ip, "max-sessions-per-ip", "421 Too many connections from your address.\r\n")  \
  X(login_cooldown, "login-cooldown", "421 Too many failed logins from your address, try again later.\r\n") \
  X(shutting_down, "shutting-down", "")                                                            \
  X(no_peer, "no-peer", "421 Service not available.\r\n")                                          \
  X(proxy_header, "proxy-header", nullptr)                                                          \
  X(not_redirected, "not-redirected", "421 Service not available: connect to the server, not the proxy.\r\n") \
  X(destination_not_allowed, "destination-not-allowed", "421 Service not available for this destination.\r\n") \
  X(out_of_fds, "out-of-fds", "421 Too many connections, try again later.\r\n")
enum class Refusal : std::uint8_t {
#define FTPW_REFUSAL_ENUM(e, name, reply) e,
  FTPW_REFUSALS(FTPW_REFUSAL_ENUM)
#undef FTPW_REFUSAL_ENUM
};
struct RefusalLabels {
  static constexpr std::string_view key = "reason";
  static constexpr std::size_t size = 0
#define FTPW_REFUSAL_COUNT(e, name, reply) +1
      FTPW_REFUSALS(FTPW_REFUSAL_COUNT)
#undef FTPW_REFUSAL_COUNT
      ;
  static std::string_view label(std::size_t i) {
    static constexpr std::string_view n[] = {
#define FTPW_REFUSAL_NAME(e, name, reply) name,
        FTPW_REFUSALS(FTPW_REFUSAL_NAME)
#undef FTPW_REFUSAL_NAME
    };
    return n[i];
  }
};
// The 421 line (with CRLF) a refused connection hears; "" for none.
std::string_view reply_of(Refusal r);

// Histogram bucket bounds (upper, inclusive), in the unit of the name;
// `seconds`: that unit in seconds (Prometheus speaks seconds).
struct LatencyBucketsUs {
  static constexpr std::array<std::uint64_t, 12> bounds{100,    250,    500,     1000,    2500,    5000,
                                                        10000,  25000,  100000,  500000,  2000000, 10000000};
  static constexpr double seconds = 1e-6;
};
struct DurationBucketsMs {
  static constexpr std::array<std::uint64_t, 8> bounds{10, 100, 1000, 10000, 60000, 600000, 3600000, 36000000};
  static constexpr double seconds = 1e-3;
};

// X(name, metric, doc)
#define FTPW_COUNTERS(X)                                                                                \
  X(sessions_total, "ftpwarden_sessions_total", "sessions accepted")                                      \
  X(sessions_refused, "ftpwarden_sessions_refused_total", "connections refused (limits, shutting down)") \
  X(violations, "", "client violations and data-peer mismatches (by rule: ftpwarden_violations_total)") \
  X(transfers, "", "transfers ended (by verb: ftpwarden_transfers_total)")                             \
  X(upstream_connect_failures, "ftpwarden_upstream_connect_failures_total",                               \
    "upstream connects that failed or timed out")                                                         \
  X(loop_wakeups, "ftpwarden_loop_wakeups_total", "times an event loop blocked waiting for events")       \
  X(loop_ticks, "ftpwarden_loop_ticks_total", "runs of the workers' 250 ms housekeeping timer")           \
  X(poll_windows, "ftpwarden_poll_windows_total", "busy-poll windows opened by control traffic")          \
  X(poll_windows_cut, "ftpwarden_poll_windows_cut_total", "busy-poll windows closed early by a session's end")
// X(name, metric, doc)
#define FTPW_GAUGES(X) X(sessions_open, "ftpwarden_sessions_open", "sessions open now")
// X(name, label set, metric, doc)
#define FTPW_LABELLED(X)                                                                                  \
  X(commands, VerbLabels, "ftpwarden_commands_total", "commands from clients, by verb")                 \
  X(replies, ReplyClassLabels, "ftpwarden_replies_total",                                                 \
    "replies to clients (the server's and the proxy's), by class")                                       \
  X(bytes, DirectionLabels, "ftpwarden_bytes_total", "data connection bytes relayed, by direction")     \
  X(data_connections, DataConnLabels, "ftpwarden_data_connections_total",                                 \
    "transfers by data connection: new or reused (125)")                                                  \
  X(transfers_by, TransferLabels, "ftpwarden_transfers_total", "transfers ended, by verb and data connection") \
  X(refused, RefusalLabels, "ftpwarden_connections_refused_total", "connections refused, by reason")       \
  X(tls_handshakes, TlsLegLabels, "ftpwarden_tls_handshakes_total", "TLS handshakes completed, by connection") \
  X(tls_failures, TlsLegLabels, "ftpwarden_tls_failures_total",                                           \
    "TLS connections that failed (handshake, records, a data connection that did not resume), by connection")
// X(name, buckets, metric, doc)
#define FTPW_HISTOGRAMS(X)                                                                                \
  X(reply_latency_us, LatencyBucketsUs, "ftpwarden_reply_latency_seconds",                                \
    "server reply latency after the command went out")                                                    \
  X(transfer_duration_ms, DurationBucketsMs, "ftpwarden_transfer_duration_seconds",                       \
    "transfer duration, first reply to completion")

// One writer (the worker's thread), any reader.
class StatCounter {
 public:
  void operator++() { add(1); }
  void operator--() { add(~std::uint64_t{0}); }  // gauges: wraps back on the sum
  void add(std::uint64_t n) { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  std::uint64_t get() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

template <class Labels>
struct LabelledCounter {
  std::array<StatCounter, Labels::size> by;
  StatCounter& operator[](std::size_t i) { return by[i < Labels::size ? i : 0]; }
};

template <class Buckets>
struct Histogram {
  static constexpr std::size_t size = Buckets::bounds.size() + 1;  // + the overflow bucket
  std::array<StatCounter, size> counts;                            // not cumulative
  StatCounter sum;
  void observe(std::uint64_t v) {
    std::size_t i = 0;
    while (i < Buckets::bounds.size() && v > Buckets::bounds[i]) ++i;
    ++counts[i];
    sum.add(v);
  }
};

// Findings by rule (client violations by rule and action, server findings by rule).
class FindingCounts {
 public:
  void count(std::string_view rule, bool client, bool rejected);
  // key "rule.action" (violations) or "rule" (server findings) -> count
  void add_to(std::map<std::string, std::uint64_t>& violations, std::map<std::string, std::uint64_t>& server) const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::uint64_t, std::less<>> violations_, server_;
};

// A reading: summed over workers, printed.
struct StatTotals {
#define FTPW_STAT_FIELD(name, metric, doc) std::uint64_t name = 0;
  FTPW_COUNTERS(FTPW_STAT_FIELD)
  FTPW_GAUGES(FTPW_STAT_FIELD)
#undef FTPW_STAT_FIELD
#define FTPW_STAT_LABELLED(name, labels, metric, doc) std::array<std::uint64_t, labels::size> name{};
  FTPW_LABELLED(FTPW_STAT_LABELLED)
#undef FTPW_STAT_LABELLED
#define FTPW_STAT_HIST(name, buckets, metric, doc)                          \
  std::array<std::uint64_t, Histogram<buckets>::size> name{};               \
  std::uint64_t name##_sum = 0;
  FTPW_HISTOGRAMS(FTPW_STAT_HIST)
#undef FTPW_STAT_HIST
  std::map<std::string, std::uint64_t> violations_by_rule, server_findings_by_rule;
  std::string to_string() const;
};

struct WorkerStats {
#define FTPW_STAT_FIELD(name, metric, doc) StatCounter name;
  FTPW_COUNTERS(FTPW_STAT_FIELD)
  FTPW_GAUGES(FTPW_STAT_FIELD)
#undef FTPW_STAT_FIELD
#define FTPW_STAT_LABELLED(name, labels, metric, doc) LabelledCounter<labels> name;
  FTPW_LABELLED(FTPW_STAT_LABELLED)
#undef FTPW_STAT_LABELLED
#define FTPW_STAT_HIST(name, buckets, metric, doc) Histogram<buckets> name;
  FTPW_HISTOGRAMS(FTPW_STAT_HIST)
#undef FTPW_STAT_HIST
  FindingCounts findings;
  void add_to(StatTotals& t) const;
};

}  // namespace ftpw
