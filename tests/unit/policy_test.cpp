// Policy rules: the match keys (users, clients, arg), verb classes, first
// match in file order, allow, and rule files adding to the built-in rules.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "core_harness.h"
#include "server_path.h"

using namespace ftpw;
using namespace ftpw::test;

namespace {

std::string file_text(const std::string& rel) {
  std::ifstream in(std::string(FTPW_SOURCE_DIR) + "/" + rel);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The default rules, then `policy` as a rule file.
std::shared_ptr<const RuleSet> with_defaults(const std::string& policy, std::vector<RuleSet::Error>* errs = nullptr) {
  std::vector<RuleSet::Error> e;
  auto rs = RuleSet::load({{"default.toml", file_text("rules/default.toml")}, {"policy.toml", policy}}, e, 1);
  if (errs) *errs = e;
  if (!rs) return nullptr;
  return std::make_shared<const RuleSet>(std::move(*rs));
}

struct PolicyRig {
  Recorder rec;
  std::unique_ptr<SessionCore> core;
  PolicyRig(const std::string& policy, Mode mode = Mode::enforce, const char* client = "127.0.0.1:40000") {
    auto rules = with_defaults(policy);
    EXPECT_TRUE(rules);
    CoreSettings s;
    s.mode = mode;
    core = std::make_unique<SessionCore>(
        s, rules, SessionPeers{*NetAddr::parse_host_port(client), *NetAddr::parse_host_port("127.0.0.2:21")});
    rec.core = core.get();
    core->on_server_bytes("220 hi\r\n", 0, rec);
  }
  // Sends a command; answers it `reply` if it reached the server. Returns
  // what the client got.
  std::string cmd(const std::string& line, const std::string& reply = "200 ok") {
    rec.to_client.clear();
    const auto before = rec.to_server.size();
    core->on_client_bytes(line + "\r\n", 0, rec);
    if (rec.to_server.size() != before) core->on_server_bytes(reply + "\r\n", 0, rec);
    return rec.to_client;
  }
  bool forwarded(const std::string& line) const { return rec.to_server.find(line + "\r\n") != std::string::npos; }
  void login(const std::string& user = "alice") {
    cmd("USER " + user, "331 pw");
    cmd("PASS x", "230 in");
  }
};

bool has(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }

}  // namespace

TEST(Glob, StarQuestionAndBytes) {
  EXPECT_TRUE(glob_match("guest*", "guest"));
  EXPECT_TRUE(glob_match("guest*", "guest42"));
  EXPECT_FALSE(glob_match("guest*", "aguest"));
  EXPECT_TRUE(glob_match("*-admin", "team-a-admin"));
  EXPECT_TRUE(glob_match("a?c", "abc"));
  EXPECT_FALSE(glob_match("a?c", "ac"));
  EXPECT_TRUE(glob_match("*", ""));
  EXPECT_TRUE(glob_match("caf\xe9*", "caf\xe9-1"));  // not UTF-8: byte for byte
  EXPECT_FALSE(glob_match("anonymous", "Anonymous"));
  EXPECT_TRUE(glob_match("*a*b*c*", std::string(5000, 'a') + "bc"));
}

TEST(Cidr, ParseAndContain) {
  auto net = Cidr::parse("10.0.0.0/8");
  ASSERT_TRUE(net);
  EXPECT_TRUE(net->contains(*NetAddr::parse_host("10.200.3.4")));
  EXPECT_FALSE(net->contains(*NetAddr::parse_host("11.0.0.1")));
  EXPECT_TRUE(net->contains(*NetAddr::parse_host("::ffff:10.1.2.3")));  // mapped: its IPv4 form
  auto one = Cidr::parse("::1");
  ASSERT_TRUE(one);
  EXPECT_TRUE(one->contains(*NetAddr::parse_host("::1")));
  EXPECT_FALSE(one->contains(*NetAddr::parse_host("127.0.0.1")));
  auto v6 = Cidr::parse("2001:db8::/32");
  ASSERT_TRUE(v6);
  EXPECT_TRUE(v6->contains(*NetAddr::parse_host("2001:db8:ffff::1")));
  EXPECT_FALSE(v6->contains(*NetAddr::parse_host("2001:db9::1")));
  EXPECT_TRUE(Cidr::parse("0.0.0.0/0")->contains(*NetAddr::parse_host("192.0.2.1")));
  EXPECT_TRUE(Cidr::parse("192.0.2.0/25")->contains(*NetAddr::parse_host("192.0.2.127")));
  EXPECT_FALSE(Cidr::parse("192.0.2.0/25")->contains(*NetAddr::parse_host("192.0.2.128")));
  for (const char* bad : {"10.0.0.0/33", "10.0.0/8", "host.example", "10.0.0.0/", "::1/129", "1.2.3.4/x"})
    EXPECT_FALSE(Cidr::parse(bad)) << bad;
}

TEST(PolicyRules, LoadErrorsNameTheirPlace) {
  std::vector<RuleSet::Error> e;
  EXPECT_FALSE(with_defaults("[[rule]]\nid = \"x\"\nverbs = [\"@writes\"]\n", &e));
  ASSERT_FALSE(e.empty());
  EXPECT_NE(e[0].message.find("policy.toml:3:"), std::string::npos) << e[0].message;
  EXPECT_NE(e[0].message.find("@write"), std::string::npos) << e[0].message;  // the known ones listed
  EXPECT_FALSE(with_defaults("[[rule]]\nid = \"x\"\nverbs = [\"SITE\"]\narg = \"(unclosed\"\n", &e));
  EXPECT_NE(e.back().message.find("not a valid regex"), std::string::npos);
  EXPECT_FALSE(with_defaults("[[rule]]\nid = \"x\"\nverbs = [\"*\"]\nclients = [\"10.0.0.0/40\"]\n", &e));
  EXPECT_NE(e.back().message.find("CIDR"), std::string::npos);
  EXPECT_FALSE(with_defaults("[[rule]]\nid = \"x\"\nverbs = [\"*\"]\nusers = [\"\"]\n", &e));
  // Two rule files may not share an id; replacing a built-in one is fine.
  std::vector<RuleSet::Error> e2;
  auto ok = RuleSet::load({{"d", file_text("rules/default.toml")},
                           {"a", "[[rule]]\nid = \"p\"\nverbs = [\"SITE\"]\nenforce = \"reject\"\n"},
                           {"b", "[[rule]]\nid = \"p\"\nverbs = [\"DELE\"]\nenforce = \"reject\"\n"}},
                          e2, 1);
  EXPECT_FALSE(ok);
  ASSERT_FALSE(e2.empty());
  EXPECT_NE(e2[0].message.find("duplicate rule id 'p'"), std::string::npos);
}

TEST(PolicyRules, RuleFilesAddToTheBuiltInRules) {
  auto rs = with_defaults("[[rule]]\nid = \"no-dele\"\nverbs = [\"DELE\"]\nenforce = \"reject\"\n");
  ASSERT_TRUE(rs);
  auto defaults = load_rules("rules/default.toml");
  EXPECT_EQ(rs->rules().size(), defaults->rules().size() + 1);
  EXPECT_TRUE(rs->find("rnto-needs-rnfr"));
  const Rule* p = rs->find("no-dele");
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->policy);
  EXPECT_EQ(p->reply_code, 550);  // a policy rule's default
  EXPECT_FALSE(rs->find("rnto-needs-rnfr")->policy);
}

