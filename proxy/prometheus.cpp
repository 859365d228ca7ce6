#include "prometheus.h"

#include <cstdio>

namespace ftpw {
namespace {

// A label value: backslash, double quote and newline escaped.
void label_value(std::string& out, std::string_view v) {
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
}

void head(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

void sample(std::string& out, std::string_view name, std::string_view labels, std::uint64_t v) {
  out += name;
  if (!labels.empty()) {
    out += '{';
    out += labels;
    out += '}';
  }
  out += ' ';
  out += std::to_string(v);
  out += '\n';
}

std::string seconds(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

template <class L>
std::string labels_of(std::size_t i) {
  std::string s;
  if constexpr (requires { L::keys; }) {
    const auto values = L::labels(i);
    for (std::size_t k = 0; k < L::keys.size(); ++k) {
      if (k) s += ',';
      (s += L::keys[k]) += "=\"";
      label_value(s, values[k]);
      s += '"';
    }
  } else {
    (s += L::key) += "=\"";
    label_value(s, L::label(i));
    s += '"';
  }
  return s;
}

// Small label sets show every label, zeros included (a rate needs the
// series before its first event); large ones (verbs) only those seen.
template <class L, class Values>
void family(std::string& out, std::string_view name, std::string_view help, const Values& v) {
  if (name.empty()) return;
  head(out, name, "counter", help);
  for (std::size_t i = 0; i < L::size; ++i)
    if (L::size <= 16 || v[i] != 0) sample(out, name, labels_of<L>(i), v[i]);
}

template <class B, class Counts>
void histogram(std::string& out, std::string_view name, std::string_view help, const Counts& c, std::uint64_t sum) {
  head(out, name, "histogram", help);
  const std::string bucket = std::string(name) + "_bucket";
  std::uint64_t cum = 0;
  for (std::size_t i = 0; i < B::bounds.size(); ++i) {
    cum += c[i];
    sample(out, bucket, "le=\"" + seconds(static_cast<double>(B::bounds[i]) * B::seconds) + "\"", cum);
  }
  cum += c[B::bounds.size()];
  sample(out, bucket, "le=\"+Inf\"", cum);
  out += std::string(name) + "_sum " + seconds(static_cast<double>(sum) * B::seconds) + "\n";
  sample(out, std::string(name) + "_count", {}, cum);
}

}  // namespace

std::string prometheus_text(const StatTotals& t, const MetricsExtras& x) {
  std::string out;
  out.reserve(16 * 1024);
#define FTPW_PROM_COUNTER(name, metric, doc)       \
  if (std::string_view(metric).size()) {           \
    head(out, metric, "counter", doc);             \
    sample(out, metric, {}, t.name);               \
  }
  FTPW_COUNTERS(FTPW_PROM_COUNTER)
#undef FTPW_PROM_COUNTER
#define FTPW_PROM_GAUGE(name, metric, doc) \
  head(out, metric, "gauge", doc);         \
  sample(out, metric, {}, t.name);
  FTPW_GAUGES(FTPW_PROM_GAUGE)
#undef FTPW_PROM_GAUGE
#define FTPW_PROM_FAMILY(name, labels, metric, doc) family<labels>(out, metric, doc, t.name);
  FTPW_LABELLED(FTPW_PROM_FAMILY)
#undef FTPW_PROM_FAMILY
#define FTPW_PROM_HIST(name, buckets, metric, doc) histogram<buckets>(out, metric, doc, t.name, t.name##_sum);
  FTPW_HISTOGRAMS(FTPW_PROM_HIST)
#undef FTPW_PROM_HIST

  // Findings: rule ids come from the loaded rules and the built-in checks,
  // a bounded set; a client cannot name one.
  head(out, "ftpwarden_violations_total", "counter", "client violations, by rule and what was done");
  for (const auto& [key, v] : t.violations_by_rule) {
    const auto dot = key.rfind('.');
    std::string l = "rule=\"";
    label_value(l, std::string_view(key).substr(0, dot));
    l += "\",action=\"";
    label_value(l, dot == std::string::npos ? "" : std::string_view(key).substr(dot + 1));
    l += '"';
    sample(out, "ftpwarden_violations_total", l, v);
  }
  head(out, "ftpwarden_server_findings_total", "counter", "what the server got wrong, by rule");
  for (const auto& [rule, v] : t.server_findings_by_rule) {
    std::string l = "rule=\"";
    label_value(l, rule);
    l += '"';
    sample(out, "ftpwarden_server_findings_total", l, v);
  }
  head(out, "ftpwarden_audit_records_dropped_total", "counter",
       "audit records dropped because the disk fell behind (each a batch of events)");
  sample(out, "ftpwarden_audit_records_dropped_total", {}, x.audit_records_dropped);
  head(out, "ftpwarden_build_info", "gauge", "the running binary's version and rule set");
  std::string l = "version=\"";
  label_value(l, x.version);
  l += "\",rules_version=\"";
  label_value(l, x.rules_version);
  l += '"';
  sample(out, "ftpwarden_build_info", l, 1);
  return out;
}

}  // namespace ftpw
