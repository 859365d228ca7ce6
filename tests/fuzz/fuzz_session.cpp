// The session core with the default rules: the input is a sequence of records
// <flags byte><length byte><bytes>; flags pick the side and data events, the
// very first byte the mode. The core must never crash, hang or leak.
#include <cstdint>
#include <memory>
#include <string_view>

#include "rule_set.h"
#include "session_core.h"

namespace {
const char* kRules = R"(
[[rule]]
id = "pass-needs-user"
verbs = ["PASS"]
unless = ["user-accepted"]
[[rule]]
id = "rnto-needs-rnfr"
verbs = ["RNTO"]
unless = ["rename-pending"]
[[rule]]
id = "transfer-needs-data-setup"
verbs = ["RETR", "STOR", "LIST"]
unless = ["data-ready"]
[[rule]]
id = "login-required"
verbs = ["*"]
except = ["USER", "PASS", "QUIT"]
unless = ["logged-in"]
reply = 530
[[rule]]
id = "telnet-sequence"
verbs = ["*"]
when = ["telnet-bad"]
reply = 500
[[rule]]
id = "rest"
verbs = ["*"]
except = ["RETR", "PASV"]
when = ["restart-pending"]
)";

struct Sink : ftpw::CoreSink {
  ftpw::NetAddr addr = *ftpw::NetAddr::parse_host_port("127.0.0.1:50000");
  bool give = true;
  std::optional<ftpw::NetAddr> open_passive(const ftpw::NetAddr&) override {
    return give ? std::optional<ftpw::NetAddr>(addr) : std::nullopt;
  }
  std::optional<ftpw::NetAddr> open_active(const ftpw::NetAddr&) override {
    return give ? std::optional<ftpw::NetAddr>(addr) : std::nullopt;
  }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static std::shared_ptr<const ftpw::RuleSet> rules = [] {
    std::vector<ftpw::RuleSet::Error> e;
    return std::make_shared<const ftpw::RuleSet>(*ftpw::RuleSet::load_string(kRules, "fuzz", e));
  }();
  if (size < 1) return 0;
  ftpw::CoreSettings s;
  s.mode = (data[0] & 1) ? ftpw::Mode::enforce : ftpw::Mode::audit;
  s.observe = data[0] & 2;
  s.client_framer.max_line = 64;
  s.reply_limits.max_lines = 32;
  ftpw::SessionCore core(s, rules,
                         {*ftpw::NetAddr::parse_host_port("127.0.0.1:4000"), *ftpw::NetAddr::parse_host_port("127.0.0.2:21")});
  Sink sink;
  sink.give = data[0] & 4;
  std::size_t i = 1;
  std::uint64_t now = 0;
  while (i + 2 <= size && !core.closed()) {
    const std::uint8_t flags = data[i], len = data[i + 1];
    i += 2;
    const std::size_t n = std::min<std::size_t>(len, size - i);
    std::string_view bytes(reinterpret_cast<const char*>(data) + i, n);
    i += n;
    now += 10;
    switch (flags & 3) {
      case 0: core.on_client_bytes(bytes, now, sink); break;
      case 1: core.on_server_bytes(bytes, now, sink); break;
      case 2: core.on_data_event(static_cast<ftpw::DataEvent>((flags >> 2) % 3)); break;
      case 3: core.finish(now, sink); break;
    }
  }
  return 0;
}