TEST(PolicyRules, StrictReplacesTheDefaultsAndKeepsItsOwnOrder) {
  std::vector<RuleSet::Error> e;
  auto rs = RuleSet::load({{"default.toml", file_text("rules/default.toml")},
                           {"rules/strict.toml", file_text("rules/strict.toml")}},
                          e, 1);
  ASSERT_TRUE(rs) << (e.empty() ? "" : e[0].message);
  auto strict = load_rules("rules/strict.toml");
  ASSERT_EQ(rs->rules().size(), strict->rules().size());
  for (std::size_t i = 0; i < rs->rules().size(); ++i) {
    EXPECT_EQ(rs->rules()[i].id, strict->rules()[i].id) << i;
    EXPECT_EQ(rs->rules()[i].origin, strict->rules()[i].origin) << i;
  }
}

TEST(PolicyRules, FirstMatchDecidesAndAllowStopsThePolicyRules) {
  PolicyRig r(R"(
[[rule]]
id = "incoming-ok"
verbs = ["STOR"]
arg = "^incoming/"
enforce = "allow"
audit = "allow"

[[rule]]
id = "no-uploads"
verbs = ["@write"]
enforce = "reject"
audit = "log"
)");
  r.login();
  r.cmd("PASV", "227 Entering Passive Mode (127,0,0,2,156,65).");
  EXPECT_EQ(r.cmd("STOR other/file"), "550 Requested action not taken.\r\n");
  EXPECT_FALSE(r.forwarded("STOR other/file"));
  EXPECT_TRUE(has(r.rec.findings, "no-uploads:rejected:550"));
  r.rec.findings.clear();
  r.cmd("STOR incoming/file", "150 go");
  EXPECT_TRUE(r.forwarded("STOR incoming/file"));
  EXPECT_TRUE(r.rec.findings.empty()) << r.rec.findings[0];  // allowed: no finding
  EXPECT_EQ(r.cmd("DELE x"), "550 Requested action not taken.\r\n");
}

