// ftpwarden: command line, subcommands and the run loop.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <uv.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "audit_log.h"
#include "cli_flags.h"
#include "config.h"
#include "linter.h"
#include "net.h"
#include "privileges.h"
#include "server.h"
#include "tls_context.h"

#ifndef FTPW_VERSION
#define FTPW_VERSION "0.0.0"
#endif

namespace ftpw {
namespace {

const std::string kUsage = cli_usage();

struct Cli {
  std::string config;
  std::vector<std::pair<const CliFlag*, std::string>> overrides;  // in order
};

bool parse_cli(int argc, char** argv, int start, Cli& cli, std::string& err) {
  for (int i = start; i < argc; ++i) {
    std::string a = argv[i], v;
    auto eq = a.find('=');
    if (a.rfind("--", 0) == 0 && eq != std::string::npos) {
      v = a.substr(eq + 1);
      a = a.substr(0, eq);
    }
    const CliFlag* flag = find_cli_flag(a);
    if (!flag) {
      err = "unknown option '" + a + "'";
      return false;
    }
    if (eq == std::string::npos && flag->value[0] == '\0') {
      v = "true";  // a switch
    } else if (eq == std::string::npos) {
      if (i + 1 >= argc) {
        err = "option " + a + " needs a value";
        return false;
      }
      v = argv[++i];
    }
    if (flag->key[0] == '\0') cli.config = v;
    else cli.overrides.emplace_back(flag, v);
  }
  return true;
}

void apply_overrides(const Cli& cli, Config& c, std::vector<ConfigError>& errors) {
  std::vector<const CliFlag*> seen;
  for (const auto& [flag, v] : cli.overrides) {
    const bool again = std::find(seen.begin(), seen.end(), flag) != seen.end();
    seen.push_back(flag);
    std::string err;
    if (!set_config_value(c, flag->key, v, flag->repeatable && again, err))
      errors.push_back({std::string(flag->name) + ": " + err});
  }
}

// Config file + flags -> validated snapshot with rules. nullptr and errors on failure.
std::shared_ptr<const Snapshot> build_snapshot(const Cli& cli, std::vector<ConfigError>& errors) {
  auto snap = std::make_shared<Snapshot>();
  Config& c = snap->cfg;
  if (!cli.config.empty()) load_config_file(cli.config, c, errors);
  apply_overrides(cli, c, errors);
  if (!errors.empty()) return nullptr;
  if (!validate_config(c, true, errors)) return nullptr;
  if (!c.upstream.empty()) {  // transparent: each session's own destination instead
    std::string rerr;
    auto up = resolve_host_port(c.upstream, rerr);
    if (!up) {
      errors.push_back({(c.origin.count("upstream.address") ? c.origin["upstream.address"] : "--upstream") + ": " + rerr});
      return nullptr;
    }
    c.upstream_addr = *up;
  }
  snap->rules = load_rules(c, errors);
  if (!snap->rules) return nullptr;
  snap->tls = TlsContexts::load(c, errors);
  if (!snap->tls) return nullptr;
  return snap;
}

// Orders "file:line:column: ..." messages by position; others keep their place at the end.
void sort_errors(std::vector<ConfigError>& errors) {
  auto key = [](const std::string& m) {
    unsigned long line = ~0ul, col = 0;
    std::sscanf(m.c_str(), "%*[^:]:%lu:%lu", &line, &col);
    return std::make_pair(line, col);
  };
  std::stable_sort(errors.begin(), errors.end(),
                   [&](const ConfigError& a, const ConfigError& b) { return key(a.message) < key(b.message); });
}

int cmd_check_config(int argc, char** argv) {
  if (argc != 3) {
    std::fputs(kUsage.c_str(), stderr);
    return 2;
  }
  Config c;
  std::vector<ConfigError> errors;
  const bool parsed = load_config_file(argv[2], c, errors);
  validate_config(c, false, errors);  // values that did parse are checked too
  std::shared_ptr<const RuleSet> rules;
  if (parsed) rules = load_rules(c, errors);
  if (parsed && errors.empty()) (void)TlsContexts::load(c, errors);  // the certificate, key and CAs load
  sort_errors(errors);
  for (const auto& e : errors) std::fprintf(stderr, "%s\n", e.message.c_str());
  if (!errors.empty()) return 1;
  if (rules)
    for (const auto& w : rules->shadow_warnings()) std::fprintf(stderr, "%s\n", w.c_str());
  std::printf("%s: ok\n", argv[2]);
  return 0;
}

// One finding as a JSON object on one line (lint --format json).
std::string finding_json(const std::string& file, const LintFinding& f) {
  std::string o = "{\"file\":\"";
  json_escape(o, file);
  o += "\",\"line\":" + std::to_string(f.line) + ",\"rule\":\"";
  json_escape(o, f.rule);
  o += "\",\"severity\":\"";
  o += name_of(f.severity);
  o += "\",\"message\":\"";
  json_escape(o, f.message);
  o += "\"";
  if (!f.verb.empty()) {
    o += ",\"verb\":\"";
    json_escape(o, f.verb);
    o += "\"";
  }
  if (!f.path.empty()) {
    o += ",\"path\":\"";
    json_escape(o, f.path);
    o += "\"";
  }
  return o + "}";
}

int cmd_lint(int argc, char** argv) {
  std::vector<std::string> files, rules;
  bool json = false;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--rules" && i + 1 < argc) rules.push_back(argv[++i]);
    else if (a.rfind("--rules=", 0) == 0) rules.push_back(a.substr(8));
    else if ((a == "--format" && i + 1 < argc) || a.rfind("--format=", 0) == 0) {
      const std::string v = a == "--format" ? argv[++i] : a.substr(9);
      if (v != "json" && v != "text") {
        std::fprintf(stderr, "lint: --format is text or json, not '%s'\n", v.c_str());
        return 2;
      }
      json = v == "json";
    } else {
      files.push_back(a);
    }
  }
  if (files.empty()) {
    std::fputs(kUsage.c_str(), stderr);
    return 2;
  }
  Config c;
  c.rules = rules;
  std::vector<ConfigError> errors;
  auto rs = load_rules(c, errors);
  if (!rs) {
    for (const auto& e : errors) std::fprintf(stderr, "%s\n", e.message.c_str());
    return 2;
  }
  bool any_error = false, unusable = false;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "%s: cannot open\n", f.c_str());
      unusable = true;
      continue;
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    auto res = lint(ss.str(), rs);
    if (!res.usable) {
      std::fprintf(stderr, "%s: unusable input: %s\n", f.c_str(), res.reason.c_str());
      unusable = true;
      continue;
    }
    for (const auto& fd : res.findings) {
      if (json) std::printf("%s\n", finding_json(f, fd).c_str());
      else std::printf("%s:%zu: %s: %s\n", f.c_str(), fd.line, fd.rule.c_str(), fd.message.c_str());
    }
    any_error |= res.has_errors();
  }
  std::fflush(stdout);
  if (unusable) return 2;
  return any_error ? 1 : 0;
}

