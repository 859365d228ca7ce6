// The PROXY header at the start of a control connection ([listen]
// proxy_protocol): read within kTimeoutMs, never more than kProxyHeaderMax
// bytes, parsed by rules/proxy_header.h. Then the stream is handed on with
// the client's real address (the header's source; the connection's own for
// LOCAL/UNKNOWN) and whatever bytes followed the header. A connection
// without a valid header in time is closed without a byte.
#pragma once
#include <uv.h>

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "net.h"
#include "proxy_header.h"

namespace ftpw {

class ProxyIntake final : public StreamHandler {
 public:
  static constexpr std::uint64_t kTimeoutMs = 5000;
  // `client`: who the header says (or the peer); `via`: the balancer's
  // address when a header named someone; `early`: bytes after the header.
  using Done = std::function<void(Stream* s, const NetAddr& client, std::optional<NetAddr> via, std::string early)>;
  using Failed = std::function<void(const NetAddr& peer, std::string_view why)>;
  // Takes over `s` (its handler) until done or failed; frees itself.
  static void start(uv_loop_t* loop, Stream* s, const NetAddr& peer, unsigned accept, Done done, Failed failed);

  void on_data(Stream& s, const char* p, std::size_t n) override;
  void on_eof(Stream& s) override { fail(s, "closed before its PROXY header"); }
  void on_error(Stream& s, int) override { fail(s, "error before its PROXY header"); }
  void on_closed(Stream& s) override;

 private:
  ProxyIntake() = default;
  void fail(Stream& s, std::string_view why);
  void finish_timer();
  uv_timer_t timer_{};
  Stream* stream_ = nullptr;
  NetAddr peer_;
  ProxyHeaderReader reader_{0};
  Done done_;
  Failed failed_;
  bool over_ = false;
};

}  // namespace ftpw
