// What a policy rule matches on besides verbs and predicates: the login name
// (globs), the client's address (CIDRs), the raw argument (an RE2 regex,
// compiled once at load: linear time, whatever the pattern), and the verb
// classes (@read, @write, ...) its `verbs` may name.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "netaddr.h"
#include "verbs.h"

namespace re2 {
class RE2;
}

namespace ftpw {

// `*` any run of bytes, `?` one byte; everything else byte for byte.
bool glob_match(std::string_view pattern, std::string_view text);

struct Cidr {
  NetAddr net;
  unsigned prefix = 0;  // bits
  bool contains(const NetAddr& a) const;
  // "10.0.0.0/8", "192.0.2.7", "::1", "2001:db8::/32"
  static std::optional<Cidr> parse(std::string_view s);
};

// A verb class member: the verb, and for some members a condition on the
// argument (STAT reads only with an argument; SITE writes only as SITE CHMOD).
enum class ArgCondition : std::uint8_t { any, nonempty, site_chmod };
struct ClassMember {
  Verb verb;
  ArgCondition cond;
};
// nullptr for a name that is not a class ("@read" -> its members).
const std::vector<ClassMember>* verb_class(std::string_view name);
// Every class name, for messages and docs.
std::vector<std::string_view> verb_class_names();
bool arg_condition_holds(ArgCondition c, std::string_view arg);

// What a command is matched against.
struct PolicySubject {
  std::string_view user;  // the login name (USER's argument); empty before USER
  const NetAddr* client;  // nullptr or family 0 when unknown (a transcript)
  std::string_view arg;
  std::optional<std::string_view> path = std::nullopt;  // resolved; nullopt: the command names none
  std::string_view home = "/";                          // the login directory, for `~/` globs
};

struct PolicyMatch {
  std::vector<std::string> users;  // any of them (globs)
  std::vector<Cidr> clients;       // any of them
  std::shared_ptr<const re2::RE2> arg;
  int arg_slot = -1;               // its pattern's index in the rule set's RE2::Set
  std::vector<std::string> paths, not_paths;  // path globs (server_path.h)
  // Each of `paths`' literal start up to its first wildcard segment ("" for
  // a `~/` glob): a path that does not start with it cannot match.
  std::vector<std::string> path_prefixes;
  void compile_paths();
  bool wants_path() const { return !paths.empty() || !not_paths.empty(); }
  bool empty() const { return users.empty() && clients.empty() && !arg && !wants_path(); }
  // Who: the login name and the client's address, fixed for a session
  // between two USER commands (the core caches it).
  bool who_matches(std::string_view user, const NetAddr* client) const;
  // What: the command's path (the arg regex is matched for all rules at once).
  bool path_matches(std::optional<std::string_view> path, std::string_view home) const;
  bool matches(const PolicySubject& s) const;  // all of it, arg included (one regex at a time)
};

// Compiles an `arg` pattern; nullptr and `error` set when it is not valid.
std::shared_ptr<const re2::RE2> compile_arg_regex(const std::string& pattern, std::string& error);

}  // namespace ftpw
