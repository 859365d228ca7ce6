// What all workers share: the admission limits. Sessions per address and in
// total, and failed logins per address with their cool-down. Shared under a
// mutex, touched only when a session opens, closes or fails a login.
#pragma once
#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "config.h"
#include "netaddr.h"
#include "stats.h"

namespace ftpw {

class Admission {
 public:
  // Reserves a session slot for `ip`, or returns why not.
  std::optional<Refusal> admit(const NetAddr& ip, const Config& c, std::uint64_t now_ms);
  void release(const NetAddr& ip);
  // A failed login from `ip`; true when the IP is now in its cool-down.
  bool login_failed(const NetAddr& ip, const Config& c, std::uint64_t now_ms);
  // A session logged in as `user`: false (and not counted) when that user
  // already has limits.max_sessions_per_user sessions.
  bool user_login(const std::string& user, const Config& c);
  void user_logout(const std::string& user);
  void sweep(const Config& c, std::uint64_t now_ms);
  std::size_t sessions() const { return total_.load(); }
  // The last upstream connect of any session: the readiness probe's input.
  enum class Upstream : int { untried, ok, failed };
  void upstream_outcome(bool ok) { upstream_.store(ok ? Upstream::ok : Upstream::failed, std::memory_order_relaxed); }
  Upstream upstream() const { return upstream_.load(std::memory_order_relaxed); }

 private:
  struct Failures {
    std::int64_t count = 0;
    std::uint64_t window_start_ms = 0, blocked_until_ms = 0;
  };
  std::mutex mu_;
  std::unordered_map<std::string, int> per_ip_;
  std::unordered_map<std::string, Failures> failures_;
  std::unordered_map<std::string, std::int64_t> per_user_;
  std::atomic<std::size_t> total_{0};
  std::atomic<Upstream> upstream_{Upstream::untried};
};

}  // namespace ftpw
