#include "socket_relay.h"

#include "net.h"

#ifdef __linux__
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#endif

namespace ftpw {

namespace {
std::atomic<std::size_t> g_budget_limit{std::size_t{32} << 20};
std::atomic<std::size_t> g_budget_used{0};
}  // namespace

void RelayBudget::set_limit(std::size_t bytes) { g_budget_limit.store(bytes, std::memory_order_relaxed); }

bool RelayBudget::take(std::size_t bytes) {
  std::size_t used = g_budget_used.load(std::memory_order_relaxed);
  do {
    if (used + bytes > g_budget_limit.load(std::memory_order_relaxed)) return false;
  } while (!g_budget_used.compare_exchange_weak(used, used + bytes, std::memory_order_relaxed));
  return true;
}

void RelayBudget::give(std::size_t bytes) { g_budget_used.fetch_sub(bytes, std::memory_order_relaxed); }

#ifdef __linux__

bool SocketRelay::supported() { return true; }

SocketRelay::~SocketRelay() {
  for (auto& d : dir_) free_buffer(d);
}

bool SocketRelay::start(uv_loop_t* loop, int fd_a, int fd_b, Kind kind, std::size_t bulk_buffer,
                        RelayOwner* owner) {
  owner_ = owner;
  kind_ = kind;
  bulk_ = std::max(bulk_buffer, kSmallBuffer);
  const int a = fcntl(fd_a, F_DUPFD_CLOEXEC, 0), b = fcntl(fd_b, F_DUPFD_CLOEXEC, 0);
  int pa[2] = {-1, -1}, pb[2] = {-1, -1};
  bool ok = a >= 0 && b >= 0;
  if (ok && kind == Kind::splice)
    ok = pipe2(pa, O_NONBLOCK | O_CLOEXEC) == 0 && pipe2(pb, O_NONBLOCK | O_CLOEXEC) == 0;
  if (!ok) {
    for (int fd : {a, b, pa[0], pa[1], pb[0], pb[1]})
      if (fd >= 0) ::close(fd);
    return false;
  }
  // Descriptors of their own: counted with the sockets (proxy/fd_budget.h).
  g_sockets.fetch_add(kind == Kind::splice ? 6 : 2, std::memory_order_relaxed);
  dir_[0].src = a;
  dir_[0].dst = b;
  dir_[1].src = b;
  dir_[1].dst = a;
  if (kind == Kind::splice) {
    // Pipes start at the kernel's default size; a direction that turns out to
    // carry a bulk transfer gets a bigger one (grow()). The kernel charges pipe
    // buffers to the user (fs.pipe-user-pages-soft, 64 MiB by default): two big
    // pipes for every data connection, most of which move a few KiB one way,
    // would exhaust it after a few dozen transfers.
    dir_[0].pipe_r = pa[0];
    dir_[0].pipe_w = pa[1];
    dir_[1].pipe_r = pb[0];
    dir_[1].pipe_w = pb[1];
    for (auto& d : dir_) {
      const int cap = fcntl(d.pipe_w, F_GETPIPE_SZ);
      d.cap = static_cast<std::size_t>(cap > 0 ? cap : 65536);
    }
  } else {
    // The small buffer is allocated on the first read: most data connections
    // move bytes one way only.
    for (auto& d : dir_) d.cap = kSmallBuffer;
  }
  poll_[0].fd = a;
  poll_[1].fd = b;
  for (auto& p : poll_) {
    p.self = this;
    uv_poll_init(loop, &p.h, p.fd);
    p.h.data = &p;
    ++open_handles_;
  }
  running_ = true;
  pump(3);
  return true;
}

void SocketRelay::fail(const char* reason) {
  if (ended_) return;
  ended_ = true;
  owner_->on_relay_end(false, reason);
}

long SocketRelay::fill(Dir& x, std::size_t want) {
  ssize_t n;
  if (kind_ == Kind::splice) {
    n = splice(x.src, nullptr, x.pipe_w, nullptr, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  } else {
    if (!x.buf) {
      x.buf = static_cast<char*>(std::malloc(x.cap));
      if (!x.buf) return -2;
    }
    // The free part of the ring: after the held bytes, wrapping to the start.
    const std::size_t start = (x.head + x.held) % x.cap;
    const std::size_t first = std::min(want, x.cap - start);
    iovec iov[2] = {{x.buf + start, first}, {x.buf, want - first}};
    msghdr m{};
    m.msg_iov = iov;
    m.msg_iovlen = want > first ? 2 : 1;
    n = ::recvmsg(x.src, &m, MSG_DONTWAIT);
  }
  if (n >= 0) return n;
  return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -1 : -2;
}

long SocketRelay::drain(Dir& x) {
  ssize_t n;
  if (kind_ == Kind::splice) {
    n = splice(x.pipe_r, nullptr, x.dst, nullptr, x.held, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  } else {
    const std::size_t first = std::min(x.held, x.cap - x.head);
    iovec iov[2] = {{x.buf + x.head, first}, {x.buf, x.held - first}};
    msghdr m{};
    m.msg_iov = iov;
    m.msg_iovlen = x.held > first ? 2 : 1;
    n = ::sendmsg(x.dst, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) x.head = (x.head + static_cast<std::size_t>(n)) % x.cap;
  }
  if (n >= 0) return n;
  return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? -1 : -2;
}

bool SocketRelay::pump_dir(int d) {
  Dir& x = dir_[d];
  bool progress = false;
  // A short read means the source is drained (or a short write the
  // destination full) for now: the poll says when that changes, so the call
  // that would only answer EAGAIN is not made (it costs as much as a useful one).
  bool src_drained = false;
  for (;;) {
    bool moved = false;
    if (!x.src_eof && !src_drained && !x.capped && x.taken >= x.limit) {
      // At the limit: one byte more (peeked, never read) caps it; an EOF ends it as usual.
      char c;
      const ssize_t n = ::recv(x.src, &c, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n > 0) x.capped = true;
      else if (n == 0) x.src_eof = true;
      else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) src_drained = true;
      else {
        fail("relay-read-error");
        return false;
      }
      moved = n >= 0;
    } else if (!x.src_eof && !src_drained && !x.full && x.held < x.cap && x.taken < x.limit) {
      const std::size_t want =
          static_cast<std::size_t>(std::min<std::uint64_t>(x.cap - x.held, x.limit - x.taken));
      const long n = fill(x, want);
      if (n > 0) {
        x.taken += static_cast<std::uint64_t>(n);
        x.held += static_cast<std::size_t>(n);
        src_drained = static_cast<std::size_t>(n) < want;
        moved = true;
      } else if (n == 0) {
        x.src_eof = true;
        moved = true;
      } else if (n == -1) {
        src_drained = true;
        // With bytes in a pipe, EAGAIN may mean the pipe is out of slots
        // (small segments), not that the socket is empty: stop asking until
        // the pipe drains, or a level-triggered poll would spin.
        if (kind_ == Kind::splice && x.held > 0) x.full = true;
      } else {
        fail("relay-read-error");
        return false;
      }
    }
    if (x.held > 0 && !x.dst_blocked) {
      const std::size_t have = x.held;
      const long m = drain(x);
      if (m > 0) {
        x.held -= static_cast<std::size_t>(m);
        if (x.held == 0) x.head = 0;
        x.dst_blocked = static_cast<std::size_t>(m) < have;
        x.full = false;
        x.moved += static_cast<std::size_t>(m);
        if (x.moved >= x.grow_at) grow(x);
        owner_->on_relayed(d, static_cast<std::size_t>(m));
        if (ended_) return false;
        moved = true;
      } else if (m == -1) {
        x.dst_blocked = true;
      } else {
        fail("relay-write-error");
        return false;
      }
    }
    if (x.capped && x.held == 0) {
      // All it may carry is delivered: the rest is refused.
      if (!ended_) {
        ended_ = true;
        owner_->on_relay_end(false, "upload-cap");
      }
      return false;
    }
    if (x.src_eof && x.held == 0 && !x.shut) {
      // Half-close: the FIN follows the last byte.
      ::shutdown(x.dst, SHUT_WR);
      x.shut = true;
      if (!ended_) {
        ended_ = true;
        owner_->on_relay_end(true, "complete");
      }
      return false;
    }
    if (!moved) break;
    progress = true;
  }
  return progress;
}

std::size_t SocketRelay::take_budget(std::size_t want) {
  // The full bulk size if the budget allows, else the biggest half that fits.
  for (std::size_t size = want; size > kSmallBuffer; size /= 2)
    if (RelayBudget::take(size)) return size;
  return 0;
}

void SocketRelay::grow(Dir& x) {
  // Bigger batches mean fewer wake-ups. When the bigger size cannot be had
  // (the relay budget, the kernel's pipe limits, memory), the small one still
  // works.
  x.grow_at = SIZE_MAX;
  if (bulk_ <= x.cap) return;
  const std::size_t size = take_budget(bulk_);
  if (size <= x.cap) {
    if (size) RelayBudget::give(size);
    // The budget is taken by other transfers: ask again later.
    x.grow_at = x.moved + kRetryBytes;
    return;
  }
  if (kind_ == Kind::splice) {
    const int cap = fcntl(x.pipe_w, F_SETPIPE_SZ, static_cast<int>(std::min<std::size_t>(size, INT_MAX)));
    if (cap > 0 && static_cast<std::size_t>(cap) > x.cap) {
      x.cap = static_cast<std::size_t>(cap);
      x.budget = size;
    } else {
      RelayBudget::give(size);
    }
    return;
  }
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    RelayBudget::give(size);
    return;
  }
  char* nb = static_cast<char*>(p);
  const std::size_t first = std::min(x.held, x.cap - x.head);
  if (x.held) {
    std::memcpy(nb, x.buf + x.head, first);
    std::memcpy(nb + first, x.buf, x.held - first);
  }
  free_buffer(x);
  x.buf = nb;
  x.mapped = true;
  x.budget = size;
  x.cap = size;
  x.head = 0;
}

void SocketRelay::free_buffer(Dir& x) {
  if (x.budget) RelayBudget::give(x.budget);  // a grown buffer or pipe
  x.budget = 0;
  if (!x.buf) return;
  // A mapped buffer goes straight back to the kernel when the transfer ends.
  if (x.mapped) munmap(x.buf, x.cap);
  else std::free(x.buf);
  x.buf = nullptr;
  x.mapped = false;
}

void SocketRelay::pump(int dirs) {
  if (in_pump_ || !running_) return;
  in_pump_ = true;
  for (int d = 0; d < 2 && !ended_; ++d)
    if (dirs & (1 << d)) pump_dir(d);
  in_pump_ = false;
  if (!ended_) update_polls();
}

void SocketRelay::limit(int dir, std::uint64_t bytes) {
  dir_[dir].limit = bytes;
  if (running_) pump(1 << dir);
}

void SocketRelay::update_polls() {
  for (int s = 0; s < 2; ++s) {
    // Socket s is the source of direction s and the destination of the other.
    const Dir& out = dir_[s];
    const Dir& in = dir_[1 - s];
    int ev = 0;
    if (!out.src_eof && !out.full && !out.capped && out.held < out.cap) ev |= UV_READABLE;
    if (in.held > 0 && in.dst_blocked) ev |= UV_WRITABLE;
    Poll& p = poll_[s];
    if (ev == p.events) continue;
    p.events = ev;
    if (ev) uv_poll_start(&p.h, ev | UV_DISCONNECT, on_poll);
    else uv_poll_stop(&p.h);
  }
}

void SocketRelay::on_poll(uv_poll_t* h, int status, int events) {
  auto* p = static_cast<Poll*>(h->data);
  SocketRelay* self = p->self;
  if (!self->running_ || self->ended_) return;
  if (status < 0) {
    self->fail("poll-error");
    return;
  }
  // Socket s is the source of direction s and the destination of the other.
  const int s = p == &self->poll_[0] ? 0 : 1;
  int dirs = 0;
  if (events & (UV_READABLE | UV_DISCONNECT)) dirs |= 1 << s;
  if (events & UV_WRITABLE) {
    self->dir_[1 - s].dst_blocked = false;
    dirs |= 1 << (1 - s);
  }
  self->pump(dirs);
}

void SocketRelay::stop() {
  if (!running_) return;
  running_ = false;
  ended_ = true;
  for (auto& p : poll_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&p.h), [](uv_handle_t* h) {
      auto* p = static_cast<Poll*>(h->data);
      SocketRelay* self = p->self;
      ::close(p->fd);
      p->fd = -1;
      g_sockets.fetch_sub(1, std::memory_order_relaxed);
      if (--self->open_handles_ == 0) {
        for (auto& d : self->dir_) {
          if (d.pipe_r >= 0) g_sockets.fetch_sub(1, std::memory_order_relaxed), ::close(d.pipe_r);
          if (d.pipe_w >= 0) g_sockets.fetch_sub(1, std::memory_order_relaxed), ::close(d.pipe_w);
          d.pipe_r = d.pipe_w = -1;
          self->free_buffer(d);
        }
      }
      self->owner_->on_relay_handle_closed();
    });
  }
}

#else

bool SocketRelay::supported() { return false; }
SocketRelay::~SocketRelay() {}
bool SocketRelay::start(uv_loop_t*, int, int, Kind, std::size_t, RelayOwner*) { return false; }
void SocketRelay::stop() {}
void SocketRelay::limit(int, std::uint64_t) {}
void SocketRelay::pump(int) {}
long SocketRelay::fill(Dir&, std::size_t) { return -2; }
long SocketRelay::drain(Dir&) { return -2; }
void SocketRelay::grow(Dir&) {}
void SocketRelay::free_buffer(Dir&) {}
bool SocketRelay::pump_dir(int) { return false; }
void SocketRelay::limit(int dir, std::uint64_t bytes) {
  dir_[dir].limit = bytes;
  if (running_) pump(1 << dir);
}

void SocketRelay::update_polls() {}
void SocketRelay::fail(const char*) {}
void SocketRelay::on_poll(uv_poll_t*, int, int) {}

#endif

}  // namespace ftpw
