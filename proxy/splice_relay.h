// Zero-copy data relay for Linux: splice(2) moves bytes socket -> pipe ->
// socket without copying them through user space. One pipe per direction bounds
// what is in flight (backpressure by construction: a full pipe stops the reads).
// The two sockets are dup()ed and watched with uv_poll; their uv_tcp_t handles
// stay idle while the relay runs and are closed by their owner afterwards.
#pragma once
#include <uv.h>

#include <cstdint>

namespace ftpw {

class SpliceOwner {
 public:
  virtual ~SpliceOwner() = default;
  // Bytes moved: dir 0 = a -> b, dir 1 = b -> a.
  virtual void on_spliced(int dir, std::size_t n) = 0;
  // One direction delivered everything and passed the FIN on (ok), or an error.
  virtual void on_splice_end(bool ok, const char* reason) = 0;
  // A handle of the relay finished closing (the owner counts them).
  virtual void on_splice_handle_closed() = 0;
};

class SpliceRelay {
 public:
  static bool supported();
  // Starts relaying between sockets fd_a and fd_b. Returns false (nothing
  // started, nothing to close) when it cannot; the caller then relays itself.
  bool start(uv_loop_t* loop, int fd_a, int fd_b, SpliceOwner* owner);
  // Stops polling and closes its handles (each reports on_splice_handle_closed).
  void stop();
  bool running() const { return running_; }
  int handles() const { return open_handles_; }

 private:
  struct Dir {
    int src = -1, dst = -1;
    int pipe_r = -1, pipe_w = -1;
    std::size_t in_pipe = 0;
    std::size_t cap = 0;    // the pipe's size
    std::size_t moved = 0;  // bytes delivered
    bool src_eof = false, shut = false, dst_blocked = false, grown = false;
    bool pipe_full = false;  // the pipe refused more (it fills by slots, not bytes)
  };
  static constexpr std::size_t kBulkBytes = 1 << 20;  // past this, a direction is a bulk transfer
  static constexpr int kBulkPipe = 1 << 20;           // and gets a pipe this big
  struct Poll {
    uv_poll_t h{};
    SpliceRelay* self = nullptr;
    int fd = -1;
    int events = -1;
  };
  void pump(int dirs);  // bit d: pump direction d
  bool pump_dir(int d);
  void grow(Dir& x);
  void update_polls();
  void fail(const char* reason);
  static void on_poll(uv_poll_t* h, int status, int events);

  SpliceOwner* owner_ = nullptr;
  Dir dir_[2];
  Poll poll_[2];  // 0: socket a, 1: socket b
  int open_handles_ = 0;
  bool running_ = false, ended_ = false, in_pump_ = false;
};

}  // namespace ftpw
