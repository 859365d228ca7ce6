// The I/O-free heart of ftpwarden: one FTP control session seen from the middle.
//
// The caller reports facts: the bytes each side sent, what the data
// connection did, that a side went away, the clock. The core frames and
// parses the bytes, mirrors the client's and the server's state machines,
// runs the built-in checks and the rules, follows each transfer to its
// outcome and keeps the session's timers. It tells the caller what to do
// through a CoreSink: bytes to send to either side, a data listener to open
// or a data connection to tear down, when to stop and resume reading a side,
// when to close; and the events the audit log records. The caller asks the
// core nothing back. The live proxy and the offline linter drive the same
// core; neither the core nor the sink contract knows about sockets.
//
// Flow control: while a forwarded command has no reply yet, the core buffers
// the client's further bytes (judged once the reply is in: commands are judged
// on the state the server's replies produced, in both modes) and asks the
// caller to stop reading the client once that backlog reaches a line's worth.
// A transfer's completion reply waits until its data connection has closed;
// replies that follow it wait behind it.
//
// The implementation is in four files: session_core.cpp (facts from the
// caller, the transfer's end, the session's end), client_mirror.cpp (the
// client's commands), server_mirror.cpp (the server's replies), data_setup.cpp
// (PASV/EPSV/PORT/EPRT rewritten around the proxy's own data addresses).
#pragma once
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
#include "pending_queue.h"
#include "reply.h"
#include "rule_set.h"
#include "session_timers.h"
#include "transfer.h"

namespace ftpw {

enum class Side : std::uint8_t { client, server };

struct CommandEvent {
  Verb verb;
  std::string_view verb_text;  // as sent
  std::string_view arg;        // unmasked: the sink masks PASS
  std::uint64_t offset;        // client stream offset of the line
  std::string_view rule = {};  // the policy rule that decided it (allow, log or reject), if any
  std::string_view path = {};  // with `rule`: the resolved path it acts on, if any
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
  std::string_view path = {};  // a policy rule's finding: the resolved path, if any
  std::string_view cause = {}; // data-failure: what the proxy saw go wrong
};

// A data listener the proxy is to open: passive, toward the client, joined to
// `target` (the server's data port); active, toward the server, joined to
// `target` (the client's data port). The caller answers with
// SessionCore::on_data_listening.
struct DataRequest {
  enum class Kind : std::uint8_t { passive, active } kind;
  NetAddr target;
  bool protect = false;  // the client's leg is TLS (PROT P on a protected session)
};

class CoreSink {
 public:
  virtual ~CoreSink() = default;
  // Events for the audit log.
  virtual void on_command(const CommandEvent&) {}
  virtual void on_reply(const ReplyEvent&) {}
  virtual void on_finding(const Finding&) {}
  virtual void on_transfer(const TransferRecord&) {}
  virtual void on_timeout(Timer t) { (void)t; }
  // The server refused a password (530 to PASS): the caller counts failures
  // by address and may answer with SessionCore::on_login_limit.
  virtual void on_login_failed() {}
  // The server accepted a login (230) as `user`: the caller counts sessions
  // by user. False: the user has all the sessions allowed, and the core
  // ends this one with 421 instead of passing the 230 on.
  virtual bool on_logged_in(std::string_view user) {
    (void)user;
    return true;
  }
  // Decisions.
  virtual void send_to_server(std::string_view bytes) { (void)bytes; }
  virtual void send_to_client(std::string_view bytes) { (void)bytes; }
  virtual void open_data(const DataRequest& req) { (void)req; }
  // Tear the data connection down now (ABOR, a failed transfer, a timer).
  virtual void abort_data(std::string_view reason) { (void)reason; }
  // The upload on the current (or next) data connection carries at most
  // `bytes` (`cut`: refuse the rest and end it, DataEnd::capped; else go on
  // and report DataEvent::upload_over once).
  virtual void limit_upload(std::uint64_t bytes, bool cut) { (void)bytes, (void)cut; }
  // Stop (true) or resume (false) reading from a side.
  virtual void hold_reads(Side side, bool hold) { (void)side, (void)hold; }
  // From here on the side's bytes are TLS (RFC 4217): the client's after
  // the proxy's 234, or the server's after its 234 to the proxy's own AUTH
  // TLS. The caller answers with on_tls_ready once the handshake completed,
  // or ends the session.
  virtual void start_tls(Side side) { (void)side; }
  // The server's 1xx for the transfer came: a TLS data leg toward the server
  // may start its handshake now (some servers drop one started earlier).
  virtual void transfer_started() {}
  // Close the session after what was sent so far has been flushed.
  virtual void close(EndReason reason) { (void)reason; }
  // The closing session could not flush within its grace: cut everything.
  virtual void close_now() {}
};

// FTPS (RFC 4217) terminated at the proxy.
enum class DataProtection : std::uint8_t {
  client,    // as the client's PROT says
  required,  // PROT P before any transfer (else 521)
  clear,     // PROT P refused (536)
};
struct TlsSettings {
  bool terminate = false;  // the proxy answers AUTH TLS/SSL itself and handshakes with the client
  bool required = false;   // nothing but AUTH, FEAT, SYST, HELP, NOOP, QUIT before that (530)
  bool implicit = false;   // the control connection is TLS from its first byte
  DataProtection data = DataProtection::client;
  bool upstream = false;   // the proxy does AUTH TLS, PBSZ 0, PROT P toward the server before the greeting
  bool require_reuse = true;  // a protected data connection must resume its control connection's session
};

struct CoreSettings {
  Mode mode = Mode::enforce;
  // observe: a passive observer (the linter). Nothing is rewritten or answered,
  // data connections are not opened; rules and findings still run.
  bool observe = false;
  FramerOptions client_framer{};
  // A server's lines end in CRLF only: a bare LF is part of the line (a
  // reply-framing finding, forwarded as a space), so text after it (a file
  // name carrying "\n226 ...") is never taken as a reply of its own.
  FramerOptions server_framer{4096, true, false, true};
  ReplyLimits reply_limits{};
  bool refuse_tls = true;       // answer AUTH with 534, hide AUTH/PBSZ/PROT from FEAT
  TlsSettings tls{};            // (refuse_tls is ignored when tls.terminate or tls.implicit)
  bool check_active_peer = true;  // SECURITY: PORT/EPRT must name the client's own address
  std::vector<NetAddr> allow_foreign_active;  // third parties PORT/EPRT may name
  std::uint32_t max_bad_lines = 10;  // framing problems before 421 and close
  std::uint32_t command_rate = 0;    // commands per second (a token bucket; 0: no limit)
  std::uint32_t command_burst = 100; // the bucket's size
  TimerLimits timers{};
  std::size_t max_held_replies = 256 * 1024;  // replies waiting behind a completion
};

struct SessionPeers {
  NetAddr client;    // control connection peer (family 0 when unknown, e.g. lint)
  NetAddr upstream;  // the server's control address
};

class SessionCore {
 public:
  // `now_us`: when the session opened, on the clock every later call uses.
  SessionCore(CoreSettings settings, std::shared_ptr<const RuleSet> rules, SessionPeers peers,
              std::uint64_t now_us = 0);

