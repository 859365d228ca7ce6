// File descriptors, kept in reserve. A proxy that runs out of them can no
// longer even tell a new client why: libuv then accepts and drops the
// connection unanswered. So a new session is taken only while the sockets
// open (g_sockets, proxy/net.h), what a session may still open (its data
// connection and listener) and a fixed reserve (the audit log, the metrics
// endpoint, a refusal's own socket, libuv's) fit under RLIMIT_NOFILE; past
// that the client gets 421 (refusal `out-of-fds`) and accepting resumes by
// itself as sessions end.
#pragma once
#include <cstdint>

namespace ftpw {

struct FdBudget {
  static constexpr std::int64_t kPerSession = 5;  // client, server, data client leg, data server leg, listener
  static constexpr std::int64_t kReserve = 32;
  // RLIMIT_NOFILE's soft limit, read once (after main raised it).
  static std::int64_t limit();
  // The descriptors that are not sockets (event loops, the audit log, pipes),
  // counted once everything is set up.
  static void count_base(std::int64_t sockets_open);
  // Room for one more session now.
  static bool room(std::int64_t sockets_open) { return base_ + sockets_open + kPerSession + kReserve <= limit(); }

 private:
  static inline std::int64_t base_ = 0;
};

}  // namespace ftpw
