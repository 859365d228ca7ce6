#include "rule_set.h"

#include <re2/re2.h>
#include <toml++/toml.h>

#include <sstream>

namespace ftpw {

std::string_view name_of(Predicate p) {
  switch (p) {
#define X(e, name, doc) \
  case Predicate::e: return name;
    FTPW_PREDICATES(X)
#undef X
    default: return "unknown";
  }
}

std::optional<Predicate> predicate_by_name(std::string_view name) {
#define X(e, n, doc) \
  if (name == n) return Predicate::e;
  FTPW_PREDICATES(X)
#undef X
  return std::nullopt;
}

std::string_view name_of(Severity s) {
  switch (s) {
    case Severity::info: return "info";
    case Severity::warning: return "warning";
    case Severity::error: return "error";
  }
  return "error";
}

std::string_view name_of(Mode m) { return m == Mode::audit ? "audit" : "enforce"; }

const Rule* RuleSet::find(std::string_view id) const {
  for (const auto& r : rules_)
    if (r.id == id) return &r;
  return nullptr;
}

namespace {

std::string where(std::string_view file, const toml::source_region& src) {
  std::ostringstream o;
  o << file << ':' << src.begin.line << ':' << src.begin.column;
  return o.str();
}

std::string default_text(int code) {
  switch (code) {
    case 500: return "Syntax error, command unrecognized.";
    case 501: return "Syntax error in parameters or arguments.";
    case 502: return "Command not implemented.";
    case 503: return "Bad sequence of commands.";
    case 504: return "Command not implemented for that parameter.";
    case 530: return "Not logged in.";
    case 534: return "Request denied for policy reasons.";
    case 550: return "Requested action not taken.";
    case 552: return "Exceeded storage allocation.";
    default: return "Request denied by policy.";
  }
}

struct DocContext {
  std::string_view file;
  std::vector<RuleSet::Error>& errors;
  void error(const toml::node& n, std::string_view msg) { errors.push_back({where(file, n.source()) + ": " + std::string(msg)}); }
};

std::optional<RuleAction> parse_action(std::string_view s) {
  if (s == "log") return RuleAction::log;
  if (s == "reject") return RuleAction::reject;
  if (s == "ignore") return RuleAction::ignore;
  if (s == "allow") return RuleAction::allow;
  return std::nullopt;
}

}  // namespace

bool RuleSet::add_document(std::string_view doc, std::string_view file, bool builtin, std::vector<Error>& errors) {
  const std::size_t errors_before = errors.size();
  toml::table root;
  try {
    root = toml::parse(doc, file);
  } catch (const toml::parse_error& e) {
    errors.push_back({where(file, e.source()) + ": " + std::string(e.description())});
    return false;
  }
  DocContext ctx{file, errors};
  for (auto&& [key, node] : root) {
    if (key.str() == "name" || key.str() == "description") {
      if (!node.is_string()) ctx.error(node, "'" + std::string(key.str()) + "' must be a string");
      continue;
    }
    if (key.str() != "rule") {
      errors.push_back({where(file, key.source()) + ": unknown key '" + std::string(key.str()) + "'"});
      continue;
    }
    const toml::array* arr = node.as_array();
    if (!arr || !arr->is_array_of_tables()) {
      ctx.error(node, "'rule' must be an array of tables ([[rule]])");
      continue;
    }
    for (const toml::node& rn : *arr) {
      const toml::table& t = *rn.as_table();
      Rule r;
      VerbMatch vm;
      bool have_id = false, have_verbs = false, bad = false;
      r.origin = where(file, t.source());
      auto want_string = [&](const toml::node& n, std::string_view k) -> std::optional<std::string> {
        if (auto s = n.value<std::string>(); s && n.is_string()) return *s;
        ctx.error(n, "'" + std::string(k) + "' must be a string");
        bad = true;
        return std::nullopt;
      };
      auto verb_list = [&](const toml::node& n, std::string_view k, std::array<bool, kVerbCount>& out, bool allow_star) {
        const toml::array* a = n.as_array();
        if (!a) {
          ctx.error(n, "'" + std::string(k) + "' must be an array of verbs");
          bad = true;
          return;
        }
        for (const toml::node& e : *a) {
          auto s = e.value<std::string>();
          if (!e.is_string() || !s) {
            ctx.error(e, "verbs must be strings");
            bad = true;
            continue;
          }
          if (*s == "*" && allow_star) {
            vm.all = true;
            continue;
          }
          if (!s->empty() && s->front() == '@') {
            const auto* members = verb_class(*s);
            if (!members) {
              std::string known;
              for (auto n : verb_class_names()) known += (known.empty() ? "" : ", ") + std::string(n);
              ctx.error(e, "unknown verb class '" + *s + "' (" + known + ")");
              bad = true;
              continue;
            }
            for (const ClassMember& m : *members) {
              const auto i = static_cast<std::size_t>(m.verb);
              // A verb listed on its own, or by another class without a condition, keeps `any`.
              if (!out[i]) r.verb_cond[i] = m.cond;
              else if (m.cond == ArgCondition::any) r.verb_cond[i] = ArgCondition::any;
              out[i] = true;
            }
            continue;
          }
          Verb v = lookup_verb(*s);
          if (v == Verb::unknown) {
            ctx.error(e, "unknown verb '" + *s + "'");
            bad = true;
            continue;
          }
          out[static_cast<std::size_t>(v)] = true;
          r.verb_cond[static_cast<std::size_t>(v)] = ArgCondition::any;
        }
      };
      auto string_list = [&](const toml::node& n, std::string_view k) -> std::vector<std::pair<std::string, const toml::node*>> {
        std::vector<std::pair<std::string, const toml::node*>> out;
        const toml::array* a = n.as_array();
        if (!a) {
          ctx.error(n, "'" + std::string(k) + "' must be an array of strings");
          bad = true;
          return out;
        }
        for (const toml::node& e : *a) {
          auto s = e.value<std::string>();
          if (!e.is_string() || !s) {
            ctx.error(e, "'" + std::string(k) + "' must be an array of strings");
            bad = true;
            continue;
          }
          out.emplace_back(*s, &e);
        }
        return out;
      };
      auto pred_list = [&](const toml::node& n, std::string_view k, std::uint32_t& mask) {
        const toml::array* a = n.as_array();
        if (!a) {
          ctx.error(n, "'" + std::string(k) + "' must be an array of predicate names");
          bad = true;
          return;
        }
        for (const toml::node& e : *a) {
          auto s = e.value<std::string>();
          auto p = s && e.is_string() ? predicate_by_name(*s) : std::nullopt;
          if (!p) {
            ctx.error(e, "unknown predicate " + (s ? "'" + *s + "'" : std::string("(not a string)")));
            bad = true;
            continue;
          }
          mask |= pbit(*p);
        }
      };
      std::string reply_text;
      bool have_reply = false;
      for (auto&& [k, v] : t) {
        const std::string_view key = k.str();
        if (key == "id") {
          if (auto s = want_string(v, key)) {
            r.id = *s;
            have_id = true;
            if (r.id.empty()) {
              ctx.error(v, "'id' must not be empty");
              bad = true;
            }
          }
        } else if (key == "description") {
          if (auto s = want_string(v, key)) r.description = *s;
        } else if (key == "rfc") {
          if (auto s = want_string(v, key)) r.rfc = *s;
        } else if (key == "severity") {
          if (auto s = want_string(v, key)) {
            if (*s == "error") r.severity = Severity::error;
            else if (*s == "warning") r.severity = Severity::warning;
            else if (*s == "info") r.severity = Severity::info;
            else {
              ctx.error(v, "severity must be error, warning or info");
              bad = true;
            }
          }
        } else if (key == "verbs") {
          have_verbs = true;
          verb_list(v, key, vm.in, true);
        } else if (key == "except") {
          verb_list(v, key, vm.except, false);
        } else if (key == "when") {
          pred_list(v, key, r.when);
        } else if (key == "unless") {
          pred_list(v, key, r.unless);
        } else if (key == "audit" || key == "enforce") {
          if (auto s = want_string(v, key)) {
            auto a = parse_action(*s);
            if (!a) {
              ctx.error(v, "'" + std::string(key) + "' must be allow, log, reject or ignore");
              bad = true;
            } else {
              (key == "audit" ? r.audit : r.enforce) = *a;
            }
          }
        } else if (key == "reply") {
          auto n = v.value<std::int64_t>();
          if (!v.is_integer() || !n || *n < 400 || *n > 599) {
            ctx.error(v, "'reply' must be an integer reply code 400-599");
            bad = true;
          } else {
            r.reply_code = static_cast<int>(*n);
            have_reply = true;
          }
        } else if (key == "reply_text") {
          if (auto s = want_string(v, key)) {
            reply_text = *s;
            if (reply_text.find_first_of("\r\n") != std::string::npos) {
              ctx.error(v, "'reply_text' must be one line");
              bad = true;
            }
          }
        } else if (key == "users") {
          for (auto& [g, n] : string_list(v, key)) {
            if (g.empty()) {
              ctx.error(*n, "a user glob must not be empty");
              bad = true;
            }
            r.match.users.push_back(std::move(g));
          }
        } else if (key == "clients") {
          for (auto& [c, n] : string_list(v, key)) {
            auto cidr = Cidr::parse(c);
            if (!cidr) {
              ctx.error(*n, "'" + c + "' is not an address or CIDR (10.0.0.0/8, ::1)");
              bad = true;
              continue;
            }
            r.match.clients.push_back(*cidr);
          }
        } else if (key == "paths" || key == "not_paths") {
          for (auto& [g, n] : string_list(v, key)) {
            if (g.empty() || (g.front() != '/' && g.rfind("~/", 0) != 0 && g != "~")) {
              ctx.error(*n, "a path glob must be absolute ('/srv/**') or start with '~/' (the login directory)");
              bad = true;
              continue;
            }
            (key == "paths" ? r.match.paths : r.match.not_paths).push_back(std::move(g));
          }
        } else if (key == "max_upload_bytes") {
          auto n = v.value<std::int64_t>();
          if (!v.is_integer() || !n || *n < 1) {
            ctx.error(v, "'max_upload_bytes' must be a positive integer");
            bad = true;
          } else {
            r.max_upload_bytes = static_cast<std::uint64_t>(*n);
          }
        } else if (key == "arg") {
          if (auto s = want_string(v, key)) {
            std::string error;
            r.match.arg = compile_arg_regex(*s, error);
            if (!r.match.arg) {
              ctx.error(v, "'arg' is not a valid regex: " + error);
              bad = true;
            }
          }
        } else {
          errors.push_back({where(file, k.source()) + ": unknown key '" + std::string(key) + "' in rule"});
          bad = true;
        }
      }
      r.builtin = builtin;
      // Sequence rules test the session's state; a rule that tests none, or
      // names who, where from or which argument, or allows, is policy.
      r.policy = !r.match.empty() || r.audit == RuleAction::allow || r.enforce == RuleAction::allow ||
                 (r.when == 0 && r.unless == 0) || r.max_upload_bytes > 0;
      if (r.max_upload_bytes > 0) {
        bool uploads = vm.all;
        for (Verb v : {Verb::STOR, Verb::APPE, Verb::STOU}) uploads = uploads || vm.in[static_cast<std::size_t>(v)];
        if (!uploads) {
          ctx.error(t, "rule '" + r.id + "': max_upload_bytes needs STOR, APPE or STOU among its verbs");
          bad = true;
        }
        if (!have_reply) r.reply_code = 552;
      }
      if (r.policy && !have_reply && r.max_upload_bytes == 0) r.reply_code = 550;
      if (!have_id) {
        ctx.error(t, "rule without 'id'");
        bad = true;
      }
      if (!have_verbs) {
        ctx.error(t, "rule '" + r.id + "' without 'verbs'");
        bad = true;
      }
      if (const Rule* earlier = have_id ? find(r.id) : nullptr; earlier && (builtin || !earlier->builtin)) {
        ctx.error(t, "duplicate rule id '" + r.id + "' (first defined at " + earlier->origin + ")");
        bad = true;
      }
      if (bad) continue;
      if (const Rule* earlier = find(r.id)) {  // a built-in rule this file replaces
        const auto i = static_cast<std::size_t>(earlier - rules_.data());
        rules_.erase(rules_.begin() + static_cast<std::ptrdiff_t>(i));
        matches_.erase(matches_.begin() + static_cast<std::ptrdiff_t>(i));
      }
      r.reply_line = std::to_string(r.reply_code) + " " + (reply_text.empty() ? default_text(r.reply_code) : reply_text) + "\r\n";
      rules_.push_back(std::move(r));
      matches_.push_back(vm);
    }
  }
  return errors.size() == errors_before;
}

void RuleSet::match_args(std::string_view arg, std::vector<int>& hits) const {
  hits.clear();
  if (!arg_set_) return;
  // What any pattern can match starts with arg_prefix_ and is not below
  // arg_min_; a match is a prefix of the argument, so an argument that does
  // not start so, or sorts below, needs no pass.
  if (arg_bounded_ && (arg.substr(0, arg_prefix_.size()) != arg_prefix_ || arg < std::string_view(arg_min_))) return;
  // Which patterns matched takes RE2 an allocation; whether any did does
  // not, and usually none does.
  const re2::StringPiece text(arg.data(), arg.size());
  if (arg_set_->Match(text, nullptr)) arg_set_->Match(text, &hits);
}

void RuleSet::compile() {
  uses_paths_ = false;
  for (auto& r : rules_) {
    uses_paths_ = uses_paths_ || r.match.wants_path();
    r.match.compile_paths();
  }
  path_index_.build(rules_);
  // The arg patterns, each already checked alone at load.
  RE2::Options o;
  o.set_log_errors(false);
  o.set_encoding(RE2::Options::EncodingLatin1);
  auto set = std::make_shared<re2::RE2::Set>(o, RE2::UNANCHORED);
  int slots = 0;
  for (auto& r : rules_) {
    r.match.arg_slot = -1;
    if (!r.match.arg) continue;
    r.match.arg_slot = set->Add(r.match.arg->pattern(), nullptr);
    if (r.match.arg_slot >= 0) ++slots;
  }
  arg_set_ = slots > 0 && set->Compile() ? std::move(set) : nullptr;
  arg_bounded_ = arg_set_ != nullptr;
  arg_min_.clear();
  arg_max_.clear();
  bool first = true;
  for (const auto& r : rules_) {
    if (!r.match.arg || !arg_bounded_) continue;
    std::string lo, hi;
    // The range holds for matches anchored at the start: only a pattern that
    // is (^...) bounds what PartialMatch can find. 64 bytes of it suffice.
    if (r.match.arg->pattern().rfind('^', 0) != 0 || !r.match.arg->PossibleMatchRange(&lo, &hi, 64)) {
      arg_bounded_ = false;
      break;
    }
    if (first || lo < arg_min_) arg_min_ = lo;
    if (first || hi > arg_max_) arg_max_ = hi;
    first = false;
  }
  // Every string in [min, max] starts with their common prefix.
  std::size_t common = 0;
  while (common < arg_min_.size() && common < arg_max_.size() && arg_min_[common] == arg_max_[common]) ++common;
  arg_prefix_ = arg_min_.substr(0, common);
  for (auto* table : {&by_verb_, &seq_by_verb_, &policy_by_verb_})
    for (auto& v : *table) v.clear();
  for (auto& m : policy_mask_by_verb_) m.assign(mask_words(), 0);
  arg_mask_.assign(mask_words(), 0);
  for (std::size_t i = 0; i < rules_.size(); ++i)
    if (rules_[i].match.arg) arg_mask_[i / 64] |= std::uint64_t{1} << (i % 64);
  for (std::size_t i = 0; i < rules_.size(); ++i) {
    const VerbMatch& m = matches_[i];
    for (std::size_t v = 0; v < kVerbCount; ++v) {
      if (!(m.all || m.in[v]) || m.except[v]) continue;
      by_verb_[v].push_back(static_cast<std::uint16_t>(i));
      (rules_[i].policy ? policy_by_verb_ : seq_by_verb_)[v].push_back(static_cast<std::uint16_t>(i));
      if (rules_[i].policy) policy_mask_by_verb_[v][i / 64] |= std::uint64_t{1} << (i % 64);
    }
  }
}

namespace {

// FNV-1a, 64 bits, over each document's name and content; 12 hex digits.
std::string version_of(const std::vector<std::pair<std::string_view, std::string_view>>& docs) {
  std::uint64_t h = 1469598103934665603ull;
  auto mix = [&h](std::string_view s) {
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;  // a separator no text contains
  };
  for (const auto& [name, content] : docs) {
    mix(name);
    mix(content);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(12, '0');
  for (int i = 11; i >= 0; --i, h >>= 4) out[static_cast<std::size_t>(i)] = kHex[h & 15];
  return out;
}

}  // namespace

std::optional<RuleSet> RuleSet::load_string(std::string_view toml, std::string_view source_name,
                                            std::vector<Error>& errors) {
  RuleSet rs;
  if (!rs.add_document(toml, source_name, false, errors)) return std::nullopt;
  rs.sources.emplace_back(source_name);
  rs.version_ = version_of({{source_name, toml}});
  rs.compile();
  return rs;
}

std::optional<RuleSet> RuleSet::load(const std::vector<Document>& docs, std::vector<Error>& errors,
                                     std::size_t builtin) {
  RuleSet rs;
  bool ok = true;
  for (std::size_t i = 0; i < docs.size(); ++i) {
    const Document& d = docs[i];
    if (!rs.add_document(d.content, d.name, i < builtin, errors)) ok = false;
    rs.sources.push_back(d.name);
  }
  if (!ok) return std::nullopt;
  std::vector<std::pair<std::string_view, std::string_view>> parts;
  for (const auto& d : docs) parts.emplace_back(d.name, d.content);
  rs.version_ = version_of(parts);
  rs.compile();
  return rs;
}

}  // namespace ftpw
