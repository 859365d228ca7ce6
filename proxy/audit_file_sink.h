// The audit log's file: appended to, and reopened by name on request
// (SIGUSR1, logrotate's postrotate). The reopen happens on the logger's own
// thread between two records, so every record lands whole in exactly one of
// the two files; if the new file cannot be opened the old one stays in use.
#pragma once
#include <spdlog/details/file_helper.h>
#include <spdlog/sinks/base_sink.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

namespace ftpw {

class ReopeningFileSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit ReopeningFileSink(std::string path);  // throws spdlog::spdlog_ex when it cannot open
  // Any thread: the next record (or flush) goes to a freshly opened file.
  void request_reopen() { reopen_.store(true, std::memory_order_release); }
  std::uint64_t reopens() const { return reopens_.load(std::memory_order_relaxed); }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override;
  void flush_() override;

 private:
  void reopen_if_asked();
  std::string path_;
  std::unique_ptr<spdlog::details::file_helper> file_;
  std::atomic<bool> reopen_{false};
  std::atomic<std::uint64_t> reopens_{0};
};

}  // namespace ftpw
