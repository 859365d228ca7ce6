#include "linter.h"

#include <algorithm>
#include <map>

#include "audit_schema.h"
#include "session_core.h"

namespace ftpw {
namespace {

class LintSink : public CoreSink {
 public:
  std::vector<std::pair<std::uint64_t, std::size_t>> client_lines, server_lines;  // offset -> file line
  std::vector<LintFinding>* out = nullptr;

  static std::size_t map(const std::vector<std::pair<std::uint64_t, std::size_t>>& v, std::uint64_t off) {
    auto it = std::upper_bound(v.begin(), v.end(), std::make_pair(off, SIZE_MAX));
    if (it == v.begin()) return v.empty() ? 0 : v.front().second;
    return std::prev(it)->second;
  }
  void on_finding(const Finding& f) override {
    LintFinding lf;
    lf.line = map(f.side == Side::client ? client_lines : server_lines, f.offset);
    lf.rule = std::string(f.rule);
    lf.message = std::string(f.message);
    if (!f.verb_text.empty()) lf.message += " (" + std::string(f.verb_text) + ")";
    lf.severity = f.severity;
    lf.verb = std::string(f.verb != Verb::unknown ? name_of(f.verb) : f.verb_text);
    lf.path = std::string(f.path);
    out->push_back(std::move(lf));
  }
};

struct Stream {
  std::unique_ptr<SessionCore> core;
  LintSink sink;
  std::uint64_t client_off = 0, server_off = 0;
};

std::unique_ptr<SessionCore> make_core(const std::shared_ptr<const RuleSet>& rules, const NetAddr& client) {
  CoreSettings s;
  s.mode = Mode::audit;
  s.observe = true;
  return std::make_unique<SessionCore>(s, rules, SessionPeers{client, {}});
}

void feed(Stream& st, bool client, std::string_view text, std::size_t line_no) {
  std::string bytes(text);
  bytes += "\r\n";
  if (client) {
    st.sink.client_lines.emplace_back(st.client_off, line_no);
    st.client_off += bytes.size();
    st.core->on_client_bytes(bytes, 0, st.sink);
  } else {
    st.sink.server_lines.emplace_back(st.server_off, line_no);
    st.server_off += bytes.size();
    st.core->on_server_bytes(bytes, 0, st.sink);
  }
}

std::string_view strip_cr(std::string_view l) {
  if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
  return l;
}

template <class F>
void for_each_line(std::string_view content, F f) {
  std::size_t no = 0;
  while (!content.empty()) {
    ++no;
    auto nl = content.find('\n');
    f(strip_cr(content.substr(0, nl)), no);
    if (nl == std::string_view::npos) break;
    content.remove_prefix(nl + 1);
  }
}

const JsonField* field(const std::vector<JsonField>& fs, std::string_view k) {
  for (const auto& f : fs)
    if (f.key == k) return &f;
  return nullptr;
}

}  // namespace

bool parse_flat_json(std::string_view s, std::vector<JsonField>& out) {
  out.clear();
  std::size_t i = 0;
  auto ws = [&] {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
  };
  auto str = [&](std::string& dst) -> bool {
    if (i >= s.size() || s[i] != '"') return false;
    ++i;
    while (i < s.size() && s[i] != '"') {
      char c = s[i++];
      if (c != '\\') {
        dst.push_back(c);
        continue;
      }
      if (i >= s.size()) return false;
      c = s[i++];
      switch (c) {
        case 'n': dst.push_back('\n'); break;
        case 'r': dst.push_back('\r'); break;
        case 't': dst.push_back('\t'); break;
        case 'b': dst.push_back('\b'); break;
        case 'f': dst.push_back('\f'); break;
        case 'u': {
          if (i + 4 > s.size()) return false;
          unsigned v = 0;
          for (int k = 0; k < 4; ++k) {
            const char h = s[i++];
            v <<= 4;
            if (h >= '0' && h <= '9') v |= static_cast<unsigned>(h - '0');
            else if (h >= 'a' && h <= 'f') v |= static_cast<unsigned>(h - 'a' + 10);
            else if (h >= 'A' && h <= 'F') v |= static_cast<unsigned>(h - 'A' + 10);
            else return false;
          }
          // Our writer escapes only control bytes and raw non-UTF-8 bytes as \u00XX.
          if (v < 0x100) dst.push_back(static_cast<char>(v));
          else if (v < 0x800) {
            dst.push_back(static_cast<char>(0xC0 | (v >> 6)));
            dst.push_back(static_cast<char>(0x80 | (v & 0x3F)));
          } else {
            dst.push_back(static_cast<char>(0xE0 | (v >> 12)));
            dst.push_back(static_cast<char>(0x80 | ((v >> 6) & 0x3F)));
            dst.push_back(static_cast<char>(0x80 | (v & 0x3F)));
          }
          break;
        }
        default: dst.push_back(c); break;
      }
    }
    if (i >= s.size()) return false;
    ++i;
    return true;
  };
  ws();
  if (i >= s.size() || s[i] != '{') return false;
  ++i;
  ws();
  if (i < s.size() && s[i] == '}') return true;
  while (i < s.size()) {
    JsonField f;
    ws();
    if (!str(f.key)) return false;
    ws();
    if (i >= s.size() || s[i] != ':') return false;
    ++i;
    ws();
    if (i < s.size() && s[i] == '"') {
      f.is_string = true;
      if (!str(f.str)) return false;
    } else {
      const std::size_t b = i;
      while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ' ') ++i;
      f.str = std::string(s.substr(b, i - b));
      if (f.str.empty() || f.str.front() == '{' || f.str.front() == '[') return false;
    }
    out.push_back(std::move(f));
    ws();
    if (i < s.size() && s[i] == ',') {
      ++i;
      continue;
    }
    if (i < s.size() && s[i] == '}') return true;
    return false;
  }
  return false;
}

