// Passive data ports: a range, picked unpredictably, each released when its
// listener closes. No libuv here; the caller binds and reports failures.
#pragma once
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

namespace ftpw {

class PortPool {
 public:
  PortPool(std::uint16_t lo, std::uint16_t hi) : lo_(lo), used_(static_cast<std::size_t>(hi - lo) + 1, false) {}
  // Candidates to try, in an unpredictable order; each candidate is marked
  // used. Call release() for those the caller could not bind.
  template <class TryBind>
  int acquire(TryBind&& try_bind) {
    const std::size_t n = used_.size();
    std::uniform_int_distribution<std::size_t> pick(0, n - 1);
    const std::size_t start = pick(rng_);
    // A random start and a random odd stride visit every port once.
    std::size_t stride = (pick(rng_) | 1) % n;
    if (stride == 0 || std::gcd(stride, n) != 1) stride = 1;
    for (std::size_t i = 0, p = start; i < n; ++i, p = (p + stride) % n) {
      if (used_[p]) continue;
      const auto port = static_cast<std::uint16_t>(lo_ + p);
      if (try_bind(port)) {
        used_[p] = true;
        ++in_use_;
        return port;
      }
    }
    return -1;
  }
  void release(std::uint16_t port) {
    if (port < lo_ || static_cast<std::size_t>(port - lo_) >= used_.size()) return;
    if (used_[port - lo_]) {
      used_[port - lo_] = false;
      --in_use_;
    }
  }
  std::size_t in_use() const { return in_use_; }
  std::size_t size() const { return used_.size(); }

 private:
  std::uint16_t lo_;
  std::vector<bool> used_;
  std::size_t in_use_ = 0;
  std::mt19937_64 rng_{std::random_device{}()};
};

}  // namespace ftpw
