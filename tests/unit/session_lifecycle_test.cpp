// The session's lifecycle as the core decides it: a transfer's outcome and
// its completion reply against the data connection, the timers through the
// clock the caller reports, a side going away, flow control, and the end.
// The caller (the proxy) only reports facts here; every decision is checked
// on what the core tells the sink.
#include <gtest/gtest.h>

#include <algorithm>

#include "core_harness.h"

using namespace ftpw;
using namespace ftpw::test;

namespace {

constexpr std::uint64_t kSec = 1000000;  // microseconds

// Logged in, a passive data connection set up and open, RETR running.
void retr_running(CoreRig& r) {
  r.login();
  r.client("PASV");
  r.server("227 Entering Passive Mode (127,0,0,2,156,65).");
  r.data(DataEvent::server_leg);
  r.data(DataEvent::opened);
  r.client("RETR f");
  r.server("150 Opening data connection.");
  r.take_client();
  r.take_server();
}

CoreSettings timed(Mode mode) {
  CoreSettings s = CoreRig::settings(mode);
  s.timers.upstream_connect_ms = 2000;
  s.timers.login_ms = 2000;
  s.timers.reply_ms = 2000;
  s.timers.idle_ms = 2000;
  s.timers.data_connect_ms = 2000;
  s.timers.data_stall_ms = 2000;
  s.timers.close_grace_ms = 2000;
  return s;
}

}  // namespace

TEST(SessionLifecycle, CompletionWaitsForTheDataConnectionToClose) {
  CoreRig r(Mode::enforce);
  retr_running(r);
  r.server("226 Transfer complete.");
  EXPECT_EQ(r.take_client(), "");
  EXPECT_TRUE(r.rec.transfers.empty());
  r.data_closed(4096, 0);
  EXPECT_EQ(r.take_client(), "226 Transfer complete.\r\n");
  ASSERT_EQ(r.rec.transfers.size(), 1u);
  EXPECT_EQ(r.rec.transfers[0].code, 226);
  EXPECT_EQ(r.rec.transfers[0].bytes, 4096u);
  EXPECT_FALSE(r.rec.transfers[0].reused);
}

TEST(SessionLifecycle, A2xxForADataConnectionTheProxyCutBecomes426) {
  CoreRig r(Mode::enforce);
  retr_running(r);
  r.server("226 Transfer complete.");
  r.data_closed(100, 0, /*cut=*/true);  // a stall timeout, say
  EXPECT_EQ(r.take_client(), "426 Connection closed; transfer aborted.\r\n");
  ASSERT_EQ(r.rec.transfers.size(), 1u);
  EXPECT_EQ(r.rec.transfers[0].code, 426);
  EXPECT_EQ(r.rec.transfers[0].bytes, 100u);
  EXPECT_EQ(r.rec.reply_codes.back(), 426);  // the proxy's own reply is an event too
}

TEST(SessionLifecycle, APeerResetAfterTheLastByteKeepsThe226) {
  CoreRig r(Mode::enforce);
  retr_running(r);
  r.data_closed(100, 0, /*cut=*/false);  // the client reset its leg; nothing the proxy cut
  r.server("226 Transfer complete.");
  EXPECT_EQ(r.take_client(), "226 Transfer complete.\r\n");
  EXPECT_EQ(r.rec.transfers.at(0).code, 226);
}

TEST(SessionLifecycle, AFailedTransferTearsTheDataConnectionDown) {
  CoreRig r(Mode::enforce);
  retr_running(r);
  r.server("451 Local error.");
  ASSERT_EQ(r.rec.aborts.size(), 1u);
  EXPECT_EQ(r.rec.aborts[0], "transfer-failed");
  EXPECT_EQ(r.take_client(), "451 Local error.\r\n");
  EXPECT_EQ(r.rec.transfers.at(0).code, 451);
}

TEST(SessionLifecycle, ANewDataSetupReplacesTheOldConnectionFirst) {
  CoreRig r(Mode::enforce);
  retr_running(r);
  r.server("226 Transfer complete.");
  r.client("PASV");  // the client pipelines its next setup while the 226 waits
  r.server("227 Entering Passive Mode (127,0,0,2,156,66).");
  // The old connection went first (cut), its transfer ended 426, then the 227.
  const std::string out = r.take_client();
  EXPECT_EQ(out.rfind("426 ", 0), 0u) << out;
  EXPECT_NE(out.find("\r\n227 "), std::string::npos) << out;
}

