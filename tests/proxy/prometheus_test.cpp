// The Prometheus text: every family from the stats table, names as declared,
// histograms cumulative in seconds, label values escaped, verbs bounded.
#include <gtest/gtest.h>

#include "prometheus.h"

using namespace ftpw;

namespace {

bool has_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos || text.rfind(line + "\n", 0) == 0;
}

}  // namespace

TEST(Prometheus, SeriesFromTheStatsTable) {
  WorkerStats w;
  ++w.sessions_total;
  ++w.sessions_open;
  ++w.commands[static_cast<std::size_t>(Verb::RETR)];
  ++w.commands[0];  // a verb outside the table
  ++w.replies[ReplyClassLabels::of(226)];
  w.bytes[0].add(1048576);
  ++w.transfers_by[TransferLabels::of(Verb::RETR, true)];
  w.reply_latency_us.observe(300);   // le 0.0005
  w.reply_latency_us.observe(20000000);  // past the last bound
  w.transfer_duration_ms.observe(50);
  w.findings.count("rnto-needs-rnfr", true, true);
  w.findings.count("pasv-foreign-address", false, false);
  w.findings.count("odd\"id\\x", true, false);
  StatTotals t;
  w.add_to(t);
  const std::string s = prometheus_text(t, {3, "1.2.3", "abc123"});

  EXPECT_TRUE(has_line(s, "# TYPE ftpwarden_sessions_total counter"));
  EXPECT_TRUE(has_line(s, "ftpwarden_sessions_total 1"));
  EXPECT_TRUE(has_line(s, "# TYPE ftpwarden_sessions_open gauge"));
  EXPECT_TRUE(has_line(s, "ftpwarden_sessions_open 1"));
  EXPECT_TRUE(has_line(s, "ftpwarden_commands_total{verb=\"RETR\"} 1"));
  EXPECT_TRUE(has_line(s, "ftpwarden_commands_total{verb=\"other\"} 1"));
  EXPECT_EQ(s.find("ftpwarden_commands_total{verb=\"STOR\"}"), std::string::npos);  // large sets: only seen
  EXPECT_TRUE(has_line(s, "ftpwarden_replies_total{class=\"2xx\"} 1"));
  EXPECT_TRUE(has_line(s, "ftpwarden_replies_total{class=\"5xx\"} 0"));  // small sets: every label
  EXPECT_TRUE(has_line(s, "ftpwarden_bytes_total{direction=\"download\"} 1048576"));
  EXPECT_TRUE(has_line(s, "ftpwarden_transfers_total{verb=\"RETR\",data_conn=\"reused\"} 1"));
  EXPECT_TRUE(has_line(s, "ftpwarden_connections_refused_total{reason=\"max-sessions\"} 0"));
  EXPECT_TRUE(has_line(s, "# TYPE ftpwarden_reply_latency_seconds histogram"));
  EXPECT_TRUE(has_line(s, "ftpwarden_reply_latency_seconds_bucket{le=\"0.00025\"} 0"));
  EXPECT_TRUE(has_line(s, "ftpwarden_reply_latency_seconds_bucket{le=\"0.0005\"} 1"));
  EXPECT_TRUE(has_line(s, "ftpwarden_reply_latency_seconds_bucket{le=\"10\"} 1"));
  EXPECT_TRUE(has_line(s, "ftpwarden_reply_latency_seconds_bucket{le=\"+Inf\"} 2"));
  EXPECT_TRUE(has_line(s, "ftpwarden_reply_latency_seconds_count 2"));
  EXPECT_TRUE(has_line(s, "ftpwarden_reply_latency_seconds_sum 20.0003"));
  EXPECT_TRUE(has_line(s, "ftpwarden_transfer_duration_seconds_bucket{le=\"0.1\"} 1"));
  EXPECT_TRUE(has_line(s, "ftpwarden_violations_total{rule=\"rnto-needs-rnfr\",action=\"rejected\"} 1"));
  EXPECT_TRUE(has_line(s, "ftpwarden_violations_total{rule=\"odd\\\"id\\\\x\",action=\"logged\"} 1"));
  EXPECT_TRUE(has_line(s, "ftpwarden_server_findings_total{rule=\"pasv-foreign-address\"} 1"));
  EXPECT_TRUE(has_line(s, "ftpwarden_audit_records_dropped_total 3"));
  EXPECT_TRUE(has_line(s, "ftpwarden_build_info{version=\"1.2.3\",rules_version=\"abc123\"} 1"));
  // Stats kept out of the endpoint (their sums are other series).
  EXPECT_EQ(s.find("ftpwarden_transfers_total 0"), std::string::npos);
  EXPECT_EQ(s.find("ftpwarden_violations_total 0"), std::string::npos);
  // Every sample's family has one TYPE line.
  std::size_t types = 0;
  for (std::size_t p = s.find("# TYPE "); p != std::string::npos; p = s.find("# TYPE ", p + 1)) ++types;
  std::size_t helps = 0;
  for (std::size_t p = s.find("# HELP "); p != std::string::npos; p = s.find("# HELP ", p + 1)) ++helps;
  EXPECT_EQ(types, helps);
}
