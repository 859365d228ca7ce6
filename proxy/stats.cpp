#include "stats.h"

#include "end_reason.h"

namespace ftpw {

namespace {
constexpr std::string_view refusal_reply(const char* reply) {
  return reply == nullptr ? std::string_view{} : *reply == '\0' ? reply_of(EndReason::shutdown) : std::string_view(reply);
}
}  // namespace

std::string_view reply_of(Refusal r) {
  switch (r) {
#define FTPW_REFUSAL_REPLY(e, name, reply) \
  case Refusal::e:                         \
    return refusal_reply(reply);
    FTPW_REFUSALS(FTPW_REFUSAL_REPLY)
#undef FTPW_REFUSAL_REPLY
  }
  return reply_of(EndReason::shutdown);
}

void FindingCounts::count(std::string_view rule, bool client, bool rejected) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string key(rule);
  if (client) key += rejected ? ".rejected" : ".logged";
  auto& m = client ? violations_ : server_;
  auto it = m.find(key);
  if (it == m.end()) it = m.emplace(std::move(key), 0).first;
  ++it->second;
}

void FindingCounts::add_to(std::map<std::string, std::uint64_t>& violations,
                           std::map<std::string, std::uint64_t>& server) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [k, v] : violations_) violations[k] += v;
  for (const auto& [k, v] : server_) server[k] += v;
}

void WorkerStats::add_to(StatTotals& t) const {
#define FTPW_STAT_ADD(name, metric, doc) t.name += name.get();
  FTPW_COUNTERS(FTPW_STAT_ADD)
  FTPW_GAUGES(FTPW_STAT_ADD)
#undef FTPW_STAT_ADD
#define FTPW_STAT_ADD_LABELLED(name, labels, metric, doc) \
  for (std::size_t i = 0; i < labels::size; ++i) t.name[i] += name.by[i].get();
  FTPW_LABELLED(FTPW_STAT_ADD_LABELLED)
#undef FTPW_STAT_ADD_LABELLED
#define FTPW_STAT_ADD_HIST(name, buckets, metric, doc)                                        \
  for (std::size_t i = 0; i < Histogram<buckets>::size; ++i) t.name[i] += name.counts[i].get(); \
  t.name##_sum += name.sum.get();
  FTPW_HISTOGRAMS(FTPW_STAT_ADD_HIST)
#undef FTPW_STAT_ADD_HIST
  findings.add_to(t.violations_by_rule, t.server_findings_by_rule);
}

std::string StatTotals::to_string() const {
  std::string s;
  auto put = [&s](std::string_view name, std::string_view label, std::uint64_t v) {
    if (!s.empty()) s += ' ';
    s += name;
    if (!label.empty()) (s += '.') += label;
    (s += '=') += std::to_string(v);
  };
#define FTPW_STAT_TEXT(name, metric, doc) put(#name, {}, name);
  FTPW_COUNTERS(FTPW_STAT_TEXT)
  FTPW_GAUGES(FTPW_STAT_TEXT)
#undef FTPW_STAT_TEXT
#define FTPW_STAT_TEXT_LABELLED(name, labels, metric, doc) \
  for (std::size_t i = 0; i < labels::size; ++i)   \
    if (name[i] != 0) put(#name, labels::label(i), name[i]);
  FTPW_LABELLED(FTPW_STAT_TEXT_LABELLED)
#undef FTPW_STAT_TEXT_LABELLED
  for (const auto& [k, v] : violations_by_rule) put("violations_by_rule", k, v);
  for (const auto& [k, v] : server_findings_by_rule) put("server_findings", k, v);
#define FTPW_STAT_TEXT_HIST(name, buckets, metric, doc)                                   \
  {                                                                               \
    std::uint64_t cum = 0;                                                        \
    for (std::size_t i = 0; i < buckets::bounds.size(); ++i) {                    \
      cum += name[i];                                                             \
      if (name[i] != 0) put(#name, "le_" + std::to_string(buckets::bounds[i]), cum); \
    }                                                                             \
    cum += name[buckets::bounds.size()];                                          \
    put(#name, "count", cum);                                                     \
    put(#name, "sum", name##_sum);                                                \
  }
  FTPW_HISTOGRAMS(FTPW_STAT_TEXT_HIST)
#undef FTPW_STAT_TEXT_HIST
  return s;
}

}  // namespace ftpw
