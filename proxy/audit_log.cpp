#include "audit_log.h"

#include <spdlog/async.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <ctime>

#include "audit_file_sink.h"
#include "audit_schema.h"

namespace ftpw {
namespace {

struct Batch {
  bool on = false;
  std::string lines;  // complete lines, each ending in '\n'
};
thread_local Batch t_batch;

}  // namespace

std::string rfc3339_now() {
  using namespace std::chrono;
  const auto now = system_clock::now();
  const auto us = duration_cast<microseconds>(now.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[80];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06uZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<unsigned>(us % 1000000));
  return buf;
}

void json_escape(std::string& out, std::string_view in) {
  static const char hex[] = "0123456789abcdef";
  auto u00 = [&](unsigned char c) {
    out += "\\u00";
    out += hex[c >> 4];
    out += hex[c & 15];
  };
  for (std::size_t i = 0; i < in.size();) {
    const auto c = static_cast<unsigned char>(in[i]);
    if (c < 0x80) {
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
          if (c < 0x20 || c == 0x7f) u00(c);
          else out += static_cast<char>(c);
      }
      ++i;
      continue;
    }
    // A well-formed UTF-8 sequence passes as is; anything else byte by byte.
    std::size_t len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    bool ok = len != 0 && i + len <= in.size() && !(c == 0xC0 || c == 0xC1 || c > 0xF4);
    for (std::size_t k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(in[i + k]) & 0xC0) == 0x80;
    if (ok) {
      out.append(in.substr(i, len));
      i += len;
    } else {
      u00(c);
      ++i;
    }
  }
}

Event::Event(std::string_view event, std::string_view session, std::string_view client) {
  s_.reserve(256);
  s_ += "{\"";
  s_ += audit::f::ts;
  s_ += "\":\"";
  s_ += rfc3339_now();
  s_ += "\"";
  str(audit::f::session, session);
  str(audit::f::client, client);
  str(audit::f::event, event);
}

void Event::key(std::string_view k) {
  s_ += ",\"";
  s_ += k;
  s_ += "\":";
}

Event& Event::str(std::string_view k, std::string_view v) {
  key(k);
  s_ += '"';
  json_escape(s_, v);
  s_ += '"';
  return *this;
}

Event& Event::num(std::string_view k, std::int64_t v) {
  key(k);
  s_ += std::to_string(v);
  return *this;
}

Event& Event::boolean(std::string_view k, bool v) {
  key(k);
  s_ += v ? "true" : "false";
  return *this;
}

const std::string& Event::finish() {
  if (s_.empty() || s_.back() != '}') s_ += '}';
  return s_;
}

AuditLog::AuditLog(const std::string& path) {
  // Queue slots: a record is a worker's batch of up to kBatchBytes, so 1024
  // of them bound the queue near 64 MiB when the disk falls behind.
  if (!spdlog::thread_pool()) spdlog::init_thread_pool(1024, 1);
  spdlog::sink_ptr sink;
  if (path == "-") sink = std::make_shared<spdlog::sinks::stdout_sink_mt>();
  else sink = file_sink_ = std::make_shared<ReopeningFileSink>(path);
  // overrun_oldest: a full queue (disk far slower than the relay) drops the
  // oldest queued records instead of blocking the event loop; dropped() counts
  // them (a record is one worker's batch of events).
  logger_ = std::make_shared<spdlog::async_logger>("audit", sink, spdlog::thread_pool(),
                                                   spdlog::async_overflow_policy::overrun_oldest);
  logger_->set_pattern("%v");
  logger_->set_level(spdlog::level::info);
  logger_->flush_on(spdlog::level::err);
  spdlog::register_logger(logger_);
  spdlog::flush_every(std::chrono::seconds(1));
}

AuditLog::~AuditLog() {
  logger_->flush();
  spdlog::drop("audit");
}

void AuditLog::write(const Event& e) const { write(const_cast<Event&>(e).finish()); }

void AuditLog::write(std::string_view line) const {
  if (!t_batch.on) {
    logger_->info("{}", line);
    return;
  }
  t_batch.lines.append(line);
  t_batch.lines += '\n';
  if (t_batch.lines.size() >= kBatchBytes) flush_batch();
}

void AuditLog::begin_batching() { t_batch.on = true; }

void AuditLog::flush_batch() const {
  std::string& b = t_batch.lines;
  if (b.empty()) return;
  // The pattern ends each record with its own newline.
  logger_->info("{}", std::string_view(b.data(), b.size() - 1));
  b.clear();
  if (b.capacity() > 4 * kBatchBytes) b.shrink_to_fit();
}

void AuditLog::flush() const { logger_->flush(); }

void AuditLog::reopen() const {
  if (!file_sink_) return;  // stdout
  file_sink_->request_reopen();
  logger_->flush();  // queued behind every record handed over so far: they go to the old file
}

std::uint64_t AuditLog::dropped() const { return spdlog::thread_pool()->overrun_counter(); }

}  // namespace ftpw
