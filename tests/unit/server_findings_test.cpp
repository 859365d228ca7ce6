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
