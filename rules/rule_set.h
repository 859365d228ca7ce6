// Sequence and policy rules, loaded from TOML and compiled into per-verb tables.
//
// A rule fires for a command when its verb matches (`verbs`, verbs or classes
// such as @write, minus `except`), every predicate in `when` holds and none in
// `unless` holds. Predicates are the session state the client mirror keeps
// (see FTPW_PREDICATES). What a rule does depends on the mode: `audit` and
// `enforce` each name `log`, `reject` (answer `reply` and never forward),
// `ignore` or, for policy rules, `allow`.
//
// A rule with `users`, `clients`, `arg`, `paths` or `not_paths`, an `allow` action, or no `when`
// and `unless` at all, is a policy rule (its reply defaults to 550): sequence
// rules are all evaluated first (every one that fires is reported); then the
// first policy rule that matches decides (allow, log or reject) and the rest
// are not looked at.
//
// Evaluation walks a per-verb list of rule indices and tests two bit masks: no
// allocation, no string compare.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <re2/set.h>

#include "path_index.h"
#include "policy_match.h"
#include "verbs.h"

namespace ftpw {

// X(enum name, TOML name, meaning)
#define FTPW_PREDICATES(X)                                                                       \
  X(logged_in, "logged-in", "the login completed (230, or 202 to PASS/ACCT)")                   \
  X(user_sent, "user-sent", "USER was sent since the connection opened or REIN")               \
  X(user_accepted, "user-accepted", "the previous command was USER and it was answered 331")    \
  X(account_requested, "account-requested", "the last reply was 332 (account needed)")          \
  X(rename_pending, "rename-pending", "the previous command was RNFR and it was answered 350") \
  X(restart_pending, "restart-pending", "a REST answered 350 waits for its transfer")          \
  X(data_ready, "data-ready", "a data connection was set up since the last transfer")          \
  X(epsv_all, "epsv-all", "EPSV ALL was answered 200")                                         \
  X(auth_done, "auth-done", "AUTH was answered 234")                                           \
  X(pbsz_done, "pbsz-done", "PBSZ was answered 200")                                           \
  X(transfer_running, "transfer-running", "a transfer got its 1xx and waits for completion")   \
  X(telnet_bad, "telnet-bad", "the line carried an IAC sequence other than IAC IAC/IP/DM/negotiation") \
  X(syntax_bad, "syntax-bad", "the line is not <verb> [SP <argument>]")                        \
  X(arg_bad, "arg-bad", "the argument of a command with structure is malformed")

enum class Predicate : std::uint8_t {
#define X(e, name, doc) e,
  FTPW_PREDICATES(X)
#undef X
  count_
};
constexpr std::uint32_t pbit(Predicate p) { return 1u << static_cast<unsigned>(p); }
std::string_view name_of(Predicate p);
std::optional<Predicate> predicate_by_name(std::string_view name);

enum class Severity : std::uint8_t { info, warning, error };
std::string_view name_of(Severity s);

enum class RuleAction : std::uint8_t { ignore, log, reject, allow };
enum class Mode : std::uint8_t { audit, enforce };
std::string_view name_of(Mode m);

struct Rule {
  std::string id;
  std::string description;
  std::string rfc;
  Severity severity = Severity::error;
  std::uint32_t when = 0;    // all must hold
  std::uint32_t unless = 0;  // none may hold
  RuleAction audit = RuleAction::log;
  RuleAction enforce = RuleAction::reject;
  int reply_code = 503;
  std::string reply_line;    // "503 Bad sequence of commands.\r\n"
  std::string origin;        // "file:line:column" of the rule's table
  bool builtin = false;      // from the built-in rules (a rule file may replace it by id)
  bool policy = false;       // first match decides (see above)
  PolicyMatch match;         // users, clients, arg
  std::uint64_t max_upload_bytes = 0;  // an upload cap (STOR/APPE/STOU): the command goes on, capped
  // Verbs a class brings in with a condition on the argument (STAT with one,
  // SITE CHMOD); `any` for the others.
  std::array<ArgCondition, kVerbCount> verb_cond{};