LintResult lint(std::string_view content, std::shared_ptr<const RuleSet> rules) {
  LintResult res;
  if (content.find('\0') != std::string_view::npos) {
    res.usable = false;
    res.reason = "binary data (NUL bytes)";
    return res;
  }
  // Detect the format from the first meaningful line.
  bool json = false;
  {
    std::string_view c = content;
    while (!c.empty()) {
      auto nl = c.find('\n');
      std::string_view l = strip_cr(c.substr(0, nl));
      auto first = l.find_first_not_of(" \t");
      if (first != std::string_view::npos && l[first] != '#') {
        json = l[first] == '{';
        break;
      }
      if (nl == std::string_view::npos) break;
      c.remove_prefix(nl + 1);
    }
  }
  std::map<std::string, Stream> sessions;
  // A session's client address, when the input records it (the audit log's
  // `client`): policy `clients` rules and the bounce check use it.
  auto stream = [&](const std::string& id, std::string_view client = {}) -> Stream& {
    auto [it, inserted] = sessions.try_emplace(id);
    if (inserted) {
      it->second.core = make_core(rules, NetAddr::parse_host_port(client).value_or(NetAddr{}));
      it->second.sink.out = &res.findings;
    }
    return it->second;
  };
  if (json) {
    std::vector<JsonField> fs;
    for_each_line(content, [&](std::string_view l, std::size_t no) {
      if (l.find_first_not_of(" \t") == std::string_view::npos) return;
      if (!parse_flat_json(l, fs)) {
        res.findings.push_back({no, "lint-unreadable-line", "not a JSON object", Severity::warning, {}, {}});
        return;
      }
      const JsonField* ev = field(fs, audit::f::event);
      const JsonField* sid = field(fs, audit::f::session);
      const JsonField* client = field(fs, audit::f::client);
      if (!ev) return;
      Stream& st = stream(sid ? sid->str : "", client ? std::string_view(client->str) : std::string_view{});
      if (ev->str == audit::ev::command) {
        const JsonField* verb = field(fs, audit::f::verb);
        const JsonField* arg = field(fs, audit::f::arg);
        if (!verb) return;
        std::string line = verb->str;
        if (arg && !arg->str.empty()) {
          line += ' ';
          line += arg->str;
        }
        ++res.messages;
        feed(st, true, line, no);
      } else if (ev->str == audit::ev::reply) {
        const JsonField* text = field(fs, audit::f::text);
        if (!text) return;
        ++res.messages;
        std::string_view t = text->str;
        while (true) {
          auto nl = t.find('\n');
          feed(st, false, t.substr(0, nl), no);
          if (nl == std::string_view::npos) break;
          t.remove_prefix(nl + 1);
        }
      }
    });
  } else {
    // "# session" starts the next session of a transcript that holds several.
    int session = 0;
    Stream* st = &stream("0");
    for_each_line(content, [&](std::string_view l, std::size_t no) {
      if (l.substr(0, 9) == "# session") {
        st = &stream(std::to_string(++session));
        return;
      }
      if (l.empty() || l.front() == '#' || l.find_first_not_of(" \t") == std::string_view::npos) return;
      if (l.size() >= 2 && (l[0] == 'C' || l[0] == 'S') && l[1] == ':') {
        std::string_view text = l.substr(2);
        if (!text.empty() && text.front() == ' ') text.remove_prefix(1);
        ++res.messages;
        feed(*st, l[0] == 'C', text, no);
      } else {
        res.findings.push_back({no, "lint-unrecognised-line", "neither 'C: ' nor 'S: ' nor a comment", Severity::warning, {}, {}});
      }
    });
  }
  for (auto& [id, st] : sessions) st.core->finish(0, st.sink);
  if (res.messages == 0) {
    res.usable = false;
    res.reason = "no recognisable lines (expected 'C: '/'S: ' transcript lines or ftpwarden JSON Lines)";
    res.findings.clear();
    return res;
  }
  std::stable_sort(res.findings.begin(), res.findings.end(),
                   [](const LintFinding& a, const LintFinding& b) { return a.line < b.line; });
  return res;
}

}  // namespace ftpw