TEST(SessionLifecycle, ListenerAnsweredLaterKeepsReplyOrder) {
  CoreRig r(Mode::audit);
  r.login();
  r.rec.core = nullptr;  // the caller answers open_data later
  r.client("PASV");
  r.server("227 Entering Passive Mode (127,0,0,2,156,65).");
  r.client("NOOP");
  EXPECT_EQ(r.take_server(), "PASV\r\n");  // NOOP waits: the PASV is not answered yet
  EXPECT_EQ(r.take_client(), "");
  r.server("200 unsolicited");  // waits behind the 227 the client has not had yet
  EXPECT_EQ(r.take_client(), "");
  r.core->on_data_listening(r.rec.proxy_addr, 0, r.rec);
  EXPECT_EQ(r.take_client(), "227 Entering Passive Mode (192,0,2,10,195,80).\r\n200 unsolicited\r\n");
  EXPECT_EQ(r.take_server(), "NOOP\r\n");
}

TEST(SessionLifecycle, NoListenerMeans425) {
  CoreRig r(Mode::enforce);
  r.login();
  r.rec.listen_fails = true;
  r.client("EPSV");
  r.server("229 Entering Extended Passive Mode (|||40001|)");
  EXPECT_EQ(r.take_client(), "425 Can't open data connection.\r\n");
  r.client("PORT 127,0,0,1,200,10");
  EXPECT_EQ(r.take_client(), "425 Can't open data connection.\r\n");
  EXPECT_EQ(r.take_server(), "EPSV\r\n");  // the PORT never reached the server
}

TEST(SessionLifecycle, TimersFireFromTheReportedClock) {
  CoreRig r(timed(Mode::enforce));
  r.core->on_tick(2 * kSec, r.rec);
  EXPECT_TRUE(r.rec.timeouts.empty());  // not past the limit yet
  r.core->on_tick(2 * kSec + 1000 + 1, r.rec);
  ASSERT_EQ(r.rec.timeouts.size(), 1u);
  EXPECT_EQ(r.rec.timeouts[0], Timer::login);
  EXPECT_EQ(r.take_client(), reply_of(EndReason::login_timeout));
  EXPECT_EQ(r.rec.last_close, EndReason::login_timeout);
}

TEST(SessionLifecycle, ReplyTimerCountsFromTheForwardedCommand) {
  CoreSettings s = timed(Mode::enforce);
  s.timers.login_ms = s.timers.idle_ms = 60000;
  CoreRig r(s);
  r.core->on_client_bytes("USER u\r\n", 1 * kSec, r.rec);
  r.core->on_tick(3 * kSec, r.rec);
  EXPECT_TRUE(r.rec.timeouts.empty());
  r.core->on_tick(3 * kSec + 2000, r.rec);
  ASSERT_EQ(r.rec.timeouts.size(), 1u);
  EXPECT_EQ(r.rec.timeouts[0], Timer::reply);
  EXPECT_EQ(r.take_client(), reply_of(EndReason::reply_timeout));
}

TEST(SessionLifecycle, IdleStartsWhenTheCompletionGoesOut) {
  CoreSettings s = timed(Mode::enforce);
  s.timers.data_stall_ms = 60000;
  CoreRig r(s);
  retr_running(r);  // logged in and transferring at t=0
  r.core->on_tick(10 * kSec, r.rec);
  EXPECT_TRUE(r.rec.timeouts.empty());  // a running transfer is not idleness
  r.core->on_server_bytes("226 Transfer complete.\r\n", 10 * kSec, r.rec);
  r.core->on_data({DataEvent::closed, 1, 0, false}, 11 * kSec, r.rec);
  r.core->on_tick(13 * kSec, r.rec);
  EXPECT_TRUE(r.rec.timeouts.empty());
  r.core->on_tick(13 * kSec + 2000, r.rec);
  ASSERT_EQ(r.rec.timeouts.size(), 1u);
  EXPECT_EQ(r.rec.timeouts[0], Timer::idle);
}

TEST(SessionLifecycle, DataTimersAbortTheDataConnection) {
  CoreSettings s = timed(Mode::enforce);
  s.timers.idle_ms = 60000;
  CoreRig r(s);
  r.login();
  r.core->on_client_bytes("PASV\r\n", 1 * kSec, r.rec);
  r.core->on_server_bytes("227 Entering Passive Mode (127,0,0,2,156,65).\r\n", 1 * kSec, r.rec);
  r.core->on_tick(3 * kSec + 1000, r.rec);
  ASSERT_EQ(r.rec.aborts.size(), 1u);
  EXPECT_EQ(r.rec.aborts[0], "data-connect-timeout");
  EXPECT_EQ(r.rec.closes, 0);  // the session goes on
}

