#include "config.h"

#include "cli_flags.h"
#include "proxy_header.h"

#include <grp.h>
#include <sched.h>
#include <pwd.h>
#include <toml++/toml.h>

#include <fstream>
#include <functional>
#include <sstream>
#include <thread>
#include <variant>
#include <algorithm>
#include <charconv>

namespace ftpw {
namespace {

using Field = std::variant<std::string Config::*, std::int64_t Config::*, std::vector<std::string> Config::*,
                           bool Config::*>;

constexpr std::int64_t kNoMin = INT64_MIN, kNoMax = INT64_MAX;

struct Key {
  const char* section;
  const char* name;
  Field field;
  const char* doc;                 // one line, for config-keys
  std::int64_t min = kNoMin;       // integer keys: the range validate_config enforces
  std::int64_t max = kNoMax;
};

// The key table (times in seconds at most a year: a larger one would wrap
// when counted in milliseconds). Order matches deploy/ftpwarden.toml; tests/integration/test_cli.py
// checks that the sample lists exactly these keys with these defaults.
const Key kKeys[] = {
    {"listen", "address", &Config::listen, "IP:PORT clients connect to ([v6]:port; port 0 picks one)"},
    {"listen", "proxy_protocol", &Config::proxy_protocol,
     "off, v1, v2 or any: every connection (control and passive data) starts with a PROXY header"},
    {"listen", "transparent", &Config::transparent,
     "take connections the firewall redirected; each session's server is their original destination"},
    {"listen", "implicit_tls", &Config::implicit_tls,
     "implicit FTPS: TLS from the first byte (the usual port 990); needs tls.cert and tls.key"},
    {"upstream", "address", &Config::upstream, "HOST:PORT of the FTP server (required)"},
    {"upstream", "connect_timeout_ms", &Config::upstream_connect_timeout_ms, "connect + the server's first reply", 1, 3600000},
    {"upstream", "max_connecting", &Config::upstream_max_connecting, "upstream connections waiting for a greeting", 1},
    {"upstream", "send_proxy_protocol", &Config::send_proxy_protocol,
     "off, v1 or v2: a PROXY header naming the client on each connection to the server"},
    {"upstream", "allowed", &Config::upstream_allowed,
     "CIDRs a transparent session's original destination must be in (required with transparent)"},
    {"data", "passive_ports", &Config::passive_ports, "LO-HI: the proxy's passive ports (1024..65535)"},
    {"data", "public_address", &Config::public_address, "IP announced in passive replies (empty: the local one)"},
    {"data", "allow_foreign_active", &Config::allow_foreign_active, "third-party IPs PORT/EPRT may name"},
    {"data", "connect_timeout_s", &Config::data_connect_timeout_s, "data connection set-up", 1, 31536000},
    {"data", "stall_timeout_s", &Config::data_stall_timeout_s, "a data connection that moves no byte", 1, 31536000},
    {"data", "relay", &Config::relay, "copy, splice or stream"},
    {"data", "relay_buffer_kib", &Config::relay_buffer_kib, "what a bulk transfer direction may hold", 64, 262144},
    {"data", "relay_memory_mib", &Config::relay_memory_mib, "all grown relay buffers together", 0, 1048576},
    {"policy", "mode", &Config::mode, "audit or enforce"},
    {"policy", "rules", &Config::rules, "rule files, added to the built-in default rules (same id: replaces it)"},
    {"policy", "profiles", &Config::profiles, "built-in rule profiles: read-only, no-site, anonymous-read-only"},
    {"limits", "max_line", &Config::max_line, "bytes in one command line", 64},
    {"limits", "max_sessions", &Config::max_sessions, "sessions in all", 1},
    {"limits", "max_sessions_per_ip", &Config::max_sessions_per_ip, "sessions from one address", 1},
    {"limits", "max_sessions_per_user", &Config::max_sessions_per_user, "logged-in sessions of one user (0: no limit)",
     0},
    {"limits", "login_timeout_s", &Config::login_timeout_s, "connect to logged in", 1, 31536000},
    {"limits", "idle_timeout_s", &Config::idle_timeout_s, "nothing from the client and no transfer", 1, 31536000},
    {"limits", "shutdown_grace_s", &Config::shutdown_grace_s, "open sessions' time after SIGTERM", 0, 31536000},
    {"limits", "max_bad_lines", &Config::max_bad_lines, "malformed command lines before 421", 1},
    {"limits", "command_rate", &Config::command_rate, "commands per second a session may keep up (0: no limit)", 0,
     1000000},
    {"limits", "command_burst", &Config::command_burst, "commands a session may send at once", 1, 1000000},
    {"limits", "reply_timeout_s", &Config::reply_timeout_s, "a command's wait for its first reply", 1, 31536000},
    {"limits", "max_login_failures", &Config::max_login_failures, "failed logins from one address in the window", 1},
    {"limits", "login_failure_window_s", &Config::login_failure_window_s, "the window they are counted in", 1, 31536000},
    {"limits", "login_cooldown_s", &Config::login_cooldown_s, "how long the address is refused then", 0, 31536000},
    {"tls", "cert", &Config::tls_cert, "PEM certificate (chain) the proxy shows clients"},
    {"tls", "key", &Config::tls_key, "PEM private key of tls.cert"},
    {"tls", "key_password_file", &Config::tls_key_password_file, "a file holding the key's passphrase (encrypted key)"},
    {"tls", "ca", &Config::tls_ca, "PEM CAs: client certificates are asked for, and must verify when presented"},
    {"tls", "client", &Config::tls_client,
     "off, optional or required: explicit FTPS toward clients (AUTH TLS); required: nothing else before it"},
    {"tls", "data", &Config::tls_data,
     "client (follow PROT), required (PROT P before any transfer) or clear (PROT P refused)"},
    {"tls", "require_session_reuse", &Config::tls_require_session_reuse,
     "a client's TLS data connection must resume its control connection's session"},
    {"tls", "min_version", &Config::tls_min_version, "1.2 or 1.3"},
    {"tls", "ciphers", &Config::tls_ciphers, "TLS 1.2 cipher list, OpenSSL syntax (empty: OpenSSL's default)"},
    {"tls", "ciphersuites", &Config::tls_ciphersuites, "TLS 1.3 suites, OpenSSL syntax (empty: OpenSSL's default)"},
    {"tls", "upstream", &Config::tls_upstream, "off (plain FTP to the server) or on (AUTH TLS toward it, data protected)"},
    {"tls", "upstream_ca", &Config::tls_upstream_ca, "PEM CAs for the server's certificate (empty: the system's)"},
    {"tls", "verify_upstream", &Config::tls_verify_upstream,
     "check the server's certificate and that it names upstream_sni or the upstream host"},
    {"tls", "upstream_sni", &Config::tls_upstream_sni, "the server name sent (SNI) and checked (empty: the upstream host)"},
    {"audit", "path", &Config::audit_path, "the JSON Lines audit log, or - for stdout"},
    {"log", "level", &Config::log_level, "trace, debug, info, warning, error, critical, off"},
    {"metrics", "listen", &Config::metrics_listen, "IP:PORT of the HTTP endpoint (/metrics, /healthz, /ready); empty: off"},
    {"process", "user", &Config::process_user, "started as root: the user to run as once sockets and logs are open"},
    {"process", "group", &Config::process_group, "the group to run as (empty: the user's own)"},
    {"server", "workers", &Config::workers, "event loops (0: one per core)", 0, 256},
    {"server", "busy_poll_us", &Config::busy_poll_us, "polling after control traffic before sleeping", 0, 10000},
};

// The cores this process may run on (its CPU affinity: a container's cpuset,
// taskset), not every core of the machine.
std::int64_t usable_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max<std::int64_t>(1, std::thread::hardware_concurrency());
}

std::string pos(const std::string& file, const toml::source_region& r) {
  return file + ":" + std::to_string(r.begin.line) + ":" + std::to_string(r.begin.column);
}

bool known_section(std::string_view s) {
  for (const auto& k : kKeys)
    if (s == k.section) return true;
  return false;
}

}  // namespace