  // Bytes from either side.
  void on_client_bytes(std::string_view bytes, std::uint64_t now_us, CoreSink& sink);
  void on_server_bytes(std::string_view bytes, std::uint64_t now_us, CoreSink& sink);
  // The client closed its sending side: what it sent before is still answered.
  void on_client_eof(std::uint64_t now_us, CoreSink& sink);
  // The server's control connection went away: closed by the server
  // (upstream_closed), failed (upstream_error), or closed for no known cause.
  void on_server_gone(EndReason why, std::uint64_t now_us, CoreSink& sink);
  // The caller began connecting to the server (the connect timer runs).
  void on_upstream_connecting(std::uint64_t now_us);
  // The answer to open_data: the address to announce, or nullopt when no
  // listener could be opened.
  void on_data_listening(const std::optional<NetAddr>& mine, std::uint64_t now_us, CoreSink& sink);
  void on_data(const DataFact& f, std::uint64_t now_us, CoreSink& sink);
  void on_data_moved(std::uint64_t now_us) { timers_.data_moved(now_us / 1000); }
  // A TLS handshake the core asked for (CoreSink::start_tls) completed.
  void on_tls_ready(Side side, std::uint64_t now_us, CoreSink& sink);
  // The clock: fires the session's timers.
  void on_tick(std::uint64_t now_us, CoreSink& sink);
  // Too many failed logins from the client's address.
  void on_login_limit(CoreSink& sink) { end(EndReason::login_failures, sink); }
  // The caller ends the session (shutdown, the server unreachable): the client
  // hears the reason's 421 (rules/end_reasons.def).
  void end(EndReason reason, CoreSink& sink);
  // The caller is closing the session's connections (the close grace runs).
  void on_closing(std::uint64_t now_us) {
    timers_.closing(now_us / 1000);
    ended_ = true;
  }
  // End of input (linter): judge the client lines still waiting for replies.
  void finish(std::uint64_t now_us, CoreSink& sink);

