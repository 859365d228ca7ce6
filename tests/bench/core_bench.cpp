// Google Benchmark of the protocol core: framer + parser + rules + both mirrors
// over a realistic mixed control stream (a curl-like session repeated), through
// a no-op sink. Counters: control lines per second and heap allocations per
// line, counted by a replaced global operator new.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdio>
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

// `n` policy rules of every kind (paths, users, CIDRs, regexes), none of
// which decides the benchmark's commands: each is evaluated and passed over.
std::string policy_rules(int n) {
  std::string t;
  for (int i = 0; i < n; ++i) {
    const std::string id = "\n[[rule]]\nid = \"p" + std::to_string(i) + "\"\n";
    switch (i % 4) {
      case 0: t += id + "verbs = [\"@write\"]\npaths = [\"/srv/team" + std::to_string(i) + "/**\"]\n"; break;
      case 1: t += id + "verbs = [\"*\"]\nusers = [\"team" + std::to_string(i) + "-*\"]\n"; break;
      case 2: t += id + "verbs = [\"@read\"]\nclients = [\"10." + std::to_string(i) + ".0.0/16\"]\n"; break;
      case 3: t += id + "verbs = [\"*\"]\narg = \"^secret" + std::to_string(i) + "[0-9]+$\"\n"; break;
    }
    t += "enforce = \"reject\"\n";
  }
  return t;
}

std::shared_ptr<const ftpw::RuleSet> rules_with(int policy) {
  std::ifstream in(std::string(FTPW_SOURCE_DIR) + "/rules/default.toml");
  std::ostringstream ss;
  ss << in.rdbuf();
  std::vector<ftpw::RuleSet::Error> e;
  auto rs = ftpw::RuleSet::load({{"default.toml", ss.str()}, {"policy.toml", policy_rules(policy)}}, e, 1);
  if (!rs) {
    std::fprintf(stderr, "core_bench: %s\n", e.empty() ? "rules" : e[0].message.c_str());
    std::abort();
  }
  return std::make_shared<const ftpw::RuleSet>(std::move(*rs));
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

// Arg: how many policy rules are loaded besides the default rules.
void BM_SessionCore(benchmark::State& state) {
  auto rules = rules_with(static_cast<int>(state.range(0)));
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
  if (rules->uses_paths()) core.on_server_bytes("257 \"/\" is the current directory\r\n", 0, sink);  // the proxy's own PWD
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
BENCHMARK(BM_SessionCore)->Arg(0)->Arg(50);

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
