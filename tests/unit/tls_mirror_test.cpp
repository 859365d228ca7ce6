// FTPS as the core sees it (RFC 4217): AUTH, PBSZ, PROT and CCC answered by
// the proxy, the gates of tls.required and tls.data, bytes injected behind
// AUTH, FEAT, and the proxy's own AUTH TLS toward the server.
#include <gtest/gtest.h>

#include <algorithm>

#include "core_harness.h"

using namespace ftpw;
using namespace ftpw::test;

namespace {

bool has(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }

CoreSettings tls_settings(Mode mode, DataProtection data = DataProtection::client, bool required = false) {
  CoreSettings s = CoreRig::settings(mode);
  s.tls.terminate = true;
  s.tls.required = required;
  s.tls.data = data;
  return s;
}

// AUTH TLS answered and the handshake done.
void protect(CoreRig& r) {
  r.client("AUTH TLS");
  ASSERT_EQ(r.take_client(), "234 Proceed with negotiation.\r\n");
  ASSERT_EQ(r.rec.tls_starts, std::vector<Side>{Side::client});
  r.core->on_tls_ready(Side::client, 0, r.rec);
}

// Protected, PBSZ 0, PROT P, logged in, a passive setup whose server leg began.
void protected_passive(CoreRig& r) {
  protect(r);
  r.client("PBSZ 0");
  r.client("PROT P");
  r.login();
  r.client("PASV");
  r.server("227 Entering Passive Mode (127,0,0,2,156,65).");
  r.data(DataEvent::server_leg);
}

}  // namespace

TEST(Tls, AuthIsRefusedWhenTheProxyDoesNotTerminateTls) {
  CoreRig r(Mode::enforce);
  r.client("AUTH TLS");
  EXPECT_EQ(r.take_client(), "534 TLS is not available through this proxy.\r\n");
  EXPECT_TRUE(r.rec.tls_starts.empty());
  EXPECT_EQ(r.take_server(), "");
}

TEST(Tls, TheProxyAnswersAuthPbszProtAndNothingReachesTheServer) {
  CoreRig r(tls_settings(Mode::enforce));
  r.client("AUTH TLS");
  EXPECT_EQ(r.take_client(), "234 Proceed with negotiation.\r\n");
  // Nothing is judged before the handshake completes.
  EXPECT_EQ(r.rec.tls_starts, std::vector<Side>{Side::client});
  r.core->on_tls_ready(Side::client, 0, r.rec);
  r.client("PBSZ 0");
  EXPECT_EQ(r.take_client(), "200 PBSZ=0\r\n");
  r.client("PROT P");
  EXPECT_EQ(r.take_client(), "200 Protection level set to Private.\r\n");
  EXPECT_EQ(r.take_server(), "");
  r.login();
  r.client("PASV");
  r.server("227 Entering Passive Mode (127,0,0,2,156,65).");
  ASSERT_EQ(r.rec.data_protect, std::vector<bool>{true});
  r.data(DataEvent::server_leg);
  r.data(DataEvent::opened);
  r.client("RETR f");
  r.server("150 Here it comes.");
  EXPECT_EQ(r.rec.transfer_starts, 1);
  r.data_closed(10, 0);
  r.server("226 Transfer complete.");
  ASSERT_EQ(r.rec.transfers.size(), 1u);
  EXPECT_TRUE(r.rec.transfers[0].protected_data);
  // PROT C: the next data connection is clear.
  r.exchange("PROT C", "");
  r.client("PASV");
  r.server("227 Entering Passive Mode (127,0,0,2,156,66).");
  EXPECT_EQ(r.rec.data_protect, (std::vector<bool>{true, false}));
}

TEST(Tls, AuthSslIsAnAliasAndASecondAuthIsRefused) {
  CoreRig r(tls_settings(Mode::enforce));
  r.client("AUTH SSL");
  EXPECT_EQ(r.take_client(), "234 Proceed with negotiation.\r\n");
  r.core->on_tls_ready(Side::client, 0, r.rec);
  r.client("AUTH TLS");
  EXPECT_EQ(r.take_client(), "503 The control connection is already protected.\r\n");
  r.client("AUTH KERBEROS_V4");
  EXPECT_EQ(r.take_client(), "503 The control connection is already protected.\r\n");
}