TEST(PolicyRules, AuditModeLogsAndForwards) {
  PolicyRig r("[[rule]]\nid = \"no-dele\"\nverbs = [\"DELE\"]\naudit = \"log\"\nenforce = \"reject\"\n", Mode::audit);
  r.login();
  EXPECT_EQ(r.cmd("DELE x", "250 deleted"), "250 deleted\r\n");
  EXPECT_TRUE(has(r.rec.findings, "no-dele:logged"));
}

TEST(PolicyRules, SequenceRulesRunFirstAndAnAllowNeverBypassesThem) {
  PolicyRig r("[[rule]]\nid = \"all-ok\"\nverbs = [\"*\"]\naudit = \"allow\"\nenforce = \"allow\"\n");
  r.login();
  EXPECT_EQ(r.cmd("RNTO x").substr(0, 4), "503 ");
  EXPECT_TRUE(has(r.rec.findings, "rnto-needs-rnfr:rejected:503"));
  EXPECT_EQ(r.cmd("PORT 127,0,0,1,0,21").substr(0, 4), "504 ");  // the bounce check too
}

TEST(PolicyRules, UsersAreGlobsOnTheLoginName) {
  const std::string policy = R"(
[[rule]]
id = "guests-read-only"
verbs = ["@write"]
users = ["guest*", "anonymous"]
enforce = "reject"
)";
  PolicyRig guest(policy);
  guest.login("guest7");
  EXPECT_EQ(guest.cmd("MKD d").substr(0, 4), "550 ");
  PolicyRig member(policy);
  member.login("alice");
  EXPECT_EQ(member.cmd("MKD d", "257 \"d\" created"), "257 \"d\" created\r\n");
}

TEST(PolicyRules, ClientsAreCidrsOnTheClientsAddress) {
  const std::string policy = R"(
[[rule]]
id = "lan-only-writes"
verbs = ["@write"]
clients = ["10.0.0.0/8", "::1"]
enforce = "allow"

[[rule]]
id = "no-writes"
verbs = ["@write"]
enforce = "reject"
)";
  PolicyRig lan(policy, Mode::enforce, "10.1.2.3:40000");
  lan.login();
  EXPECT_EQ(lan.cmd("DELE f", "250 ok"), "250 ok\r\n");
  PolicyRig far(policy, Mode::enforce, "192.0.2.9:40000");
  far.login();
  EXPECT_EQ(far.cmd("DELE f").substr(0, 4), "550 ");
}

TEST(PolicyRules, ClassesLookAtTheArgumentWhereTheyMust) {
  PolicyRig r("[[rule]]\nid = \"ro\"\nverbs = [\"@write\"]\nenforce = \"reject\"\n"
              "[[rule]]\nid = \"no-read\"\nverbs = [\"@read\"]\nenforce = \"reject\"\n");
  r.login();
  EXPECT_EQ(r.cmd("SITE CHMOD 644 f").substr(0, 4), "550 ");         // @write
  EXPECT_EQ(r.cmd("SITE HELP", "214 help"), "214 help\r\n");          // not in @write
  EXPECT_EQ(r.cmd("STAT", "211 status"), "211 status\r\n");           // STAT without argument: not @read
  EXPECT_EQ(r.cmd("STAT /etc").substr(0, 4), "550 ");                 // with one: a listing
}