bool load_config_string(std::string_view doc, const std::string& file, Config& cfg, std::vector<ConfigError>& errors) {
  const std::size_t before = errors.size();
  toml::table root;
  try {
    root = toml::parse(doc, file);
  } catch (const toml::parse_error& e) {
    errors.push_back({pos(file, e.source()) + ": " + std::string(e.description())});
    return false;
  }
  for (auto&& [sec, node] : root) {
    if (!known_section(sec.str())) {
      errors.push_back({pos(file, sec.source()) + ": unknown section '" + std::string(sec.str()) + "'"});
      continue;
    }
    const toml::table* t = node.as_table();
    if (!t) {
      errors.push_back({pos(file, node.source()) + ": '" + std::string(sec.str()) + "' must be a table"});
      continue;
    }
    for (auto&& [k, v] : *t) {
      const Key* key = nullptr;
      for (const auto& cand : kKeys)
        if (sec.str() == cand.section && k.str() == cand.name) key = &cand;
      const std::string full = std::string(sec.str()) + "." + std::string(k.str());
      if (!key) {
        errors.push_back({pos(file, k.source()) + ": unknown key '" + full + "'"});
        continue;
      }
      cfg.origin[full] = pos(file, v.source());
      std::visit(
          [&](auto member) {
            using T = std::remove_reference_t<decltype(cfg.*member)>;
            if constexpr (std::is_same_v<T, std::string>) {
              if (auto s = v.template value<std::string>(); s && v.is_string()) cfg.*member = *s;
              else errors.push_back({pos(file, v.source()) + ": '" + full + "' must be a string"});
            } else if constexpr (std::is_same_v<T, std::int64_t>) {
              if (auto n = v.template value<std::int64_t>(); n && v.is_integer()) cfg.*member = *n;
              else errors.push_back({pos(file, v.source()) + ": '" + full + "' must be an integer"});
            } else if constexpr (std::is_same_v<T, bool>) {
              if (auto b = v.template value<bool>(); b && v.is_boolean()) cfg.*member = *b;
              else errors.push_back({pos(file, v.source()) + ": '" + full + "' must be true or false"});
            } else {
              const toml::array* a = v.as_array();
              if (!a) {
                errors.push_back({pos(file, v.source()) + ": '" + full + "' must be an array of strings"});
                return;
              }
              std::vector<std::string> out;
              for (const auto& e : *a) {
                if (auto s = e.template value<std::string>(); s && e.is_string()) out.push_back(*s);
                else errors.push_back({pos(file, e.source()) + ": '" + full + "' must be an array of strings"});
              }
              cfg.*member = out;
            }
          },
          key->field);
    }
  }
  return errors.size() == before;
}