  bool closed() const { return closed_ || ended_; }
  bool logged_in() const { return (state_ & pbit(Predicate::logged_in)) != 0; }
  bool transfer_running() const { return (state_ & pbit(Predicate::transfer_running)) != 0; }
  // Commands still owed a reply (a QUIT whose early 221 is held counts).
  std::size_t pending_commands() const { return pending_.size() + (held_quit_.empty() ? 0 : 1); }
  bool client_paused() const { return paused_; }
  std::size_t client_backlog() const { return client_backlog_.size(); }
  const RuleSet& rules() const { return *rules_; }

 private:
  // client_mirror.cpp
  void pump_client(std::uint64_t now_us, CoreSink& sink);
  void handle_client_line(const Line& line, std::uint64_t now_us, CoreSink& sink);
  void handle_bad_line(const Line& line, std::uint32_t framing, CoreSink& sink);
  bool over_rate(std::uint64_t now_us);
  const Rule* sequence_rejection(const Command& cmd, std::uint32_t state) const;
  const Rule* policy_decision(const Command& cmd, std::uint32_t state);
  void set_user(std::string_view user);
  std::optional<std::string_view> command_path(const Command& cmd);
  bool track_paths(const Pending& done, const Reply& r, CoreSink& sink, std::uint64_t now_us);
  std::string_view normalized(std::string_view text, std::string_view urgent_prefix);
  // server_mirror.cpp
  void pump_server(std::uint64_t now_us, CoreSink& sink);
  void read_replies(std::string_view& in, std::uint64_t now_us, CoreSink& sink);
  void handle_reply(const Reply& r, std::uint64_t now_us, CoreSink& sink);
  bool hold_early_quit(const Reply& r, CoreSink& sink);
  // The server answered QUIT 221 during a transfer and closed its control
  // connection: once the data connection ends, the client gets a 426 (no
  // completion reply confirmed the transfer), then the 221, then the end.
  void finish_after_server_quit(std::uint64_t now_us, CoreSink& sink);
  void handle_preliminary(const Reply& r, Pending& p, std::int64_t latency, std::uint64_t now_us, CoreSink& sink);
  void forward_reply(const Reply& r, const Pending* p, std::int64_t latency, std::uint64_t now_us, CoreSink& sink,
                     bool completion);
  // tls_mirror.cpp
  bool terminates_tls() const { return settings_.tls.terminate || settings_.tls.implicit; }
  bool handle_tls_command(const Command& cmd, std::uint64_t offset, CoreSink& sink);
  bool upstream_tls_reply(const Reply& r, std::uint64_t now_us, CoreSink& sink);
  bool upstream_tls_pending() const;  // the proxy's own AUTH TLS, handshake, PBSZ, PROT under way
  void hand_off_tls(CoreSink& sink);
  // data_setup.cpp
  void setup_active(const Command& cmd, const NetAddr& target, bool epsv_all, std::uint64_t offset,
                    std::uint64_t now_us, CoreSink& sink);
  void setup_passive(const Pending& p, const Reply& r, std::int64_t latency, CoreSink& sink);
  bool retry_passive(const Pending& done, const Reply& r, std::int64_t latency, std::uint64_t now_us, CoreSink& sink);
  // session_core.cpp
  void to_client(std::string_view bytes, CoreSink& sink);
  void proxy_reply(std::string_view line, const Command& cmd, std::uint64_t offset, CoreSink& sink);
  void finding(CoreSink& sink, std::string_view rule, std::string_view msg, Severity sev, Side side, const Command* cmd,
               FindingAction act, int code, std::uint64_t offset, std::string_view path = {},
               std::string_view cause = {});
  void complete(Verb verb, bool epsv_all, int code, bool had_preliminary);
  void hold_completion(std::string_view raw, std::uint64_t now_us, CoreSink& sink);
  void release_completion(std::uint64_t now_us, CoreSink& sink);
  // `verb`: the transfer it failed (the one running, when unknown).
  void data_failure(std::string_view cause, CoreSink& sink, Verb verb = Verb::unknown);
  void upload_capped(bool cut, CoreSink& sink);
  void close(EndReason reason, CoreSink& sink);
  void check_finished(CoreSink& sink);
  void after_input(std::uint64_t now_us, CoreSink& sink);
  void update_pause();
  void update_busy(std::uint64_t now_us);
  void shrink();