TEST(SessionLifecycle, CloseGraceCutsAClosingSession) {
  CoreRig r(timed(Mode::enforce));
  r.core->on_closing(1 * kSec);
  r.core->on_tick(3 * kSec, r.rec);
  EXPECT_EQ(r.rec.close_nows, 0);
  r.core->on_tick(3 * kSec + 1000, r.rec);
  EXPECT_EQ(r.rec.close_nows, 1);
  EXPECT_TRUE(r.rec.timeouts.empty());
}

TEST(SessionLifecycle, AHalfClosedClientIsAnsweredThenTheSessionEnds) {
  CoreRig r(Mode::enforce);
  r.login();
  r.client("NOOP");
  r.core->on_client_eof(0, r.rec);
  EXPECT_EQ(r.rec.closes, 0);
  r.server("200 ok");
  EXPECT_EQ(r.take_client(), "200 ok\r\n");
  EXPECT_EQ(r.rec.closes, 1);
  EXPECT_EQ(r.rec.last_close, EndReason::client_closed);
}

TEST(SessionLifecycle, AHalfClosedClientsTransferWithNoDataConnectionEnds) {
  CoreRig r(Mode::audit);
  r.login();
  r.client("RETR f");  // no data setup: nothing will ever connect
  r.core->on_client_eof(0, r.rec);
  EXPECT_EQ(r.rec.closes, 1);
  EXPECT_EQ(r.rec.last_close, EndReason::client_closed);
}

TEST(SessionLifecycle, AServerThatDiesOwingRepliesEndsWith421) {
  CoreRig r(Mode::enforce);
  r.login();
  r.client("NOOP");
  r.core->on_server_gone(EndReason::upstream_closed, 0, r.rec);
  EXPECT_EQ(r.take_client(), reply_of(EndReason::upstream_closed));
  EXPECT_EQ(r.rec.last_close, EndReason::upstream_closed);

  CoreRig q(Mode::enforce);
  q.login();
  q.core->on_server_gone(EndReason::upstream_closed, 0, q.rec);  // owing nothing
  EXPECT_EQ(q.take_client(), "");
  EXPECT_EQ(q.rec.last_close, EndReason::upstream_closed);
}

TEST(SessionLifecycle, After221TheHeldCompletionStillGoesOut) {
  CoreRig r(Mode::enforce);
  retr_running(r);
  r.server("226 Transfer complete.");
  r.client("QUIT");
  r.server("221 Goodbye.");
  EXPECT_EQ(r.rec.closes, 0);
  r.core->on_server_gone(EndReason::upstream_closed, 0, r.rec);  // the server closes after its 221
  EXPECT_EQ(r.rec.closes, 0);
  r.data_closed(7, 0);
  EXPECT_EQ(r.take_client(), "226 Transfer complete.\r\n221 Goodbye.\r\n");
  EXPECT_EQ(r.rec.closes, 1);
  EXPECT_EQ(r.rec.last_close, EndReason::quit);
}

TEST(SessionLifecycle, ClientReadsAreHeldWhileItsBacklogHoldsALine) {
  CoreSettings s = CoreRig::settings(Mode::enforce);
  s.client_framer.max_line = 64;
  CoreRig r(s);
  r.client("USER u");  // waits for its reply: what follows is judged later
  EXPECT_TRUE(r.rec.holds.empty());
  r.client_raw(std::string(70, 'x'));
  ASSERT_EQ(r.rec.holds.size(), 1u);
  EXPECT_EQ(r.rec.holds[0], std::make_pair(Side::client, true));
  r.server("331 pw");  // the backlog is judged (a line too long), reading resumes
  ASSERT_EQ(r.rec.holds.size(), 2u);
  EXPECT_EQ(r.rec.holds[1], std::make_pair(Side::client, false));
}

TEST(SessionLifecycle, RepliesHeldBehindACompletionAreBounded) {
  CoreSettings s = CoreRig::settings(Mode::audit);
  s.max_held_replies = 64;
  CoreRig r(s);
  retr_running(r);
  r.server("226 Transfer complete.");
  for (int i = 0; i < 4; ++i) r.server("200 unsolicited reply, held behind the 226");
  const std::vector<std::pair<Side, bool>> both{{Side::client, true}, {Side::server, true}};
  EXPECT_EQ(r.rec.holds, both);
  r.data_closed(1, 0);
  ASSERT_EQ(r.rec.holds.size(), 4u);
  EXPECT_EQ(r.rec.holds[2], std::make_pair(Side::client, false));
  EXPECT_EQ(r.rec.holds[3], std::make_pair(Side::server, false));
}

