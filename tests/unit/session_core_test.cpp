#include <gtest/gtest.h>

#include <algorithm>

#include "core_harness.h"

using namespace ftpw;
using namespace ftpw::test;

namespace {
bool has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}
}  // namespace

TEST(SessionCore, HoldsClientUntilGreeting) {
  CoreRig r(Mode::enforce, "rules/default.toml", false);
  r.client("USER u");
  EXPECT_EQ(r.take_server(), "");
  r.server("220 hi");
  EXPECT_EQ(r.take_server(), "USER u\r\n");
}

TEST(SessionCore, PipelinedCommandsJudgedAfterReplies) {
  CoreRig r(Mode::enforce);
  r.client_raw("USER u\r\nPASS p\r\n");
  EXPECT_EQ(r.take_server(), "USER u\r\n");
  EXPECT_TRUE(r.core->client_paused());
  r.server("331 pw");
  EXPECT_EQ(r.take_server(), "PASS p\r\n");
  r.server("230 in");
  EXPECT_FALSE(r.core->client_paused());
  EXPECT_TRUE(r.rec.findings.empty());
}

TEST(SessionCore, PassiveReplyRewrittenToProxyAddress) {
  CoreRig r(Mode::enforce);
  r.login();
  r.take_client();
  r.client("PASV");
  EXPECT_EQ(r.take_server(), "PASV\r\n");
  r.server("227 Entering Passive Mode (127,0,0,2,156,65).");
  ASSERT_EQ(r.rec.passive_requests.size(), 1u);
  EXPECT_EQ(r.rec.passive_requests[0].to_string(), "127.0.0.2:40001");
  EXPECT_EQ(r.take_client(), "227 Entering Passive Mode (192,0,2,10,195,80).\r\n");
  r.client("EPSV");
  r.server("229 Entering Extended Passive Mode (|||40002|)");
  EXPECT_EQ(r.rec.passive_requests.back().to_string(), "127.0.0.2:40002");
  EXPECT_EQ(r.take_client(), "229 Entering Extended Passive Mode (|||50000|)\r\n");
}

TEST(SessionCore, PassiveForeignAddressUsesServerHost) {
  CoreRig r(Mode::enforce);
  r.login();
  r.client("PASV");
  r.server("227 Entering Passive Mode (10,9,9,9,156,65).");
  EXPECT_TRUE(has(r.rec.findings, "pasv-foreign-address:logged"));
  EXPECT_EQ(r.rec.passive_requests.back().to_string(), "127.0.0.2:40001");
  r.client("PASV");
  r.server("227 Entering Passive Mode (127,0,0,2,0,21).");
  EXPECT_TRUE(has(r.rec.findings, "pasv-low-port:rejected:425"));
  EXPECT_EQ(r.rec.passive_requests.size(), 1u);
}

TEST(SessionCore, EpsvFallsBackToPasv) {
  CoreRig r(Mode::enforce);
  r.login();
  r.take_server();
  r.take_client();
  r.client("EPSV");
  EXPECT_EQ(r.take_server(), "EPSV\r\n");
  r.server("500 Unknown command.");
  EXPECT_EQ(r.take_server(), "PASV\r\n");
  EXPECT_EQ(r.take_client(), "");
  r.server("227 Entering Passive Mode (127,0,0,2,156,65).");
  EXPECT_EQ(r.take_client(), "229 Entering Extended Passive Mode (|||50000|)\r\n");
  r.client("RETR f");
  EXPECT_TRUE(r.rec.findings.empty());
}