TEST(Tls, BytesBehindAuthAreAnInjectionAndEndTheSession) {
  CoreRig r(tls_settings(Mode::audit));
  r.client_raw("AUTH TLS\r\nUSER evil\r\n");
  EXPECT_TRUE(has(r.rec.findings, "tls-injection:rejected:0"));
  EXPECT_EQ(r.rec.last_close, EndReason::client_tls_failed);
  EXPECT_TRUE(r.rec.tls_starts.empty());
  EXPECT_EQ(r.take_server(), "");  // the USER never reached the server
}

TEST(Tls, SequenceRulesHoldInsideTls) {
  CoreRig r(tls_settings(Mode::enforce));
  r.client("PBSZ 0");  // before AUTH
  EXPECT_EQ(r.take_client(), "503 Bad sequence of commands.\r\n");
  EXPECT_TRUE(has(r.rec.findings, "pbsz-needs-auth:rejected:503"));
  protect(r);
  r.client("PROT P");  // before PBSZ
  EXPECT_EQ(r.take_client(), "503 Bad sequence of commands.\r\n");
  EXPECT_TRUE(has(r.rec.findings, "prot-needs-pbsz:rejected:503"));
  r.login();
  r.client("RNTO b");
  EXPECT_EQ(r.take_client().substr(0, 4), "503 ");
  EXPECT_TRUE(has(r.rec.findings, "rnto-needs-rnfr:rejected:503"));
  EXPECT_EQ(r.take_server(), "");
}

TEST(Tls, AuditModeLogsButTheProxyStillCannotProtectWithoutAuth) {
  CoreRig r(tls_settings(Mode::audit));
  r.client("PBSZ 0");
  EXPECT_TRUE(has(r.rec.findings, "pbsz-needs-auth:logged"));
  EXPECT_EQ(r.take_client(), "503 Send PBSZ after AUTH.\r\n");
  EXPECT_EQ(r.take_server(), "");
}

TEST(Tls, RequiredRefusesCommandsBeforeTheHandshake) {
  CoreRig r(tls_settings(Mode::audit, DataProtection::client, true));
  r.client("USER u");
  EXPECT_EQ(r.take_client(), "530 TLS required: send AUTH TLS first.\r\n");
  EXPECT_TRUE(has(r.rec.findings, "tls-required:rejected:530"));
  EXPECT_EQ(r.take_server(), "");
  r.client("FEAT");  // allowed before
  EXPECT_EQ(r.take_server(), "FEAT\r\n");
  r.server("211-Features:\r\n MDTM\r\n211 End");
  r.take_client();
  protect(r);
  r.client("USER u");
  EXPECT_EQ(r.take_server(), "USER u\r\n");
}

TEST(Tls, DataRequiredAndClear) {
  CoreRig req(tls_settings(Mode::audit, DataProtection::required));
  protect(req);
  req.login();
  req.client("LIST");
  EXPECT_EQ(req.take_client(), "521 Data connections must be protected: send PROT P.\r\n");
  EXPECT_TRUE(has(req.rec.findings, "prot-p-required:rejected:521"));
  EXPECT_EQ(req.take_server(), "");

  CoreRig clear(tls_settings(Mode::audit, DataProtection::clear));
  protect(clear);
  clear.client("PBSZ 0");
  clear.take_client();
  clear.client("PROT P");
  EXPECT_EQ(clear.take_client(), "536 Protection level Private is not allowed here.\r\n");
  clear.client("PROT S");
  EXPECT_EQ(clear.take_client(), "536 Only PROT C and PROT P are supported.\r\n");
}

TEST(Tls, CccAndReinAreRefusedOnAProtectedSession) {
  CoreRig r(tls_settings(Mode::audit));
  protect(r);
  r.client("CCC");
  EXPECT_EQ(r.take_client(), "533 CCC refused: the control connection stays protected.\r\n");
  r.client("REIN");
  EXPECT_EQ(r.take_client(), "502 REIN is not available on a protected session.\r\n");
  EXPECT_EQ(r.take_server(), "");
}

