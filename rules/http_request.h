// The head of an HTTP/1.x request, as far as a metrics endpoint needs it:
// the request line and the end of the header block. Nothing else of a
// request is read (the endpoint answers GET and HEAD, which carry no body).
// Input is bytes as they arrived; the caller bounds how many it keeps.
#pragma once
#include <string_view>

namespace ftpw {

struct HttpRequestHead {
  enum class Status { incomplete, complete, bad };
  Status status = Status::incomplete;
  std::string_view method;  // "GET"
  std::string_view target;  // "/metrics?x=1" as sent
  std::string_view path;    // "/metrics": the target without its query
  std::string_view version; // "HTTP/1.1"
};

// Complete once the blank line ending the header block is in `buf` (CRLF or
// bare LF line ends). Bad: a request line that is not METHOD SP TARGET SP
// HTTP/1.x, a target that does not start with '/', or a control byte in the
// head. The views point into `buf`.
HttpRequestHead parse_http_request_head(std::string_view buf);

}  // namespace ftpw
