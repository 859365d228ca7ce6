// Every rule of rules/default.toml: one sequence that triggers it, one valid
// sequence that does not; enforce mode answers and never forwards, audit mode
// forwards and logs.
#include <gtest/gtest.h>

#include "core_harness.h"

using namespace ftpw;
using namespace ftpw::test;

namespace {
bool has(const std::vector<std::string>& v, const std::string& s) {
  for (const auto& x : v)
    if (x == s) return true;
  return false;
}
}  // namespace

TEST(DefaultRules, AllIdsPresent) {
  auto rs = load_rules("rules/default.toml");
  for (const char* id : {"pass-needs-user", "acct-needs-pass", "rnto-needs-rnfr", "rest-needs-transfer",
                         "transfer-needs-data-setup", "pbsz-needs-auth", "prot-needs-pbsz", "ccc-needs-auth",
                         "epsv-all-locks", "host-before-user", "login-required", "telnet-sequence"})
    EXPECT_NE(rs->find(id), nullptr) << id;
  EXPECT_NE(load_rules("rules/strict.toml")->find("argument-syntax"), nullptr);
}

TEST(DefaultRules, PassNeedsUser) {
  CoreRig r(Mode::enforce);
  r.client("PASS secret");
  EXPECT_EQ(r.take_server(), "");
  EXPECT_EQ(r.take_client(), "503 Login with USER first.\r\n");
  EXPECT_TRUE(has(r.rec.findings, "pass-needs-user:rejected:503"));
  // A USER answered 530 does not arm PASS either.
  r.exchange("USER bad", "530 no");
  r.take_server();
  r.client("PASS x");
  EXPECT_EQ(r.take_server(), "");
  CoreRig ok(Mode::enforce);
  ok.login();
  EXPECT_TRUE(ok.rec.findings.empty());
  EXPECT_TRUE(ok.core->logged_in());
}

TEST(DefaultRules, PassNeedsUserAuditForwards) {
  CoreRig r(Mode::audit);
  r.client("PASS secret");
  EXPECT_EQ(r.take_server(), "PASS secret\r\n");
  EXPECT_EQ(r.take_client(), "");
  EXPECT_TRUE(has(r.rec.findings, "pass-needs-user:logged"));
  r.server("503 Login with USER first.");
  EXPECT_EQ(r.take_client(), "503 Login with USER first.\r\n");
}

TEST(DefaultRules, AcctNeedsPass) {
  CoreRig r(Mode::enforce);
  r.exchange("USER u", "331 pw");
  r.client("ACCT a");
  EXPECT_TRUE(has(r.rec.findings, "acct-needs-pass:rejected:503"));
  CoreRig ok(Mode::enforce);
  ok.exchange("USER u", "331 pw");
  ok.exchange("PASS p", "332 need account");
  ok.exchange("ACCT a", "230 ok");
  EXPECT_TRUE(ok.rec.findings.empty());
  EXPECT_TRUE(ok.core->logged_in());
}

TEST(DefaultRules, RntoNeedsRnfr) {
  CoreRig r(Mode::enforce);
  r.login();
  r.client("RNTO b");
  EXPECT_TRUE(has(r.rec.findings, "rnto-needs-rnfr:rejected:503"));
  r.rec.findings.clear();
  r.exchange("RNFR missing", "550 no such file");
  r.take_server();
  r.client("RNTO b");
  EXPECT_EQ(r.take_server(), "");
  EXPECT_TRUE(has(r.rec.findings, "rnto-needs-rnfr:rejected:503"));
  r.rec.findings.clear();
  // RNFR, then something else, then RNTO: the rename is dropped.
  r.exchange("RNFR a", "350 ready");
  r.exchange("NOOP", "200 ok");
  r.client("RNTO b");
  EXPECT_TRUE(has(r.rec.findings, "rnto-needs-rnfr:rejected:503"));
  CoreRig ok(Mode::enforce);
  ok.login();
  ok.exchange("RNFR a", "350 ready");
  ok.exchange("RNTO b", "250 done");
  EXPECT_TRUE(ok.rec.findings.empty());
}

