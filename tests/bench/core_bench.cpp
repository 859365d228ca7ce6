// Google Benchmark of the protocol core: framer + parser + rules + both mirrors
// over a realistic mixed control stream (a curl-like session repeated), through
// a no-op sink. Counters: control lines per second and heap allocations per
// line, counted by a replaced global operator new.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <new>
#include <sstream>
#include <string>

#include "framer.h"
#include "rule_set.h"
#include "session_core.h"

namespace {
std::atomic<std::uint64_t> g_allocs{0};
}

void* operator new(std::size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace {

std::shared_ptr<const ftpw::RuleSet> default_rules() {
  std::ifstream in(std::string(FTPW_SOURCE_DIR) + "/rules/default.toml");
  std::ostringstream ss;
  ss << in.rdbuf();
  std::vector<ftpw::RuleSet::Error> e;
  return std::make_shared<const ftpw::RuleSet>(*ftpw::RuleSet::load_string(ss.str(), "default.toml", e));
}

// One round: what a client and server say around a small download, the
// commands a session repeats most (no login, no data setup: those are rarer).
const char* kClient[] = {"PWD\r\n", "CWD /pub/data\r\n", "TYPE I\r\n", "SIZE report-2026.csv\r\n",
                         "MDTM report-2026.csv\r\n", "NOOP\r\n", "STAT\r\n", "RNFR a.txt\r\n", "RNTO b.txt\r\n",
                         "DELE old.log\r\n"};
const char* kServer[] = {"257 \"/pub\" is the current directory\r\n", "250 Directory successfully changed.\r\n",
                         "200 Switching to Binary mode.\r\n", "213 1048576\r\n", "213 20261124211900\r\n",
                         "200 NOOP ok.\r\n", "211-FTP server status:\r\n     Connected to 127.0.0.1\r\n211 End of status\r\n",
                         "350 Ready for RNTO.\r\n", "250 Rename successful.\r\n", "250 Delete operation successful.\r\n"};

struct NullSink : ftpw::CoreSink {
  std::uint64_t bytes = 0;
  void send_to_server(std::string_view b) override { bytes += b.size(); }
  void send_to_client(std::string_view b) override { bytes += b.size(); }
};

void BM_SessionCore(benchmark::State& state) {
  auto rules = default_rules();
  ftpw::CoreSettings s;
  s.mode = ftpw::Mode::enforce;
  ftpw::SessionCore core(s, rules, {*ftpw::NetAddr::parse_host_port("127.0.0.1:4000"),
                                    *ftpw::NetAddr::parse_host_port("127.0.0.1:21")});
  NullSink sink;
  core.on_server_bytes("220 ready\r\n", 0, sink);
  core.on_client_bytes("USER u\r\n", 0, sink);
  core.on_server_bytes("331 pw\r\n", 0, sink);
  core.on_client_bytes("PASS p\r\n", 0, sink);
  core.on_server_bytes("230 ok\r\n", 0, sink);
  // Warm up so buffers reach their steady size.
  for (int i = 0; i < 10; ++i) {
    core.on_client_bytes(kClient[i], 1, sink);
    core.on_server_bytes(kServer[i], 2, sink);
  }
  std::uint64_t lines = 0;
  const std::uint64_t allocs_before = g_allocs.load();
  for (auto _ : state) {
    for (int i = 0; i < 10; ++i) {
      core.on_client_bytes(kClient[i], 1, sink);
      core.on_server_bytes(kServer[i], 2, sink);
    }
    lines += 22;  // 10 commands, 12 reply lines
  }
  const std::uint64_t allocs = g_allocs.load() - allocs_before;
  state.counters["lines_per_s"] = benchmark::Counter(static_cast<double>(lines), benchmark::Counter::kIsRate);
  state.counters["allocs_per_line"] = static_cast<double>(allocs) / static_cast<double>(lines ? lines : 1);
  benchmark::DoNotOptimize(sink.bytes);
}
BENCHMARK(BM_SessionCore);

void BM_Framer(benchmark::State& state) {
  std::string chunk;
  for (int r = 0; r < 50; ++r)
    for (const char* c : kClient) chunk += c;
  ftpw::LineFramer f;
  std::uint64_t lines = 0;
  const std::uint64_t allocs_before = g_allocs.load();
  for (auto _ : state) {
    std::string_view in = chunk;
    ftpw::Line l;
    while (f.next(in, l) == ftpw::FrameStatus::line) ++lines;
  }
  state.counters["lines_per_s"] = benchmark::Counter(static_cast<double>(lines), benchmark::Counter::kIsRate);
  state.counters["allocs_per_line"] = static_cast<double>(g_allocs.load() - allocs_before) / static_cast<double>(lines);
}
BENCHMARK(BM_Framer);

}  // namespace

BENCHMARK_MAIN();
