#include "audit_file_sink.h"

#include <spdlog/spdlog.h>

namespace ftpw {

ReopeningFileSink::ReopeningFileSink(std::string path) : path_(std::move(path)) {
  file_ = std::make_unique<spdlog::details::file_helper>();
  file_->open(path_, false);
}

void ReopeningFileSink::reopen_if_asked() {
  if (!reopen_.exchange(false, std::memory_order_acq_rel)) return;
  auto fresh = std::make_unique<spdlog::details::file_helper>();
  try {
    fresh->open(path_, false);
  } catch (const spdlog::spdlog_ex& e) {
    spdlog::error("audit log: cannot reopen {}: {}; still writing to the open file", path_, e.what());
    return;
  }
  file_->flush();
  file_ = std::move(fresh);  // the old one is closed here, after its last record
  reopens_.fetch_add(1, std::memory_order_relaxed);
  spdlog::info("audit log reopened: {}", path_);
}

void ReopeningFileSink::sink_it_(const spdlog::details::log_msg& msg) {
  reopen_if_asked();
  spdlog::memory_buf_t buf;
  formatter_->format(msg, buf);
  file_->write(buf);
}

void ReopeningFileSink::flush_() {
  reopen_if_asked();
  file_->flush();
}

}  // namespace ftpw
