// The commands forwarded to the server and still owed a reply, oldest first.
// Bounded: the core stops reading the client while it is full.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>

#include "verbs.h"

namespace ftpw {

struct Pending {
  Verb verb = Verb::unknown;       // what the client sent
  Verb sent = Verb::unknown;       // what went to the server (EPSV<->PASV translation)
  bool replied = false;            // any reply (1xx included) seen
  bool preliminary = false;        // a 1xx seen
  bool epsv_all = false;
  std::uint64_t sent_us = 0;
  bool internal = false;           // the proxy's own (PWD after login): never shown or logged
  std::int32_t flagged = -1;       // the first sequence rule that fired for it (audit mode: forwarded anyway)
};

class PendingQueue {
 public:
  static constexpr std::size_t kCapacity = 8;

  std::size_t size() const { return count_; }
  bool empty() const { return count_ == 0; }
  bool full() const { return count_ == kCapacity; }
  Pending& front() { return at(0); }
  const Pending& at(std::size_t i) const { return fifo_[(head_ + i) % kCapacity]; }
  Pending& at(std::size_t i) { return fifo_[(head_ + i) % kCapacity]; }

  void push(const Pending& p) {
    at(count_) = p;
    ++count_;
  }
  void push_front(const Pending& p) {
    head_ = (head_ + kCapacity - 1) % kCapacity;
    ++count_;
    at(0) = p;
  }
  Pending pop() {
    const Pending p = at(0);
    head_ = (head_ + 1) % kCapacity;
    --count_;
    return p;
  }
  void clear() { head_ = count_ = 0; }

  // Removes a QUIT waiting behind the head; true if there was one.
  bool take_queued_quit() {
    for (std::size_t i = 1; i < count_; ++i) {
      if (at(i).verb != Verb::QUIT) continue;
      for (std::size_t j = i; j + 1 < count_; ++j) at(j) = at(j + 1);
      --count_;
      return true;
    }
    return false;
  }
  // A command still waits for its first reply.
  bool waiting() const {
    for (std::size_t i = 0; i < count_; ++i)
      if (!at(i).replied) return true;
    return false;
  }
  // When the oldest command still waiting for its first reply was forwarded,
  // or 0 when none waits.
  std::uint64_t waiting_since_us() const {
    for (std::size_t i = 0; i < count_; ++i)
      if (!at(i).replied) return at(i).sent_us ? at(i).sent_us : 1;  // (a multi-line reply in progress included)
    return 0;
  }
  // A transfer command (RETR, STOR, LIST...) still waits for its completion.
  bool transfer_pending() const {
    for (std::size_t i = 0; i < count_; ++i)
      if (is_transfer(at(i).verb)) return true;
    return false;
  }

 private:
  std::array<Pending, kCapacity> fifo_{};
  std::size_t head_ = 0, count_ = 0;
};

}  // namespace ftpw