TEST(DefaultRules, RestNeedsTransfer) {
  CoreRig r(Mode::enforce);
  r.login();
  r.exchange("REST 100", "350 restarting");
  r.take_server();
  r.client("DELE x");
  EXPECT_EQ(r.take_server(), "");
  EXPECT_TRUE(has(r.rec.findings, "rest-needs-transfer:rejected:503"));
  CoreRig ok(Mode::enforce);
  ok.login();
  ok.exchange("REST 100", "350 restarting");
  ok.exchange("EPSV", "229 Entering Extended Passive Mode (|||40001|)");
  ok.exchange("TYPE I", "200 ok");
  ok.client("RETR f");
  ok.server("150 here");
  ok.server("226 done");
  ok.exchange("DELE f", "250 ok");
  EXPECT_TRUE(ok.rec.findings.empty()) << ok.rec.findings[0];
}

TEST(DefaultRules, StrictRestAllowsNothingBetween) {
  CoreRig r(Mode::enforce, "rules/strict.toml");
  r.login();
  r.exchange("REST 100", "350 restarting");
  r.client("TYPE I");
  EXPECT_TRUE(has(r.rec.findings, "rest-needs-transfer:rejected:503"));
}

TEST(DefaultRules, TransferNeedsDataSetup) {
  CoreRig r(Mode::enforce);
  r.login();
  for (const char* c : {"RETR f", "STOR f", "LIST", "NLST", "MLSD", "APPE f", "STOU"}) {
    r.rec.findings.clear();
    r.take_server();
    r.client(c);
    EXPECT_EQ(r.take_server(), "") << c;
    EXPECT_TRUE(has(r.rec.findings, "transfer-needs-data-setup:rejected:503")) << c;
  }
  // A data setup is spent by one transfer.
  r.rec.findings.clear();
  r.exchange("PASV", "227 Entering Passive Mode (127,0,0,2,156,65)");
  r.client("LIST");
  r.server("150 here");
  r.server("226 done");
  EXPECT_TRUE(r.rec.findings.empty());
  r.client("LIST");
  EXPECT_TRUE(has(r.rec.findings, "transfer-needs-data-setup:rejected:503"));
  // A refused transfer (550) keeps the setup (curl retries RETR after SIZE fails).
  CoreRig ok(Mode::enforce);
  ok.login();
  ok.exchange("EPSV", "229 (|||40001|)");
  ok.exchange("RETR missing", "550 no");
  ok.client("RETR there");
  ok.server("150 ok");
  ok.server("226 ok");
  EXPECT_TRUE(ok.rec.findings.empty());
}

TEST(DefaultRules, SecurityOrdering) {
  CoreRig r(Mode::enforce);
  r.client("PBSZ 0");
  EXPECT_TRUE(has(r.rec.findings, "pbsz-needs-auth:rejected:503"));
  r.client("PROT P");
  EXPECT_TRUE(has(r.rec.findings, "prot-needs-pbsz:rejected:503"));
  r.login();
  r.client("CCC");
  EXPECT_TRUE(has(r.rec.findings, "ccc-needs-auth:rejected:503"));
  // In the linter (observe), AUTH answered 234 arms PBSZ, PBSZ arms PROT.
  CoreSettings s;
  s.mode = Mode::audit;
  s.observe = true;
  SessionCore core(s, load_rules("rules/default.toml"), {});
  Recorder rec;
  for (auto [c, rep] : {std::pair{"AUTH TLS", "234 go"}, {"PBSZ 0", "200 ok"}, {"PROT P", "200 ok"}}) {
    core.on_client_bytes(std::string(c) + "\r\n", 0, rec);
    core.on_server_bytes(std::string(rep) + "\r\n", 0, rec);
  }
  EXPECT_TRUE(rec.findings.empty()) << rec.findings[0];
}

TEST(DefaultRules, AuthIsRefusedByTheProxy) {
  CoreRig r(Mode::audit);
  r.client("AUTH TLS");
  EXPECT_EQ(r.take_server(), "");
  EXPECT_EQ(r.take_client(), "534 TLS is not available through this proxy.\r\n");
  EXPECT_TRUE(r.rec.findings.empty());
}

