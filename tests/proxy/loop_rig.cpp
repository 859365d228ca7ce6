#include "loop_rig.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>

namespace ftpw::test {

LoopRig::~LoopRig() {
  if (!closed_) {
    EXPECT_EQ(close(), 0) << "a libuv handle was left open";
  }
}

bool LoopRig::run_until(const std::function<bool()>& done, int max_iterations) {
  for (int i = 0; i < max_iterations; ++i) {
    if (done()) return true;
    if (uv_run(&loop_, UV_RUN_ONCE) == 0 && !done()) return false;
  }
  return done();
}

void LoopRig::drain() {
  while (uv_run(&loop_, UV_RUN_DEFAULT) != 0) {
  }
}

int LoopRig::close() {
  drain();
  closed_ = true;
  return uv_loop_close(&loop_);
}

int listen_socket(const char* ip, std::uint16_t& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = 0;
  inet_pton(AF_INET, ip, &a.sin_addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 16) != 0) {
    ::close(fd);
    return -1;
  }
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  port = ntohs(a.sin_port);
  return fd;
}

int connect_socket(const NetAddr& to, const char* from_ip) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (from_ip) {
    sockaddr_in b{};
    b.sin_family = AF_INET;
    inet_pton(AF_INET, from_ip, &b.sin_addr);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&b), sizeof b) != 0) {
      ::close(fd);
      return -1;
    }
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(to.port);
  inet_pton(AF_INET, to.host_string().c_str(), &a.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

int accept_socket(int listener) { return ::accept(listener, nullptr, nullptr); }

void set_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

void send_all(int fd, const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    const ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    ASSERT_GT(n, 0) << std::strerror(errno);
    off += static_cast<std::size_t>(n);
  }
}

std::string read_all(int fd, std::size_t max) {
  std::string out;
  char buf[65536];
  while (out.size() < max) {
    const ssize_t n = ::recv(fd, buf, std::min(sizeof buf, max - out.size()), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

NetAddr loopback(std::uint16_t port, const char* ip) {
  return *NetAddr::parse_host_port(std::string(ip) + ":" + std::to_string(port));
}

}  // namespace ftpw::test
