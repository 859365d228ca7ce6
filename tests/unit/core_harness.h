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
  // Answers open_data at once, as the proxy does (nullptr: never answers).
  SessionCore* core = nullptr;
  bool listen_fails = false;
  std::string to_server, to_client;
  std::vector<std::string> findings;  // "rule:logged" / "rule:rejected:503"
  std::vector<int> reply_codes;
  std::vector<bool> reply_reused;
  std::vector<NetAddr> passive_requests, active_requests;
  struct Transfer {
    Verb verb;
    std::string path;
    std::uint64_t bytes;
    bool download, reused;
    int code;
    bool protected_data;
  };
  std::vector<Transfer> transfers;
  std::vector<std::string> aborts;  // reasons
  std::vector<std::pair<Side, bool>> holds;
  std::vector<Timer> timeouts;
  NetAddr proxy_addr = *NetAddr::parse_host_port("192.0.2.10:50000");
  int closes = 0, close_nows = 0, login_failures = 0;
  EndReason last_close = EndReason::connection_closed;
  bool data_open = false;  // a listener or connection the proxy would have

  void on_reply(const ReplyEvent& r) override {
    reply_codes.push_back(r.code);
    reply_reused.push_back(r.data_conn_reused);
  }
  void on_finding(const Finding& f) override {
    std::string s(f.rule);
    s += f.action == FindingAction::rejected ? ":rejected:" + std::to_string(f.reply_code) : ":logged";
    findings.push_back(s);
  }
  void on_transfer(const TransferRecord& t) override {
    transfers.push_back({t.verb, std::string(t.path), t.bytes, t.download, t.reused, t.code, t.protected_data});
  }
  void on_timeout(Timer t) override { timeouts.push_back(t); }
  void on_login_failed() override { ++login_failures; }
  std::vector<std::string> logins;  // each 230's user
  bool refuse_logins = false;       // as if the user had all the sessions allowed
  bool on_logged_in(std::string_view user) override {
    logins.emplace_back(user);
    return !refuse_logins;
  }
  void send_to_server(std::string_view b) override { to_server += b; }
  void send_to_client(std::string_view b) override { to_client += b; }
  std::vector<Side> tls_starts;
  std::vector<bool> data_protect;  // each open_data's `protect`
  int transfer_starts = 0;
  void start_tls(Side side) override { tls_starts.push_back(side); }
  void transfer_started() override { ++transfer_starts; }
  void open_data(const DataRequest& req) override {
    data_protect.push_back(req.protect);
    (req.kind == DataRequest::Kind::passive ? passive_requests : active_requests).push_back(req.target);
    if (!core) return;
    if (data_open) closed(0, 0, true);  // the previous one is replaced
    data_open = !listen_fails;
    core->on_data_listening(listen_fails ? std::nullopt : std::optional<NetAddr>(proxy_addr), 0, *this);
  }
  // The proxy's data channel reports its end at once when it is aborted.
  void abort_data(std::string_view reason) override {
    aborts.emplace_back(reason);
    if (data_open) closed(0, 0, true);
  }
  void closed(std::uint64_t down, std::uint64_t up, bool cut) {
    data_open = false;
    if (core) core->on_data({DataEvent::closed, down, up, cut}, 0, *this);
  }
  void hold_reads(Side side, bool hold) override { holds.emplace_back(side, hold); }
  std::vector<std::pair<std::uint64_t, bool>> limits;
  void limit_upload(std::uint64_t bytes, bool cut) override { limits.emplace_back(bytes, cut); }
  void close(EndReason r) override {
    ++closes;
    last_close = r;
  }
  void close_now() override { ++close_nows; }
};

struct CoreRig {
  Recorder rec;
  std::unique_ptr<SessionCore> core;
  explicit CoreRig(Mode mode, const std::string& rules = "rules/default.toml", bool greet = true)
      : CoreRig(settings(mode), rules, greet) {}
  CoreRig(const CoreSettings& s, const std::string& rules = "rules/default.toml", bool greet = true,
          std::uint64_t opened_us = 0) {
    SessionPeers peers{*NetAddr::parse_host_port("127.0.0.1:40000"), *NetAddr::parse_host_port("127.0.0.2:21")};
    core = std::make_unique<SessionCore>(s, load_rules(rules), peers, opened_us);
    rec.core = core.get();
    if (greet) server("220 hello");
    rec.to_client.clear();
  }
  static CoreSettings settings(Mode mode) {
    CoreSettings s;
    s.mode = mode;
    return s;
  }
  void client(const std::string& line) { core->on_client_bytes(line + "\r\n", 0, rec); }
  void client_raw(const std::string& bytes) { core->on_client_bytes(bytes, 0, rec); }
  void server(const std::string& line) { core->on_server_bytes(line + "\r\n", 0, rec); }
  void data(DataEvent e) { core->on_data({e}, 0, rec); }
  // The data connection ended after moving `down`/`up` bytes (`cut`: the proxy cut it).
  void data_closed(std::uint64_t down = 0, std::uint64_t up = 0, bool cut = false) { rec.closed(down, up, cut); }
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