TEST(SessionLifecycle, TheLoginFailureTriggerAndItsLimit) {
  CoreRig r(Mode::enforce);
  r.exchange("USER u", "331 pw");
  r.exchange("PASS wrong", "530 Login incorrect.");
  EXPECT_EQ(r.rec.login_failures, 1);
  r.core->on_login_limit(r.rec);
  EXPECT_NE(r.take_client().find(std::string(reply_of(EndReason::login_failures))), std::string::npos);
  EXPECT_EQ(r.rec.last_close, EndReason::login_failures);
}

TEST(SessionLifecycle, ALoginPastTheUsersSessionsIsAnswered421NotItsServers230) {
  CoreRig r(Mode::enforce);
  r.rec.refuse_logins = true;
  r.exchange("USER bob", "331 pw");
  r.take_client();
  r.exchange("PASS x", "230 Login successful.");
  EXPECT_EQ(r.rec.logins, std::vector<std::string>{"bob"});
  EXPECT_EQ(r.take_client(), reply_of(EndReason::user_sessions));  // no 230 before it
  EXPECT_EQ(r.rec.last_close, EndReason::user_sessions);
  EXPECT_EQ(r.take_server().find("PWD"), std::string::npos);  // nothing more goes to the server
}

TEST(SessionLifecycle, EveryProxyEndSpeaksTheTablesReply) {
  for (EndReason e : {EndReason::shutdown, EndReason::upstream_unreachable, EndReason::idle_timeout}) {
    CoreRig r(Mode::enforce);
    r.core->end(e, r.rec);
    EXPECT_EQ(r.take_client(), reply_of(e));
    EXPECT_EQ(r.rec.last_close, e);
    EXPECT_EQ(reply_of(e).substr(0, 4), "421 ");
  }
  EXPECT_EQ(reply_of(EndReason::quit), "");
}

TEST(SessionLifecycle, AServerThatHangsUpAfter221DuringATransferStillFinishesIt) {
  CoreRig r(Mode::enforce);
  retr_running(r);
  r.client("QUIT");  // during the transfer
  r.server("221 Goodbye.");
  EXPECT_EQ(r.take_client(), "");  // held behind the transfer
  r.core->on_server_gone(EndReason::upstream_closed, 0, r.rec);  // and no 226 ever
  EXPECT_EQ(r.rec.closes, 0);       // the transfer goes on
  EXPECT_EQ(r.take_client(), "");
  r.data_closed(1000, 0);           // the data connection ended by a FIN: unconfirmed all the same
  EXPECT_EQ(r.take_client(),
            "426 Transfer not confirmed: the server closed its control connection after 221.\r\n221 Goodbye.\r\n");
  EXPECT_EQ(r.rec.last_close, EndReason::quit);
  ASSERT_EQ(r.rec.transfers.size(), 1u);
  EXPECT_EQ(r.rec.transfers[0].code, 426);
  EXPECT_EQ(r.rec.transfers[0].bytes, 1000u);
  EXPECT_NE(std::find(r.rec.findings.begin(), r.rec.findings.end(), "server-closed-before-completion:logged"),
            r.rec.findings.end());
}

TEST(SessionLifecycle, AServerThatHangsUpAfter221ToAHalfClosedClientStillSends221) {
  CoreRig r(Mode::enforce);
  retr_running(r);
  r.client("QUIT");
  r.core->on_client_eof(0, r.rec);  // the client sent QUIT and half-closed
  r.server("221 Goodbye.");
  r.core->on_server_gone(EndReason::upstream_closed, 0, r.rec);
  r.data_closed(10, 0);
  const std::string got = r.take_client();
  EXPECT_NE(got.find("426 "), std::string::npos);
  EXPECT_NE(got.find("221 Goodbye.\r\n"), std::string::npos);
  EXPECT_LT(got.find("426 "), got.find("221 "));
  EXPECT_EQ(r.rec.closes, 1);
}

TEST(SessionLifecycle, AServerThatHangsUpOwingRepliesWithout221Is421) {
  CoreRig r(Mode::enforce);
  retr_running(r);
  r.core->on_server_gone(EndReason::upstream_closed, 0, r.rec);
  EXPECT_EQ(r.rec.last_close, EndReason::upstream_closed);
  EXPECT_EQ(r.take_client().substr(0, 4), "421 ");
}
