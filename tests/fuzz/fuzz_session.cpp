// The session core with the default rules: the input is a sequence of records
// <flags byte><length byte><bytes>; flags pick the side and data events (TLS
// handshakes done included), the very first byte the mode and the FTPS
// settings. The core must never crash, hang or leak.
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
  ftpw::SessionCore* core = nullptr;
  ftpw::NetAddr addr = *ftpw::NetAddr::parse_host_port("127.0.0.1:50000");
  bool give = true;
  bool sync = true;    // answer open_data at once, as the proxy does, or later
  bool asked = false;  // an open_data not answered yet
  void open_data(const ftpw::DataRequest&) override {
    if (sync) answer(0);
    else asked = true;
  }
  void answer(std::uint64_t now) {
    asked = false;
    core->on_data_listening(give ? std::optional<ftpw::NetAddr>(addr) : std::nullopt, now, *this);
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
  s.tls.terminate = data[0] & 16;
  s.tls.upstream = data[0] & 32;
  s.tls.implicit = data[0] & 64;
  s.tls.required = s.tls.terminate && (data[0] & 128);
  s.tls.data = (data[0] & 128) ? ftpw::DataProtection::required : ftpw::DataProtection::client;
  s.reply_limits.max_lines = 32;
  ftpw::SessionCore core(s, rules,
                         {*ftpw::NetAddr::parse_host_port("127.0.0.1:4000"), *ftpw::NetAddr::parse_host_port("127.0.0.2:21")});
  Sink sink;
  sink.core = &core;
  sink.give = data[0] & 4;
  sink.sync = data[0] & 8;
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
      case 2:
        switch ((flags >> 2) % 10) {
          case 0: core.on_data({ftpw::DataEvent::server_leg}, now, sink); break;
          case 1: core.on_data({ftpw::DataEvent::opened}, now, sink); break;
          case 2:
            core.on_data({ftpw::DataEvent::closed, n, len, (flags & 0x80) != 0,
                          (flags & 0x40) ? ftpw::DataEnd::tls_not_resumed : ftpw::DataEnd::complete},
                         now, sink);
            break;
          case 3: if (sink.asked) sink.answer(now); break;
          case 4: core.on_tick(now * 1000000, sink); break;
          case 5: core.on_client_eof(now, sink); break;
          case 6: core.on_server_gone(ftpw::EndReason::upstream_closed, now, sink); break;
          case 7: core.on_data_moved(now); break;
          case 8: core.on_tls_ready(ftpw::Side::client, now, sink); break;
          case 9: core.on_tls_ready(ftpw::Side::server, now, sink); break;
        }
        break;
      case 3: core.finish(now, sink); break;
    }
  }
  return 0;
}
