#include "admission.h"

namespace ftpw {
namespace {
std::string ip_key(const NetAddr& a) { return a.host_string(); }
}  // namespace

std::optional<Refusal> Admission::admit(const NetAddr& ip, const Config& c, std::uint64_t now) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string key = ip_key(ip);
  if (total_.load() >= static_cast<std::size_t>(c.max_sessions)) return Refusal::max_sessions;
  auto it = per_ip_.find(key);
  if (it != per_ip_.end() && it->second >= c.max_sessions_per_ip)
    return Refusal::max_sessions_per_ip;
  if (auto f = failures_.find(key); f != failures_.end() && f->second.blocked_until_ms > now)
    return Refusal::login_cooldown;
  ++per_ip_[key];
  ++total_;
  return std::nullopt;
}

void Admission::release(const NetAddr& ip) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = per_ip_.find(ip_key(ip));
  if (it != per_ip_.end() && --it->second <= 0) per_ip_.erase(it);
  --total_;
}

bool Admission::user_login(const std::string& user, const Config& c) {
  std::lock_guard<std::mutex> lock(mu_);
  std::int64_t& n = per_user_[user];
  if (c.max_sessions_per_user > 0 && n >= c.max_sessions_per_user) {
    if (n == 0) per_user_.erase(user);
    return false;
  }
  ++n;
  return true;
}

void Admission::user_logout(const std::string& user) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = per_user_.find(user);
  if (it != per_user_.end() && --it->second <= 0) per_user_.erase(it);
}

bool Admission::login_failed(const NetAddr& ip, const Config& c, std::uint64_t now) {
  std::lock_guard<std::mutex> lock(mu_);
  Failures& f = failures_[ip_key(ip)];
  if (f.window_start_ms == 0 || now - f.window_start_ms > static_cast<std::uint64_t>(c.login_failure_window_s) * 1000) {
    f.window_start_ms = now;
    f.count = 0;
  }
  if (++f.count < c.max_login_failures) return false;
  f.blocked_until_ms = now + static_cast<std::uint64_t>(c.login_cooldown_s) * 1000;
  f.count = 0;
  return true;
}

void Admission::sweep(const Config& c, std::uint64_t now) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto window = static_cast<std::uint64_t>(c.login_failure_window_s) * 1000;
  for (auto it = failures_.begin(); it != failures_.end();)
    it = (now > it->second.blocked_until_ms && now - it->second.window_start_ms > window) ? failures_.erase(it)
                                                                                        : std::next(it);
}

}  // namespace ftpw
