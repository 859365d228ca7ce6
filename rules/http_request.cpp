#include "http_request.h"

namespace ftpw {

HttpRequestHead parse_http_request_head(std::string_view buf) {
  HttpRequestHead h;
  // Where the head ends: an empty line.
  std::size_t end = std::string_view::npos;
  for (std::size_t i = buf.find('\n'); i != std::string_view::npos; i = buf.find('\n', i + 1)) {
    if (i + 1 < buf.size() && buf[i + 1] == '\n') {
      end = i + 2;
      break;
    }
    if (i + 2 < buf.size() && buf[i + 1] == '\r' && buf[i + 2] == '\n') {
      end = i + 3;
      break;
    }
  }
  const std::string_view head = buf.substr(0, end == std::string_view::npos ? buf.size() : end);
  for (char c : head) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\r' && c != '\n' && c != '\t') || u == 0x7f) {
      h.status = HttpRequestHead::Status::bad;
      return h;
    }
  }
  const std::size_t eol = head.find('\n');
  if (eol == std::string_view::npos) return h;  // the request line is still coming
  std::string_view line = head.substr(0, eol);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  const std::size_t sp1 = line.find(' ');
  const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    h.status = HttpRequestHead::Status::bad;
    return h;
  }
  h.method = line.substr(0, sp1);
  h.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  h.version = line.substr(sp2 + 1);
  const bool method_ok = !h.method.empty() && h.method.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ") ==
                                                  std::string_view::npos;
  if (!method_ok || h.target.empty() || h.target.front() != '/' ||
      (h.version != "HTTP/1.0" && h.version != "HTTP/1.1")) {
    h.status = HttpRequestHead::Status::bad;
    return h;
  }
  h.path = h.target.substr(0, h.target.find('?'));
  h.status = end == std::string_view::npos ? HttpRequestHead::Status::incomplete : HttpRequestHead::Status::complete;
  return h;
}

}  // namespace ftpw
