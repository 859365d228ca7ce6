#include "verbs.h"

namespace ftpw {
namespace {

consteval CodeSet parse_codes(const char* s) {
  CodeSet set;
  int v = 0, digits = 0;
  for (;; ++s) {
    const char c = *s;
    if (c >= '0' && c <= '9') {
      v = v * 10 + (c - '0');
      ++digits;
    } else {
      if (digits == 3) set.add(v);
      v = 0;
      digits = 0;
      if (c == 0) break;
    }
  }
  for (int code : kUniversalReplies) set.add(code);
  return set;
}

consteval std::uint8_t parse_flags(const char* s) {
  std::uint8_t f = 0;
  for (; *s; ++s) {
    if (*s == 'T') f |= vf_transfer;
    if (*s == 'P') f |= vf_passive;
    if (*s == 'A') f |= vf_active;
    if (*s == 'L') f |= vf_before_login;
  }
  return f;
}

constexpr VerbInfo kTable[] = {
    {"", 0, parse_codes("")},
#define X(name, flags, codes) {#name, parse_flags(flags), parse_codes(codes)},
#include "verbs.def"
#undef X
};
static_assert(sizeof(kTable) / sizeof(kTable[0]) == kVerbCount);

constexpr std::uint32_t pack_upper(std::string_view s) {
  std::uint32_t k = 0;
  for (char c : s) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    k = (k << 8) | static_cast<unsigned char>(c);
  }
  return k;
}

struct Keys {
  std::array<std::uint32_t, kVerbCount> key{};
};
constexpr Keys make_keys() {
  Keys k;
  for (std::size_t i = 1; i < kVerbCount; ++i) k.key[i] = pack_upper(kTable[i].name);
  return k;
}
constexpr Keys kKeys = make_keys();

}  // namespace

const VerbInfo& info(Verb v) {
  const auto i = static_cast<std::size_t>(v);
  return kTable[i < kVerbCount ? i : 0];
}

Verb lookup_verb(std::string_view text) {
  if (text.size() < 3 || text.size() > 4) return Verb::unknown;
  for (char c : text)
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))) return Verb::unknown;
  const std::uint32_t k = pack_upper(text);
  for (std::size_t i = 1; i < kVerbCount; ++i)
    if (kKeys.key[i] == k) return static_cast<Verb>(i);
  return Verb::unknown;
}

}  // namespace ftpw
