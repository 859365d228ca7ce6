#include "server_path.h"


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
  // The working directory is normalised already: taken as it is.
  if ((arg.empty() || arg.front() != '/') && cwd != "/") out.assign(cwd);
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

std::string_view skip_slashes(std::string_view s) {
  while (!s.empty() && s.front() == '/') s.remove_prefix(1);
  return s;
}

// The first segment of `s` (after its slashes), and what follows it.
std::string_view first_segment(std::string_view& s) {
  s = skip_slashes(s);
  const auto slash = s.find('/');
  const std::string_view seg = s.substr(0, slash);
  s = slash == std::string_view::npos ? std::string_view{} : s.substr(slash);
  return seg;
}

// Segment-wise match without allocating: `**` matches any number of
// segments (none included), `*` and `?` stay within one (glob_match).
bool match_segments(std::string_view g, std::string_view p) {
  for (;;) {
    if (skip_slashes(g).empty()) return skip_slashes(p).empty();
    const std::string_view gseg = first_segment(g);
    if (gseg == "**") {
      for (;;) {
        if (match_segments(g, p)) return true;
        if (skip_slashes(p).empty()) return false;
        first_segment(p);
      }
    }
    if (skip_slashes(p).empty()) return false;
    if (!glob_match(gseg, first_segment(p))) return false;
  }
}

}  // namespace

bool path_glob_match(std::string_view glob, std::string_view path, std::string_view home) {
  if (!glob.empty() && glob.front() == '~') {
    // The login directory is a path, not a pattern: the path must lie in it.
    glob.remove_prefix(1);
    const std::string_view h = home == "/" ? std::string_view{} : home;
    if (path.substr(0, h.size()) != h || (path.size() > h.size() && path[h.size()] != '/')) return false;
    path.remove_prefix(h.size());
  }
  return match_segments(glob, path);
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
