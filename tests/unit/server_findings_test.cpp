// What the server got wrong (a server that lets a flagged command through,
// a transfer reported complete with no data connection), and the command
// rate limit.
#include <gtest/gtest.h>

#include <algorithm>

#include "core_harness.h"

using namespace ftpw;
using namespace ftpw::test;

namespace {
bool has(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }
constexpr std::uint64_t kSec = 1000000;
}  // namespace

TEST(ServerFindings, ALenientServerAcceptingAFlaggedCommand) {
  CoreRig r(Mode::audit);
  r.login();
  r.exchange("RNTO x", "250 Rename successful.");  // no RNFR before: flagged, forwarded in audit mode
  EXPECT_TRUE(has(r.rec.findings, "rnto-needs-rnfr:logged"));
  EXPECT_TRUE(has(r.rec.findings, "server-accepted-out-of-sequence:logged"));
  r.rec.findings.clear();
  r.exchange("RNTO y", "503 Bad sequence of commands.");  // a server that checks: nothing to say
  EXPECT_FALSE(has(r.rec.findings, "server-accepted-out-of-sequence:logged"));
  r.rec.findings.clear();
  r.client("RETR f");  // no data setup
  r.server("150 Opening data connection.");
  EXPECT_TRUE(has(r.rec.findings, "server-accepted-out-of-sequence:logged"));
}

TEST(ServerFindings, NothingWhenNoRuleFlaggedTheCommand) {
  CoreRig r(Mode::audit);
  r.login();
  r.exchange("RNFR a", "350 ready");
  r.exchange("RNTO b", "250 ok");
  EXPECT_TRUE(r.rec.findings.empty()) << r.rec.findings[0];
}

TEST(ServerFindings, ATransferCompletedWithNoDataConnection) {
  CoreRig r(Mode::audit);
  r.login();
  r.client("PASV");
  r.server("227 Entering Passive Mode (127,0,0,2,156,65).");
  r.client("RETR f");
  r.server("150 Here it comes.");
  r.data_closed(0, 0, true);  // the listener gave up: nobody ever connected
  r.server("226 Transfer complete.");
  EXPECT_TRUE(has(r.rec.findings, "server-completed-without-data:logged"));

  CoreRig ok(Mode::audit);
  ok.login();
  ok.client("PASV");
  ok.server("227 Entering Passive Mode (127,0,0,2,156,65).");
  ok.data(DataEvent::server_leg);
  ok.data(DataEvent::opened);
  ok.client("RETR f");
  ok.server("150 Here it comes.");
  ok.data_closed(10, 0);
  ok.server("226 Transfer complete.");
  EXPECT_TRUE(ok.rec.findings.empty()) << ok.rec.findings[0];
}

TEST(CommandRate, ABurstThenTheRate) {
  CoreSettings s = CoreRig::settings(Mode::enforce);
  s.command_rate = 2;
  s.command_burst = 3;
  CoreRig r(s);
  for (int i = 0; i < 3; ++i) {  // the burst, all at t=0
    r.core->on_client_bytes("NOOP\r\n", 0, r.rec);
    r.core->on_server_bytes("200 ok\r\n", 0, r.rec);
  }
  r.core->on_client_bytes("NOOP\r\n", kSec / 2, r.rec);  // one token back after half a second
  r.core->on_server_bytes("200 ok\r\n", kSec / 2, r.rec);
  EXPECT_EQ(r.rec.closes, 0);
  r.take_client();
  r.core->on_client_bytes("NOOP\r\n", kSec / 2, r.rec);  // none left
  EXPECT_EQ(r.take_client(), reply_of(EndReason::command_rate));
  EXPECT_TRUE(has(r.rec.findings, "command-rate:rejected:421"));
  EXPECT_EQ(r.rec.last_close, EndReason::command_rate);
}

TEST(CommandRate, OffByDefault) {
  CoreRig r(Mode::enforce);
  for (int i = 0; i < 500; ++i) {
    r.core->on_client_bytes("NOOP\r\n", 0, r.rec);
    r.core->on_server_bytes("200 ok\r\n", 0, r.rec);
  }
  EXPECT_EQ(r.rec.closes, 0);
}

namespace {
struct Causes : Recorder {
  std::vector<std::string> causes;  // "cause:client" / "cause:server"
  void on_finding(const Finding& f) override {
    Recorder::on_finding(f);
    if (f.rule == "data-failure")
      causes.push_back(std::string(f.cause) + (f.side == Side::client ? ":client" : ":server"));
  }
};

// Logged in, then `setup` (PASV or PORT) answered as a server would.
std::unique_ptr<SessionCore> session(Causes& rec, bool passive) {
  auto core = std::make_unique<SessionCore>(CoreSettings{}, load_rules("rules/default.toml"),
                                            SessionPeers{*NetAddr::parse_host_port("127.0.0.1:40000"),
                                                         *NetAddr::parse_host_port("127.0.0.2:21")});
  rec.core = core.get();
  for (const char* l : {"220 hi", "331 pw", "230 in"}) {
    core->on_server_bytes(std::string(l) + "\r\n", 0, rec);
    if (std::string(l) == "220 hi") core->on_client_bytes("USER u\r\n", 0, rec);
    if (std::string(l) == "331 pw") core->on_client_bytes("PASS p\r\n", 0, rec);
  }
  if (passive) {
    core->on_client_bytes("PASV\r\n", 0, rec);
    core->on_server_bytes("227 Entering Passive Mode (127,0,0,2,156,65).\r\n", 0, rec);
  } else {
    core->on_client_bytes("PORT 127,0,0,1,200,10\r\n", 0, rec);
    core->on_server_bytes("200 ok\r\n", 0, rec);
  }
  return core;
}
}  // namespace