TEST(PolicyRules, AHostileRegexStillMatchesInLinearTime) {
  // (a*)*b backtracks exponentially in a backtracking engine; RE2 does not.
  PolicyRig r("[[rule]]\nid = \"evil\"\nverbs = [\"SITE\"]\narg = \"(a*)*b\"\nenforce = \"reject\"\n");
  r.login();
  const std::string arg(3000, 'a');
  EXPECT_EQ(r.cmd("SITE " + arg, "500 what"), "500 what\r\n");  // no match: forwarded
  EXPECT_EQ(r.cmd("SITE " + arg + "b").substr(0, 4), "550 ");
}

TEST(PolicyRules, TheCommandEventNamesTheDecidingRule) {
  struct Cmds : Recorder {
    std::vector<std::string> rules;
    void on_command(const CommandEvent& c) override { rules.emplace_back(c.rule); }
  } rec;
  auto rules = with_defaults("[[rule]]\nid = \"no-dele\"\nverbs = [\"DELE\"]\nenforce = \"reject\"\n");
  SessionCore core(CoreSettings{}, rules, SessionPeers{});
  rec.core = &core;
  core.on_server_bytes("220 hi\r\n", 0, rec);
  core.on_client_bytes("USER u\r\n", 0, rec);
  core.on_server_bytes("331 pw\r\n", 0, rec);
  core.on_client_bytes("PASS p\r\n", 0, rec);
  core.on_server_bytes("230 in\r\n", 0, rec);
  core.on_client_bytes("DELE f\r\n", 0, rec);
  EXPECT_EQ(rec.rules, (std::vector<std::string>{"", "", "no-dele"}));
}

TEST(PolicyRules, ProfilesAreRuleFiles) {
  for (const char* f : {"rules/profiles/read-only.toml", "rules/profiles/no-site.toml",
                        "rules/profiles/anonymous-read-only.toml"}) {
    std::vector<RuleSet::Error> e;
    EXPECT_TRUE(with_defaults(file_text(f), &e)) << f << ": " << (e.empty() ? "" : e[0].message);
  }
  PolicyRig ro(file_text("rules/profiles/read-only.toml"));
  ro.login();
  ro.cmd("PASV", "227 Entering Passive Mode (127,0,0,2,156,65).");
  EXPECT_EQ(ro.cmd("STOR f"), "550 Permission denied: this server is read-only.\r\n");
  EXPECT_EQ(ro.cmd("RETR f", "150 go"), "150 go\r\n");
  PolicyRig anon(file_text("rules/profiles/anonymous-read-only.toml"));
  anon.login("anonymous");
  EXPECT_EQ(anon.cmd("DELE f").substr(0, 4), "550 ");
}

// ---------------------------------------------------------------- paths

TEST(ServerPath, ResolveAndNormalise) {
  EXPECT_EQ(resolve_path("/home/u", "f.txt"), "/home/u/f.txt");
  EXPECT_EQ(resolve_path("/home/u", "/etc/passwd"), "/etc/passwd");
  EXPECT_EQ(resolve_path("/home/u", "../../../../etc"), "/etc");  // never above '/'
  EXPECT_EQ(resolve_path("/", ".."), "/");
  EXPECT_EQ(resolve_path("/a", ".//b///c/./"), "/a/b/c");        // '//', '.', a trailing '/'
  EXPECT_EQ(resolve_path("/a/b", ""), "/a/b");
  EXPECT_EQ(resolve_path("/a", "dir with spaces/x"), "/a/dir with spaces/x");
  EXPECT_EQ(resolve_path("/a", "caf\xe9/x"), "/a/caf\xe9/x");    // bytes as they come
}

TEST(ServerPath, Quoted257Names) {
  EXPECT_EQ(parse_257_path("\"/home/u\" is the current directory"), "/home/u");
  EXPECT_EQ(parse_257_path("\"/a \"\"quoted\"\" dir\" created"), "/a \"quoted\" dir");
  EXPECT_EQ(parse_257_path("no quotes"), std::nullopt);
  EXPECT_EQ(parse_257_path("\"unterminated"), std::nullopt);
}

