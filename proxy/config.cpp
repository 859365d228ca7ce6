#include "config.h"

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

struct Key {
  const char* section;
  const char* name;
  Field field;
};

// The key table. Order matches deploy/ftpwarden.toml.
const Key kKeys[] = {
    {"listen", "address", &Config::listen},
    {"upstream", "address", &Config::upstream},
    {"upstream", "connect_timeout_ms", &Config::upstream_connect_timeout_ms},
    {"upstream", "max_connecting", &Config::upstream_max_connecting},
    {"data", "passive_ports", &Config::passive_ports},
    {"data", "public_address", &Config::public_address},
    {"data", "allow_foreign_active", &Config::allow_foreign_active},
    {"data", "connect_timeout_s", &Config::data_connect_timeout_s},
    {"data", "stall_timeout_s", &Config::data_stall_timeout_s},
    {"data", "relay", &Config::relay},
    {"data", "relay_buffer_kib", &Config::relay_buffer_kib},
    {"data", "relay_memory_mib", &Config::relay_memory_mib},
    {"policy", "mode", &Config::mode},
    {"policy", "rules", &Config::rules},
    {"limits", "max_line", &Config::max_line},
    {"limits", "max_sessions", &Config::max_sessions},
    {"limits", "max_sessions_per_ip", &Config::max_sessions_per_ip},
    {"limits", "login_timeout_s", &Config::login_timeout_s},
    {"limits", "idle_timeout_s", &Config::idle_timeout_s},
    {"limits", "shutdown_grace_s", &Config::shutdown_grace_s},
    {"limits", "max_bad_lines", &Config::max_bad_lines},
    {"limits", "reply_timeout_s", &Config::reply_timeout_s},
    {"limits", "max_login_failures", &Config::max_login_failures},
    {"limits", "login_failure_window_s", &Config::login_failure_window_s},
    {"limits", "login_cooldown_s", &Config::login_cooldown_s},
    {"audit", "path", &Config::audit_path},
    {"log", "level", &Config::log_level},
    {"server", "workers", &Config::workers},
    {"server", "busy_poll_us", &Config::busy_poll_us},
};

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

bool load_config_file(const std::string& path, Config& cfg, std::vector<ConfigError>& errors) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    errors.push_back({path + ": cannot open"});
    return false;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return load_config_string(ss.str(), path, cfg, errors);
}

bool validate_config(Config& cfg, bool need_upstream, std::vector<ConfigError>& errors) {
  const std::size_t before = errors.size();
  auto where = [&](const std::string& key) -> std::string {
    auto it = cfg.origin.find(key);
    if (it != cfg.origin.end()) return it->second;
    static const std::map<std::string, std::string> flags = {
        {"listen.address", "--listen"},        {"upstream.address", "--upstream"},
        {"policy.mode", "--mode"},             {"audit.path", "--audit-log"},
        {"data.passive_ports", "--passive-ports"}, {"data.public_address", "--public-address"},
        {"log.level", "--log-level"},          {"server.workers", "--workers"}};
    auto f = flags.find(key);
    return f != flags.end() ? f->second : key + " (default)";
  };
  auto err = [&](const std::string& key, const std::string& msg) { errors.push_back({where(key) + ": " + msg}); };

  if (auto a = NetAddr::parse_host_port(cfg.listen)) cfg.listen_addr = *a;
  else err("listen.address", "listen address must be IP:PORT (IPv6 as [addr]:port), got '" + cfg.listen + "'");
  if (need_upstream && cfg.upstream.empty()) err("upstream.address", "an upstream HOST:PORT is required");
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
  if (cfg.relay == "copy") cfg.relay_kind = RelayKind::copy;
  else if (cfg.relay == "splice") cfg.relay_kind = RelayKind::splice;
  else if (cfg.relay == "stream") cfg.relay_kind = RelayKind::stream;
  else err("data.relay", "relay must be copy, splice or stream, got '" + cfg.relay + "'");
  static const char* levels[] = {"trace", "debug", "info", "warn", "warning", "error", "critical", "off"};
  bool level_ok = false;
  for (auto* l : levels) level_ok |= cfg.log_level == l;
  if (!level_ok) err("log.level", "level must be trace, debug, info, warn, error, critical or off");
  auto positive = [&](std::int64_t v, const char* key, std::int64_t min = 1) {
    if (v < min) err(key, std::string(key) + " must be >= " + std::to_string(min));
  };
  positive(cfg.upstream_connect_timeout_ms, "upstream.connect_timeout_ms");
  positive(cfg.upstream_max_connecting, "upstream.max_connecting");
  positive(cfg.data_connect_timeout_s, "data.connect_timeout_s");
  positive(cfg.relay_buffer_kib, "data.relay_buffer_kib", 64);
  if (cfg.relay_buffer_kib > 262144) err("data.relay_buffer_kib", "relay_buffer_kib must be at most 262144 (256 MiB)");
  positive(cfg.relay_memory_mib, "data.relay_memory_mib", 0);
  if (cfg.relay_memory_mib > 1048576) err("data.relay_memory_mib", "relay_memory_mib must be at most 1048576 (1 TiB)");
  positive(cfg.data_stall_timeout_s, "data.stall_timeout_s");
  positive(cfg.max_line, "limits.max_line", 64);
  positive(cfg.max_sessions, "limits.max_sessions");
  positive(cfg.max_sessions_per_ip, "limits.max_sessions_per_ip");
  positive(cfg.login_timeout_s, "limits.login_timeout_s");
  positive(cfg.idle_timeout_s, "limits.idle_timeout_s");
  positive(cfg.shutdown_grace_s, "limits.shutdown_grace_s", 0);
  positive(cfg.max_bad_lines, "limits.max_bad_lines");
  positive(cfg.reply_timeout_s, "limits.reply_timeout_s");
  positive(cfg.max_login_failures, "limits.max_login_failures");
  positive(cfg.login_failure_window_s, "limits.login_failure_window_s");
  positive(cfg.login_cooldown_s, "limits.login_cooldown_s", 0);
  positive(cfg.workers, "server.workers", 0);
  if (cfg.workers == 0) cfg.workers = std::max<std::int64_t>(1, std::thread::hardware_concurrency());
  if (cfg.workers > 256) err("server.workers", "workers must be at most 256");
  positive(cfg.busy_poll_us, "server.busy_poll_us", 0);
  if (cfg.busy_poll_us > 10000) err("server.busy_poll_us", "busy_poll_us must be at most 10000");
  if (cfg.audit_path.empty()) err("audit.path", "audit path must be a file or '-'");
  return errors.size() == before;
}

std::shared_ptr<const RuleSet> load_rules(const Config& cfg, std::vector<ConfigError>& errors) {
  std::vector<RuleSet::Document> docs;
  if (cfg.rules.empty()) {
    docs.push_back({"<built-in default.toml>", kBuiltinDefaultRules});
  } else {
    for (const auto& p : cfg.rules) {
      std::ifstream in(p, std::ios::binary);
      if (!in) {
        errors.push_back({p + ": cannot open rule file"});
        return nullptr;
      }
      std::ostringstream ss;
      ss << in.rdbuf();
      docs.push_back({p, ss.str()});
    }
  }
  std::vector<RuleSet::Error> rerr;
  auto rs = RuleSet::load(docs, rerr);
  for (auto& e : rerr) errors.push_back({e.message});
  if (!rs) return nullptr;
  return std::make_shared<const RuleSet>(std::move(*rs));
}

}  // namespace ftpw
