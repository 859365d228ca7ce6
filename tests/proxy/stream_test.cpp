// Stream, Listener and PortPool on a real loop with loopback peers.
#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "loop_rig.h"
#include "net.h"
#include "port_pool.h"

using namespace ftpw;
using namespace ftpw::test;

namespace {

// Echoes what it reads; closes on EOF or error.
struct Echo : StreamHandler {
  std::string seen;
  int closed = 0, eofs = 0;
  void on_data(Stream& s, const char* p, std::size_t n) override {
    seen.append(p, n);
    s.write(std::string_view(p, n));
  }
  void on_eof(Stream& s) override {
    ++eofs;
    s.shutdown();
  }
  void on_error(Stream& s, int) override { s.close(); }
  void on_shutdown(Stream& s) override { s.close(); }
  void on_closed(Stream&) override { ++closed; }
};

struct Accepting : ListenerHandler {
  Echo echo;
  Stream* accepted = nullptr;
  int listener_closed = 0;
  void on_connection(Listener& l) override {
    accepted = l.accept(&echo, 7);
    if (accepted) accepted->start();
  }
  void on_listener_closed(Listener&) override { ++listener_closed; }
};

}  // namespace

TEST(PortPool, EveryPortOnceThenNone) {
  PortPool pool(40000, 40009);
  std::set<int> got;
  for (int i = 0; i < 10; ++i) got.insert(pool.acquire([](std::uint16_t) { return true; }));
  EXPECT_EQ(got.size(), 10u);
  EXPECT_EQ(*got.begin(), 40000);
  EXPECT_EQ(*got.rbegin(), 40009);
  EXPECT_EQ(pool.acquire([](std::uint16_t) { return true; }), -1);
  pool.release(40003);
  EXPECT_EQ(pool.acquire([](std::uint16_t) { return true; }), 40003);
  EXPECT_EQ(pool.in_use(), 10u);
}

TEST(PortPool, PortsThatCannotBeBoundAreSkipped) {
  PortPool pool(40000, 40003);
  const int p = pool.acquire([](std::uint16_t port) { return port == 40002; });
  EXPECT_EQ(p, 40002);
  EXPECT_EQ(pool.in_use(), 1u);
  EXPECT_EQ(pool.acquire([](std::uint16_t) { return false; }), -1);
  EXPECT_EQ(pool.in_use(), 1u);
  pool.release(39999);  // outside the range: ignored
  pool.release(40002);
  pool.release(40002);  // twice: counted once
  EXPECT_EQ(pool.in_use(), 0u);
}

TEST(Stream, EchoesThroughAListenerAndClosesClean) {
  LoopRig rig;
  Accepting acc;
  Listener* l = Listener::create(rig.loop(), &acc);
  ASSERT_EQ(l->listen(loopback(0), 16), 0);
  const NetAddr at = *l->local();
  std::string reply;
  std::thread peer([&] {
    const int fd = connect_socket(at);
    ASSERT_GE(fd, 0);
    send_all(fd, "hello, stream");
    ::shutdown(fd, SHUT_WR);
    reply = read_all(fd);
    ::close(fd);
  });
  EXPECT_TRUE(rig.run_until([&] { return acc.echo.closed == 1; }));
  peer.join();
  EXPECT_EQ(acc.echo.seen, "hello, stream");
  EXPECT_EQ(reply, "hello, stream");
  EXPECT_EQ(acc.echo.eofs, 1);
  ASSERT_NE(acc.accepted, nullptr);
  l->close();
  EXPECT_TRUE(rig.run_until([&] { return acc.listener_closed == 1; }));
  EXPECT_EQ(rig.close(), 0);
}

TEST(Stream, PauseReasonsAreCounted) {
  LoopRig rig;
  Echo h;
  Stream* s = Stream::create(rig.loop(), &h, 1);
  s->pause(pause_peer_full);
  s->pause(pause_core_hold);
  s->resume(pause_peer_full);
  EXPECT_EQ(s->paused(), pause_core_hold);
  s->resume(pause_core_hold);
  EXPECT_EQ(s->paused(), 0);
  s->close();
  s->close();  // idempotent
  EXPECT_TRUE(rig.run_until([&] { return h.closed == 1; }));
  EXPECT_EQ(h.closed, 1);
}

TEST(Stream, ConnectToAClosedPortReportsTheError) {
  LoopRig rig;
  std::uint16_t port = 0;
  const int fd = listen_socket("127.0.0.1", port);
  ::close(fd);  // nothing listens there now
  struct H : Echo {
    int status = 1;
    void on_connect(Stream& s, int st) override {
      status = st;
      s.close();
    }
  } h;
  Stream* s = Stream::create(rig.loop(), &h, 1);
  sockaddr_storage ss;
  to_sockaddr(loopback(port), ss);
  ASSERT_EQ(s->connect(reinterpret_cast<sockaddr*>(&ss)), 0);
  EXPECT_TRUE(rig.run_until([&] { return h.closed == 1; }));
  EXPECT_EQ(h.status, UV_ECONNREFUSED);
}

TEST(Stream, WritesQueueAboveTheHighWatermarkAndDrain) {
  LoopRig rig;
  Accepting acc;
  Listener* l = Listener::create(rig.loop(), &acc);
  ASSERT_EQ(l->listen(loopback(0), 16), 0);
  const int fd = connect_socket(*l->local());  // accepted by the loop below; not read yet
  ASSERT_TRUE(rig.run_until([&] { return acc.accepted != nullptr; }));
  Stream* s = acc.accepted;
  s->set_watermarks(64 * 1024, 16 * 1024);
  struct Drain : StreamHandler {
    int drains = 0, shutdowns = 0, closed = 0;
    void on_data(Stream&, const char*, std::size_t) override {}
    void on_eof(Stream&) override {}
    void on_error(Stream&, int) override {}
    void on_drain(Stream&) override { ++drains; }
    void on_shutdown(Stream&) override { ++shutdowns; }
    void on_closed(Stream&) override { ++closed; }
  } d;
  s->set_handler(&d);
  const std::string chunk(1 << 20, 'x');
  // Nobody reads: the kernel's buffers fill and the rest waits in the queue.
  std::size_t writes = 0;
  for (; writes < 16 && !s->above_high(); ++writes) s->write(chunk);
  EXPECT_TRUE(s->above_high());
  const std::size_t written = s->queued();
  std::string got;
  std::thread reader([&] { got = read_all(fd, 16u << 20); });
  EXPECT_TRUE(rig.run_until([&] { return d.drains >= 1; }));
  EXPECT_GE(d.drains, 1);
  EXPECT_GT(written, 0u);
  s->shutdown();
  ASSERT_TRUE(rig.run_until([&] { return d.shutdowns == 1; }));
  reader.join();
  EXPECT_EQ(got.size(), writes * chunk.size());  // every byte written, none lost
  EXPECT_LE(written, got.size());
  s->close();
  EXPECT_TRUE(rig.run_until([&] { return d.closed == 1; }));
  l->close();
  ::close(fd);
  EXPECT_EQ(rig.close(), 0);
}
