// A transfer's lifecycle as the core follows it: from the command's first 1xx
// to the completion reply reaching the client, with what the data connection
// did in between. The completion reply waits for the data connection: a 226
// must never reach the client before the last byte has. The outcome (bytes,
// complete or cut short, the code the client finally gets) is decided here.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "verbs.h"

namespace ftpw {

// What the data connection toward the server did, as the proxy reports it.
// A server may answer 125 ("already open") as soon as it has accepted the
// proxy's connection, before the proxy's own connect callback has run; and
// for an empty file the connection can open and close before the 125 is
// read. So what counts is that a connection with the server was made or
// begun since the data setup, not that it is open now.
enum class DataEvent : std::uint8_t {
  server_leg,  // the proxy began connecting to the server's data port (passive)
               // or accepted the server's connection (active)
  opened,      // both legs connected
  closed,      // the data connection ended
  stranger,    // a connection from the wrong address was refused (data-port theft)
  upload_over, // the upload passed the limit the core set (limit_upload, not cut)
  client_tls,  // the client's leg finished its TLS handshake (`resumed`: its control
               // connection's own session); relaying waits for the core's word
};

// How a data connection ended.
enum class DataEnd : std::uint8_t {
  complete,         // one direction delivered everything
  connect_timeout,  // nobody connected to the listener in time
  connect_failed,   // the proxy's own connect to the far side failed
  cut,              // the proxy ended it (ABOR, a timer, a failed transfer, replaced)
  tls_failed,       // the client's TLS handshake on it failed
  tls_not_resumed,  // the client's TLS did not resume its control connection's session
  peer_error,       // a side reset or failed
  capped,           // the upload reached the limit the core set and the rest was refused
};

struct DataFact {
  DataEvent event;
  std::uint64_t down = 0, up = 0;  // closed: bytes relayed each way
  bool cut = false;                // closed: the proxy ended it (timeout, ABOR, replaced)
  DataEnd end = DataEnd::complete; // closed: how
  bool resumed = false;            // client_tls: the control connection's session was resumed
};

// One finished transfer, for the audit log.
struct TransferRecord {
  Verb verb;
  std::string_view path;
  std::uint64_t bytes;
  bool download;
  std::uint64_t duration_us;
  bool reused;  // the server answered 125
  int code;     // the final code the client got
  bool protected_data = false;  // the client's leg was TLS
};

class Transfer {
 public:
  // The transfer command got its first 1xx.
  void start(Verb verb, std::string_view path, bool reused, bool download, std::uint64_t now_us,
             bool protected_data = false);
  // Its completion reply arrived.
  void complete(int code) { code_ = code; }
  bool active() const { return active_; }
  Verb verb() const { return verb_; }
  int code() const { return code_; }

  // The data connection (the current one, kept after it is gone: a fast
  // transfer can end before the server's 1xx is read).
  void data_made() { made_ = true; }
  void data_closed(const DataFact& f);
  void data_reset() { made_ = cut_ = false, down_ = up_ = 0; }
  bool data_made_since_setup() const { return made_; }

  // The code the client gets: a 2xx for a data connection the proxy cut
  // (timeout, ABOR) before it delivered everything becomes 426. A peer that
  // resets a data connection after the last byte loses nothing.
  bool cut_short() const { return active_ && cut_ && code_ >= 200 && code_ < 300; }
  bool was_cut() const { return cut_; }
  // Ends the transfer: the record to log (valid until the next start).
  TransferRecord finish(std::uint64_t now_us);

 private:
  bool active_ = false;
  Verb verb_ = Verb::unknown;
  std::string path_;
  bool reused_ = false, download_ = false, protected_ = false;
  int code_ = 0;
  std::uint64_t start_us_ = 0;
  bool made_ = false, cut_ = false;
  std::uint64_t down_ = 0, up_ = 0;
};

}  // namespace ftpw
