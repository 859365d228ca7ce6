// A data connection: the proxy's listener (its passive port toward the
// client, or its active port toward the server) and the two legs it joins,
// relayed both ways with backpressure. It knows its owner only through
// DataOwner: what it needs (loop, ports, settings) and what it reports (bytes
// moved, opened, ended, gone, a stranger refused). No FTP in here.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config.h"
#include "net.h"
#include "tls_context.h"
#include "port_pool.h"
#include "proxy_header.h"
#include "socket_relay.h"

namespace ftpw {

class DataChannel;

class DataOwner {
 public:
  virtual ~DataOwner() = default;
  virtual uv_loop_t* loop() const = 0;
  virtual PortPool& ports() = 0;
  virtual const Config& cfg() const = 0;
  virtual const NetAddr& peer() const = 0;  // the client's control address
  // The session's server (its configured upstream, or in transparent mode
  // the client's original destination).
  virtual const NetAddr& upstream() const { return cfg().upstream_addr; }
  // Bytes moved (the stall timer restarts).
  virtual void data_moved() = 0;
  // The server leg began (passive: the proxy connects; active: the server connected).
  virtual void data_server_leg() = 0;
  virtual void data_opened(const DataChannel& d, const NetAddr& client_side, const NetAddr& server_side) = 0;
  // Ended (complete or not); its handles are closing.
  virtual void data_ended(const DataChannel& d, std::string_view reason, bool delivered) = 0;
  // Every handle closed: the owner deletes it.
  virtual void data_gone(DataChannel* d) = 0;
  // A connection from the wrong address, closed unread.
  virtual void data_event(std::string_view rule, std::string_view message, const NetAddr& who) = 0;
  // The upload passed its reported limit (see DataChannel::limit_upload).
  virtual void data_upload_over() {}
  // A leg's TLS handshake ended (ok: completed).
  virtual void data_tls(bool client_leg, bool ok) { (void)client_leg, (void)ok; }
  // The client's leg finished its handshake; `resumed`: the control
  // connection's own session. The owner may abort the channel from here.
  virtual void data_client_tls(bool resumed) { (void)resumed; }
  // The session's id, for log lines.
  virtual std::string_view log_id() const { return {}; }
};

// TLS on a data connection's legs (FTPS). The client is the TLS client on
// its leg whichever side connects (RFC 4217 §9), the proxy the TLS client on
// the server's.
struct DataTls {
  std::shared_ptr<const TlsContexts> ctx;
  bool client = false;    // the client's leg (PROT P)
  bool server = false;    // the server's leg ([tls] upstream = on)
  std::string reuse_tag;  // the FTP session's id: what the client's leg must resume to count as resumed
  SSL_SESSION* resume = nullptr;  // the server leg offers it (the channel holds a reference)
};

class DataChannel : public StreamHandler, public ListenerHandler, public RelayOwner {
 public:
  enum class Kind : std::uint8_t { passive, active };
  DataChannel(DataOwner& s, Kind kind, const NetAddr& target);
  ~DataChannel() override;
  void set_tls(DataTls tls);
  // The server's 1xx came: its leg's TLS handshake may begin (a server such
  // as pyftpdlib drops one begun before it answered the transfer command).
  void server_may_handshake();
  bool client_protected() const { return tls_.client; }
  bool client_resumed() const { return resumed_; }

  // Binds the listener; returns the address to announce, or nullopt.
  std::optional<NetAddr> open(const NetAddr& bind_host, const std::optional<NetAddr>& announce);
  void abort(std::string_view reason);
  // The client -> server direction carries at most `bytes`: `cut`: what comes
  // beyond is refused and the channel ends "upload-cap" once the rest is
  // delivered; else the owner hears once (data_upload_over) that it passed.
  void limit_upload(std::uint64_t bytes, bool cut);
  bool cut() const { return cut_; }  // the proxy ended it (timeout, ABOR, session end)
  bool connected() const { return client_ && server_ && client_->connected() && server_->connected(); }
  bool listening() const { return listener_ != nullptr; }
  std::uint64_t downloaded() const { return down_; }
  std::uint64_t uploaded() const { return up_; }
  bool ended() const { return ended_; }

  // StreamHandler
  void on_data(Stream& s, const char* p, std::size_t n) override;
  void on_eof(Stream& s) override;
  void on_error(Stream& s, int err) override;
  void on_connect(Stream& s, int status) override;
  void on_drain(Stream& s) override;
  void on_shutdown(Stream& s) override;
  void on_closed(Stream& s) override;
  void on_tls_ready(Stream& s) override;
  // ListenerHandler
  void on_connection(Listener& l) override;
  void on_listener_closed(Listener& l) override;
  // RelayOwner
  void on_relayed(int dir, std::size_t n) override;
  void on_relay_end(bool ok, const char* reason) override;
  void on_relay_handle_closed() override;

 private:
  enum Leg { client_leg = 1, server_leg = 2 };
  Stream* other(Stream& s) { return &s == client_ ? server_ : client_; }
  void both_up();
  bool legs_ready() const;  // connected, and handshaken where TLS
  void start_server_tls();
  void close_leg(Stream* s, bool delivered);
  bool peer_allowed(Stream* st, const std::optional<NetAddr>& peer);
  void header_data(std::size_t i, const char* p, std::size_t n);
  void accepted(Stream* st, const NetAddr& from);
  bool write_first(Stream& s, std::string_view bytes);  // false: the socket relay must not be used
  bool drop_pending(Stream& s);  // closes a connection still owing its PROXY header
  void end(std::string_view reason, bool delivered);
  void maybe_gone();

  DataOwner& s_;
  Kind kind_;
  NetAddr target_;   // passive: the server's data port; active: the client's
  Listener* listener_ = nullptr;
  Stream* client_ = nullptr;
  Stream* server_ = nullptr;
  int handles_ = 0;
  int port_ = -1;    // from the passive pool
  std::uint64_t down_ = 0, up_ = 0;
  bool ended_ = false, announced_ = false, cut_ = false;
  std::uint64_t cap_ = UINT64_MAX;  // limit_upload
  bool cap_cuts_ = false, cap_reported_ = false, capped_ = false;
  void upload_moved();
  SocketRelay relay_;
  // Passive connections still owing their PROXY header ([listen] proxy_protocol).
  static constexpr std::size_t kMaxPending = 4;
  std::vector<std::pair<Stream*, ProxyHeaderReader>> pending_;
  std::uint64_t relay_base_up_ = 0;  // upload bytes before the socket relay took over
  std::string early_;          // the client's bytes that came with its header, for the server
  bool stream_only_ = false;   // bytes were queued ahead: no socket relay
  NetAddr from_;               // who connected to the listener (its PROXY header's address, if any)
  DataTls tls_;
  bool server_go_ = false;     // the server's 1xx came
  bool resumed_ = false;       // the client's leg resumed its control connection's session
  std::string early_down_;     // what the server sent before the client's leg was ready
  bool early_eof_client_ = false, early_eof_server_ = false;  // a leg ended before both were ready
};

}  // namespace ftpw
