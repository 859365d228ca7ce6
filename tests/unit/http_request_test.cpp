// The metrics endpoint's request head parser.
#include <gtest/gtest.h>

#include "http_request.h"

using namespace ftpw;
using S = HttpRequestHead::Status;

TEST(HttpRequestHead, CompleteWithCrlfOrBareLf) {
  auto h = parse_http_request_head("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(h.status, S::complete);
  EXPECT_EQ(h.method, "GET");
  EXPECT_EQ(h.target, "/metrics?x=1");
  EXPECT_EQ(h.path, "/metrics");
  EXPECT_EQ(h.version, "HTTP/1.1");
  EXPECT_EQ(parse_http_request_head("GET /ready HTTP/1.0\n\n").status, S::complete);
  EXPECT_EQ(parse_http_request_head("GET /ready HTTP/1.0\r\n\r\n").path, "/ready");
}

TEST(HttpRequestHead, IncompleteUntilTheBlankLine) {
  for (std::string_view s : {"", "GET", "GET /metrics HTTP/1.1", "GET /metrics HTTP/1.1\r\n",
                             "GET /metrics HTTP/1.1\r\nHost: a\r\n", "GET /metrics HTTP/1.1\r\nHost: a\r\n\r"})
    EXPECT_EQ(parse_http_request_head(s).status, S::incomplete) << s;
}

TEST(HttpRequestHead, BadRequestLinesAndBytes) {
  for (std::string_view s : {"GET metrics HTTP/1.1\r\n\r\n", "GET /metrics\r\n\r\n", "GET  /metrics HTTP/1.1\r\n\r\n",
                             "GET /metrics HTTP/2\r\n\r\n", "get /metrics HTTP/1.1\r\n\r\n",
                             "GET /metrics HTTP/1.1 x\r\n\r\n", "\r\n\r\n"})
    EXPECT_EQ(parse_http_request_head(s).status, S::bad) << s;
  using namespace std::string_view_literals;
  EXPECT_EQ(parse_http_request_head("GET /m\0 HTTP/1.1\r\n\r\n"sv).status, S::bad);
  EXPECT_EQ(parse_http_request_head("GET /metrics HTTP/1.1\r\nX: \x7f\r\n\r\n").status, S::bad);
  // A bad byte is bad before the head is complete too.
  EXPECT_EQ(parse_http_request_head("GET /metrics HTTP/1.1\r\nX: \x01").status, S::bad);
  // Other methods parse: the endpoint answers them 405.
  EXPECT_EQ(parse_http_request_head("POST /metrics HTTP/1.1\r\n\r\n").method, "POST");
}