TEST(ServerPath, GlobsBySegment) {
  EXPECT_TRUE(path_glob_match("/srv/ftp/**", "/srv/ftp/a/b/c", "/"));
  EXPECT_TRUE(path_glob_match("/srv/ftp/**", "/srv/ftp", "/"));  // ** matches no segment too
  EXPECT_TRUE(path_glob_match("/srv/*/x", "/srv/a/x", "/"));
  EXPECT_FALSE(path_glob_match("/srv/*/x", "/srv/a/b/x", "/"));  // * stays in one segment
  EXPECT_TRUE(path_glob_match("/srv/**/x", "/srv/a/b/x", "/"));
  EXPECT_TRUE(path_glob_match("~/incoming/**", "/home/u/incoming/f", "/home/u"));
  EXPECT_FALSE(path_glob_match("~/incoming/**", "/home/v/incoming/f", "/home/u"));
  EXPECT_TRUE(path_glob_match("/pub/*.iso", "/pub/debian.iso", "/"));
  EXPECT_FALSE(path_glob_match("/pub/*.iso", "/pub/debian.iso.sig", "/"));
}

TEST(ServerPath, WhichArgumentIsAPath) {
  EXPECT_EQ(path_argument(Verb::RETR, "f"), "f");
  EXPECT_EQ(path_argument(Verb::LIST, "-la /pub"), "/pub");
  EXPECT_EQ(path_argument(Verb::LIST, "-la"), "");
  EXPECT_EQ(path_argument(Verb::STAT, ""), std::nullopt);
  EXPECT_EQ(path_argument(Verb::SITE, "CHMOD 644 f.txt"), "f.txt");
  EXPECT_EQ(path_argument(Verb::SITE, "HELP"), std::nullopt);
  EXPECT_EQ(path_argument(Verb::CDUP, ""), "..");
  EXPECT_EQ(path_argument(Verb::NOOP, ""), std::nullopt);
}

TEST(PolicyPaths, LoginDirectoryLearntQuietlyAndCwdTrackedByReplies) {
  PolicyRig r(R"(
[[rule]]
id = "uploads-only-in-incoming"
verbs = ["@write"]
not_paths = ["~/incoming/**"]
enforce = "reject"
)");
  r.cmd("USER u", "331 pw");
  r.rec.to_server.clear();
  EXPECT_EQ(r.cmd("PASS p", "230 in"), "230 in\r\n");
  EXPECT_EQ(r.rec.to_server, "PASS p\r\nPWD\r\n");  // the proxy asks, once
  r.rec.to_client.clear();
  r.core->on_server_bytes("257 \"/home/u\" is the current directory\r\n", 0, r.rec);
  EXPECT_EQ(r.rec.to_client, "");                    // never shown to the client
  EXPECT_EQ(r.rec.reply_codes.back(), 230);          // nor logged as a reply
  EXPECT_EQ(r.cmd("MKD x").substr(0, 4), "550 ");    // /home/u/x
  EXPECT_EQ(r.cmd("MKD incoming/x", "257 \"incoming/x\""), "257 \"incoming/x\"\r\n");
  EXPECT_EQ(r.cmd("CWD nowhere", "550 No such directory").substr(0, 4), "550 ");  // refused: no move
  EXPECT_EQ(r.cmd("DELE incoming/f", "250 gone"), "250 gone\r\n");
  EXPECT_EQ(r.cmd("CWD incoming", "250 ok"), "250 ok\r\n");
  EXPECT_EQ(r.cmd("DELE f", "250 gone"), "250 gone\r\n");             // /home/u/incoming/f
  EXPECT_EQ(r.cmd("DELE ../f").substr(0, 4), "550 ");                 // /home/u/f
  EXPECT_EQ(r.cmd("CDUP", "250 ok"), "250 ok\r\n");
  EXPECT_EQ(r.cmd("DELE f").substr(0, 4), "550 ");
  EXPECT_EQ(r.cmd("RNFR incoming/a", "350 ready"), "350 ready\r\n");  // each on its own path
  EXPECT_EQ(r.cmd("RNTO b").substr(0, 4), "550 ");
}

TEST(PolicyPaths, RulesWithoutPathsAskNothing) {
  PolicyRig r("[[rule]]\nid = \"no-dele\"\nverbs = [\"DELE\"]\nenforce = \"reject\"\n");
  r.cmd("USER u", "331 pw");
  r.rec.to_server.clear();
  r.cmd("PASS p", "230 in");
  EXPECT_EQ(r.rec.to_server, "PASS p\r\n");  // no PWD of the proxy's own
}

