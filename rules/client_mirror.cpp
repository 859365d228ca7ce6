// SessionCore, the client's side: framing its bytes, parsing each command and
// its typed argument, the rules, and the built-in answers (framing problems,
// AUTH, malformed or bouncing data addresses), then forwarding what passes.
#include <algorithm>

#include "completion.h"
#include "security_checks.h"
#include "server_path.h"
#include "session_core.h"

namespace ftpw {
namespace {

constexpr std::string_view kFramingReply[] = {
    "500 Command line not terminated by CRLF.\r\n",  // bare_lf
    "500 Bare CR inside a command line.\r\n",        // bare_cr
    "500 NUL byte inside a command line.\r\n",       // nul_in_line
    "500 Command line too long.\r\n",                // line_too_long
    "500 Invalid TELNET sequence.\r\n",              // bad_iac (reported through the telnet-bad rule)
};
constexpr std::string_view kBounceReply = "504 The data address must be your own, with a port of 1024 or above.\r\n";
constexpr std::string_view kBadArgReply = "501 Syntax error in parameters or arguments.\r\n";

bool opens_data(Verb v) {
  switch (v) {
    case Verb::PASV:
    case Verb::EPSV:
    case Verb::LPSV:
    case Verb::PORT:
    case Verb::EPRT:
    case Verb::LPRT:
      return true;
    default:
      return false;
  }
}

// The predicate bits a command's argument sets when malformed; EPSV ALL and
// an active data address are read on the way.
std::uint32_t check_argument(const Command& cmd, bool& epsv_all, std::optional<NetAddr>& active_addr) {
  auto bad = [](bool ok) { return ok ? 0u : pbit(Predicate::arg_bad); };
  switch (cmd.verb) {
    case Verb::PORT:
    case Verb::EPRT:
    case Verb::LPRT: {
      auto a = parse_active_arg(cmd.verb, cmd.arg);
      if (a.ok()) active_addr = a.value;
      return bad(a.ok());
    }
    case Verb::REST: return bad(parse_rest_arg(cmd.arg).ok());
    case Verb::TYPE: return bad(parse_type_arg(cmd.arg).ok());
    case Verb::MODE: return bad(parse_mode_arg(cmd.arg).ok());
    case Verb::STRU: return bad(parse_stru_arg(cmd.arg).ok());
    case Verb::EPSV: {
      auto e = parse_epsv_arg(cmd.arg);
      if (e.ok()) epsv_all = e.value.all;
      return bad(e.ok());
    }
    case Verb::PBSZ: return bad(parse_pbsz_arg(cmd.arg).ok());
    case Verb::PROT: return bad(parse_prot_arg(cmd.arg).ok());
    case Verb::AUTH: return bad(parse_auth_arg(cmd.arg).ok());
    default: return 0;
  }
}

}  // namespace

const Rule* SessionCore::sequence_rejection(const Command& cmd, std::uint32_t state) const {
  if (settings_.observe) return nullptr;
  for (std::uint16_t idx : rules_->sequence_for(cmd.verb)) {
    const Rule& r = rules_->rules()[idx];
    if (r.fires(state) && r.action(settings_.mode) == RuleAction::reject) return &r;
  }
  return nullptr;
}

std::optional<std::string_view> SessionCore::command_path(const Command& cmd) {
  // Resolved once per command, and only when something asks.
  if (path_ready_) return path_view_;
  path_ready_ = true;
  path_view_.reset();
  if (!rules_->uses_paths()) return std::nullopt;
  const auto arg = path_argument(cmd.verb, cmd.arg);
  if (!arg) return std::nullopt;
  resolve_path(cwd_, *arg, path_);
  return path_view_ = path_;
}

void SessionCore::set_user(std::string_view user) {
  user_.assign(user);
  // Who each policy rule is for, decided now for every command of this login.
  who_.assign(rules_->mask_words(), 0);
  const auto& rules = rules_->rules();
  for (std::size_t i = 0; i < rules.size(); ++i)
    if (rules[i].policy && rules[i].match.who_matches(user_, &peers_.client)) who_[i / 64] |= std::uint64_t{1} << (i % 64);
}

const Rule* SessionCore::policy_decision(const Command& cmd, std::uint32_t state) {
  if (rules_->policy_for(cmd.verb).empty()) return nullptr;
  if (who_.empty()) set_user(user_);  // before any USER: who is the empty name
  // One pass over the argument answers every arg pattern; none matched
  // (the usual case) takes every rule with one out of the running.
  bool any_arg = false;
  if (rules_->has_arg_patterns()) {
    rules_->match_args(cmd.arg, arg_hits_);
    any_arg = !arg_hits_.empty();
  }
  const auto& verb_mask = rules_->policy_mask(cmd.verb);
  const auto& arg_mask = rules_->arg_mask();
  const PathIndex& paths = rules_->path_index();
  bool path_known = false;  // path_cand_ holds this command's indexed path rules
  for (std::size_t w = 0; w < verb_mask.size(); ++w) {
    std::uint64_t cand = verb_mask[w] & who_[w];
    if (!any_arg && rules_->has_arg_patterns()) cand &= ~arg_mask[w];
    if (cand & paths.indexed()[w]) {
      // One lookup per segment of the path takes out every path rule it
      // cannot match.
      if (!path_known) paths.candidates(command_path(cmd), path_cand_);
      path_known = true;
      cand &= ~paths.indexed()[w] | path_cand_[w];
    }
    while (cand) {  // ascending: file order
      const std::size_t idx = w * 64 + static_cast<std::size_t>(__builtin_ctzll(cand));
      cand &= cand - 1;
      const Rule& r = rules_->rules()[idx];
      if (!r.fires(state) || !r.applies(cmd.verb, cmd.arg) || r.action(settings_.mode) == RuleAction::ignore) continue;
      if (r.match.arg) {
        const bool hit = r.match.arg_slot >= 0 && rules_->has_arg_patterns()
                             ? std::find(arg_hits_.begin(), arg_hits_.end(), r.match.arg_slot) != arg_hits_.end()
                             : r.match.matches({user_, &peers_.client, cmd.arg, command_path(cmd), home_});
        if (!hit) continue;
      }
      if (!r.match.wants_path() || r.match.path_matches(command_path(cmd), home_)) return &r;
    }
  }
  return nullptr;
}

void SessionCore::on_client_bytes(std::string_view bytes, std::uint64_t now_us, CoreSink& sink) {
  if (closed_) return;
  timers_.client_spoke(now_us / 1000);
  if (client_backlog_.empty() && !paused_) {
    // Common path: frame straight from the caller's buffer.
    Line line;
    while (!paused_ && !closed_ && client_framer_.next(bytes, line) == FrameStatus::line)
      handle_client_line(line, now_us, sink);
  }
  if (!bytes.empty() && !closed_) {
    client_backlog_.append(bytes);
    pump_client(now_us, sink);
  }
  after_input(now_us, sink);
}

void SessionCore::pump_client(std::uint64_t now_us, CoreSink& sink) {
  if (in_pump_) return;
  in_pump_ = true;
  std::string_view in = client_backlog_;
  Line line;
  while (!paused_ && !closed_ && !in.empty()) {
    if (client_framer_.next(in, line) != FrameStatus::line) break;
    // handle_client_line never touches client_backlog_, so `in` stays valid.
    handle_client_line(line, now_us, sink);
  }
  client_backlog_.erase(0, client_backlog_.size() - in.size());
  in_pump_ = false;
}

std::string_view SessionCore::normalized(std::string_view text, std::string_view urgent_prefix) {
  // What goes to the server is exactly what the rules saw: the decoded line,
  // with a literal 0xFF re-escaped as IAC IAC and one CRLF.
  scratch_.assign(urgent_prefix);
  if (text.find('\xff') == std::string_view::npos) {
    scratch_.append(text);
  } else {
    for (char c : text) {
      scratch_.push_back(c);
      if (c == '\xff') scratch_.push_back(c);
    }
  }
  scratch_.append("\r\n");
  return scratch_;
}

void SessionCore::handle_bad_line(const Line& line, std::uint32_t framing, CoreSink& sink) {
  // SECURITY: a line whose boundaries or bytes are ambiguous never reaches the
  // server, in either mode: what the server would make of it is unknowable.
  unsigned first = 0;
  while (!(framing & (1u << first))) ++first;
  const auto p = static_cast<FrameProblem>(first);
  Command cmd;
  parse_command(line.text, cmd);
  sink.on_command({cmd.verb, cmd.verb_text, cmd.arg, line.offset});
  finding(sink, name_of(p), describe(p), Severity::error, Side::client, &cmd,
          settings_.observe ? FindingAction::logged : FindingAction::rejected, settings_.observe ? 0 : 500,
          line.offset);
  proxy_reply(kFramingReply[first], cmd, line.offset, sink);
  if (!settings_.observe && ++bad_lines_ > settings_.max_bad_lines) {
    finding(sink, "bad-line-flood", "too many invalid command lines", Severity::error, Side::client, &cmd,
            FindingAction::rejected, 421, line.offset);
    proxy_reply(reply_of(EndReason::bad_line_flood), cmd, line.offset, sink);
    closed_ = paused_ = true;
    close(EndReason::bad_line_flood, sink);
  }
}

bool SessionCore::over_rate(std::uint64_t now_us) {
  // A token bucket in millionths of a command: `command_rate` a second
  // flow in, `command_burst` fit.
  if (settings_.command_rate == 0 || settings_.observe) return false;
  const std::uint64_t cap = std::uint64_t{settings_.command_burst} * 1000000;
  if (!rate_started_) {
    rate_started_ = true;
    rate_tokens_ = cap;
  } else if (now_us > rate_at_us_) {
    rate_tokens_ = std::min(cap, rate_tokens_ + (now_us - rate_at_us_) * settings_.command_rate);
  }
  rate_at_us_ = std::max(rate_at_us_, now_us);
  if (rate_tokens_ < 1000000) return true;
  rate_tokens_ -= 1000000;
  return false;
}

void SessionCore::handle_client_line(const Line& line, std::uint64_t now_us, CoreSink& sink) {
  if (settings_.observe && !greeted_) greeted_ = true;  // transcript without a greeting
  if (over_rate(now_us)) {
    Command cmd;
    parse_command(line.text, cmd);
    sink.on_command({cmd.verb, cmd.verb_text, cmd.arg, line.offset});
    finding(sink, "command-rate", "more commands than limits.command_rate and command_burst allow",
            Severity::error, Side::client, &cmd, FindingAction::rejected, 421, line.offset);
    proxy_reply(reply_of(EndReason::command_rate), cmd, line.offset, sink);
    closed_ = paused_ = true;
    close(EndReason::command_rate, sink);
    return;
  }
  const std::uint32_t framing = line.problems & ~bit(FrameProblem::bad_iac);
  if (framing != 0) {
    handle_bad_line(line, framing, sink);
    return;
  }

  Command cmd;
  std::uint32_t line_state = 0;
  if (line.has(FrameProblem::bad_iac)) line_state |= pbit(Predicate::telnet_bad);
  if (parse_command(line.text, cmd) != CommandError::none) {
    line_state |= pbit(Predicate::syntax_bad);
    cmd.verb_text = line.text.substr(0, line.text.find(' '));
  }
  // Typed arguments: a malformed one is a fact the rules can use.
  bool epsv_all = false;
  std::optional<NetAddr> active_addr;
  line_state |= check_argument(cmd, epsv_all, active_addr);

  // Sequence rules first: every one that fires is reported, the first that
  // rejects answers. Then, unless one rejected, the first policy rule that
  // matches decides; an `allow` ends the policy rules, never the checks below.
  const std::uint32_t st = state_ | line_state;
  path_ready_ = false;  // this command's path: resolved when first asked for
  const Rule* rejecting = sequence_rejection(cmd, st);
  const Rule* policy = rejecting ? nullptr : policy_decision(cmd, st);
  const bool moves = cmd.verb == Verb::CWD || cmd.verb == Verb::XCWD || cmd.verb == Verb::CDUP || cmd.verb == Verb::XCUP;
  std::string_view path;  // for the audit record and directory tracking
  bool have_path = false;
  if (policy || moves) {
    if (const auto p = command_path(cmd)) {
      path = *p;
      have_path = true;
    }
  }
  const std::string_view policy_path = policy && have_path ? path : std::string_view{};
  sink.on_command({cmd.verb, cmd.verb_text, cmd.arg, line.offset, policy ? std::string_view(policy->id) : "",
                   policy_path});
  std::int32_t flagged = -1;
  for (std::uint16_t idx : rules_->sequence_for(cmd.verb)) {
    const Rule& r = rules_->rules()[idx];
    if (!r.fires(st)) continue;
    const RuleAction act = r.action(settings_.mode);
    if (act == RuleAction::ignore) continue;
    const bool reject = &r == rejecting;
    if (flagged < 0) flagged = idx;
    finding(sink, r.id, r.description, r.severity, Side::client, &cmd,
            reject ? FindingAction::rejected : FindingAction::logged, reject ? r.reply_code : 0, line.offset);
  }
  if (policy && policy->max_upload_bytes > 0) {
    // An upload cap decides no refusal: the transfer goes ahead, capped.
    if (!settings_.observe && policy->action(settings_.mode) != RuleAction::allow) {
      cap_rule_ = policy;
      cap_path_.assign(policy_path);
      cap_hit_ = false;
      sink.limit_upload(policy->max_upload_bytes, policy->action(settings_.mode) == RuleAction::reject);
    }
    policy = nullptr;
  }
  if (policy && policy->action(settings_.mode) != RuleAction::allow) {
    const bool reject = policy->action(settings_.mode) == RuleAction::reject && !settings_.observe;
    finding(sink, policy->id, policy->description, policy->severity, Side::client, &cmd,
            reject ? FindingAction::rejected : FindingAction::logged, reject ? policy->reply_code : 0, line.offset,
            policy_path);
    if (reject) rejecting = policy;
  }
  if (rejecting) {
    proxy_reply(rejecting->reply_line, cmd, line.offset, sink);
    complete(cmd.verb, epsv_all, rejecting->reply_code, false);
    return;
  }
  const bool bounce = active_addr && settings_.check_active_peer &&
                      !active_target_allowed(*active_addr, peers_.client, settings_.allow_foreign_active);
  if (settings_.observe) {
    // The linter only mirrors: built-in checks below are reported, nothing is answered.
    if (bounce)
      finding(sink, "port-bounce", "data address is not the client's own or uses a port below 1024",
              Severity::error, Side::client, &cmd, FindingAction::logged, 0, line.offset);
    pending_.push({cmd.verb, cmd.verb, false, false, epsv_all, now_us, false, flagged});
    if (have_path && moves) cwd_target_.assign(path);
    if (is_transfer(cmd.verb)) transfer_path_.assign(cmd.arg);
    if (cmd.verb == Verb::USER) {
      state_ |= pbit(Predicate::user_sent);
      set_user(cmd.arg);
    }
    update_pause();
    return;
  }

  // Built-in behaviour the proxy needs to stay in control of the session.
  if (handle_tls_command(cmd, line.offset, sink)) return;
  if (cmd.verb == Verb::PORT || cmd.verb == Verb::EPRT || cmd.verb == Verb::LPRT) {
    if (!active_addr) {
      finding(sink, "active-syntax", "malformed data address", Severity::error, Side::client, &cmd,
              FindingAction::rejected, 501, line.offset);
      proxy_reply(kBadArgReply, cmd, line.offset, sink);
      complete(cmd.verb, false, 501, false);
      return;
    }
    if (bounce) {
      finding(sink, "port-bounce", "data address is not the client's own or uses a port below 1024",
              Severity::error, Side::client, &cmd, FindingAction::rejected, 504, line.offset);
      proxy_reply(kBounceReply, cmd, line.offset, sink);
      complete(cmd.verb, false, 504, false);
      return;
    }
    setup_active(cmd, *active_addr, epsv_all, line.offset, now_us, sink);
    return;
  }
  std::string_view urgent;
  if (cmd.verb == Verb::ABOR) {
    if (transfer_running()) {
      client_aborted_ = true;
      sink.abort_data("abor");
    }
    if (line.telnet & (telnet_ip | telnet_dm)) urgent = "\xff\xf4\xff\xf2";
  }
  const std::string_view to_send = normalized(line.text, urgent);
  if (have_path && moves) cwd_target_.assign(path);
  if (is_transfer(cmd.verb)) transfer_path_.assign(cmd.arg);
  if (cmd.verb == Verb::USER) {
    state_ |= pbit(Predicate::user_sent);
    set_user(cmd.arg);
  }
  // A new data setup: a 125 from now on needs a connection made for it. (Not
  // at its reply: a server may connect for PORT before its 200 is read.)
  if (opens_data(cmd.verb)) server_leg_seen_ = false;
  pending_.push({cmd.verb, cmd.verb, false, false, epsv_all, now_us, false, flagged});
  update_pause();
  sink.send_to_server(to_send);
}

}  // namespace ftpw