  CoreSettings settings_;
  std::shared_ptr<const RuleSet> rules_;
  SessionPeers peers_;
  LineFramer client_framer_;
  LineFramer server_framer_;
  ReplyAssembler assembler_;
  SessionTimers timers_;
  PendingQueue pending_;
  Transfer transfer_;
  std::string client_backlog_;     // client bytes not yet framed while paused
  std::string server_backlog_;     // server bytes not yet framed while a data listener is awaited
  std::string scratch_;            // outgoing line being built
  std::string transfer_path_;      // the argument of the last transfer command sent
  std::string user_;               // the login name: the argument of the last USER sent
  // Paths (when a rule matches on them): the login directory, the working
  // directory, where a CWD in flight goes, and the current command's path.
  std::string home_ = "/", cwd_ = "/", cwd_target_, path_;
  std::optional<std::string_view> path_view_;  // path_ for the current command, once resolved
  bool path_ready_ = false;
  bool home_known_ = false;
  // Policy caches: the rules whose users/clients match this session, as bits
  // (computed once per USER; empty until then: every rule's who is checked
  // on its own), the arg patterns that matched the current command.
  RuleSet::Mask who_;
  std::vector<int> arg_hits_;
  RuleSet::Mask path_cand_;  // the path index's answer for the command at hand
  std::uint32_t state_ = 0;
  std::uint32_t bad_lines_ = 0;
  std::uint64_t rate_tokens_ = 0, rate_at_us_ = 0;  // command_rate: tokens in millionths, last refill
  bool rate_started_ = false;
  std::uint64_t reply_offset_ = 0;
  bool greeted_ = false;
  bool paused_ = true;  // until the greeting arrives
  bool closed_ = false;  // no more input is judged
  bool ended_ = false;   // the sink was told to close
  bool in_pump_ = false, in_server_pump_ = false;
  bool draining_ = false;
  bool client_eof_ = false;
  bool server_leg_seen_ = false;  // since the last data setup command went out
  bool data_live_ = false;        // a data listener or connection exists
  bool data_up_ = false;          // both legs connected
  // The current data setup, for data-failure: which kind of listener, and
  // what went wrong with it so far (reported once).
  DataRequest::Kind data_kind_ = DataRequest::Kind::passive;
  bool foreign_passive_ = false, stranger_ = false, data_failure_reported_ = false, client_aborted_ = false;
  // An upload cap (a policy rule's max_upload_bytes) on the running upload.
  const Rule* cap_rule_ = nullptr;
  std::string cap_path_;
  bool cap_hit_ = false;  // cut at the cap: the server's completion becomes 552
  bool held_client_ = false, held_server_ = false;  // reads the caller was told to hold
  // FTPS: the client's control connection is protected; a 234 went out and
  // the handshake is awaited (nothing more is read meanwhile); the bytes
  // behind the AUTH line go to the caller; PROT P is in force; the current
  // data setup's client leg is protected.
  bool client_protected_ = false, tls_wait_client_ = false, tls_handoff_ = false, prot_p_ = false;
  bool data_protected_ = false;
  DataEnd data_tls_refused_ = DataEnd::complete;  // tls_failed / tls_not_resumed: the transfer's client gets 425
  // Toward the server ([tls] upstream): its greeting waits while the proxy
  // sends AUTH TLS, handshakes, sends PBSZ 0 and PROT P.
  enum class UpstreamTls : std::uint8_t { off, auth_sent, handshaking, pbsz_sent, prot_sent, done };
  UpstreamTls upstream_tls_ = UpstreamTls::off;
  std::string held_greeting_;

  // A data listener asked for and not answered yet: what to do with its address.
  struct AwaitedData {
    bool active = false;        // PORT/EPRT/LPRT (else a passive reply)
    Verb verb = Verb::unknown;  // the client's command
    bool epsv_all = false;
    std::int64_t latency = 0;   // passive: the server's reply latency
    std::uint64_t offset = 0;
    std::uint64_t sent_us = 0;  // active: when the command came
  };
  std::optional<AwaitedData> awaited_;

  // A completion reply waiting for its data connection, and what came behind it.
  std::string completion_;
  bool has_completion_ = false;
  std::string held_;
  bool quit_after_completion_ = false;  // QUIT answered 221 while the completion waits
  bool server_left_after_quit_ = false;  // its 221 held, the server closed before the transfer's completion
  std::string held_quit_;         // a 221 the server sent before the running transfer's completion
  std::uint64_t held_quit_offset_ = 0;
};

}  // namespace ftpw