TEST(SessionCore, ActiveRewrittenAndBounceRefused) {
  CoreRig r(Mode::audit);
  r.login();
  r.take_server();
  r.client("PORT 127,0,0,1,200,10");
  ASSERT_EQ(r.rec.active_requests.size(), 1u);
  EXPECT_EQ(r.rec.active_requests[0].to_string(), "127.0.0.1:51210");
  EXPECT_EQ(r.take_server(), "PORT 192,0,2,10,195,80\r\n");
  r.server("200 PORT ok");
  r.client("EPRT |1|127.0.0.1|40000|");
  EXPECT_EQ(r.take_server(), "EPRT |1|192.0.2.10|50000|\r\n");
  r.server("200 ok");
  r.take_client();
  // Someone else's address, a privileged port, IPv6 on an IPv4 session: refused in every mode.
  for (const char* c : {"PORT 10,0,0,1,200,10", "PORT 127,0,0,1,0,25", "EPRT |2|::1|4000|"}) {
    r.rec.findings.clear();
    r.client(c);
    EXPECT_EQ(r.take_server(), "") << c;
    EXPECT_EQ(r.take_client().substr(0, 4), "504 ") << c;
    EXPECT_TRUE(has(r.rec.findings, "port-bounce:rejected:504")) << c;
  }
  EXPECT_EQ(r.rec.active_requests.size(), 2u);
  r.client("PORT 1,2,3");
  EXPECT_EQ(r.take_client().substr(0, 4), "501 ");
}

TEST(SessionCore, TransferDirection) {
  CoreRig r(Mode::enforce);
  r.login();
  const std::pair<const char*, bool> cases[] = {{"RETR f", true},  {"LIST", true},  {"NLST", true}, {"MLSD", true},
                                                {"STOR f", false}, {"STOU", false}, {"APPE f", false}};
  for (const auto& [cmd, download] : cases) {
    r.client("EPSV");
    r.server("229 (|||40001|)");
    r.client(cmd);
    r.server("150 go");
    r.server("226 done");
    r.data_closed(3, 5);
    ASSERT_FALSE(r.rec.transfers.empty()) << cmd;
    EXPECT_EQ(r.rec.transfers.back().download, download) << cmd;
    EXPECT_EQ(r.rec.transfers.back().bytes, download ? 3u : 5u) << cmd;
  }
  EXPECT_EQ(r.rec.transfers.size(), 7u);
}

TEST(SessionCore, Reply125AnnotatedAndCompletionAfterData) {
  CoreRig r(Mode::enforce);
  r.login();
  r.client("EPSV");
  r.server("229 (|||40001|)");
  r.data(DataEvent::server_leg);
  r.data(DataEvent::opened);
  r.client("RETR f");
  r.server("125 Data connection already open. Transfer starting.");
  EXPECT_TRUE(r.rec.reply_reused.back());
  EXPECT_TRUE(r.core->transfer_running());
  r.take_client();
  r.server("226 Transfer complete.");
  EXPECT_EQ(r.take_client(), "");  // waits for the data connection
  EXPECT_TRUE(r.rec.transfers.empty());
  r.client("NOOP");
  r.server("200 ok");
  EXPECT_EQ(r.take_client(), "");  // behind the completion
  r.data_closed(1234, 0);
  EXPECT_EQ(r.take_client(), "226 Transfer complete.\r\n200 ok\r\n");
  ASSERT_EQ(r.rec.transfers.size(), 1u);
  EXPECT_TRUE(r.rec.transfers[0].reused);
  EXPECT_TRUE(r.rec.transfers[0].download);
  EXPECT_EQ(r.rec.transfers[0].bytes, 1234u);
  EXPECT_EQ(r.rec.transfers[0].code, 226);
  EXPECT_EQ(r.rec.transfers[0].path, "f");
  EXPECT_TRUE(r.rec.findings.empty());
}

TEST(SessionCore, Reply125WithoutDataConnectionIsAServerFinding) {
  CoreRig r(Mode::enforce);
  r.login();
  r.client("EPSV");
  r.server("229 (|||40001|)");
  r.client("RETR f");
  r.server("125 already open");
  EXPECT_TRUE(has(r.rec.findings, "reply-125-without-data:logged"));
}

TEST(SessionCore, UnsolicitedReplyPassesInAudit) {
  CoreRig r(Mode::audit);
  r.login();
  r.rec.to_client.clear();
  r.server("226 out of nowhere");
  EXPECT_TRUE(has(r.rec.findings, "reply-unsolicited:logged"));
  EXPECT_EQ(r.rec.to_client, "226 out of nowhere\r\n");
  r.rec.to_client.clear();
  r.server("421 closing");  // never dropped, never a finding
  EXPECT_EQ(r.rec.to_client, "421 closing\r\n");
}