TEST(Tls, FeatOffersWhatTheProxyTerminates) {
  CoreRig r(tls_settings(Mode::enforce));
  r.client("FEAT");
  r.server("211-Features:\r\n MDTM\r\n AUTH TLS-C\r\n SIZE\r\n211 End");
  EXPECT_EQ(r.take_client(), "211-Features:\r\n MDTM\r\n SIZE\r\n AUTH TLS\r\n AUTH SSL\r\n PBSZ\r\n PROT\r\n211 End\r\n");
}

TEST(Tls, ImplicitIsProtectedFromTheStart) {
  CoreSettings s = CoreRig::settings(Mode::enforce);
  s.tls.implicit = true;
  CoreRig r(s);
  r.client("PBSZ 0");
  EXPECT_EQ(r.take_client(), "200 PBSZ=0\r\n");
  r.client("PROT P");
  EXPECT_EQ(r.take_client(), "200 Protection level set to Private.\r\n");
  r.client("AUTH TLS");
  EXPECT_EQ(r.take_client(), "503 The control connection is already protected.\r\n");
}

TEST(Tls, AClientDataConnectionThatDoesNotResumeFailsItsTransferWith425) {
  CoreRig r(tls_settings(Mode::enforce));
  protected_passive(r);
  r.client("RETR f");
  r.rec.data_open = false;
  r.core->on_data({DataEvent::closed, 0, 0, false, DataEnd::tls_not_resumed}, 0, r.rec);
  r.server("150 Here it comes.");
  r.server("226 Transfer complete.");
  const std::string out = r.take_client();
  EXPECT_NE(out.find("425 Data connection refused: its TLS did not resume"), std::string::npos) << out;
  EXPECT_EQ(out.find("226"), std::string::npos) << out;
  EXPECT_TRUE(has(r.rec.findings, "data-failure:logged"));
}

TEST(Tls, TheProxyProtectsItsOwnConnectionToTheServerBeforeTheGreeting) {
  CoreSettings s = CoreRig::settings(Mode::enforce);
  s.tls.upstream = true;
  CoreRig r(s, "rules/default.toml", false);
  r.server("220 legacy server");
  EXPECT_EQ(r.take_server(), "AUTH TLS\r\n");
  EXPECT_EQ(r.take_client(), "");
  r.server("234 go");
  EXPECT_EQ(r.rec.tls_starts, std::vector<Side>{Side::server});
  r.core->on_tls_ready(Side::server, 0, r.rec);
  EXPECT_EQ(r.take_server(), "PBSZ 0\r\n");
  r.server("200 PBSZ=0");
  EXPECT_EQ(r.take_server(), "PROT P\r\n");
  r.server("200 PROT now Private.");
  EXPECT_EQ(r.take_client(), "220 legacy server\r\n");
  r.client("USER u");
  EXPECT_EQ(r.take_server(), "USER u\r\n");
}

TEST(Tls, AServerThatRefusesTlsEndsTheSessionWith421) {
  CoreSettings s = CoreRig::settings(Mode::enforce);
  s.tls.upstream = true;
  CoreRig r(s, "rules/default.toml", false);
  r.server("220 legacy server");
  r.take_server();
  r.server("500 AUTH not understood");
  EXPECT_TRUE(has(r.rec.findings, "upstream-tls-refused:logged"));
  EXPECT_EQ(r.rec.last_close, EndReason::upstream_tls_refused);
  EXPECT_EQ(r.take_client(), reply_of(EndReason::upstream_tls_refused));
}

TEST(Tls, AuthWhileATransferRunsIsRefused) {
  CoreRig r(tls_settings(Mode::enforce));
  r.login();
  r.client("PASV");
  r.server("227 Entering Passive Mode (127,0,0,2,156,65).");
  r.data(DataEvent::server_leg);
  r.data(DataEvent::opened);
  r.client("RETR f");
  r.server("150 Here it comes.");
  r.take_client();
  r.client("AUTH TLS");
  EXPECT_EQ(r.take_client(), "503 AUTH only when no reply is owed: not during a transfer.\r\n");
  EXPECT_TRUE(r.rec.tls_starts.empty());
}

