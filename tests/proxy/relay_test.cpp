// SocketRelay between two real loopback TCP connections, copy and splice:
// every byte in order, the FIN passed on, a slow reader holding the writer
// back within bounded memory, and a peer that resets mid-transfer.
#include <gtest/gtest.h>
#include <netinet/tcp.h>

#include <cerrno>
#include <random>
#include <thread>

#include "loop_rig.h"
#include "socket_relay.h"

using namespace ftpw;
using namespace ftpw::test;

namespace {

struct Owner : RelayOwner {
  std::size_t moved[2] = {0, 0};
  int ends = 0, handles_closed = 0;
  bool ok = false;
  std::string reason;
  void on_relayed(int dir, std::size_t n) override { moved[dir] += n; }
  void on_relay_end(bool o, const char* r) override {
    ++ends;
    ok = o;
    reason = r;
  }
  void on_relay_handle_closed() override { ++handles_closed; }
};

// client <-> [a  relay  b] <-> server, all on loopback.
struct Pairs {
  int client = -1, a = -1, b = -1, server = -1;
  Pairs() {
    for (auto [outer, inner] : {std::pair{&client, &a}, std::pair{&server, &b}}) {
      std::uint16_t port = 0;
      const int l = listen_socket("127.0.0.1", port);
      *outer = connect_socket(loopback(port));
      *inner = accept_socket(l);
      ::close(l);
    }
  }
  ~Pairs() {
    for (int fd : {client, a, b, server})
      if (fd >= 0) ::close(fd);
  }
  void small_buffers() {
    const int size = 64 * 1024;
    for (int fd : {client, a, b, server}) {
      setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    }
  }
  std::size_t kernel_buffers() const {
    std::size_t sum = 0;
    for (int fd : {client, a, b, server})
      for (int opt : {SO_SNDBUF, SO_RCVBUF}) {
        int v = 0;
        socklen_t len = sizeof v;
        getsockopt(fd, SOL_SOCKET, opt, &v, &len);
        sum += static_cast<std::size_t>(v);
      }
    return sum;
  }
};

std::string pattern(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

class Relay : public ::testing::TestWithParam<SocketRelay::Kind> {
 protected:
  void SetUp() override {
    if (GetParam() == SocketRelay::Kind::splice && !SocketRelay::supported()) GTEST_SKIP() << "no splice";
  }
};

void stop_and_close(LoopRig& rig, SocketRelay& relay, Owner& owner) {
  const int handles = relay.handles();
  relay.stop();
  EXPECT_TRUE(rig.run_until([&] { return owner.handles_closed == handles; }));
  EXPECT_EQ(rig.close(), 0);
}

}  // namespace

TEST_P(Relay, EveryByteInOrderEachWayAndTheFinPassedOn) {
  for (int dir = 0; dir < 2; ++dir) {
    LoopRig rig;
    Pairs p;
    Owner owner;
    SocketRelay relay;
    ASSERT_TRUE(relay.start(rig.loop(), p.a, p.b, GetParam(), 4 << 20, &owner));
    const std::string data = pattern(9u << 20, 7u + static_cast<unsigned>(dir));  // past the 1 MiB bulk threshold
    const int from = dir == 0 ? p.client : p.server, to = dir == 0 ? p.server : p.client;
    std::string got;
    std::thread writer([&] {
      send_all(from, data);
      ::shutdown(from, SHUT_WR);
    });
    std::thread reader([&] { got = read_all(to); });
    EXPECT_TRUE(rig.run_until([&] { return owner.ends == 1; }));
    writer.join();
    reader.join();  // EOF: the relay passed the FIN on
    EXPECT_TRUE(owner.ok) << owner.reason;
    EXPECT_EQ(owner.moved[dir], data.size());
    EXPECT_EQ(owner.moved[1 - dir], 0u);
    EXPECT_TRUE(got == data) << "dir " << dir << ": " << got.size() << " of " << data.size() << " bytes";
    stop_and_close(rig, relay, owner);
  }
}

TEST_P(Relay, ASlowReaderHoldsTheWriterBackWithinBoundedMemory) {
  for (int dir = 0; dir < 2; ++dir) {  // client -> server, then server -> client
    LoopRig rig;
    Pairs p;
    p.small_buffers();
    Owner owner;
    SocketRelay relay;
    ASSERT_TRUE(relay.start(rig.loop(), p.a, p.b, GetParam(), 1 << 20, &owner));
    const int from = dir == 0 ? p.client : p.server, to = dir == 0 ? p.server : p.client;
    set_nonblocking(from);
    const std::string data = pattern(16u << 20, 3);
    std::size_t sent = 0;
    // Write while the relay runs and nobody reads the far side, until
    // nothing moves any more: the writer is held back.
    for (int idle = 0; idle < 200;) {
      std::size_t round = 0;
      for (;;) {
        const ssize_t n = ::send(from, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) break;
        sent += static_cast<std::size_t>(n);
        round += static_cast<std::size_t>(n);
      }
      uv_run(rig.loop(), UV_RUN_NOWAIT);
      idle = round == 0 ? idle + 1 : 0;
    }
    // What is in flight fits the four sockets' buffers and the relay's own
    // (a 64 KiB buffer or pipe per direction before a transfer counts as bulk).
    EXPECT_GT(sent, 0u);
    EXPECT_LT(sent, p.kernel_buffers() + (1u << 20)) << "the relay kept reading with nobody reading its output";
    EXPECT_LT(sent, data.size());
    // The reader comes: everything arrives, in order.
    std::string got;
    std::thread reader([&] { got = read_all(to); });
    while (sent < data.size() || owner.ends == 0) {
      if (sent < data.size()) {
        const ssize_t n = ::send(from, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
        if (n > 0) sent += static_cast<std::size_t>(n);
        if (sent == data.size()) ::shutdown(from, SHUT_WR);
      }
      uv_run(rig.loop(), sent < data.size() ? UV_RUN_NOWAIT : UV_RUN_ONCE);
    }
    reader.join();
    EXPECT_TRUE(owner.ok) << owner.reason;
    EXPECT_EQ(owner.moved[dir], data.size());
    EXPECT_TRUE(got == data) << "dir " << dir << ": " << got.size() << " of " << data.size();
    stop_and_close(rig, relay, owner);
  }
}

TEST_P(Relay, APeerThatResetsMidTransferEndsItAsAnError) {
  LoopRig rig;
  Pairs p;
  Owner owner;
  SocketRelay relay;
  ASSERT_TRUE(relay.start(rig.loop(), p.a, p.b, GetParam(), 1 << 20, &owner));
  const std::string data = pattern(1u << 20, 5);
  send_all(p.client, data.substr(0, 64 * 1024));
  ASSERT_TRUE(rig.run_until([&] { return owner.moved[0] > 0; }));
  const linger hard{1, 0};
  setsockopt(p.server, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
  ::close(p.server);  // RST
  p.server = -1;
  set_nonblocking(p.client);
  EXPECT_TRUE(rig.run_until([&] {
    ::send(p.client, data.data(), data.size(), MSG_NOSIGNAL);  // more to relay toward the dead peer
    return owner.ends == 1;
  }));
  EXPECT_FALSE(owner.ok);
  EXPECT_FALSE(owner.reason.empty());
  stop_and_close(rig, relay, owner);
}

TEST_P(Relay, ALimitDeliversExactlyThatMuchThenEnds) {
  for (const std::size_t size : {std::size_t{100000}, std::size_t{3} << 20}) {
    LoopRig rig;
    Pairs p;
    Owner owner;
    SocketRelay relay;
    const std::uint64_t cap = 100000;
    relay.limit(0, cap);
    ASSERT_TRUE(relay.start(rig.loop(), p.a, p.b, GetParam(), 1 << 20, &owner));
    const std::string data = pattern(size, 9);
    std::string got;
    std::thread reader([&] { got = read_all(p.server, 8u << 20); });
    set_nonblocking(p.client);
    std::size_t off = 0;
    while (owner.ends == 0) {  // write what the relay takes, run the loop
      if (off < data.size()) {
        const ssize_t n = ::send(p.client, data.data() + off, data.size() - off, MSG_NOSIGNAL);
        if (n > 0) off += static_cast<std::size_t>(n);
        if (off == data.size()) ::shutdown(p.client, SHUT_WR);
      }
      uv_run(rig.loop(), UV_RUN_NOWAIT);
    }
    if (size == cap) {
      EXPECT_TRUE(owner.ok) << owner.reason;  // exactly the cap, then EOF: complete
    } else {
      EXPECT_FALSE(owner.ok);
      EXPECT_EQ(owner.reason, "upload-cap");
    }
    EXPECT_EQ(owner.moved[0], cap);
    ::shutdown(p.b, SHUT_WR);  // what the channel does as it ends
    reader.join();
    EXPECT_TRUE(got == data.substr(0, cap)) << got.size();
    stop_and_close(rig, relay, owner);
  }
}

INSTANTIATE_TEST_SUITE_P(CopyAndSplice, Relay, ::testing::Values(SocketRelay::Kind::copy, SocketRelay::Kind::splice),
                         [](const auto& info) { return info.param == SocketRelay::Kind::copy ? "copy" : "splice"; });
