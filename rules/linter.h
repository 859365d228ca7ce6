// Offline linter: runs recorded sessions through the same SessionCore the proxy
// uses and reports what the rules and the reply tables find.
//
// Input formats (detected per file):
//  - transcript: one message line per file line, "C: " before what the client
//    sent, "S: " before what the server sent, a multi-line reply as consecutive
//    "S: " lines; blank lines and lines starting with '#' are ignored, but
//    for "# session", which starts the next of several sessions in one file;
//  - ftpwarden's own JSON Lines audit log (command / reply events, several
//    sessions interleaved).
// No I/O: the caller reads the file and prints the findings.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "rule_set.h"

namespace ftpw {

struct LintFinding {
  std::size_t line = 0;  // 1-based line of the input that triggered it
  std::string rule;
  std::string message;
  Severity severity = Severity::error;
  std::string verb;  // the command it is about, if any
  std::string path;  // a policy rule's resolved path, if any
};

struct LintResult {
  bool usable = true;
  std::string reason;  // why the input is unusable
  std::vector<LintFinding> findings;
  std::size_t messages = 0;  // client + server messages seen
  bool has_errors() const {
    for (const auto& f : findings)
      if (f.severity == Severity::error) return true;
    return false;
  }
};

LintResult lint(std::string_view content, std::shared_ptr<const RuleSet> rules);

// Minimal JSON object reader for flat objects (our audit log). Exposed for tests.
struct JsonField {
  std::string key;
  std::string str;        // string value (unescaped) or the literal text of a number/bool
  bool is_string = false;
};
bool parse_flat_json(std::string_view line, std::vector<JsonField>& out);

}  // namespace ftpw
