// Data relay on the two sockets of a data connection, outside libuv's streams
// (Linux). Two ways to move the bytes, chosen per relay:
//
//  copy    recv(2) into a buffer, send(2) from it. The buffer starts small and
//          grows to the configured bulk size once a direction has moved 1 MiB:
//          big batches mean few wake-ups, and the receiver reads bytes the
//          proxy has just written (still in cache) instead of cold page-cache
//          pages. The fastest here (see README, Performance).
//  splice  splice(2) socket -> pipe -> socket: the bytes never enter user
//          space. Pipes are limited to fs.pipe-max-size (1 MiB unprivileged).
//
// Either way what is in flight per direction is bounded (buffer or pipe): a
// full one stops the reads, so a slow side holds back the fast one. The two
// sockets are dup()ed and watched with uv_poll; their uv_tcp_t handles stay
// idle while the relay runs and are closed by their owner afterwards.
#pragma once
#include <uv.h>

#include <cstddef>
#include <cstdint>

namespace ftpw {

class RelayOwner {
 public:
  virtual ~RelayOwner() = default;
  // Bytes moved: dir 0 = a -> b, dir 1 = b -> a.
  virtual void on_relayed(int dir, std::size_t n) = 0;
  // One direction delivered everything and passed the FIN on (ok), or an error.
  virtual void on_relay_end(bool ok, const char* reason) = 0;
  // A handle of the relay finished closing (the owner counts them).
  virtual void on_relay_handle_closed() = 0;
};

// The memory all bulk buffers (copy) and grown pipes (splice) may take
// together, process-wide: a transfer grows only while the budget allows, to a
// smaller size when the full one does not fit, so many slow or stalled readers
// cannot pin unbounded memory ([data] relay_memory_mib).
class RelayBudget {
 public:
  static void set_limit(std::size_t bytes);
  static bool take(std::size_t bytes);
  static void give(std::size_t bytes);
};

class SocketRelay {
 public:
  enum class Kind { copy, splice };
  static bool supported();
  SocketRelay() = default;
  SocketRelay(const SocketRelay&) = delete;
  SocketRelay& operator=(const SocketRelay&) = delete;
  ~SocketRelay();
  // Starts relaying between sockets fd_a and fd_b. `bulk_buffer`: what a
  // direction may hold once it carries a bulk transfer (copy: its buffer).
  // Returns false (nothing started, nothing to close) when it cannot; the
  // caller then relays itself.
  bool start(uv_loop_t* loop, int fd_a, int fd_b, Kind kind, std::size_t bulk_buffer, RelayOwner* owner);
  // Stops polling and closes its handles (each reports on_relay_handle_closed).
  void stop();
  // Direction `dir` carries at most `bytes`: what comes beyond is never read;
  // once the source has more than that to give (not just an EOF), the relay
  // delivers what it holds and ends with on_relay_end(false, "upload-cap").
  // Before start() or while running.
  void limit(int dir, std::uint64_t bytes);
  bool running() const { return running_; }
  int handles() const { return open_handles_; }

 private:
  struct Dir {
    int src = -1, dst = -1;
    int pipe_r = -1, pipe_w = -1;  // splice
    char* buf = nullptr;           // copy: a ring of `cap` bytes, `held` of them from `head`
    bool mapped = false;           // buf came from mmap (the bulk size), else malloc
    std::size_t budget = 0;        // bytes taken from the RelayBudget for it
    std::size_t head = 0;
    std::size_t held = 0;   // bytes read and not yet written (in the pipe or the buffer)
    std::size_t cap = 0;    // the pipe's or the buffer's size
    std::size_t moved = 0;  // bytes delivered
    std::size_t grow_at = kBulkBytes;  // try to grow once moved reaches this (SIZE_MAX: no more)
    bool src_eof = false, shut = false, dst_blocked = false;
    std::uint64_t limit = UINT64_MAX, taken = 0;  // bytes it may read from src, and has read
    bool capped = false;                          // the source had more than `limit`
    bool full = false;  // the pipe refused more (it fills by slots, not bytes)
  };
  static constexpr std::size_t kBulkBytes = 1 << 20;    // past this, a direction is a bulk transfer
  static constexpr std::size_t kSmallBuffer = 64 << 10;  // copy: the buffer before that
  static constexpr std::size_t kRetryBytes = 8 << 20;    // budget taken: ask again after this many
  struct Poll {
    uv_poll_t h{};
    SocketRelay* self = nullptr;
    int fd = -1;
    int events = -1;
  };
  void pump(int dirs);  // bit d: pump direction d
  bool pump_dir(int d);
  // One read into the pipe or buffer: >0 bytes, 0 EOF, -1 EAGAIN/EINTR, -2 error.
  long fill(Dir& x, std::size_t want);
  // One write out of it: >0 bytes, -1 EAGAIN/EINTR, -2 error.
  long drain(Dir& x);
  void grow(Dir& x);
  void free_buffer(Dir& x);
  std::size_t take_budget(std::size_t more);
  void update_polls();
  void fail(const char* reason);
  static void on_poll(uv_poll_t* h, int status, int events);

  RelayOwner* owner_ = nullptr;
  Kind kind_ = Kind::copy;
  std::size_t bulk_ = 0;
  Dir dir_[2];
  Poll poll_[2];  // 0: socket a, 1: socket b
  int open_handles_ = 0;
  bool running_ = false, ended_ = false, in_pump_ = false;
};

}  // namespace ftpw
