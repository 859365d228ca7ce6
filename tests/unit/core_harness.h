// Drives a SessionCore from a readable script and records what it did.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "rule_set.h"
#include "session_core.h"

namespace ftpw::test {

std::shared_ptr<const RuleSet> load_rules(const std::string& file);  // path relative to the source tree

struct Recorder : CoreSink {
  std::string to_server, to_client, after_data;
  std::vector<std::string> findings;  // "rule:logged" / "rule:rejected:503"
  std::vector<int> reply_codes;
  std::vector<bool> reply_reused;
  std::vector<NetAddr> passive_requests, active_requests;
  NetAddr proxy_addr = *NetAddr::parse_host_port("192.0.2.10:50000");
  int transfers_started = 0, transfers_finished = 0, aborts = 0, closes = 0;
  bool last_reused = false;
  bool last_download = false;

  void on_reply(const ReplyEvent& r) override {
    reply_codes.push_back(r.code);
    reply_reused.push_back(r.data_conn_reused);
  }
  void on_finding(const Finding& f) override {
    std::string s(f.rule);
    s += f.action == FindingAction::rejected ? ":rejected:" + std::to_string(f.reply_code) : ":logged";
    findings.push_back(s);
  }
  void send_to_server(std::string_view b) override { to_server += b; }
  void send_to_client(std::string_view b) override { to_client += b; }
  void send_to_client_after_data(std::string_view b) override { after_data += b; }
  std::optional<NetAddr> open_passive(const NetAddr& up) override {
    passive_requests.push_back(up);
    return proxy_addr;
  }
  std::optional<NetAddr> open_active(const NetAddr& c) override {
    active_requests.push_back(c);
    return proxy_addr;
  }
  void transfer_started(const TransferStart& t) override {
    ++transfers_started;
    last_reused = t.reused;
    last_download = t.download;
  }
  void transfer_finished(int) override { ++transfers_finished; }
  void abort_data() override { ++aborts; }
  void close(EndReason r) override {
    ++closes;
    last_close = r;
  }
  EndReason last_close = EndReason::connection_closed;
};

struct CoreRig {
  Recorder rec;
  std::unique_ptr<SessionCore> core;
  explicit CoreRig(Mode mode, const std::string& rules = "rules/default.toml", bool greet = true) {
    CoreSettings s;
    s.mode = mode;
    SessionPeers peers{*NetAddr::parse_host_port("127.0.0.1:40000"), *NetAddr::parse_host_port("127.0.0.2:21")};
    core = std::make_unique<SessionCore>(s, load_rules(rules), peers);
    if (greet) server("220 hello");
    rec.to_client.clear();
  }
  void client(const std::string& line) { core->on_client_bytes(line + "\r\n", 0, rec); }
  void client_raw(const std::string& bytes) { core->on_client_bytes(bytes, 0, rec); }
  void server(const std::string& line) { core->on_server_bytes(line + "\r\n", 0, rec); }
  // Sends a command and, if it reached the server, answers it.
  void exchange(const std::string& cmd, const std::string& reply) {
    const auto before = rec.to_server.size();
    client(cmd);
    if (rec.to_server.size() != before) server(reply);
  }
  void login() {
    exchange("USER u", "331 pw");
    exchange("PASS p", "230 ok");
    rec.to_server.clear();
    rec.to_client.clear();
  }
  std::string take_server() {
    std::string s;
    s.swap(rec.to_server);
    return s;
  }
  std::string take_client() {
    std::string s;
    s.swap(rec.to_client);
    return s;
  }
};

}  // namespace ftpw::test