bool set_config_value(Config& cfg, std::string_view key, const std::string& text, bool append, std::string& err) {
  const Key* found = nullptr;
  for (const auto& k : kKeys)
    if (key == std::string(k.section) + "." + k.name) found = &k;
  if (!found) {
    err = "unknown key '" + std::string(key) + "'";
    return false;
  }
  cfg.origin.erase(std::string(key));
  bool ok = true;
  std::visit(
      [&](auto member) {
        using T = std::remove_reference_t<decltype(cfg.*member)>;
        if constexpr (std::is_same_v<T, std::string>) {
          cfg.*member = text;
        } else if constexpr (std::is_same_v<T, std::int64_t>) {
          std::int64_t v = 0;
          const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
          if (r.ec != std::errc() || r.ptr != text.data() + text.size() || text.empty()) {
            err = "not a number: '" + text + "'";
            ok = false;
          } else {
            cfg.*member = v;
          }
        } else if constexpr (std::is_same_v<T, bool>) {
          if (text == "true" || text == "false") cfg.*member = text == "true";
          else {
            err = "not true or false: '" + text + "'";
            ok = false;
          }
        } else {
          if (!append) (cfg.*member).clear();
          (cfg.*member).push_back(text);
        }
      },
      found->field);
  return ok;
}

std::string config_keys_text() {
  const Config defaults;
  std::string out, section;
  for (const auto& k : kKeys) {
    if (section != k.section) {
      section = k.section;
      out += (out.empty() ? "[" : "\n[") + section + "]\n";
    }
    std::string value;
    std::visit(
        [&](auto member) {
          using T = std::remove_cvref_t<decltype(defaults.*member)>;
          if constexpr (std::is_same_v<T, std::string>) value = "\"" + defaults.*member + "\"";
          else if constexpr (std::is_same_v<T, std::int64_t>) value = std::to_string(defaults.*member);
          else if constexpr (std::is_same_v<T, bool>) value = defaults.*member ? "true" : "false";
          else {
            value = "[";
            for (const auto& e : defaults.*member) value += std::string(value.size() > 1 ? ", \"" : "\"") + e + "\"";
            value += "]";
          }
        },
        k.field);
    std::string line = std::string(k.name) + " = " + value;
    line.resize(std::max<std::size_t>(line.size() + 1, 36), ' ');
    out += line + "# " + k.doc;
    if (k.min != kNoMin || k.max != kNoMax)
      out += " (" + (k.min != kNoMin ? std::to_string(k.min) : std::string()) + ".." +
             (k.max != kNoMax ? std::to_string(k.max) : std::string()) + ")";
    out += "\n";
  }
  return out;
}

