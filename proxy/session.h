// One proxied FTP session: the client's control connection, the upstream's,
// the protocol core between them, and at most one data channel at a time.
// The session executes what the core decides; it holds no FTP knowledge of
// its own.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "audit_log.h"
#include "config.h"
#include "net.h"
#include "session_core.h"
#include "session_timers.h"
#include "data_channel.h"

namespace ftpw {

class Worker;

class Session : public StreamHandler, public CoreSink, public DataOwner {
 public:
  Session(Worker& srv, std::shared_ptr<const Snapshot> snap, Stream* client, const NetAddr& peer);
  ~Session() override;
  void start();
  // Called by the worker when this session may connect upstream.
  void connect_upstream();
  void tick(std::uint64_t now_ms);
  // Ends the session now with a 421 to the client (shutdown, limits).
  void terminate(EndReason reason, std::string_view reply);
  bool closing() const { return closing_; }
  Worker& server() { return srv_; }

  // StreamHandler (control legs)
  void on_data(Stream& s, const char* p, std::size_t n) override;
  void on_eof(Stream& s) override;
  void on_error(Stream& s, int err) override;
  void on_connect(Stream& s, int status) override;
  void on_drain(Stream& s) override;
  void on_shutdown(Stream& s) override;
  void on_closed(Stream& s) override;

  // CoreSink
  void on_command(const CommandEvent& c) override;
  void on_reply(const ReplyEvent& r) override;
  void on_finding(const Finding& f) override;
  void send_to_server(std::string_view bytes) override;
  void send_to_client(std::string_view bytes) override;
  void send_to_client_after_data(std::string_view bytes) override;
  std::optional<NetAddr> open_passive(const NetAddr& upstream) override;
  std::optional<NetAddr> open_active(const NetAddr& client) override;
  void transfer_started(const TransferStart& t) override;
  void transfer_finished(int code) override;
  void abort_data() override;
  void close(EndReason reason) override;

  // From the data channel
  // DataOwner
  uv_loop_t* loop() const override;
  std::uint64_t now_ms() const override;
  PortPool& ports() override;
  const Config& cfg() const override { return snap_->cfg; }
  const NetAddr& peer() const override { return peer_; }
  SessionTimers& timers() override { return timers_; }
  void data_opened(const DataChannel& d, const NetAddr& client_side, const NetAddr& server_side) override;
  void data_server_leg() override;
  void data_ended(const DataChannel& d, std::string_view reason, bool delivered) override;
  void data_gone(DataChannel* d) override;
  void data_event(std::string_view rule, std::string_view message, const NetAddr& who) override;

  Event event(std::string_view name) const { return Event(name, id_, peer_str_); }
  void audit(const Event& e) const;

 private:
  enum Tag { tag_client = 1, tag_upstream = 2 };
  void close_session(EndReason reason);
  void finish_if_done();
  void flush_deferred();
  void replace_data(DataChannel* d);
  void sync_client_pause();
  void release_slot();
  void update_busy();

  Worker& srv_;
  std::shared_ptr<const Snapshot> snap_;
  std::string id_;
  NetAddr peer_;
  std::string peer_str_;
  Stream* client_ = nullptr;
  Stream* upstream_ = nullptr;
  DataChannel* data_ = nullptr;
  std::unique_ptr<SessionCore> core_;
  int handles_ = 0;
  std::uint64_t opened_ms_ = 0;
  SessionTimers timers_;
  // The worker's limit on upstream connections waiting for the server's first reply.
  enum class UpstreamSlot : std::uint8_t { none, queued, held, done } slot_ = UpstreamSlot::none;
  bool closing_ = false, client_eof_ = false, logged_session_close_ = false;
  bool data_up_ = false;  // a data connection's two legs are connected

  // The transfer in progress (from its 1xx to its completion reply)
  struct Transfer {
    bool active = false;
    Verb verb = Verb::unknown;
    std::string path;
    bool reused = false;
    bool download = false;
    int code = 0;
    std::uint64_t start_us = 0;
  } xfer_;
  // The current data connection's result, kept after its channel is gone (a
  // fast transfer can end before the server's 1xx is read): the transfer's
  // byte counts, and whether the proxy cut it (a 2xx then becomes 426).
  struct DataResult {
    bool made = false, cut = false;
    std::uint64_t down = 0, up = 0;
  } last_data_;
  std::string deferred_;  // completion reply waiting for the data to drain
  bool has_deferred_ = false;
  std::string held_;      // replies that came after the deferred one
  bool quit_after_deferred_ = false;  // QUIT answered 221 while a reply waits
  bool pending_close_ = false;  // too many failed logins: 421 after this reply
};

}  // namespace ftpw
