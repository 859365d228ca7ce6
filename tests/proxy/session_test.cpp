// A whole Session on a real loop: a client and an FTP server on loopback
// threads, the session between them through a SessionHost of the test's own.
// Login, a passive download, QUIT: the bytes arrive whole, the audit log
// tells the story, the host hears the session is gone, no handle is left.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "loop_rig.h"
#include "session.h"

using namespace ftpw;
using namespace ftpw::test;

namespace {

struct Host : SessionHost, ListenerHandler {
  Host(uv_loop_t* l, const std::string& audit_path, std::shared_ptr<const Snapshot> s)
      : loop_(l), audit_(audit_path), snap(std::move(s)) {}
  uv_loop_t* loop() override { return loop_; }
  AuditLog& audit() override { return audit_; }
  PortPool& ports() override { return pool_; }
  WorkerStats& stats() override { return stats_; }
  std::string next_session_id() override { return "test-" + std::to_string(++ids); }
  bool login_failed(const NetAddr&) override { return false; }
  bool user_login(const std::string&) override { return ++logins > 0; }
  void user_logout(const std::string&) override { ++logouts; }
  void want_upstream(Session* s) override { s->connect_upstream(); }
  void release_upstream(Session*, bool) override { ++released; }
  void session_gone(Session*) override { ++gone; }
  void on_connection(Listener& l) override {
    Stream* st = l.accept(nullptr, 0);
    if (!st) return;
    auto* s = new Session(*this, snap, st, *st->peer());
    s->start();
    l.close();
  }
  void on_listener_closed(Listener&) override { ++listener_closed; }

  uv_loop_t* loop_;
  AuditLog audit_;
  std::shared_ptr<const Snapshot> snap;
  PortPool pool_{47200, 47299};
  WorkerStats stats_;
  int ids = 0, released = 0, gone = 0, listener_closed = 0, logins = 0, logouts = 0;
};

std::shared_ptr<const Snapshot> snapshot(std::uint16_t upstream_port) {
  std::ifstream in(std::string(FTPW_SOURCE_DIR) + "/rules/default.toml");
  std::ostringstream text;
  text << in.rdbuf();
  std::vector<RuleSet::Error> errors;
  auto rules = RuleSet::load_string(text.str(), "default.toml", errors);
  auto snap = std::make_shared<Snapshot>();
  snap->rules = std::make_shared<const RuleSet>(std::move(*rules));
  snap->cfg.upstream_addr = loopback(upstream_port);
  return snap;
}

std::string line(int fd) {
  std::string s;
  char c;
  while (::recv(fd, &c, 1, 0) == 1) {
    s += c;
    if (c == '\n') break;
  }
  return s;
}

// The FTP server: a greeting, a login, one passive download, QUIT.
void serve(int listen_fd, const std::string& file) {
  const int fd = accept_socket(listen_fd);
  std::uint16_t dport = 0;
  const int data_listen = listen_socket("127.0.0.1", dport);
  send_all(fd, "220 test server\r\n");
  for (;;) {
    const std::string cmd = line(fd);
    if (cmd.empty()) break;
    if (cmd.rfind("USER", 0) == 0) send_all(fd, "331 password\r\n");
    else if (cmd.rfind("PASS", 0) == 0) send_all(fd, "230 in\r\n");
    else if (cmd.rfind("PASV", 0) == 0)
      send_all(fd, "227 Entering Passive Mode (127,0,0,1," + std::to_string(dport >> 8) + "," +
                       std::to_string(dport & 255) + ").\r\n");
    else if (cmd.rfind("RETR", 0) == 0) {
      send_all(fd, "150 here it comes\r\n");
      const int d = accept_socket(data_listen);
      send_all(d, file);
      ::close(d);
      send_all(fd, "226 done\r\n");
    } else if (cmd.rfind("QUIT", 0) == 0) {
      send_all(fd, "221 bye\r\n");
      break;
    } else {
      send_all(fd, "502 no\r\n");
    }
  }
  ::close(data_listen);
  ::close(fd);
}

}  // namespace

