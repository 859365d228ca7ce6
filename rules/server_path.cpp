#include "server_path.h"

#include <vector>

#include "command.h"
#include "policy_match.h"

namespace ftpw {

void resolve_path(std::string_view cwd, std::string_view arg, std::string& out) {
  out.clear();
  auto walk = [&out](std::string_view p) {
    while (!p.empty()) {
      const auto slash = p.find('/');
      const std::string_view seg = p.substr(0, slash);
      p = slash == std::string_view::npos ? std::string_view{} : p.substr(slash + 1);
      if (seg.empty() || seg == ".") continue;
      if (seg == "..") {
        out.erase(out.empty() ? 0 : out.rfind('/'));  // never above '/'
        continue;
      }
      (out += '/') += seg;
    }
  };
  if (arg.empty() || arg.front() != '/') walk(cwd);
  walk(arg);
  if (out.empty()) out = "/";
}

std::string resolve_path(std::string_view cwd, std::string_view arg) {
  std::string out;
  resolve_path(cwd, arg, out);
  return out;
}

std::optional<std::string> parse_257_path(std::string_view text) {
  const auto open = text.find('"');
  if (open == std::string_view::npos) return std::nullopt;
  std::string out;
  for (std::size_t i = open + 1; i < text.size(); ++i) {
    if (text[i] != '"') {
      out += text[i];
    } else if (i + 1 < text.size() && text[i + 1] == '"') {
      out += '"';
      ++i;
    } else {
      return out;
    }
  }
  return std::nullopt;  // no closing quote
}

namespace {

// Segment-wise match: `**` matches any number of segments (none included).
bool match_segments(const std::vector<std::string_view>& g, std::size_t gi, const std::vector<std::string_view>& p,
                    std::size_t pi) {
  while (gi < g.size()) {
    if (g[gi] == "**") {
      for (std::size_t k = pi; k <= p.size(); ++k)
        if (match_segments(g, gi + 1, p, k)) return true;
      return false;
    }
    if (pi >= p.size() || !glob_match(g[gi], p[pi])) return false;  // `*`, `?` within one segment
    ++gi;
    ++pi;
  }
  return pi == p.size();
}

std::vector<std::string_view> split(std::string_view s) {
  std::vector<std::string_view> out;
  while (!s.empty()) {
    const auto slash = s.find('/');
    const auto seg = s.substr(0, slash);
    if (!seg.empty()) out.push_back(seg);
    if (slash == std::string_view::npos) break;
    s.remove_prefix(slash + 1);
  }
  return out;
}

}  // namespace

bool path_glob_match(std::string_view glob, std::string_view path, std::string_view home) {
  std::string expanded;
  if (!glob.empty() && glob.front() == '~') {
    expanded.assign(home);
    expanded.append(glob.substr(1));
    glob = expanded;
  }
  return match_segments(split(glob), 0, split(path), 0);
}

std::optional<std::string_view> path_argument(Verb v, std::string_view arg) {
  switch (v) {
    case Verb::RETR: case Verb::STOR: case Verb::APPE: case Verb::DELE: case Verb::RNFR: case Verb::RNTO:
    case Verb::MKD: case Verb::XMKD: case Verb::RMD: case Verb::XRMD: case Verb::CWD: case Verb::XCWD:
    case Verb::SIZE: case Verb::MDTM: case Verb::MLST: case Verb::MLSD:
      return arg;
    case Verb::STOU:
      return std::string_view{};  // the server picks the name, in the working directory
    case Verb::CDUP: case Verb::XCUP:
      return std::string_view("..");
    case Verb::LIST: case Verb::NLST: case Verb::STAT: {
      // Options first ("-la"), then the path, if any.
      while (!arg.empty() && arg.front() == '-') {
        const auto sp = arg.find(' ');
        arg = sp == std::string_view::npos ? std::string_view{} : arg.substr(sp + 1);
        while (!arg.empty() && arg.front() == ' ') arg.remove_prefix(1);
      }
      if (v == Verb::STAT && arg.empty()) return std::nullopt;  // server status, no path
      return arg;
    }
    case Verb::SITE: {
      // SITE CHMOD <mode> <path>
      if (arg.size() < 6 || !iequals(arg.substr(0, 6), "CHMOD ")) return std::nullopt;
      auto rest = arg.substr(6);
      const auto sp = rest.find(' ');
      if (sp == std::string_view::npos) return std::nullopt;
      return rest.substr(sp + 1);
    }
    default:
      return std::nullopt;
  }
}

}  // namespace ftpw
