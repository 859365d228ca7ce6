// One client command line -> verb + argument, and typed parsers for the
// arguments that have structure. No allocation; views point into the line.
#pragma once
#include <cstdint>
#include <string_view>

#include "netaddr.h"
#include "problems.h"
#include "verbs.h"

namespace ftpw {

struct Command {
  Verb verb = Verb::unknown;
  std::string_view verb_text;  // as sent (case preserved)
  std::string_view arg;        // after the single separating space; may be empty
  bool has_arg = false;
};

// A command known by its verb alone (the one a reply or a finding is about).
inline Command command_of(Verb v) {
  Command c;
  c.verb = v;
  c.verb_text = name_of(v);
  return c;
}

enum class CommandError : std::uint8_t { none, empty, bad_verb };

// RFC 959 §5.3: <verb> [SP <argument>]. A verb is 1-8 ASCII letters (extensions
// such as XMKD or CLNT included); anything else is bad_verb. Unknown but
// well-formed verbs parse as Verb::unknown with their text.
CommandError parse_command(std::string_view line, Command& out);

// ---- typed arguments ----
template <class T>
struct Parsed {
  T value{};
  ArgError error = ArgError::none;
  bool ok() const { return error == ArgError::none; }
};

// PORT h1,h2,h3,h4,p1,p2 (RFC 959 §4.1.2)
Parsed<NetAddr> parse_port_arg(std::string_view arg);
// LPRT af,hal,h1..,pal,p1.. (RFC 1639 §2): af 4 with hal 4, af 6 with hal 16, pal 2
Parsed<NetAddr> parse_lprt_arg(std::string_view arg);
// EPRT <d>af<d>addr<d>port<d> (RFC 2428 §2): af 1 = IPv4, 2 = IPv6
Parsed<NetAddr> parse_eprt_arg(std::string_view arg);
// Parses a data-setup argument of PORT, LPRT or EPRT by verb.
Parsed<NetAddr> parse_active_arg(Verb v, std::string_view arg);

// REST <decimal offset> (RFC 3659 §5: STREAM mode byte offset)
Parsed<std::uint64_t> parse_rest_arg(std::string_view arg);

// TYPE A|E [N|T|C], I, L <byte size> (RFC 959 §4.1.2)
struct TypeArg {
  char code = 'A';
  char format = 'N';         // for A and E
  std::uint8_t byte_size = 0;  // for L
};
Parsed<TypeArg> parse_type_arg(std::string_view arg);
Parsed<char> parse_mode_arg(std::string_view arg);  // S B C
Parsed<char> parse_stru_arg(std::string_view arg);  // F R P

// EPSV [ALL | 1 | 2] (RFC 2428 §3)
struct EpsvArg {
  bool all = false;
  std::uint8_t af = 0;  // 0 = unspecified
};
Parsed<EpsvArg> parse_epsv_arg(std::string_view arg);

// AUTH TLS|SSL|TLS-C|TLS-P (RFC 4217 §4), PBSZ <decimal> (RFC 2228), PROT C|S|E|P
enum class AuthMech : std::uint8_t { tls, ssl, tls_c, tls_p };
Parsed<AuthMech> parse_auth_arg(std::string_view arg);
Parsed<std::uint32_t> parse_pbsz_arg(std::string_view arg);
Parsed<char> parse_prot_arg(std::string_view arg);

bool iequals(std::string_view a, std::string_view b);

}  // namespace ftpw