TEST(SessionCore, ServerReplyTables) {
  CoreRig r(Mode::enforce);
  r.login();
  r.exchange("CWD x", "227 what");
  EXPECT_TRUE(has(r.rec.findings, "reply-unexpected:logged"));
  r.rec.findings.clear();
  r.exchange("NOOP", "421 bye");  // universal
  EXPECT_TRUE(r.rec.findings.empty());
  r.rec.to_client.clear();
  r.server("200 out of nowhere");
  EXPECT_TRUE(has(r.rec.findings, "reply-unsolicited:rejected:0"));
  EXPECT_EQ(r.rec.to_client, "");  // enforce: never reaches the client
  r.rec.findings.clear();
  CoreRig t(Mode::enforce);
  t.login();
  t.client("PASV");
  t.server("227 (127,0,0,2,156,65)");
  t.client("RETR f");
  t.server("150 one");
  t.server("150 two");
  EXPECT_TRUE(has(t.rec.findings, "reply-preliminary-repeated:logged"));
}

TEST(SessionCore, AborDuringTransfer) {
  CoreRig r(Mode::enforce);
  r.login();
  r.client("PASV");
  r.server("227 (127,0,0,2,156,65)");
  r.client("RETR big");
  r.server("150 sending");
  r.take_server();
  r.take_client();
  r.client_raw("\xff\xf4\xff\xf2" "ABOR\r\n");
  ASSERT_EQ(r.rec.aborts.size(), 1u);
  EXPECT_EQ(r.rec.aborts[0], "abor");
  EXPECT_EQ(r.take_server(), "\xff\xf4\xff\xf2" "ABOR\r\n");
  r.server("426 Transfer aborted.");
  r.server("226 ABOR successful.");
  EXPECT_EQ(r.take_client(), "426 Transfer aborted.\r\n226 ABOR successful.\r\n");
  ASSERT_EQ(r.rec.transfers.size(), 1u);
  EXPECT_EQ(r.rec.transfers[0].code, 426);
  EXPECT_FALSE(r.core->client_paused());
  EXPECT_TRUE(r.rec.findings.empty()) << r.rec.findings[0];
}

TEST(SessionCore, FeatHidesTls) {
  CoreRig r(Mode::enforce);
  r.take_client();
  r.client("FEAT");
  r.server("211-Features:");
  r.server(" AUTH TLS");
  r.server(" EPSV");
  r.server(" PBSZ");
  r.server(" PROT");
  r.server(" UTF8");
  r.server("211 End");
  EXPECT_EQ(r.take_client(), "211-Features:\r\n EPSV\r\n UTF8\r\n211 End\r\n");
}

TEST(SessionCore, FramingProblemsNeverForwardedAndFloodCloses) {
  CoreRig r(Mode::audit);
  r.login();
  r.take_server();
  r.take_client();
  r.client_raw("DELE a\nRETR b\r\n");
  EXPECT_TRUE(has(r.rec.findings, "bare_lf:rejected:500"));
  EXPECT_EQ(r.take_server(), "RETR b\r\n");
  r.server("503 no data setup");
  r.take_client();
  r.client_raw(std::string("CWD a\0b\r\n", 9));
  EXPECT_TRUE(has(r.rec.findings, "nul_in_line:rejected:500"));
  EXPECT_EQ(r.take_server(), "");
  r.client_raw("CWD " + std::string(5000, 'x') + "\r\n");
  EXPECT_TRUE(has(r.rec.findings, "line_too_long:rejected:500"));
  EXPECT_EQ(r.take_server(), "");
  EXPECT_EQ(r.take_client(), "500 NUL byte inside a command line.\r\n500 Command line too long.\r\n");
  for (int i = 0; i < 20 && !r.core->closed(); ++i) r.client_raw("junk\n");
  EXPECT_TRUE(r.core->closed());
  EXPECT_EQ(r.rec.closes, 1);
  EXPECT_TRUE(has(r.rec.findings, "bad-line-flood:rejected:421"));
}