TEST(DataFailure, EachCauseTheProxyCanSee) {
  {
    Causes rec;
    auto core = session(rec, true);
    core->on_data({DataEvent::closed, 0, 0, true, DataEnd::connect_timeout}, 0, rec);
    EXPECT_EQ(rec.causes, std::vector<std::string>{"client-never-connected:client"});
  }
  {
    Causes rec;
    auto core = session(rec, false);
    core->on_data({DataEvent::closed, 0, 0, true, DataEnd::connect_timeout}, 0, rec);
    EXPECT_EQ(rec.causes, std::vector<std::string>{"server-refused-proxy:server"});
  }
  {
    Causes rec;
    auto core = session(rec, true);
    core->on_data({DataEvent::closed, 0, 0, false, DataEnd::connect_failed}, 0, rec);
    EXPECT_EQ(rec.causes, std::vector<std::string>{"server-passive-unreachable:server"});
  }
  {  // the proxy cut a running transfer: its 426
    Causes rec;
    auto core = session(rec, true);
    core->on_data({DataEvent::opened}, 0, rec);
    core->on_client_bytes("RETR f\r\n", 0, rec);
    core->on_server_bytes("150 go\r\n", 0, rec);
    core->on_data({DataEvent::closed, 10, 0, true, DataEnd::cut}, 0, rec);
    core->on_server_bytes("426 aborted\r\n", 0, rec);
    EXPECT_EQ(rec.causes, std::vector<std::string>{"cut-by-proxy:server"});
  }
  {  // a stranger knocked, then the server gave up: 425
    Causes rec;
    auto core = session(rec, true);
    core->on_data({DataEvent::stranger}, 0, rec);
    core->on_client_bytes("RETR f\r\n", 0, rec);
    core->on_server_bytes("150 go\r\n", 0, rec);
    core->on_server_bytes("425 no data connection\r\n", 0, rec);
    core->on_data({DataEvent::closed, 0, 0, true, DataEnd::cut}, 0, rec);  // the proxy drops the listener
    EXPECT_EQ(rec.causes, std::vector<std::string>{"data-peer-mismatch:client"});
  }
  {  // the server ended it on its own
    Causes rec;
    auto core = session(rec, true);
    core->on_data({DataEvent::opened}, 0, rec);
    core->on_client_bytes("RETR f\r\n", 0, rec);
    core->on_server_bytes("150 go\r\n", 0, rec);
    core->on_data({DataEvent::closed, 10, 0, false, DataEnd::peer_error}, 0, rec);
    core->on_server_bytes("426 Connection closed; transfer aborted.\r\n", 0, rec);
    EXPECT_EQ(rec.causes, std::vector<std::string>{"server-aborted:server"});
  }
  {  // the server's 426 came while the data connection was still open: the
     // proxy closes it, but the failure is the server's
    Causes rec;
    auto core = session(rec, true);
    core->on_data({DataEvent::opened}, 0, rec);
    core->on_client_bytes("RETR f\r\n", 0, rec);
    core->on_server_bytes("150 go\r\n426 Connection closed; transfer aborted.\r\n", 0, rec);
    core->on_data({DataEvent::closed, 7, 0, true, DataEnd::cut}, 0, rec);
    EXPECT_EQ(rec.causes, std::vector<std::string>{"server-aborted:server"});
  }
  {  // a good transfer: nothing
    Causes rec;
    auto core = session(rec, true);
    core->on_data({DataEvent::opened}, 0, rec);
    core->on_client_bytes("RETR f\r\n", 0, rec);
    core->on_server_bytes("150 go\r\n", 0, rec);
    core->on_data({DataEvent::closed, 10, 0, false, DataEnd::complete}, 0, rec);
    core->on_server_bytes("226 done\r\n", 0, rec);
    EXPECT_TRUE(rec.causes.empty());
  }
}

TEST(ServerFindings, ABareLfLineIsNeverTakenAsAReplyOfItsOwn) {
  CoreRig r(Mode::enforce);
  r.login();
  r.take_client();
  r.client("NOOP");
  r.core->on_server_bytes("200 NOOP ok.\n200 smuggled\r\n", 0, r.rec);  // one line by RFC 959
  EXPECT_EQ(r.take_client(), "200 NOOP ok. 200 smuggled\r\n");
  EXPECT_NE(std::find(r.rec.findings.begin(), r.rec.findings.end(), "reply-framing:logged"), r.rec.findings.end());
  // the next command gets its own reply, not one left over
  r.client("NOOP");
  r.server("200 again.");
  EXPECT_EQ(r.take_client(), "200 again.\r\n");
}
