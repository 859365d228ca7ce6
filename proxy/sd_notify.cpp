#include "sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>

namespace ftpw {

bool sd_notify(std::string_view state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (!path || !*path) return false;
  const std::size_t len = std::strlen(path);
  sockaddr_un sa{};
  if (len >= sizeof sa.sun_path || (path[0] != '/' && path[0] != '@')) return false;
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path, len);
  if (sa.sun_path[0] == '@') sa.sun_path[0] = '\0';  // abstract namespace
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const auto salen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
  const ssize_t n = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&sa), salen);
  ::close(fd);
  return n == static_cast<ssize_t>(state.size());
}

std::uint64_t sd_watchdog_usec() {
  const char* usec = std::getenv("WATCHDOG_USEC");
  if (!usec || !*usec) return 0;
  if (const char* pid = std::getenv("WATCHDOG_PID"); pid && *pid && std::strtoll(pid, nullptr, 10) != ::getpid())
    return 0;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(usec, &end, 10);
  return end && *end == '\0' ? v : 0;
}

std::uint64_t monotonic_usec() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000u + static_cast<std::uint64_t>(ts.tv_nsec) / 1000u;
}

}  // namespace ftpw
