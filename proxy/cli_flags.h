// The command-line flags, declared once: the parser, the usage text and
// `--help` read this table; each flag but --config sets one config key
// (config.h's key table does the conversion and its errors).
#pragma once
#include <algorithm>
#include <string>
#include <string_view>

namespace ftpw {

struct CliFlag {
  const char* name;   // "--listen"
  const char* value;  // what it takes, for the usage text; "" for a switch (sets "true")
  const char* key;    // "section.key" it sets; "" for --config
  bool repeatable;    // each use adds a value (an array key)
  const char* help;
};

inline constexpr CliFlag kCliFlags[] = {
    {"--config", "FILE", "", false, "settings from a TOML file; the flags below override it"},
    {"--listen", "ADDR:PORT", "listen.address", false, "where clients connect (port 0: pick one, shown on start)"},
    {"--upstream", "HOST:PORT", "upstream.address", false, "the FTP server behind the proxy"},
    {"--mode", "audit|enforce", "policy.mode", false, "log violations, or answer them instead of the server"},
    {"--audit-log", "PATH|-", "audit.path", false, "JSON Lines audit log (- for stdout)"},
    {"--rules", "FILE", "policy.rules", true, "a rule file, added to the built-in default rules"},
    {"--passive-ports", "LO-HI", "data.passive_ports", false, "the proxy's passive data ports"},
    {"--public-address", "IP", "data.public_address", false, "address announced in passive replies"},
    {"--log-level", "LEVEL", "log.level", false, "trace, debug, info, warning, error"},
    {"--workers", "N", "server.workers", false, "event loops (0: one per core)"},
    {"--metrics", "ADDR:PORT", "metrics.listen", false, "serve /metrics, /healthz and /ready over HTTP"},
    {"--proxy-protocol", "off|v1|v2|any", "listen.proxy_protocol", false, "read a PROXY header on each connection"},
    {"--transparent", "", "listen.transparent", false, "take redirected connections; upstream: their original destination"},
    {"--tls-cert", "FILE", "tls.cert", false, "PEM certificate for FTPS toward clients"},
    {"--tls-key", "FILE", "tls.key", false, "its PEM private key"},
    {"--tls-client", "off|optional|required", "tls.client", false, "explicit FTPS (AUTH TLS) toward clients"},
    {"--implicit-tls", "", "listen.implicit_tls", false, "implicit FTPS: TLS from the first byte (port 990)"},
    {"--tls-upstream", "off|on", "tls.upstream", false, "AUTH TLS toward the server"},
};

inline const CliFlag* find_cli_flag(std::string_view name) {
  for (const auto& f : kCliFlags)
    if (name == f.name) return &f;
  return nullptr;
}

// The usage text: synopsis, subcommands, then one line per flag.
inline std::string cli_usage() {
  std::string s = "usage: ftpwarden";
  std::size_t col = s.size();
  for (const auto& f : kCliFlags) {
    std::string item = std::string(" [") + f.name + (f.value[0] ? " " : "") + f.value + "]" + (f.repeatable ? "..." : "");
    if (col + item.size() > 80) {
      s += "\n                ";
      col = 16;
    }
    s += item;
    col += item.size();
  }
  s += "\n       ftpwarden check-config FILE\n"
       "       ftpwarden config-keys\n"
       "       ftpwarden lint [--rules FILE]... [--format text|json] FILE...\n"
       "       ftpwarden --version | --help\n\noptions:\n";
  for (const auto& f : kCliFlags) {
    std::string head = std::string("  ") + f.name + (f.value[0] ? " " : "") + f.value;
    head.resize(std::max<std::size_t>(head.size() + 1, 28), ' ');
    s += head + f.help + (f.key[0] ? std::string(" [") + f.key + "]" : std::string()) + "\n";
  }
  return s;
}

}  // namespace ftpw
