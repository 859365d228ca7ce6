// The I/O-free heart of ftpwarden: one FTP control session seen from the middle.
//
// The caller pushes the bytes each side sent (on_client_bytes / on_server_bytes)
// and data-connection events; the core frames and parses them, mirrors the
// client's and the server's state machines, evaluates the rules and tells the
// caller what to do through a CoreSink: bytes to send to either side, replies to
// hold until the data connection has drained, data connections to open, and the
// events the audit log records. The live proxy and the offline linter drive the
// same core; neither the core nor the sink contract knows about sockets.
//
// Flow control: while a forwarded command has no reply yet, the core buffers
// the client's further bytes and reports client_paused(); the caller stops
// reading the client until it clears (it clears from within on_server_bytes,
// which then processes the buffered commands). Commands are therefore judged
// on the state the server's replies produced, in both modes.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "command.h"
#include "end_reason.h"
#include "framer.h"
#include "netaddr.h"
#include "reply.h"
#include "rule_set.h"

namespace ftpw {

enum class Side : std::uint8_t { client, server };

struct CommandEvent {
  Verb verb;
  std::string_view verb_text;  // as sent
  std::string_view arg;        // unmasked: the sink masks PASS
  std::uint64_t offset;        // client stream offset of the line
};

struct ReplyEvent {
  int code;
  std::string_view raw;      // CRLF-terminated lines as sent to the client
  Verb verb;                 // the command it answers (unknown if none)
  std::int64_t latency_us;   // since that command was forwarded; -1 if none
  bool from_proxy;           // the proxy answered itself
  bool data_conn_reused;     // 125: data connection already open
  std::uint64_t offset;      // server stream offset (client offset if from_proxy)
};

enum class FindingAction : std::uint8_t { logged, rejected };

struct Finding {
  std::string_view rule;       // stable id: a rule id or a built-in name
  std::string_view message;
  Severity severity;
  Side side;                   // whose behaviour it is about
  Verb verb;
  std::string_view verb_text;
  FindingAction action;
  int reply_code;              // the proxy's reply when rejected, else 0
  std::uint64_t offset;        // stream offset on `side`
};

// Data-connection facts the proxy reports. A server may answer 125 ("already
// open") as soon as it has accepted the proxy's connection, before the proxy's
// own connect callback has run; and for an empty file the connection can open
// and close before the 125 is read. So what counts is that a connection with
// the server was made or begun since the data setup, not that it is open now.
enum class DataEvent : std::uint8_t {
  server_leg,  // the proxy began connecting to the server's data port (passive)
               // or accepted the server's connection (active)
  opened,      // both legs connected
  closed,      // the data connection ended
};

struct TransferStart {
  Verb verb;
  std::string_view path;
  bool reused;                 // the server answered 125
  bool download;               // data flows server -> client
};

class CoreSink {
 public:
  virtual ~CoreSink() = default;
  virtual void on_command(const CommandEvent&) {}
  virtual void on_reply(const ReplyEvent&) {}
  virtual void on_finding(const Finding&) {}
  virtual void send_to_server(std::string_view bytes) { (void)bytes; }
  virtual void send_to_client(std::string_view bytes) { (void)bytes; }
  // A transfer's completion reply: send it once the data connection has
  // delivered everything and closed.
  virtual void send_to_client_after_data(std::string_view bytes) { send_to_client(bytes); }
  // The server offered a passive data port at `upstream`. Return the address
  // the client must connect to (the proxy's), or nullopt when none is available.
  virtual std::optional<NetAddr> open_passive(const NetAddr& upstream) { (void)upstream; return std::nullopt; }
  // The client announced an active data address (already checked). Return the
  // address the server must connect to (the proxy's), or nullopt.
  virtual std::optional<NetAddr> open_active(const NetAddr& client) { (void)client; return std::nullopt; }
  virtual void transfer_started(const TransferStart&) {}
  virtual void transfer_finished(int code) { (void)code; }
  // ABOR: tear the data connection down now.
  virtual void abort_data() {}
  // Close the session after what was sent so far has been flushed.
  virtual void close(EndReason reason) { (void)reason; }
};

struct CoreSettings {
  Mode mode = Mode::enforce;
  // observe: a passive observer (the linter). Nothing is rewritten or answered,
  // data connections are not opened; rules and findings still run.
  bool observe = false;
  FramerOptions client_framer{};
  FramerOptions server_framer{4096, true, true};
  ReplyLimits reply_limits{};
  bool refuse_tls = true;       // answer AUTH with 534, hide AUTH/PBSZ/PROT from FEAT
  bool check_active_peer = true;  // SECURITY: PORT/EPRT must name the client's own address
  std::vector<NetAddr> allow_foreign_active;  // third parties PORT/EPRT may name
  std::uint32_t max_bad_lines = 10;  // framing problems before 421 and close
};

struct SessionPeers {
  NetAddr client;    // control connection peer (family 0 when unknown, e.g. lint)
  NetAddr upstream;  // the server's control address
};

class SessionCore {
 public:
  SessionCore(CoreSettings settings, std::shared_ptr<const RuleSet> rules, SessionPeers peers);

