#include "policy_match.h"

#include <re2/re2.h>

#include "command.h"
#include "server_path.h"

namespace ftpw {

bool glob_match(std::string_view p, std::string_view t) {
  // Iterative with one backtrack point: linear in practice, no recursion.
  std::size_t pi = 0, ti = 0, star = std::string_view::npos, mark = 0;
  while (ti < t.size()) {
    if (pi < p.size() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti]))) {
      ++pi;
      ++ti;
    } else if (pi < p.size() && p[pi] == '*') {
      star = pi++;
      mark = ti;
    } else if (star != std::string_view::npos) {
      pi = star + 1;
      ti = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

bool Cidr::contains(const NetAddr& a) const {
  const NetAddr x = a.unmapped();
  if (x.family != net.family) return false;
  unsigned bits = prefix;
  for (std::size_t i = 0; bits > 0; ++i, bits = bits >= 8 ? bits - 8 : 0) {
    const std::uint8_t mask = bits >= 8 ? 0xff : static_cast<std::uint8_t>(0xff << (8 - bits));
    if ((x.bytes[i] & mask) != (net.bytes[i] & mask)) return false;
  }
  return true;
}

std::optional<Cidr> Cidr::parse(std::string_view s) {
  const auto slash = s.find('/');
  auto host = NetAddr::parse_host(s.substr(0, slash));
  if (!host) return std::nullopt;
  Cidr c;
  c.net = host->unmapped();
  const unsigned max = c.net.is_v4() ? 32 : 128;
  c.prefix = max;
  if (slash != std::string_view::npos) {
    const std::string_view bits = s.substr(slash + 1);
    if (bits.empty() || bits.size() > 3) return std::nullopt;
    unsigned v = 0;
    for (char ch : bits) {
      if (ch < '0' || ch > '9') return std::nullopt;
      v = v * 10 + static_cast<unsigned>(ch - '0');
    }
    if (v > max) return std::nullopt;
    c.prefix = v;
  }
  return c;
}

namespace {

struct NamedClass {
  std::string_view name;
  std::vector<ClassMember> members;
};

const std::vector<NamedClass>& classes() {
  using A = ArgCondition;
  static const std::vector<NamedClass> c = {
      {"@read",
       {{Verb::RETR, A::any}, {Verb::LIST, A::any}, {Verb::NLST, A::any}, {Verb::MLSD, A::any},
        {Verb::MLST, A::any}, {Verb::SIZE, A::any}, {Verb::MDTM, A::any}, {Verb::STAT, A::nonempty}}},
      {"@write",
       {{Verb::STOR, A::any}, {Verb::STOU, A::any}, {Verb::APPE, A::any}, {Verb::DELE, A::any},
        {Verb::RNFR, A::any}, {Verb::RNTO, A::any}, {Verb::MKD, A::any}, {Verb::XMKD, A::any},
        {Verb::RMD, A::any}, {Verb::XRMD, A::any}, {Verb::SITE, A::site_chmod}}},
      {"@login", {{Verb::USER, A::any}, {Verb::PASS, A::any}, {Verb::ACCT, A::any}}},
      {"@data-setup",
       {{Verb::PASV, A::any}, {Verb::EPSV, A::any}, {Verb::LPSV, A::any}, {Verb::PORT, A::any},
        {Verb::EPRT, A::any}, {Verb::LPRT, A::any}}},
      {"@site", {{Verb::SITE, A::any}}},
  };
  return c;
}

}  // namespace

const std::vector<ClassMember>* verb_class(std::string_view name) {
  for (const auto& c : classes())
    if (c.name == name) return &c.members;
  return nullptr;
}

std::vector<std::string_view> verb_class_names() {
  std::vector<std::string_view> n;
  for (const auto& c : classes()) n.push_back(c.name);
  return n;
}

bool arg_condition_holds(ArgCondition c, std::string_view arg) {
  switch (c) {
    case ArgCondition::any: return true;
    case ArgCondition::nonempty: return !arg.empty();
    case ArgCondition::site_chmod: return arg.size() >= 5 && iequals(arg.substr(0, 5), "CHMOD") &&
                                          (arg.size() == 5 || arg[5] == ' ');
  }
  return false;
}

bool PolicyMatch::who_matches(std::string_view user, const NetAddr* client) const {
  if (!users.empty()) {
    bool any = false;
    for (const auto& g : users) any = any || glob_match(g, user);
    if (!any || user.empty()) return false;
  }
  if (!clients.empty()) {
    if (!client || client->family == 0) return false;
    bool any = false;
    for (const auto& c : clients) any = any || c.contains(*client);
    if (!any) return false;
  }
  return true;
}

bool PolicyMatch::path_matches(std::optional<std::string_view> path, std::string_view home) const {
  if (!wants_path()) return true;
  if (!path) return false;
  if (!paths.empty()) {
    bool any = false;
    for (std::size_t i = 0; i < paths.size() && !any; ++i)
      any = path->substr(0, path_prefixes[i].size()) == path_prefixes[i] && path_glob_match(paths[i], *path, home);
    if (!any) return false;
  }
  for (const auto& g : not_paths)
    if (path_glob_match(g, *path, home)) return false;
  return true;
}

void PolicyMatch::compile_paths() {
  path_prefixes.clear();
  for (const auto& g : paths) {
    // Whole literal segments before the first one with a wildcard, joined
    // by one '/' as in a normalised path: "/srv/ftp" from "/srv//ftp/**"
    // (the path "/srv/ftp" itself matches that glob too). "" for a `~/` glob
    // or one whose first segment has a wildcard.
    std::string prefix;
    if (g.front() == '/') {
      std::string_view rest(g);
      while (!rest.empty()) {
        const auto start = rest.find_first_not_of('/');
        if (start == std::string_view::npos) break;
        rest.remove_prefix(start);
        const std::string_view seg = rest.substr(0, rest.find('/'));
        if (seg.find_first_of("*?") != std::string_view::npos) break;
        prefix += '/';
        prefix += seg;
        rest.remove_prefix(seg.size());
      }
    }
    path_prefixes.push_back(std::move(prefix));
  }
}

bool PolicyMatch::matches(const PolicySubject& s) const {
  return who_matches(s.user, s.client) &&
         (!arg || RE2::PartialMatch(re2::StringPiece(s.arg.data(), s.arg.size()), *arg)) &&
         path_matches(s.path, s.home);
}

std::shared_ptr<const re2::RE2> compile_arg_regex(const std::string& pattern, std::string& error) {
  RE2::Options o;
  o.set_log_errors(false);
  o.set_encoding(RE2::Options::EncodingLatin1);  // arguments are bytes: match them byte for byte
  auto re = std::make_shared<const re2::RE2>(pattern, o);
  if (!re->ok()) {
    error = re->error();
    return nullptr;
  }
  return re;
}

}  // namespace ftpw