TEST(PolicyPaths, TheAuditRecordCarriesTheResolvedPath) {
  struct Rec : Recorder {
    std::string cmd_path, finding_path;
    void on_command(const CommandEvent& c) override {
      if (!c.rule.empty()) cmd_path = c.path;
    }
    void on_finding(const Finding& f) override {
      Recorder::on_finding(f);
      finding_path = f.path;
    }
  } rec;
  auto rules = with_defaults("[[rule]]\nid = \"no-etc\"\nverbs = [\"RETR\"]\npaths = [\"/etc/**\"]\n"
                             "enforce = \"reject\"\n");
  SessionCore core(CoreSettings{}, rules, SessionPeers{});
  rec.core = &core;
  for (const char* s : {"220 hi", "331 pw", "230 in", "257 \"/home/u\"", "227 Entering Passive Mode (127,0,0,2,156,65)."}) {
    core.on_server_bytes(std::string(s) + "\r\n", 0, rec);
    if (std::string(s) == "220 hi") core.on_client_bytes("USER u\r\n", 0, rec);
    if (std::string(s) == "331 pw") core.on_client_bytes("PASS p\r\n", 0, rec);
    if (std::string(s) == "257 \"/home/u\"") core.on_client_bytes("PASV\r\n", 0, rec);
  }
  core.on_client_bytes("RETR ../../etc/./passwd\r\n", 0, rec);
  EXPECT_EQ(rec.cmd_path, "/etc/passwd");
  EXPECT_EQ(rec.finding_path, "/etc/passwd");
  EXPECT_EQ(rec.findings.back(), "no-etc:rejected:550");
}

TEST(PolicyRules, ARuleAnEarlierOneAlwaysDecidesFirstIsReported) {
  auto rs = with_defaults(R"(
[[rule]]
id = "no-writes"
verbs = ["@write"]
enforce = "reject"

[[rule]]
id = "no-dele-for-guests"
verbs = ["DELE"]
users = ["guest*"]
enforce = "reject"

[[rule]]
id = "guests-may-read"
verbs = ["RETR"]
users = ["guest*"]
enforce = "allow"
audit = "allow"

[[rule]]
id = "site-chmod-logged"
verbs = ["SITE"]
enforce = "log"
)");
  ASSERT_TRUE(rs);
  const auto w = rs->shadow_warnings();
  ASSERT_EQ(w.size(), 1u) << (w.empty() ? "" : w[0]);
  EXPECT_NE(w[0].find("policy.toml:7:1: warning: rule 'no-dele-for-guests' can never decide: rule 'no-writes'"),
            std::string::npos)
      << w[0];
  // SITE is in @write only as SITE CHMOD: a plain SITE rule is not shadowed by it.
}

// ---------------------------------------------------------------- upload caps

TEST(UploadCap, RuleNeedsAnUploadVerb) {
  std::vector<RuleSet::Error> e;
  EXPECT_FALSE(with_defaults("[[rule]]\nid = \"c\"\nverbs = [\"RETR\"]\nmax_upload_bytes = 10\n", &e));
  ASSERT_FALSE(e.empty());
  EXPECT_NE(e.back().message.find("STOR, APPE or STOU"), std::string::npos);
  EXPECT_FALSE(with_defaults("[[rule]]\nid = \"c\"\nverbs = [\"STOR\"]\nmax_upload_bytes = 0\n", &e));
  auto rs = with_defaults("[[rule]]\nid = \"c\"\nverbs = [\"@write\"]\nmax_upload_bytes = 10\n");
  ASSERT_TRUE(rs);
  EXPECT_EQ(rs->find("c")->reply_code, 552);
  EXPECT_EQ(rs->find("c")->reply_line, "552 Exceeded storage allocation.\r\n");
}