  void on_client_bytes(std::string_view bytes, std::uint64_t now_us, CoreSink& sink);
  void on_server_bytes(std::string_view bytes, std::uint64_t now_us, CoreSink& sink);
  // What the data connection toward the server did, for the 125 check.
  void on_data_event(DataEvent e);
  // The client closed its side: nothing more will come from it.
  bool client_paused() const { return paused_; }
  // Client bytes received while paused, waiting to be judged.
  std::size_t client_backlog() const { return client_backlog_.size(); }
  bool closed() const { return closed_; }
  std::uint32_t state_bits() const { return state_; }
  bool logged_in() const { return (state_ & pbit(Predicate::logged_in)) != 0; }
  bool transfer_running() const { return (state_ & pbit(Predicate::transfer_running)) != 0; }
  // Commands still owed a reply (a QUIT whose early 221 is held counts).
  std::size_t pending_commands() const { return count_ + (held_quit_.empty() ? 0 : 1); }
  // When the oldest command still waiting for its first reply was forwarded
  // (now_us units as given), or 0 when none waits. A transfer waiting for its
  // completion after the 1xx does not count: data may move for hours.
  std::uint64_t waiting_since_us() const;
  // A transfer command (RETR, STOR, LIST...) still waits for its completion.
  bool transfer_pending() const;
  const RuleSet& rules() const { return *rules_; }
  const CoreSettings& settings() const { return settings_; }
  // End of input (linter): judge the client lines still waiting for replies.
  void finish(std::uint64_t now_us, CoreSink& sink);
  // Frees buffers an idle session does not need.
  void shrink();

 private:
  struct Pending {
    Verb verb = Verb::unknown;       // what the client sent
    Verb sent = Verb::unknown;       // what went to the server (EPSV<->PASV translation)
    bool replied = false;            // any reply (1xx included) seen
    bool preliminary = false;        // a 1xx seen
    bool epsv_all = false;
    std::uint64_t sent_us = 0;
  };

  void pump_client(std::uint64_t now_us, CoreSink& sink);
  void handle_client_line(const Line& line, std::uint64_t now_us, CoreSink& sink);
  void handle_reply(const Reply& r, std::uint64_t now_us, CoreSink& sink);
  void proxy_reply(std::string_view line, const Command& cmd, std::uint64_t offset, CoreSink& sink);
  void finding(CoreSink& sink, std::string_view rule, std::string_view msg, Severity sev, Side side, const Command* cmd,
               FindingAction act, int code, std::uint64_t offset);
  void apply_completion(Verb verb, bool epsv_all, int code, bool had_preliminary);
  bool forward_passive_reply(const Pending& p, const Reply& r, std::uint64_t now_us, CoreSink& sink);
  void forward_reply(const Reply& r, const Pending* p, std::int64_t latency, CoreSink& sink, bool after_data);
  void push_pending(const Pending& p);
  bool active_allowed(const NetAddr& a) const;  // the port-bounce check
  bool take_queued_quit();  // removes a QUIT waiting behind the head; true if there was one
  void update_pause();
  std::string_view normalized(std::string_view text, std::string_view urgent_prefix);

  CoreSettings settings_;
  std::shared_ptr<const RuleSet> rules_;
  SessionPeers peers_;
  LineFramer client_framer_;
  LineFramer server_framer_;
  ReplyAssembler assembler_;
  std::string client_backlog_;     // client bytes not yet framed while paused
  std::string scratch_;            // outgoing line being built
  std::string transfer_path_;
  std::array<Pending, 8> fifo_{};
  std::size_t head_ = 0, count_ = 0;
  std::uint32_t state_ = 0;
  std::uint32_t bad_lines_ = 0;
  std::uint64_t reply_offset_ = 0;
  bool greeted_ = false;
  bool paused_ = true;  // until the greeting arrives
  bool closed_ = false;
  bool server_leg_seen_ = false;  // since the last data setup command went out
  std::string held_quit_;         // a 221 the server sent before the running transfer's completion
  std::uint64_t held_quit_offset_ = 0;
  bool in_pump_ = false;
  bool draining_ = false;
};

}  // namespace ftpw
