// A real libuv loop for the proxy layer's tests, and plain loopback sockets
// to talk to it. Every test ends by closing its handles and checking that the
// loop closes with nothing left open (uv_loop_close() == 0).
#pragma once
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <functional>
#include <string>

#include "netaddr.h"

namespace ftpw::test {

class LoopRig {
 public:
  LoopRig() { uv_loop_init(&loop_); }
  ~LoopRig();
  uv_loop_t* loop() { return &loop_; }
  // Runs the loop one iteration at a time until `done` holds. A loop with
  // nothing left to wait for, or a bound of iterations far beyond what any
  // test needs, ends it too; the caller asserts on `done` itself.
  bool run_until(const std::function<bool()>& done, int max_iterations = 200000);
  // Runs until no handle is active (every close callback has run).
  void drain();
  // uv_loop_close()'s result once everything has been drained.
  int close();

 private:
  uv_loop_t loop_{};
  bool closed_ = false;
};

// Blocking loopback sockets (the test's own side of a connection).
int listen_socket(const char* ip, std::uint16_t& port);
int connect_socket(const NetAddr& to, const char* from_ip = nullptr);
int accept_socket(int listener);
void set_nonblocking(int fd);
// Sends all of `s`; reads until EOF or `max` bytes.
void send_all(int fd, const std::string& s);
std::string read_all(int fd, std::size_t max = SIZE_MAX);
NetAddr loopback(std::uint16_t port, const char* ip = "127.0.0.1");

}  // namespace ftpw::test