void raise_nofile() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int cmd_run(int argc, char** argv) {
  Cli cli;
  std::string err;
  if (!parse_cli(argc, argv, 1, cli, err)) {
    std::fprintf(stderr, "ftpwarden: %s\n%s", err.c_str(), kUsage.c_str());
    return 2;
  }
  std::vector<ConfigError> errors;
  auto snap = build_snapshot(cli, errors);
  if (!snap) {
    for (const auto& e : errors) std::fprintf(stderr, "ftpwarden: %s\n", e.message.c_str());
    return 1;
  }
  auto console = spdlog::stderr_color_mt("ftpwarden");
  spdlog::set_default_logger(console);
  spdlog::set_level(spdlog::level::from_str(snap->cfg.log_level == "warning" ? "warn" : snap->cfg.log_level));
  std::signal(SIGPIPE, SIG_IGN);
  raise_nofile();

  std::unique_ptr<AuditLog> audit;
  try {
    audit = std::make_unique<AuditLog>(snap->cfg.audit_path);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ftpwarden: cannot open audit log '%s': %s\n", snap->cfg.audit_path.c_str(), e.what());
    return 1;
  }
  Server server(snap, *audit, [cli](std::string& error) -> std::shared_ptr<const Snapshot> {
    std::vector<ConfigError> errs;
    auto s = build_snapshot(cli, errs);
    for (const auto& e : errs) error += (error.empty() ? "" : "; ") + e.message;
    return s;
  });
  if (server.start(err) != 0) {
    std::fprintf(stderr, "ftpwarden: %s\n", err.c_str());
    return 1;
  }
  if (!snap->cfg.process_user.empty()) {
    if (!drop_privileges(snap->cfg.process_user, snap->cfg.process_group, snap->cfg.transparent, err)) {
      std::fprintf(stderr, "ftpwarden: cannot run as %s: %s\n", snap->cfg.process_user.c_str(), err.c_str());
      return 1;
    }
  }
  std::fprintf(stderr, "listening on %s -> %s (mode=%s)\n", server.bound().to_string().c_str(),
               snap->cfg.transparent ? "(transparent)" : snap->cfg.upstream.c_str(), snap->cfg.mode.c_str());
  if (auto m = server.metrics_bound()) std::fprintf(stderr, "metrics on http://%s/metrics\n", m->to_string().c_str());
  if (snap->tls->serves_clients() || snap->tls->to_server()) spdlog::info("{}", tls_report());
  std::fflush(stderr);
  server.run();
  audit->flush();
  audit.reset();
  spdlog::shutdown();
  return 0;
}

}  // namespace
}  // namespace ftpw

int main(int argc, char** argv) {
  using namespace ftpw;
  if (argc >= 2) {
    const std::string a = argv[1];
    if (a == "--version" || a == "version") {
      std::printf("ftpwarden %s\n", FTPW_VERSION);
      return 0;
    }
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage.c_str(), stdout);
      return 0;
    }
    if (a == "config-keys") {
      std::fputs(config_keys_text().c_str(), stdout);
      return 0;
    }
    if (a == "check-config") return cmd_check_config(argc, argv);
    if (a == "lint") return cmd_lint(argc, argv);
  }
  return cmd_run(argc, argv);
}
