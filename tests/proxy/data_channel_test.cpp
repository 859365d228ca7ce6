// DataChannel on a real loop: passive and active, every relay kind, a
// stranger on the data port, an abort; each ends with its owner told it is
// gone and the loop closed with no handle left.
#include <gtest/gtest.h>

#include <random>
#include <thread>

#include "data_channel.h"
#include "loop_rig.h"

using namespace ftpw;
using namespace ftpw::test;

namespace {

struct Owner : DataOwner {
  explicit Owner(uv_loop_t* l) : loop_(l) {
    cfg_.upstream_addr = loopback(21);
    peer_ = loopback(40000);
  }
  uv_loop_t* loop() const override { return loop_; }
  PortPool& ports() override { return pool_; }
  const Config& cfg() const override { return cfg_; }
  const NetAddr& peer() const override { return peer_; }
  void data_moved() override { ++moved; }
  void data_server_leg() override { ++server_legs; }
  void data_opened(const DataChannel&, const NetAddr&, const NetAddr&) override { ++opened; }
  void data_ended(const DataChannel& d, std::string_view reason, bool ok) override {
    ++ended;
    end_reason = reason;
    delivered = ok;
    cut = d.cut();
    down = d.downloaded();
    up = d.uploaded();
  }
  void data_gone(DataChannel* d) override {
    delete d;
    ++gone;
  }
  void data_event(std::string_view r, std::string_view, const NetAddr&) override {
    ++strangers;
    rule = r;
  }