namespace {

// A whole file, or nullopt (and the error) when it cannot be opened.
std::optional<std::string> read_file(const std::string& path, std::string_view what,
                                     std::vector<ConfigError>& errors) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    errors.push_back({path + ": cannot open" + std::string(what)});
    return std::nullopt;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

bool load_config_file(const std::string& path, Config& cfg, std::vector<ConfigError>& errors) {
  auto text = read_file(path, "", errors);
  return text && load_config_string(*text, path, cfg, errors);
}

bool validate_config(Config& cfg, bool need_upstream, std::vector<ConfigError>& errors) {
  const std::size_t before = errors.size();
  auto where = [&](const std::string& key) -> std::string {
    auto it = cfg.origin.find(key);
    if (it != cfg.origin.end()) return it->second;
    for (const auto& f : kCliFlags)
      if (key == f.key) return f.name;
    return key + " (default)";
  };
  auto err = [&](const std::string& key, const std::string& msg) { errors.push_back({where(key) + ": " + msg}); };

  if (auto a = NetAddr::parse_host_port(cfg.listen)) cfg.listen_addr = *a;
  else err("listen.address", "listen address must be IP:PORT (IPv6 as [addr]:port), got '" + cfg.listen + "'");
  if (need_upstream && cfg.upstream.empty() && !cfg.transparent)
    err("upstream.address", "an upstream HOST:PORT is required (or listen.transparent)");
  cfg.allowed_nets.clear();
  for (const auto& a : cfg.upstream_allowed) {
    if (auto c = Cidr::parse(a)) cfg.allowed_nets.push_back(*c);
    else err("upstream.allowed", "not an address or CIDR: '" + a + "'");
  }
  if (cfg.transparent && cfg.proxy_protocol != "off")
    err("listen.transparent", "transparent and proxy_protocol exclude each other: a balancer's connections carry no "
                              "original destination");
  if (cfg.transparent && cfg.upstream_allowed.empty())
    err("listen.transparent", "transparent needs upstream.allowed: the destinations it may relay to (never an open relay)");
  {
    const auto dash = cfg.passive_ports.find('-');
    unsigned long lo = 0, hi = 0;
    bool ok = dash != std::string::npos;
    if (ok) {
      try {
        std::size_t a = 0, b = 0;
        lo = std::stoul(cfg.passive_ports.substr(0, dash), &a);
        hi = std::stoul(cfg.passive_ports.substr(dash + 1), &b);
        ok = a == dash && b == cfg.passive_ports.size() - dash - 1;
      } catch (...) {
        ok = false;
      }
    }
    if (!ok || lo < 1024 || hi > 65535 || lo > hi)
      err("data.passive_ports", "passive_ports must be LO-HI with 1024 <= LO <= HI <= 65535, got '" + cfg.passive_ports + "'");
    else {
      cfg.pasv_lo = static_cast<std::uint16_t>(lo);
      cfg.pasv_hi = static_cast<std::uint16_t>(hi);
    }
  }
  cfg.public_addr.reset();
  if (!cfg.public_address.empty()) {
    if (auto a = NetAddr::parse_host(cfg.public_address)) cfg.public_addr = *a;
    else err("data.public_address", "public_address must be an IP address, got '" + cfg.public_address + "'");
  }
  cfg.foreign_active.clear();
  for (const auto& s : cfg.allow_foreign_active) {
    if (auto a = NetAddr::parse_host(s)) cfg.foreign_active.push_back(*a);
    else err("data.allow_foreign_active", "not an IP address: '" + s + "'");
  }
  if (cfg.mode == "audit") cfg.mode_value = Mode::audit;
  else if (cfg.mode == "enforce") cfg.mode_value = Mode::enforce;
  else err("policy.mode", "mode must be audit or enforce, got '" + cfg.mode + "'");
  if (cfg.proxy_protocol == "off") cfg.proxy_accept = 0;
  else if (cfg.proxy_protocol == "v1") cfg.proxy_accept = proxy_v1;
  else if (cfg.proxy_protocol == "v2") cfg.proxy_accept = proxy_v2;
  else if (cfg.proxy_protocol == "any") cfg.proxy_accept = proxy_any;
  else err("listen.proxy_protocol", "proxy_protocol must be off, v1, v2 or any, got '" + cfg.proxy_protocol + "'");
  if (cfg.send_proxy_protocol == "off") cfg.proxy_send = 0;
  else if (cfg.send_proxy_protocol == "v1") cfg.proxy_send = 1;
  else if (cfg.send_proxy_protocol == "v2") cfg.proxy_send = 2;
  else err("upstream.send_proxy_protocol", "send_proxy_protocol must be off, v1 or v2, got '" + cfg.send_proxy_protocol + "'");
  if (cfg.relay == "copy") cfg.relay_kind = RelayKind::copy;
  else if (cfg.relay == "splice") cfg.relay_kind = RelayKind::splice;
  else if (cfg.relay == "stream") cfg.relay_kind = RelayKind::stream;
  else err("data.relay", "relay must be copy, splice or stream, got '" + cfg.relay + "'");
  static const char* levels[] = {"trace", "debug", "info", "warn", "warning", "error", "critical", "off"};
  bool level_ok = false;
  for (auto* l : levels) level_ok |= cfg.log_level == l;
  if (!level_ok) err("log.level", "level must be trace, debug, info, warn, error, critical or off");
  for (const auto& k : kKeys) {
    const auto* member = std::get_if<std::int64_t Config::*>(&k.field);
    if (!member) continue;
    const std::int64_t v = cfg.**member;
    const std::string key = std::string(k.section) + "." + k.name;
    if (v < k.min) err(key, key + " must be >= " + std::to_string(k.min));
    else if (v > k.max) err(key, std::string(k.name) + " must be at most " + std::to_string(k.max));
  }
  if (cfg.workers == 0) cfg.workers = usable_cores();
  if (cfg.audit_path.empty()) err("audit.path", "audit path must be a file or '-'");
  cfg.metrics_addr.reset();
  if (!cfg.metrics_listen.empty()) {
    if (auto a = NetAddr::parse_host_port(cfg.metrics_listen)) cfg.metrics_addr = *a;
    else err("metrics.listen", "metrics listen address must be IP:PORT, got '" + cfg.metrics_listen + "'");
  }
  if (!cfg.process_user.empty() && !getpwnam(cfg.process_user.c_str()))
    err("process.user", "no such user: '" + cfg.process_user + "'");
  if (!cfg.process_group.empty() && !getgrnam(cfg.process_group.c_str()))
    err("process.group", "no such group: '" + cfg.process_group + "'");
  if (!cfg.process_group.empty() && cfg.process_user.empty())
    err("process.group", "process.group needs process.user");
  if (cfg.tls_client == "off") cfg.tls_client_value = TlsClient::off;
  else if (cfg.tls_client == "optional") cfg.tls_client_value = TlsClient::optional;
  else if (cfg.tls_client == "required") cfg.tls_client_value = TlsClient::required;
  else err("tls.client", "client must be off, optional or required, got '" + cfg.tls_client + "'");
  if (cfg.tls_data == "client") cfg.tls_data_value = TlsData::client;
  else if (cfg.tls_data == "required") cfg.tls_data_value = TlsData::required;
  else if (cfg.tls_data == "clear") cfg.tls_data_value = TlsData::clear;
  else err("tls.data", "data must be client, required or clear, got '" + cfg.tls_data + "'");
  if (cfg.tls_upstream == "off" || cfg.tls_upstream == "on") cfg.tls_upstream_value = cfg.tls_upstream == "on";
  else err("tls.upstream", "upstream must be off or on, got '" + cfg.tls_upstream + "'");
  if (cfg.tls_min_version != "1.2" && cfg.tls_min_version != "1.3")
    err("tls.min_version", "min_version must be 1.2 or 1.3, got '" + cfg.tls_min_version + "'");
  const bool serves_tls = cfg.tls_client_value != TlsClient::off || cfg.implicit_tls;
  if (serves_tls && (cfg.tls_cert.empty() || cfg.tls_key.empty()))
    err(cfg.implicit_tls ? "listen.implicit_tls" : "tls.client", "TLS toward clients needs tls.cert and tls.key");
  if (cfg.implicit_tls && cfg.proxy_protocol != "off")
    err("listen.implicit_tls", "implicit_tls with proxy_protocol is not supported");
  if (!serves_tls && cfg.tls_data_value == TlsData::required)
    err("tls.data", "data = \"required\" needs TLS toward clients (tls.client or listen.implicit_tls)");
  {
    // The host part of upstream.address: what the server's certificate must name.
    std::string h = cfg.upstream;
    if (const auto colon = h.rfind(':'); colon != std::string::npos) h.resize(colon);
    if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
    cfg.upstream_host = h;
  }
  return errors.size() == before;
}

std::shared_ptr<const RuleSet> load_rules(const Config& cfg, std::vector<ConfigError>& errors) {
  std::vector<RuleSet::Document> docs;
  docs.push_back({"<built-in default.toml>", kBuiltinDefaultRules});
  for (const auto& name : cfg.profiles) {
    const BuiltinProfile* found = nullptr;
    std::string known;
    for (const BuiltinProfile* p = kBuiltinProfiles; p->name; ++p) {
      if (name == p->name) found = p;
      known += (known.empty() ? "" : ", ") + std::string(p->name);
    }
    if (!found) {
      errors.push_back({"policy.profiles: unknown profile '" + name + "' (" + known + ")"});
      return nullptr;
    }
    docs.push_back({"<built-in profile " + name + ".toml>", found->text});
  }
  for (const auto& p : cfg.rules) {
    auto text = read_file(p, " rule file", errors);
    if (!text) return nullptr;
    docs.push_back({p, std::move(*text)});
  }
  std::vector<RuleSet::Error> rerr;
  auto rs = RuleSet::load(docs, rerr, 1);
  for (auto& e : rerr) errors.push_back({e.message});
  if (!rs) return nullptr;
  return std::make_shared<const RuleSet>(std::move(*rs));
}

}  // namespace ftpw
