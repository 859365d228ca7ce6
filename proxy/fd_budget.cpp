#include "fd_budget.h"

#include <sys/resource.h>

#include <algorithm>
#include <filesystem>

namespace ftpw {

std::int64_t FdBudget::limit() {
  static const std::int64_t n = [] {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return std::int64_t{1} << 30;
    return static_cast<std::int64_t>(rl.rlim_cur);
  }();
  return n;
}

void FdBudget::count_base(std::int64_t sockets_open) {
  std::int64_t n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec); !ec && it != std::filesystem::end(it);
       it.increment(ec))
    ++n;
  base_ = std::max<std::int64_t>(0, n - sockets_open);
}

}  // namespace ftpw
