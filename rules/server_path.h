// Paths on the server as policy rules see them: a command's argument resolved
// against the session's working directory to one absolute, normalised path
// ('.', '..' never above '/', '//' and a trailing '/' folded), and globs on
// such paths: `*` within one segment, `**` across segments, `~/` from the
// login directory. Bytes that are not UTF-8 match byte for byte.
#pragma once
#include <optional>
#include <string>
#include <string_view>

#include "verbs.h"

namespace ftpw {

// `arg` resolved against `cwd` (itself absolute and normalised), into `out`
// (which may not alias either; no allocation once `out` has grown).
void resolve_path(std::string_view cwd, std::string_view arg, std::string& out);
std::string resolve_path(std::string_view cwd, std::string_view arg);
// The directory name in a 257 reply's text: the first quoted string, with
// "" standing for one quote. nullopt when there is none.
std::optional<std::string> parse_257_path(std::string_view text);
// `glob` against an absolute normalised path; `home` replaces a leading `~`.
bool path_glob_match(std::string_view glob, std::string_view path, std::string_view home);
// The part of a command's argument that names a path ("" for the working
// directory: LIST with options only, say), or nullopt when the command acts
// on no path.
std::optional<std::string_view> path_argument(Verb v, std::string_view arg);

}  // namespace ftpw