  RuleAction action(Mode m) const { return m == Mode::audit ? audit : enforce; }
  bool fires(std::uint32_t state) const { return (state & when) == when && (state & unless) == 0; }
  bool applies(Verb v, std::string_view arg) const {
    return arg_condition_holds(verb_cond[static_cast<std::size_t>(v)], arg);
  }
};

class RuleSet {
 public:
  const std::vector<Rule>& rules() const { return rules_; }
  // Indices of the rules that may fire for a verb, in file order.
  const std::vector<std::uint16_t>& for_verb(Verb v) const { return by_verb_[static_cast<std::size_t>(v)]; }
  // Rule indices as bits (64 a word): the policy rules for a verb, and those
  // among all rules with an arg pattern.
  using Mask = std::vector<std::uint64_t>;
  const Mask& policy_mask(Verb v) const { return policy_mask_by_verb_[static_cast<std::size_t>(v)]; }
  const Mask& arg_mask() const { return arg_mask_; }
  // The policy rules with path globs, by their globs' literal starts.
  const PathIndex& path_index() const { return path_index_; }
  std::size_t mask_words() const { return (rules_.size() + 63) / 64; }
  // The same, split: the sequence rules, and the policy rules.
  const std::vector<std::uint16_t>& sequence_for(Verb v) const { return seq_by_verb_[static_cast<std::size_t>(v)]; }
  const std::vector<std::uint16_t>& policy_for(Verb v) const { return policy_by_verb_[static_cast<std::size_t>(v)]; }
  const Rule* find(std::string_view id) const;
  // A rule matches on paths: sessions learn their login directory and track
  // their working directory.
  bool uses_paths() const { return uses_paths_; }
  // Every policy rule's `arg` pattern in one RE2::Set (a rule's slot is
  // match.arg_slot): one pass over an argument answers them all. Fills
  // `hits` (reused: no allocation once grown) with the slots that match.
  bool has_arg_patterns() const { return arg_set_ != nullptr; }
  // Policy rules that can never decide: an earlier policy rule whose every
  // condition is one of theirs (its verbs include theirs; its predicates,
  // users, clients, arg and paths are none or the same) decides first in both
  // modes. "file:line:column: warning: ..." for each.
  std::vector<std::string> shadow_warnings() const;
  void match_args(std::string_view arg, std::vector<int>& hits) const;
  std::vector<std::string> sources;  // files it was loaded from
  // A short hash of the documents it was loaded from (names and contents):
  // the audit log's rules_version.
  const std::string& version() const { return version_; }

  // Loading. Errors are "file:line:column: message"; any error rejects the whole set.
  struct Error {
    std::string message;
  };
  struct Document {
    std::string name;     // file name, used in error positions
    std::string content;  // TOML text
  };
  // Several documents form one set; rule ids are unique across all of them,
  // except that a rule of a later document replaces the built-in rule (one of
  // the first `builtin` documents) with its id. The set keeps the built-in
  // rules nobody replaced, in their order, then every other rule in file order.
  static std::optional<RuleSet> load(const std::vector<Document>& docs, std::vector<Error>& errors,
                                     std::size_t builtin = 0);
  static std::optional<RuleSet> load_string(std::string_view toml, std::string_view source_name,
                                            std::vector<Error>& errors);

 private:
  bool add_document(std::string_view toml, std::string_view source_name, bool builtin, std::vector<Error>& errors);
  void compile();

  std::vector<Rule> rules_;
  struct VerbMatch {
    bool all = false;
    std::array<bool, kVerbCount> in{};
    std::array<bool, kVerbCount> except{};
  };
  std::vector<VerbMatch> matches_;
  std::array<std::vector<std::uint16_t>, kVerbCount> by_verb_, seq_by_verb_, policy_by_verb_;
  std::array<Mask, kVerbCount> policy_mask_by_verb_;
  Mask arg_mask_;
  // Every string an arg pattern can match lies in [arg_min_, arg_max_] (RE2's
  // PossibleMatchRange over all of them), so starts with arg_prefix_; without
  // a bound, arg_bounded_ is false.
  std::string arg_min_, arg_max_, arg_prefix_;
  bool arg_bounded_ = false;
  bool uses_paths_ = false;
  PathIndex path_index_;
  std::string version_;
  std::shared_ptr<const re2::RE2::Set> arg_set_;
};

}  // namespace ftpw