  uv_loop_t* loop_;
  PortPool pool_{47100, 47199};
  Config cfg_;
  NetAddr peer_;
  int moved = 0, server_legs = 0, opened = 0, ended = 0, gone = 0, strangers = 0;
  std::string end_reason, rule;
  bool delivered = false, cut = false;
  std::uint64_t down = 0, up = 0;
};

std::string payload(std::size_t n) {
  std::mt19937 rng(11);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

class DataChannelKinds : public ::testing::TestWithParam<RelayKind> {};

// The channel joins a side that listens and sends `data` (passive: the
// server's data port; active: the client's PORT address) with a side that
// connects to the channel's own address and reads. Returns what was read.
std::string relay_through(LoopRig& rig, Owner& owner, DataChannel::Kind kind, const std::string& data) {
  std::uint16_t port = 0;
  const int listening = listen_socket("127.0.0.1", port);
  std::thread sender([&] {
    const int fd = accept_socket(listening);
    send_all(fd, data);
    ::close(fd);
  });
  auto* d = new DataChannel(owner, kind, loopback(port));
  const auto addr = d->open(loopback(0), std::nullopt);
  EXPECT_TRUE(addr);
  std::string got;
  std::thread reader([&] {
    const int fd = connect_socket(*addr);
    got = read_all(fd);
    ::close(fd);
  });
  EXPECT_TRUE(rig.run_until([&] { return owner.gone == 1; }));
  reader.join();
  sender.join();
  ::close(listening);
  return got;
}

}  // namespace

TEST_P(DataChannelKinds, PassiveDownloadArrivesWhole) {
  LoopRig rig;
  Owner owner(rig.loop());
  owner.cfg_.relay_kind = GetParam();
  const std::string data = payload(3u << 20);
  const std::string got = relay_through(rig, owner, DataChannel::Kind::passive, data);
  EXPECT_TRUE(got == data) << got.size() << " of " << data.size();
  EXPECT_EQ(owner.opened, 1);
  EXPECT_EQ(owner.server_legs, 1);
  EXPECT_EQ(owner.end_reason, "complete");
  EXPECT_TRUE(owner.delivered);
  EXPECT_FALSE(owner.cut);
  EXPECT_EQ(owner.down, data.size());
  EXPECT_EQ(owner.up, 0u);
  EXPECT_GT(owner.moved, 0);
  EXPECT_EQ(owner.pool_.in_use(), 0u);  // its passive port went back
  EXPECT_EQ(rig.close(), 0);
}

TEST_P(DataChannelKinds, ActiveUploadArrivesWhole) {
  LoopRig rig;
  Owner owner(rig.loop());
  owner.cfg_.relay_kind = GetParam();
  const std::string data = payload(2u << 20);
  const std::string got = relay_through(rig, owner, DataChannel::Kind::active, data);
  EXPECT_TRUE(got == data) << got.size() << " of " << data.size();
  EXPECT_EQ(owner.up, data.size());
  EXPECT_EQ(owner.down, 0u);
  EXPECT_TRUE(owner.delivered);
  EXPECT_EQ(rig.close(), 0);
}

INSTANTIATE_TEST_SUITE_P(Relays, DataChannelKinds,
                         ::testing::Values(RelayKind::stream, RelayKind::copy, RelayKind::splice),
                         [](const auto& info) {
                           return info.param == RelayKind::stream ? "stream"
                                  : info.param == RelayKind::copy ? "copy"
                                                                  : "splice";
                         });

TEST(DataChannel, AStrangerOnThePassivePortIsClosedAndTheClientStillGetsIn) {
  LoopRig rig;
  Owner owner(rig.loop());
  std::uint16_t sport = 0;
  const int server_listen = listen_socket("127.0.0.1", sport);
  std::thread server([&] {
    const int fd = accept_socket(server_listen);
    send_all(fd, "the file");
    ::close(fd);
  });
  auto* d = new DataChannel(owner, DataChannel::Kind::passive, loopback(sport));
  const auto addr = d->open(loopback(0), std::nullopt);
  ASSERT_TRUE(addr);
  std::string stolen = "unset", got;
  std::thread thief([&] {  // another address on the loopback net: not the client
    const int fd = connect_socket(*addr, "127.0.0.2");
    ASSERT_GE(fd, 0);
    stolen = read_all(fd);
    ::close(fd);
  });
  EXPECT_TRUE(rig.run_until([&] { return owner.strangers == 1; }));
  thief.join();
  EXPECT_EQ(stolen, "");  // closed unread and unanswered
  EXPECT_EQ(owner.rule, "data-peer-mismatch");
  EXPECT_EQ(owner.server_legs, 0);
  std::thread client([&] {
    const int fd = connect_socket(*addr);
    got = read_all(fd);
    ::close(fd);
  });
  EXPECT_TRUE(rig.run_until([&] { return owner.gone == 1; }));
  client.join();
  server.join();
  ::close(server_listen);
  EXPECT_EQ(got, "the file");
  EXPECT_EQ(rig.close(), 0);
}

TEST(DataChannel, AnAbortCutsItAndSaysSo) {
  LoopRig rig;
  Owner owner(rig.loop());
  std::uint16_t sport = 0;
  const int server_listen = listen_socket("127.0.0.1", sport);
  int server_fd = -1;
  std::thread server([&] { server_fd = accept_socket(server_listen); });  // connects, sends nothing
  auto* d = new DataChannel(owner, DataChannel::Kind::passive, loopback(sport));
  const auto addr = d->open(loopback(0), std::nullopt);
  ASSERT_TRUE(addr);
  const int client_fd = connect_socket(*addr);
  EXPECT_TRUE(rig.run_until([&] { return owner.opened == 1; }));
  server.join();
  d->abort("abor");
  EXPECT_EQ(owner.ended, 1);
  EXPECT_EQ(owner.end_reason, "abor");
  EXPECT_TRUE(owner.cut);
  EXPECT_FALSE(owner.delivered);
  EXPECT_TRUE(rig.run_until([&] { return owner.gone == 1; }));
  EXPECT_EQ(read_all(client_fd), "");  // the client's leg is closed
  for (int fd : {client_fd, server_fd, server_listen}) ::close(fd);
  EXPECT_EQ(rig.close(), 0);
}

TEST(DataChannel, NoFreePassivePortMeansNoAddress) {
  LoopRig rig;
  Owner owner(rig.loop());
  owner.pool_.acquire([](std::uint16_t) { return true; });
  while (owner.pool_.acquire([](std::uint16_t) { return true; }) >= 0) {
  }
  auto* d = new DataChannel(owner, DataChannel::Kind::passive, loopback(2121));
  EXPECT_FALSE(d->open(loopback(0), std::nullopt));
  d->abort("no-passive-port");
  EXPECT_TRUE(rig.run_until([&] { return owner.gone == 1; }));
  EXPECT_EQ(rig.close(), 0);
}
