// One proxied FTP session: the client's control connection, the upstream's,
// the protocol core between them, and at most one data channel at a time.
// The session reports what its sockets and the clock did to the core and
// carries out what the core decides (send, hold reads, open or abort a data
// channel, close); it keeps no FTP state and asks the core nothing back.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "config.h"
#include "data_channel.h"
#include "net.h"
#include "session_core.h"
#include "session_host.h"

namespace ftpw {

class Session : public StreamHandler, public CoreSink, public DataOwner {
 public:
  // `peer`: the client's address (its PROXY header's, behind a balancer);
  // `via`: the balancer's, when a header named the client; `upstream`: the
  // server (the configured one unless given: transparent mode).
  Session(SessionHost& host, std::shared_ptr<const Snapshot> snap, Stream* client, const NetAddr& peer,
          std::optional<NetAddr> via = std::nullopt, std::optional<NetAddr> upstream = std::nullopt);
  ~Session() override;
  void start();
  // Called by the worker when this session may connect upstream.
  void connect_upstream();
  void tick();
  // Ends the session now with the reason's 421 to the client (shutdown, limits).
  void terminate(EndReason reason);
  bool closing() const { return closing_; }

  // StreamHandler (control legs)
  void on_data(Stream& s, const char* p, std::size_t n) override;
  void on_eof(Stream& s) override;
  void on_error(Stream& s, int err) override;
  void on_connect(Stream& s, int status) override;
  void on_drain(Stream& s) override;
  void on_shutdown(Stream& s) override;
  void on_closed(Stream& s) override;
  void on_tls_ready(Stream& s) override;

  // CoreSink
  void on_command(const CommandEvent& c) override;
  void on_reply(const ReplyEvent& r) override;
  void on_finding(const Finding& f) override;
  void on_transfer(const TransferRecord& t) override;
  void on_timeout(Timer t) override;
  void on_login_failed() override;
  bool on_logged_in(std::string_view user) override;
  void send_to_server(std::string_view bytes) override;
  void send_to_client(std::string_view bytes) override;
  void open_data(const DataRequest& req) override;
  void abort_data(std::string_view reason) override;
  void limit_upload(std::uint64_t bytes, bool cut) override;
  void hold_reads(Side side, bool hold) override;
  void start_tls(Side side) override;
  void transfer_started() override;
  void close(EndReason reason) override;
  void close_now() override;

  // DataOwner
  uv_loop_t* loop() const override { return host_.loop(); }
  PortPool& ports() override { return host_.ports(); }
  const Config& cfg() const override { return snap_->cfg; }
  const NetAddr& peer() const override { return peer_; }
  const NetAddr& upstream() const override { return upstream_addr_; }
  void data_moved() override;
  void data_opened(const DataChannel& d, const NetAddr& client_side, const NetAddr& server_side) override;
  void data_server_leg() override;
  void data_ended(const DataChannel& d, std::string_view reason, bool delivered) override;
  void data_gone(DataChannel* d) override;
  void data_event(std::string_view rule, std::string_view message, const NetAddr& who) override;
  void data_upload_over() override;
  void data_tls(bool client_leg, bool ok) override;
  void data_client_tls(bool resumed) override;
  std::string_view log_id() const override { return id_; }

 private:
  enum Tag { tag_client = 1, tag_upstream = 2 };
  static std::uint64_t now_us() { return uv_hrtime() / 1000; }
  Event event(std::string_view name) const;
  void audit(const Event& e) const { host_.audit().write(e); }
  void close_session(EndReason reason);
  void after_core();
  void sync_backpressure();
  void release_slot();
  void upstream_failed();  // counted, and reported for the readiness probe

  SessionHost& host_;
  std::shared_ptr<const Snapshot> snap_;
  std::string id_;
  NetAddr peer_;
  std::optional<NetAddr> via_;
  NetAddr upstream_addr_;
  std::string peer_str_;
  Stream* client_ = nullptr;
  Stream* upstream_ = nullptr;
  DataChannel* data_ = nullptr;
  std::unique_ptr<SessionCore> core_;
  int handles_ = 0;
  std::uint64_t opened_ms_ = 0;
  // The worker's limit on upstream connections waiting for the server's first reply.
  enum class UpstreamSlot : std::uint8_t { none, queued, held, done } slot_ = UpstreamSlot::none;
  bool closing_ = false, logged_session_close_ = false;
  bool login_limit_ = false;  // the client's address reached its failed-login limit
  std::optional<std::string> counted_user_;  // counted against max_sessions_per_user
  std::optional<std::pair<std::uint64_t, bool>> next_cap_;  // an upload cap for the next data channel
  std::string tls_error_;  // why a control connection's TLS failed (session_close's message)
};

}  // namespace ftpw
