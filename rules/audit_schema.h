// The audit log's schema: every event name and every field name, declared
// once. The writer (proxy/) and lint's audit-log reader (rules/linter.cpp)
// use these names; the README's audit-log table lists the same events
// (tests/integration/test_audit_log.py holds them together).
#pragma once
#include <string_view>

#define FTPW_AUDIT_EVENTS(X)                                                                                   \
  X(session_open) X(session_refused) X(command) X(reply) X(violation) X(server_finding) X(login_failed)        \
  X(data_open) X(data_close) X(transfer) X(timeout) X(session_close) X(rules_reloaded) X(tls)

#define FTPW_AUDIT_FIELDS(X)                                                                                   \
  X(ts) X(session) X(client) X(event) X(local) X(upstream) X(verb) X(arg) X(code) X(text) X(latency_us)        \
  X(source) X(annotation) X(rule) X(action) X(reply_code) X(severity) X(message) X(peer) X(client_side)        \
  X(server_side) X(reason) X(complete) X(bytes_down) X(bytes_up) X(path) X(bytes) X(direction) X(duration_us) \
  X(data_conn) X(timer) X(duration_ms) X(bytes_from_client) X(bytes_to_client) X(rules_version) X(old)      \
  X(cause) X(via) X(side) X(version) X(cipher) X(resumed) X(peer_cert)
// Fields whose name is a C++ keyword: (identifier, name)
#define FTPW_AUDIT_FIELDS_RENAMED(X) X(new_, "new") X(protected_, "protected")

namespace ftpw::audit {
#define FTPW_AUDIT_NAME(n) inline constexpr std::string_view n = #n;
namespace ev {
FTPW_AUDIT_EVENTS(FTPW_AUDIT_NAME)
}  // namespace ev
namespace f {
FTPW_AUDIT_FIELDS(FTPW_AUDIT_NAME)
#define FTPW_AUDIT_RENAMED(id, n) inline constexpr std::string_view id = n;
FTPW_AUDIT_FIELDS_RENAMED(FTPW_AUDIT_RENAMED)
#undef FTPW_AUDIT_RENAMED
}  // namespace f
#undef FTPW_AUDIT_NAME
}  // namespace ftpw::audit
