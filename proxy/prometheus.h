// The metrics endpoint's body: a stats reading (proxy/stats.h) in the
// Prometheus text exposition format 0.0.4. Every series comes from the stats
// table; the ones here besides it are the findings by rule, the audit log's
// drops and the build's identity.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "stats.h"

namespace ftpw {

struct MetricsExtras {
  std::uint64_t audit_records_dropped = 0;
  std::string_view version;        // the binary's
  std::string_view rules_version;  // the running rule set's
};

std::string prometheus_text(const StatTotals& t, const MetricsExtras& x);

}  // namespace ftpw