TEST(Tls, AuthSslProtectsDataConnectionsToo) {
  CoreRig r(tls_settings(Mode::enforce));
  r.client("AUTH SSL");
  r.core->on_tls_ready(Side::client, 0, r.rec);
  r.login();
  r.client("PASV");
  r.server("227 Entering Passive Mode (127,0,0,2,156,65).");
  EXPECT_EQ(r.rec.data_protect, std::vector<bool>{true});
}

TEST(Tls, AProtChangeDropsTheDataSetupMadeUnderTheOldLevel) {
  CoreRig r(tls_settings(Mode::enforce, DataProtection::required));
  protect(r);
  r.client("PBSZ 0");
  r.login();
  r.client("PASV");  // set up in the clear
  r.server("227 Entering Passive Mode (127,0,0,2,156,65).");
  ASSERT_EQ(r.rec.data_protect, std::vector<bool>{false});
  r.take_client();
  r.take_server();
  r.client("PROT P");
  EXPECT_EQ(r.rec.aborts, std::vector<std::string>{"protection-changed"});
  r.take_client();
  r.client("RETR secret");  // never over the clear setup
  EXPECT_EQ(r.take_client().substr(0, 4), "503 ");
  EXPECT_EQ(r.take_server(), "");
}

TEST(Tls, WithTlsOnlyTowardTheServerTheClientCannotChangeIt) {
  CoreSettings s = CoreRig::settings(Mode::audit);
  s.tls.upstream = true;
  CoreRig r(s, "rules/default.toml", false);
  r.server("220 legacy server");
  r.server("234 go");
  r.core->on_tls_ready(Side::server, 0, r.rec);
  r.server("200 PBSZ=0");
  r.server("200 PROT now Private.");
  r.take_server();
  r.take_client();
  r.client("PROT C");
  EXPECT_EQ(r.take_client().substr(0, 4), "503 ");
  r.client("CCC");
  EXPECT_EQ(r.take_client().substr(0, 4), "533 ");
  r.client("AUTH TLS");
  EXPECT_EQ(r.take_client().substr(0, 4), "534 ");
  EXPECT_EQ(r.take_server(), "");
}

TEST(Tls, AServerThatHangsUpDuringTheProxysHandshakeGets421ToTheClient) {
  CoreSettings s = CoreRig::settings(Mode::enforce);
  s.tls.upstream = true;
  CoreRig r(s, "rules/default.toml", false);
  r.server("220 legacy server");
  r.server("234 go");
  r.core->on_server_gone(EndReason::upstream_closed, 0, r.rec);
  EXPECT_EQ(r.rec.last_close, EndReason::upstream_tls_refused);
  EXPECT_EQ(r.take_client(), reply_of(EndReason::upstream_tls_refused));
}

TEST(Tls, TheCoreDecidesWhetherADataConnectionMustResume) {
  for (const bool require : {true, false}) {
    for (const bool resumed : {true, false}) {
      CoreSettings s = tls_settings(Mode::enforce);
      s.tls.require_reuse = require;
      CoreRig r(s);
      protected_passive(r);
      r.core->on_data({DataEvent::client_tls, 0, 0, false, DataEnd::complete, resumed}, 0, r.rec);
      const bool refused = require && !resumed;
      EXPECT_EQ(r.rec.aborts, refused ? std::vector<std::string>{"tls-not-resumed"} : std::vector<std::string>{})
          << require << resumed;
      EXPECT_EQ(has(r.rec.findings, "data-failure:logged"), refused) << require << resumed;
      if (!refused) continue;
      r.take_client();
      r.client("RETR f");
      r.server("150 Here it comes.");
      r.server("226 Transfer complete.");
      const std::string out = r.take_client();
      EXPECT_NE(out.find("425 Data connection refused: its TLS did not resume"), std::string::npos) << out;
    }
  }
}
