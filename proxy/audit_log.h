// The audit trail: JSON Lines, one object per event, written through an
// asynchronous spdlog logger so a slow disk never stalls the relay. Events
// reach the file within one second (periodic flush).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace spdlog {
class logger;
}

namespace ftpw {

class ReopeningFileSink;

// Builds one event object. Strings are escaped; bytes that are not valid UTF-8
// are written as \u00XX (one escape per byte), so nothing is lost or invalid.
class Event {
 public:
  Event(std::string_view event, std::string_view session, std::string_view client);
  Event& str(std::string_view key, std::string_view value);
  Event& str_if(std::string_view key, std::string_view value) { return value.empty() ? *this : str(key, value); }
  Event& num(std::string_view key, std::int64_t value);
  Event& boolean(std::string_view key, bool value);
  const std::string& finish();

 private:
  void key(std::string_view k);
  std::string s_;
};

void json_escape(std::string& out, std::string_view in);
std::string rfc3339_now();  // 2026-11-24T21:13:36.123456Z

class AuditLog {
 public:
  // path: a file (appended) or "-" for stdout. Throws std::runtime_error on failure.
  explicit AuditLog(const std::string& path);
  ~AuditLog();
  void write(const Event& e) const;
  void write(std::string_view line) const;
  void flush() const;
  // Reopens the file by its name (after a rotation), on the logger's thread
  // between two records: each record lands whole in one of the two files
  // (records queued just before the signal may go to the new one; none is
  // lost or split). Stdout: nothing.
  void reopen() const;
  // Batching for event-loop threads: after begin_batching(), this thread's
  // events gather in a thread-local buffer that flush_batch() hands to the
  // logger as one record (the worker calls it every tick, and it happens by
  // itself past kBatchBytes). One queue hand-off per tick instead of one per
  // event keeps the logger thread from waking on every command of every session.
  static void begin_batching();
  void flush_batch() const;
  static constexpr std::size_t kBatchBytes = 64 * 1024;
  std::uint64_t dropped() const;

 private:
  std::shared_ptr<spdlog::logger> logger_;
  std::shared_ptr<ReopeningFileSink> file_sink_;
};

}  // namespace ftpw