TEST(Session, LoginPassiveDownloadQuit) {
  LoopRig rig;
  std::uint16_t uport = 0;
  const int upstream_listen = listen_socket("127.0.0.1", uport);
  const std::string file(700 * 1024, 'f');
  std::thread server(serve, upstream_listen, file);
  char audit_path[] = "/tmp/ftpw-session-test-XXXXXX";
  const int afd = mkstemp(audit_path);
  ::close(afd);
  {
    Host host(rig.loop(), audit_path, snapshot(uport));
    Listener* l = Listener::create(rig.loop(), &host);
    ASSERT_EQ(l->listen(loopback(0), 4), 0);
    const NetAddr at = *l->local();
    std::vector<std::string> replies;
    std::string got;
    std::thread client([&] {
      const int fd = connect_socket(at);
      auto say = [&](const std::string& c) {
        send_all(fd, c + "\r\n");
        replies.push_back(line(fd));
      };
      replies.push_back(line(fd));  // 220
      say("USER u");
      say("PASS secret");
      say("PASV");
      unsigned h1, h2, h3, h4, p1, p2;
      ASSERT_EQ(std::sscanf(replies.back().c_str(), "227 Entering Passive Mode (%u,%u,%u,%u,%u,%u)", &h1, &h2, &h3,
                            &h4, &p1, &p2),
                6)
          << replies.back();
      const int d = connect_socket(loopback(static_cast<std::uint16_t>(p1 * 256 + p2)));
      say("RETR f");  // 150
      got = read_all(d);
      ::close(d);
      replies.push_back(line(fd));  // 226, once the data is through
      say("QUIT");
      replies.push_back(line(fd));  // EOF: ""
      ::close(fd);
    });
    EXPECT_TRUE(rig.run_until([&] { return host.gone == 1; }));
    client.join();
    server.join();
    ::close(upstream_listen);
    ASSERT_EQ(replies.size(), 8u);
    EXPECT_EQ(replies[0], "220 test server\r\n");
    EXPECT_EQ(replies[3].substr(0, 4), "227 ");
    EXPECT_NE(replies[3].find("(127,0,0,1,"), std::string::npos);
    EXPECT_EQ(replies[4], "150 here it comes\r\n");
    EXPECT_EQ(replies[5], "226 done\r\n");
    EXPECT_EQ(replies[6], "221 bye\r\n");
    EXPECT_EQ(replies[7], "");  // the session closed after its 221
    EXPECT_TRUE(got == file) << got.size();
    EXPECT_TRUE(rig.run_until([&] { return host.listener_closed == 1; }));
    EXPECT_EQ(host.released, 1);  // the upstream slot went back once the server spoke
    EXPECT_EQ(host.logins, 1);    // counted by user once logged in ...
    EXPECT_EQ(host.logouts, 1);   // ... and no more once gone
    StatTotals t;
    host.stats_.add_to(t);
    EXPECT_EQ(t.transfers, 1u);
    EXPECT_EQ(t.bytes[0], file.size());
    EXPECT_EQ(t.commands[static_cast<std::size_t>(Verb::RETR)], 1u);
  }
  spdlog::shutdown();  // the audit logger's thread has written everything
  std::ifstream in(audit_path);
  std::ostringstream log;
  log << in.rdbuf();
  std::remove(audit_path);
  const std::string s = log.str();
  EXPECT_NE(s.find("\"event\":\"transfer\""), std::string::npos) << s;
  EXPECT_NE(s.find("\"bytes\":" + std::to_string(file.size())), std::string::npos) << s;
  EXPECT_NE(s.find("\"reason\":\"quit\""), std::string::npos) << s;
  EXPECT_EQ(s.find("secret"), std::string::npos) << "the password reached the audit log";
  EXPECT_EQ(rig.close(), 0);
}