TEST(DefaultRules, EpsvAllLocks) {
  CoreRig r(Mode::enforce);
  r.login();
  r.exchange("EPSV ALL", "200 EPSV ALL ok");
  for (const char* c : {"PASV", "PORT 127,0,0,1,4,1", "EPRT |1|127.0.0.1|1025|", "LPSV"}) {
    r.rec.findings.clear();
    r.client(c);
    EXPECT_TRUE(has(r.rec.findings, "epsv-all-locks:rejected:503")) << c;
  }
  r.rec.findings.clear();
  r.exchange("EPSV", "229 (|||40001|)");
  EXPECT_TRUE(r.rec.findings.empty());
}

TEST(DefaultRules, HostBeforeUser) {
  CoreRig r(Mode::enforce);
  r.exchange("HOST ftp.example.com", "220 welcome");
  EXPECT_TRUE(r.rec.findings.empty());
  r.exchange("USER u", "331 pw");
  r.client("HOST other");
  EXPECT_TRUE(has(r.rec.findings, "host-before-user:rejected:503"));
}

TEST(DefaultRules, LoginRequired) {
  CoreRig r(Mode::enforce);
  r.client("CWD /etc");
  EXPECT_EQ(r.take_server(), "");
  EXPECT_EQ(r.take_client(), "530 Please login with USER and PASS.\r\n");
  EXPECT_TRUE(has(r.rec.findings, "login-required:rejected:530"));
  r.rec.findings.clear();
  for (const char* c : {"FEAT", "SYST", "HELP", "NOOP", "STAT", "OPTS UTF8 ON"}) r.exchange(c, "211 ok");
  EXPECT_EQ(std::count_if(r.rec.findings.begin(), r.rec.findings.end(),
                          [](const std::string& f) { return f.rfind("login-required", 0) == 0; }),
            0);
}

TEST(DefaultRules, TelnetSequence) {
  CoreRig r(Mode::enforce);
  r.login();
  r.client_raw("NO\xff\xf1OP\r\n");
  EXPECT_EQ(r.take_server(), "");
  EXPECT_EQ(r.take_client(), "500 Invalid TELNET sequence.\r\n");
  EXPECT_TRUE(has(r.rec.findings, "telnet-sequence:rejected:500"));
  CoreRig a(Mode::audit);
  a.login();
  a.take_server();
  a.client_raw("NO\xff\xf1OP\r\n");
  EXPECT_EQ(a.take_server(), "NOOP\r\n");  // forwarded normalised
  EXPECT_TRUE(has(a.rec.findings, "telnet-sequence:logged"));
  CoreRig ok(Mode::enforce);
  ok.login();
  ok.take_server();
  ok.client_raw("CWD a\xff\xff" "b\r\n");
  EXPECT_EQ(ok.take_server(), "CWD a\xff\xff" "b\r\n");
  EXPECT_TRUE(ok.rec.findings.empty());
}

TEST(DefaultRules, CommandSyntax) {
  CoreRig r(Mode::enforce);
  r.login();
  r.client("US3R x");
  EXPECT_TRUE(has(r.rec.findings, "command-syntax:rejected:500"));
}

TEST(DefaultRules, CleanClientSessionsRaiseNothing) {
  // curl: login, PWD, EPSV, TYPE I, SIZE, RETR, QUIT
  CoreRig r(Mode::enforce);
  r.login();
  r.exchange("PWD", "257 \"/\" is current");
  r.exchange("EPSV", "229 Entering Extended Passive Mode (|||40001|)");
  r.exchange("TYPE I", "200 Switching to Binary mode.");
  r.exchange("SIZE f", "213 1024");
  r.client("RETR f");
  r.server("150 Opening BINARY mode data connection");
  r.server("226 Transfer complete.");
  r.exchange("QUIT", "221 Goodbye.");
  EXPECT_TRUE(r.rec.findings.empty()) << r.rec.findings[0];
}