TEST(UploadCap, CutAtTheCapTheClientHears552AndTheServerAbor) {
  PolicyRig r("[[rule]]\nid = \"cap\"\nverbs = [\"STOR\"]\nmax_upload_bytes = 100\nenforce = \"reject\"\n");
  r.login();
  r.cmd("PASV", "227 Entering Passive Mode (127,0,0,2,156,65).");
  r.core->on_data({DataEvent::opened}, 0, r.rec);
  r.rec.to_server.clear();
  EXPECT_EQ(r.cmd("STOR big", "150 Ok to send data."), "150 Ok to send data.\r\n");
  ASSERT_EQ(r.rec.limits.size(), 1u);
  EXPECT_EQ(r.rec.limits[0], std::make_pair(std::uint64_t{100}, true));
  EXPECT_TRUE(r.rec.findings.empty());  // nothing yet: the transfer goes ahead
  r.rec.to_client.clear();
  r.rec.data_open = false;
  r.core->on_data({DataEvent::closed, 0, 100, true, DataEnd::capped}, 0, r.rec);
  EXPECT_TRUE(has(r.rec.findings, "cap:rejected:552"));
  EXPECT_EQ(r.rec.to_server.substr(r.rec.to_server.size() - 6), "ABOR\r\n");
  r.core->on_server_bytes("226 Transfer complete.\r\n225 No transfer to abort.\r\n", 0, r.rec);
  EXPECT_EQ(r.rec.to_client, "552 Exceeded storage allocation.\r\n");  // neither of the server's replies
  ASSERT_EQ(r.rec.transfers.size(), 1u);
  EXPECT_EQ(r.rec.transfers[0].code, 552);
  EXPECT_EQ(r.rec.transfers[0].bytes, 100u);
  EXPECT_EQ(r.cmd("NOOP", "200 ok"), "200 ok\r\n");  // in step again
}

TEST(UploadCap, LogModeLetsTheUploadRunAndLogsTheOverrunOnce) {
  PolicyRig r("[[rule]]\nid = \"cap\"\nverbs = [\"STOR\"]\nmax_upload_bytes = 100\naudit = \"log\"\n", Mode::audit);
  r.login();
  r.cmd("PASV", "227 Entering Passive Mode (127,0,0,2,156,65).");
  r.core->on_data({DataEvent::opened}, 0, r.rec);
  r.cmd("STOR big", "150 Ok to send data.");
  ASSERT_EQ(r.rec.limits.size(), 1u);
  EXPECT_FALSE(r.rec.limits[0].second);
  r.core->on_data({DataEvent::upload_over}, 0, r.rec);
  r.core->on_data({DataEvent::upload_over}, 0, r.rec);
  EXPECT_EQ(std::count(r.rec.findings.begin(), r.rec.findings.end(), "cap:logged"), 1);
  r.rec.data_open = false;
  r.core->on_data({DataEvent::closed, 0, 5000, false, DataEnd::complete}, 0, r.rec);
  r.rec.to_client.clear();
  r.core->on_server_bytes("226 Transfer complete.\r\n", 0, r.rec);
  EXPECT_EQ(r.rec.to_client, "226 Transfer complete.\r\n");
  EXPECT_EQ(r.rec.transfers.back().bytes, 5000u);
}

TEST(PolicyRules, ArgPatternsAnchoredOrNotMatchTheSame) {
  // The quick range check may only skip what no pattern can match.
  auto rs = with_defaults(
      "[[rule]]\nid = \"a\"\nverbs = [\"SITE\"]\narg = \"^EXEC\"\nenforce = \"reject\"\n"
      "[[rule]]\nid = \"b\"\nverbs = [\"SITE\"]\narg = \"^CHMOD 7\"\nenforce = \"reject\"\n");
  ASSERT_TRUE(rs);
  std::vector<int> hits;
  for (const char* arg : {"EXEC ls", "EXECUTE", "CHMOD 777 f"}) {
    rs->match_args(arg, hits);
    EXPECT_EQ(hits.size(), 1u) << arg;
  }
  for (const char* arg : {"HELP", "", "AEXEC", "chmod 777 f", "ZZZ"}) {
    rs->match_args(arg, hits);
    EXPECT_TRUE(hits.empty()) << arg;
  }
  // Matches of different lengths: a short one is found in an argument that
  // sorts above the longest.
  auto var = with_defaults("[[rule]]\nid = \"v\"\nverbs = [\"SITE\"]\narg = \"^EX(EC)?\"\nenforce = \"reject\"\n");
  ASSERT_TRUE(var);
  var->match_args("EXZ", hits);
  EXPECT_EQ(hits.size(), 1u);
  auto un = with_defaults("[[rule]]\nid = \"u\"\nverbs = [\"SITE\"]\narg = \"EXEC\"\nenforce = \"reject\"\n");
  ASSERT_TRUE(un);
  un->match_args("AEXEC", hits);  // unanchored: found anywhere
  EXPECT_EQ(hits.size(), 1u);
}
