#include "splice_relay.h"

#include "net.h"

#ifdef __linux__
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <initializer_list>
#endif

namespace ftpw {

#ifdef __linux__

bool SpliceRelay::supported() { return true; }

bool SpliceRelay::start(uv_loop_t* loop, int fd_a, int fd_b, SpliceOwner* owner) {
  owner_ = owner;
  int pa[2] = {-1, -1}, pb[2] = {-1, -1};
  const int a = fcntl(fd_a, F_DUPFD_CLOEXEC, 0), b = fcntl(fd_b, F_DUPFD_CLOEXEC, 0);
  if (a < 0 || b < 0 || pipe2(pa, O_NONBLOCK | O_CLOEXEC) != 0 || pipe2(pb, O_NONBLOCK | O_CLOEXEC) != 0) {
    for (int fd : {a, b, pa[0], pa[1], pb[0], pb[1]})
      if (fd >= 0) ::close(fd);
    return false;
  }
  // Pipes start at the kernel's default size; a direction that turns out to
  // carry a bulk transfer gets a bigger one (grow()). The kernel charges pipe
  // buffers to the user (fs.pipe-user-pages-soft, 64 MiB by default): two big
  // pipes for every data connection, most of which move a few KiB one way,
  // would exhaust it after a few dozen transfers.
  for (int p : {pa[1], pb[1]}) {
    const int cap = fcntl(p, F_GETPIPE_SZ);
    (p == pa[1] ? dir_[0] : dir_[1]).cap = static_cast<std::size_t>(cap > 0 ? cap : 65536);
  }
  dir_[0].src = a;
  dir_[0].dst = b;
  dir_[0].pipe_r = pa[0];
  dir_[0].pipe_w = pa[1];
  dir_[1].src = b;
  dir_[1].dst = a;
  dir_[1].pipe_r = pb[0];
  dir_[1].pipe_w = pb[1];
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

void SpliceRelay::fail(const char* reason) {
  if (ended_) return;
  ended_ = true;
  owner_->on_splice_end(false, reason);
}

bool SpliceRelay::pump_dir(int d) {
  Dir& x = dir_[d];
  bool progress = false;
  // A short splice means the source is drained (or the destination full) for
  // now: the poll says when that changes, so the call that would only answer
  // EAGAIN is not made (it costs as much as a useful one).
  bool src_drained = false;
  for (;;) {
    bool moved = false;
    if (!x.src_eof && !src_drained && !x.pipe_full && x.in_pipe < x.cap) {
      const std::size_t want = x.cap - x.in_pipe;
      const ssize_t n = splice(x.src, nullptr, x.pipe_w, nullptr, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        x.in_pipe += static_cast<std::size_t>(n);
        src_drained = static_cast<std::size_t>(n) < want;
        moved = true;
      } else if (n == 0) {
        x.src_eof = true;
        moved = true;
      } else if (errno == EAGAIN) {
        src_drained = true;
        // With bytes in the pipe, EAGAIN may mean the pipe is out of slots
        // (small segments), not that the socket is empty: stop asking until
        // the pipe drains, or a level-triggered poll would spin.
        if (x.in_pipe > 0) x.pipe_full = true;
      } else if (errno != EINTR) {
        fail("splice-read-error");
        return false;
      }
    }
    if (x.in_pipe > 0 && !x.dst_blocked) {
      const std::size_t have = x.in_pipe;
      const ssize_t m = splice(x.pipe_r, nullptr, x.dst, nullptr, have, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (m > 0) {
        x.in_pipe -= static_cast<std::size_t>(m);
        x.dst_blocked = static_cast<std::size_t>(m) < have;
        x.pipe_full = false;
        x.moved += static_cast<std::size_t>(m);
        if (!x.grown && x.moved >= kBulkBytes) grow(x);
        owner_->on_spliced(d, static_cast<std::size_t>(m));
        if (ended_) return false;
        moved = true;
      } else if (m < 0 && errno == EAGAIN) {
        x.dst_blocked = true;
      } else if (m < 0 && errno != EINTR) {
        fail("splice-write-error");
        return false;
      }
    }
    if (x.src_eof && x.in_pipe == 0 && !x.shut) {
      // Half-close: the FIN follows the last byte.
      ::shutdown(x.dst, SHUT_WR);
      x.shut = true;
      if (!ended_) {
        ended_ = true;
        owner_->on_splice_end(true, "complete");
      }
      return false;
    }
    if (!moved) break;
    progress = true;
  }
  return progress;
}

void SpliceRelay::grow(Dir& x) {
  // A bigger pipe means fewer wake-ups. The kernel caps it (fs.pipe-max-size,
  // the user's pipe pages); when it refuses, the default size still works.
  x.grown = true;
  const int cap = fcntl(x.pipe_w, F_SETPIPE_SZ, kBulkPipe);
  if (cap > 0) x.cap = static_cast<std::size_t>(cap);
}

void SpliceRelay::pump(int dirs) {
  if (in_pump_ || !running_) return;
  in_pump_ = true;
  for (int d = 0; d < 2 && !ended_; ++d)
    if (dirs & (1 << d)) pump_dir(d);
  in_pump_ = false;
  if (!ended_) update_polls();
}

void SpliceRelay::update_polls() {
  for (int s = 0; s < 2; ++s) {
    // Socket s is the source of direction s and the destination of the other.
    const Dir& out = dir_[s];
    const Dir& in = dir_[1 - s];
    int ev = 0;
    if (!out.src_eof && !out.pipe_full && out.in_pipe < out.cap) ev |= UV_READABLE;
    if (in.in_pipe > 0 && in.dst_blocked) ev |= UV_WRITABLE;
    Poll& p = poll_[s];
    if (ev == p.events) continue;
    p.events = ev;
    if (ev) uv_poll_start(&p.h, ev | UV_DISCONNECT, on_poll);
    else uv_poll_stop(&p.h);
  }
}

void SpliceRelay::on_poll(uv_poll_t* h, int status, int events) {
  auto* p = static_cast<Poll*>(h->data);
  SpliceRelay* self = p->self;
  ++t_loop_activity;
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

void SpliceRelay::stop() {
  if (!running_) return;
  running_ = false;
  ended_ = true;
  for (auto& p : poll_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&p.h), [](uv_handle_t* h) {
      auto* p = static_cast<Poll*>(h->data);
      SpliceRelay* self = p->self;
      ::close(p->fd);
      p->fd = -1;
      if (--self->open_handles_ == 0) {
        for (auto& d : self->dir_) {
          ::close(d.pipe_r);
          ::close(d.pipe_w);
          d.pipe_r = d.pipe_w = -1;
        }
      }
      self->owner_->on_splice_handle_closed();
    });
  }
}

#else

bool SpliceRelay::supported() { return false; }
bool SpliceRelay::start(uv_loop_t*, int, int, SpliceOwner*) { return false; }
void SpliceRelay::stop() {}
void SpliceRelay::pump(int) {}
void SpliceRelay::grow(Dir&) {}
bool SpliceRelay::pump_dir(int) { return false; }
void SpliceRelay::update_polls() {}
void SpliceRelay::fail(const char*) {}
void SpliceRelay::on_poll(uv_poll_t*, int, int) {}

#endif

}  // namespace ftpw
