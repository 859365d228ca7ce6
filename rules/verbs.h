// The verb table (verbs.def) as an enum with flags and the reply codes each
// verb allows. Lookup is case-insensitive and allocation-free.
#pragma once
#include <array>
#include <cstdint>
#include <string_view>

namespace ftpw {

enum class Verb : std::uint8_t {
  unknown = 0,
#define X(name, flags, codes) name,
#include "verbs.def"
#undef X
  count_
};

constexpr std::size_t kVerbCount = static_cast<std::size_t>(Verb::count_);

enum VerbFlag : std::uint8_t {
  vf_transfer = 1,       // T: opens a data transfer
  vf_passive = 2,        // P: passive data setup (PASV, EPSV, LPSV)
  vf_active = 4,         // A: active data setup (PORT, EPRT, LPRT)
  vf_before_login = 8,   // L: usable before login per RFC 959 §5.4
};

// Codes 100..599 as a bitset.
struct CodeSet {
  std::array<std::uint64_t, 8> bits{};
  constexpr bool has(int code) const {
    if (code < 100 || code > 599) return false;
    const int i = code - 100;
    return (bits[static_cast<std::size_t>(i / 64)] >> (i % 64)) & 1u;
  }
  constexpr void add(int code) {
    if (code < 100 || code > 599) return;
    const int i = code - 100;
    bits[static_cast<std::size_t>(i / 64)] |= std::uint64_t{1} << (i % 64);
  }
};

// Allowed for every command: service closing, syntax errors, not implemented,
// bad sequence, parameter not implemented, not logged in.
inline constexpr int kUniversalReplies[] = {421, 500, 501, 502, 503, 504, 530};

struct VerbInfo {
  std::string_view name;
  std::uint8_t flags;
  CodeSet allowed;  // includes kUniversalReplies
};

const VerbInfo& info(Verb v);
inline std::string_view name_of(Verb v) { return info(v).name; }
inline bool has_flag(Verb v, VerbFlag f) { return (info(v).flags & f) != 0; }
inline bool is_transfer(Verb v) { return has_flag(v, vf_transfer); }
// A transfer whose data flows from the server to the client (RETR, listings);
// STOR, STOU and APPE flow the other way.
inline bool is_download(Verb v) { return is_transfer(v) && v != Verb::STOR && v != Verb::STOU && v != Verb::APPE; }
inline bool is_data_setup(Verb v) { return has_flag(v, vf_passive) || has_flag(v, vf_active); }

// Case-insensitive; Verb::unknown for anything not in the table.
Verb lookup_verb(std::string_view text);

}  // namespace ftpw