TEST(SessionCore, MultiLineReplyOverflowCloses) {
  CoreRig r(Mode::enforce);
  r.client("HELP");
  r.server("214-help");
  for (int i = 0; i < 10001 && !r.core->closed(); ++i) r.server("line");
  EXPECT_TRUE(r.core->closed());
  EXPECT_NE(r.take_client().find("421 "), std::string::npos);
}

TEST(SessionCore, ServerCannotInjectRepliesThroughText) {
  // A bare LF from the server ends no line (RFC 959: CRLF does): the text
  // after it belongs to the same reply, and the client gets that one line
  // with the LF as a space, so it frames it as the proxy did.
  CoreRig r(Mode::enforce);
  r.login();
  r.take_client();
  r.client("MKD x");
  r.core->on_server_bytes("257 \"x\n226 Transfer complete.\" created\r\n", 0, r.rec);
  EXPECT_EQ(r.take_client(), "257 \"x 226 Transfer complete.\" created\r\n");
  EXPECT_TRUE(has(r.rec.findings, "reply-framing:logged"));
  EXPECT_FALSE(has(r.rec.findings, "reply-unsolicited:logged"));
  // The next command gets its own reply.
  r.client("NOOP");
  r.server("200 NOOP ok.");
  EXPECT_EQ(r.take_client(), "200 NOOP ok.\r\n");
}

TEST(SessionCore, QuitAnswered221EndsTheSessionAsQuit) {
  CoreRig r(Mode::enforce);
  r.login();
  r.client("QUIT");
  EXPECT_EQ(r.rec.closes, 0);
  r.server("221 Goodbye.");
  EXPECT_EQ(r.rec.closes, 1);
  EXPECT_EQ(r.rec.last_close, EndReason::quit);
  EXPECT_EQ(name_of(r.rec.last_close), "quit");
}

TEST(SessionCore, QuitRefusedDoesNotEndTheSession) {
  CoreRig r(Mode::enforce);
  r.login();
  r.client("QUIT");
  r.server("500 Not now.");
  EXPECT_EQ(r.rec.closes, 0);
  r.client("NOOP");
  r.server("221 Goodbye.");  // a 221 that answers NOOP is no QUIT
  EXPECT_EQ(r.rec.closes, 0);
}

// The event orders a fast client produces (PASV, connect, RETR at once)
// against a server that answers 125 as soon as it has accepted the proxy's
// data connection: none of them is a finding about the server.
TEST(SessionCore, Reply125BeforeTheProxysConnectCompletes) {
  CoreRig r(Mode::enforce);
  r.login();
  r.client("PASV");
  r.server("227 Entering Passive Mode (127,0,0,2,156,65).");
  r.data(DataEvent::server_leg);  // the client connected; the proxy connects on
  r.client("RETR f");
  r.server("125 Data connection already open. Transfer starting.");
  r.data(DataEvent::opened);  // the proxy's connect callback, after the 125
  r.data_closed();
  r.server("226 Transfer complete.");
  EXPECT_TRUE(r.rec.findings.empty()) << r.rec.findings.front();
  ASSERT_EQ(r.rec.transfers.size(), 1u);
  EXPECT_TRUE(r.rec.transfers[0].reused);
}

TEST(SessionCore, Reply125AfterTheDataConnectionCameAndWent) {
  CoreRig r(Mode::audit);
  r.login();
  r.client("EPSV");
  r.server("229 Entering Extended Passive Mode (|||40001|)");
  r.data(DataEvent::server_leg);
  r.data(DataEvent::opened);
  r.data_closed();  // an empty file: done before the 125 is read
  r.client("RETR empty");
  r.server("125 Data connection already open. Transfer starting.");
  r.server("226 Transfer complete.");
  EXPECT_TRUE(r.rec.findings.empty()) << r.rec.findings.front();
  ASSERT_EQ(r.rec.transfers.size(), 1u);
  EXPECT_TRUE(r.rec.transfers[0].reused);
}

