// Configuration: one key table drives the TOML loader (unknown key -> error
// with file:line:column), validation, check-config and the flag overrides.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "netaddr.h"
#include "rule_set.h"

namespace ftpw {

// How data connections move their bytes (see proxy/socket_relay.h).
enum class RelayKind { copy, splice, stream };
// [tls] client: explicit FTPS toward clients.
enum class TlsClient { off, optional, required };
// [tls] data: what protection data connections need.
enum class TlsData { client, required, clear };

struct Config {
  // [listen]
  std::string listen = "0.0.0.0:2121";
  std::string proxy_protocol = "off";  // off, v1, v2, any: a PROXY header first on every connection
  bool transparent = false;            // redirected connections: upstream = their original destination
  bool implicit_tls = false;           // TLS from the first byte (implicit FTPS, port 990)
  // [upstream] (below) send_proxy_protocol: off, v1, v2
  // [upstream]
  std::string upstream;
  std::int64_t upstream_connect_timeout_ms = 5000;
  std::int64_t upstream_max_connecting = 16;  // connections waiting for the server's first reply
  std::string send_proxy_protocol = "off";
  std::vector<std::string> upstream_allowed;  // CIDRs a transparent session's destination must be in
  // [data]
  std::string passive_ports = "50000-50999";
  std::string public_address;
  std::vector<std::string> allow_foreign_active;
  std::int64_t data_connect_timeout_s = 30;
  std::int64_t data_stall_timeout_s = 300;
  std::string relay = "copy";            // data connections: copy, splice or stream
  std::int64_t relay_buffer_kib = 4096;  // what a bulk transfer direction may hold in flight
  std::int64_t relay_memory_mib = 32;    // all grown relay buffers together
  // [policy]
  std::string mode = "enforce";
  std::vector<std::string> rules;     // rule files, added to the built-in default.toml
  std::vector<std::string> profiles;  // built-in profiles by name (rules/profiles/NAME.toml)
  // [limits]
  std::int64_t max_line = 4096;
  std::int64_t max_sessions = 10000;
  std::int64_t max_sessions_per_ip = 200;
  std::int64_t max_sessions_per_user = 0;  // 0: no limit
  std::int64_t login_timeout_s = 60;
  std::int64_t idle_timeout_s = 900;
  std::int64_t shutdown_grace_s = 30;
  std::int64_t max_bad_lines = 10;
  std::int64_t command_rate = 0;    // commands per second a session may keep up (0: no limit)
  std::int64_t command_burst = 100;  // how many it may send at once
  std::int64_t reply_timeout_s = 120;
  std::int64_t max_login_failures = 5;
  std::int64_t login_failure_window_s = 300;
  std::int64_t login_cooldown_s = 300;
  // [tls]
  std::string tls_cert, tls_key, tls_key_password_file, tls_ca;
  std::string tls_client = "off";  // off, optional, required
  std::string tls_data = "client";  // client, required, clear
  bool tls_require_session_reuse = true;
  std::string tls_min_version = "1.2";
  std::string tls_ciphers, tls_ciphersuites;
  std::string tls_upstream = "off";  // off, on
  std::string tls_upstream_ca;
  bool tls_verify_upstream = true;
  std::string tls_upstream_sni;
  // [audit]
  std::string audit_path = "-";
  // [log]
  std::string log_level = "info";
  // [metrics]
  std::string metrics_listen;  // "": no endpoint
  // [process]
  std::string process_user, process_group;  // "": keep the starting user / the user's group
  // [server]
  std::int64_t workers = 0;  // 0: one per core
  std::int64_t busy_poll_us = 200;  // a worker polls this long after activity before it sleeps; 0: never

  // Derived by validate()
  NetAddr listen_addr;
  unsigned proxy_accept = 0;  // ProxyVersions bits; 0: off
  std::vector<Cidr> allowed_nets;  // upstream_allowed, parsed
  unsigned proxy_send = 0;    // 0, 1 or 2
  NetAddr upstream_addr;  // resolved by the caller (names need DNS)
  std::string upstream_host;  // the HOST of upstream.address (what its certificate must name)
  TlsClient tls_client_value = TlsClient::off;
  TlsData tls_data_value = TlsData::client;
  bool tls_upstream_value = false;
  std::uint16_t pasv_lo = 0, pasv_hi = 0;
  std::optional<NetAddr> public_addr;
  std::optional<NetAddr> metrics_addr;
  std::vector<NetAddr> foreign_active;
  Mode mode_value = Mode::enforce;
  RelayKind relay_kind = RelayKind::copy;
  std::map<std::string, std::string> origin;  // "section.key" -> "file:line:column"
};

struct ConfigError {
  std::string message;  // "file:line:column: ..." when it comes from a file
};

// Loads a TOML file over the defaults in `cfg`.
bool load_config_file(const std::string& path, Config& cfg, std::vector<ConfigError>& errors);
bool load_config_string(std::string_view toml, const std::string& name, Config& cfg, std::vector<ConfigError>& errors);
// Every key with its default, its range and a one-line doc, as TOML
// (`ftpwarden config-keys`).
std::string config_keys_text();

// Sets one key ("section.name") from a command-line value: strings as they
// are, integers parsed, array keys one element per call (`append`: add to
// what earlier calls set, else replace). The key's file origin is forgotten.
bool set_config_value(Config& cfg, std::string_view key, const std::string& text, bool append, std::string& err);
// Checks values and fills the derived fields. `need_upstream`: the proxy needs
// one; check-config accepts a file without (it may come from the command line).
bool validate_config(Config& cfg, bool need_upstream, std::vector<ConfigError>& errors);

// The built-in default rules, then the profiles, then the rule files: a rule
// with a default rule's id replaces it, the others add to them.
std::shared_ptr<const RuleSet> load_rules(const Config& cfg, std::vector<ConfigError>& errors);
extern const char* const kBuiltinDefaultRules;  // rules/default.toml, compiled in
struct BuiltinProfile {
  const char* name;  // "read-only"
  const char* text;  // rules/profiles/read-only.toml, compiled in
};
extern const BuiltinProfile kBuiltinProfiles[];  // ends with {nullptr, nullptr}

class TlsContexts;

// An immutable snapshot: what a session takes when it opens.
struct Snapshot {
  Config cfg;
  std::shared_ptr<const RuleSet> rules;
  std::shared_ptr<const TlsContexts> tls;  // proxy/tls_context.h
};

}  // namespace ftpw