TEST(SessionCore, Reply125WithNoDataConnectionForThisSetupIsAFinding) {
  CoreRig r(Mode::enforce);
  r.login();
  r.client("PASV");
  r.server("227 Entering Passive Mode (127,0,0,2,156,65).");
  r.data(DataEvent::server_leg);
  r.data(DataEvent::opened);
  r.data_closed();
  r.client("RETR a");
  r.server("125 Data connection already open. Transfer starting.");
  r.server("226 Transfer complete.");
  EXPECT_TRUE(r.rec.findings.empty());
  // A new setup: the previous connection does not count for it.
  r.client("PASV");
  r.server("227 Entering Passive Mode (127,0,0,2,156,66).");
  r.client("RETR b");
  r.server("125 Data connection already open. Transfer starting.");
  ASSERT_EQ(r.rec.findings.size(), 1u);
  EXPECT_EQ(r.rec.findings[0], "reply-125-without-data:logged");
}

TEST(SessionCore, Reply125ForAnActiveConnectionMadeBeforeThe200) {
  CoreRig r(Mode::enforce);
  r.login();
  r.client("PORT 127,0,0,1,200,10");
  r.data(DataEvent::server_leg);  // the server connects for PORT at once
  r.server("200 Active data connection established.");
  r.client("RETR f");
  r.server("125 Data connection already open. Transfer starting.");
  EXPECT_TRUE(r.rec.findings.empty()) << r.rec.findings.front();
}

// lftp to a server that lists CLNT and LANG in FEAT (ProFTPD): both go before
// USER (RFC 2640 §4.1: LANG SHOULD precede authentication), as does HOST.
TEST(SessionCore, LangClntAndHostBeforeLoginPass) {
  CoreRig r(Mode::enforce);  // greeted
  for (const char* cmd : {"FEAT", "CLNT lftp/4.9.2", "LANG", "OPTS UTF8 ON", "HOST ftp.example.org"}) {
    r.client(cmd);
    EXPECT_EQ(r.take_server(), std::string(cmd) + "\r\n");
    r.server(std::string(cmd) == "FEAT" ? "211 End" : std::string(cmd).rfind("HOST", 0) == 0 ? "220 ok" : "200 ok");
  }
  EXPECT_TRUE(r.rec.findings.empty()) << r.rec.findings.front();
  r.client("USER u");
  r.server("331 pw");
  r.client("PASS p");
  r.server("230 in");
  EXPECT_TRUE(r.rec.findings.empty()) << r.rec.findings.front();
}

// pyftpdlib answers a QUIT sent during a transfer at once, before the
// transfer's 226 (RFC 959 §4.1.1 has it wait): the 221 is held until the
// completion has gone out, in command order, and then the session ends.
TEST(SessionCore, Quit221BeforeTheTransfersCompletionIsHeldBehindIt) {
  CoreRig r(Mode::enforce);
  r.login();
  r.client("PASV");
  r.server("227 Entering Passive Mode (127,0,0,2,156,65).");
  r.take_server();
  r.data(DataEvent::server_leg);
  r.data(DataEvent::opened);
  r.client_raw("RETR f\r\nQUIT\r\n");
  r.server("150 Sending.");
  r.take_client();
  EXPECT_EQ(r.take_server(), "RETR f\r\nQUIT\r\n");
  r.server("221 Goodbye.");
  EXPECT_EQ(r.take_client(), "");  // held
  EXPECT_EQ(r.rec.closes, 0);
  r.server("226 Transfer complete.");
  EXPECT_EQ(r.take_client(), "");  // the completion waits for its data, the 221 behind it
  EXPECT_EQ(r.rec.closes, 0);
  r.data_closed(10, 0);
  EXPECT_EQ(r.take_client(), "226 Transfer complete.\r\n221 Goodbye.\r\n");
  EXPECT_EQ(r.rec.closes, 1);
  EXPECT_EQ(r.rec.last_close, EndReason::quit);
  ASSERT_EQ(r.rec.findings.size(), 1u);
  EXPECT_EQ(r.rec.findings[0], "reply-quit-before-transfer-end:logged");
}
