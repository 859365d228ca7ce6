#include "command.h"

#include <gtest/gtest.h>

using namespace ftpw;

TEST(Command, VerbAndArg) {
  Command c;
  ASSERT_EQ(parse_command("retr some file.txt", c), CommandError::none);
  EXPECT_EQ(c.verb, Verb::RETR);
  EXPECT_EQ(c.verb_text, "retr");
  EXPECT_EQ(c.arg, "some file.txt");
  EXPECT_TRUE(c.has_arg);
}

TEST(Command, NoArg) {
  Command c;
  ASSERT_EQ(parse_command("PASV", c), CommandError::none);
  EXPECT_EQ(c.verb, Verb::PASV);
  EXPECT_FALSE(c.has_arg);
}

TEST(Command, UnknownWellFormedVerb) {
  Command c;
  ASSERT_EQ(parse_command("XYZZ curl", c), CommandError::none);
  EXPECT_EQ(c.verb, Verb::unknown);
  EXPECT_EQ(c.verb_text, "XYZZ");
}

TEST(Command, Malformed) {
  Command c;
  EXPECT_EQ(parse_command("", c), CommandError::empty);
  EXPECT_EQ(parse_command(" USER x", c), CommandError::bad_verb);
  EXPECT_EQ(parse_command("US3R x", c), CommandError::bad_verb);
  EXPECT_EQ(parse_command("ABCDEFGHI", c), CommandError::bad_verb);
}

TEST(Command, AllTableVerbsLookUp) {
  for (std::size_t i = 1; i < kVerbCount; ++i) {
    auto v = static_cast<Verb>(i);
    EXPECT_EQ(lookup_verb(name_of(v)), v) << name_of(v);
  }
  EXPECT_EQ(lookup_verb("XyZw"), Verb::unknown);
  EXPECT_EQ(lookup_verb("nlst"), Verb::NLST);
}

TEST(Args, Port) {
  auto p = parse_port_arg("127,0,0,1,4,1");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.value.to_string(), "127.0.0.1:1025");
  EXPECT_EQ(parse_port_arg("255,255,255,255,255,255").value.port, 65535);
  EXPECT_EQ(parse_port_arg("").error, ArgError::missing);
  EXPECT_EQ(parse_port_arg("1,2,3,4,5").error, ArgError::syntax);
  EXPECT_EQ(parse_port_arg("1,2,3,4,5,6,7").error, ArgError::syntax);
  EXPECT_EQ(parse_port_arg("256,0,0,1,4,1").error, ArgError::out_of_range);
  EXPECT_EQ(parse_port_arg("1,2,3,4,5,0006").error, ArgError::syntax);
  EXPECT_EQ(parse_port_arg("a,2,3,4,5,6").error, ArgError::syntax);
  EXPECT_EQ(parse_port_arg("-1,2,3,4,5,6").error, ArgError::syntax);
}

TEST(Args, Eprt) {
  auto e = parse_eprt_arg("|1|132.235.1.2|6275|");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e.value.to_string(), "132.235.1.2:6275");
  auto e6 = parse_eprt_arg("|2|1080::8:800:200C:417A|5282|");
  ASSERT_TRUE(e6.ok());
  EXPECT_TRUE(e6.value.is_v6());
  EXPECT_EQ(e6.value.port, 5282);
  EXPECT_TRUE(parse_eprt_arg("!1!10.0.0.1!21!").ok());
  EXPECT_EQ(parse_eprt_arg("|3|1.2.3.4|5|").error, ArgError::unsupported);
  EXPECT_EQ(parse_eprt_arg("|1|::1|5|").error, ArgError::syntax);
  EXPECT_EQ(parse_eprt_arg("|1|1.2.3.4|70000|").error, ArgError::out_of_range);
  EXPECT_EQ(parse_eprt_arg("|1|1.2.3.4|5").error, ArgError::syntax);
  EXPECT_EQ(parse_eprt_arg("|1|1.2.3.4|5|x").error, ArgError::syntax);
  EXPECT_EQ(parse_eprt_arg("").error, ArgError::missing);
}

TEST(Args, Lprt) {
  auto l = parse_lprt_arg("4,4,127,0,0,1,2,4,1");
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l.value.to_string(), "127.0.0.1:1025");
  auto l6 = parse_lprt_arg("6,16,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1,2,0,21");
  ASSERT_TRUE(l6.ok());
  EXPECT_EQ(l6.value.to_string(), "[::1]:21");
  EXPECT_EQ(parse_lprt_arg("4,16,1,2,3,4,2,0,21").error, ArgError::unsupported);
  EXPECT_EQ(parse_lprt_arg("4,4,1,2,3,4,3,0,0,21").error, ArgError::unsupported);
  EXPECT_EQ(parse_lprt_arg("4,4,1,2,3").error, ArgError::syntax);
}

TEST(Args, Rest) {
  EXPECT_EQ(parse_rest_arg("0").value, 0u);
  EXPECT_EQ(parse_rest_arg("18446744073709551615").value, UINT64_MAX);
  EXPECT_EQ(parse_rest_arg("18446744073709551616").error, ArgError::out_of_range);
  EXPECT_EQ(parse_rest_arg("12a").error, ArgError::syntax);
  EXPECT_EQ(parse_rest_arg("").error, ArgError::missing);
}

TEST(Args, TypeModeStru) {
  EXPECT_EQ(parse_type_arg("I").value.code, 'I');
  EXPECT_EQ(parse_type_arg("a n").value.format, 'N');
  EXPECT_EQ(parse_type_arg("A T").value.format, 'T');
  EXPECT_EQ(parse_type_arg("L 8").value.byte_size, 8);
  EXPECT_EQ(parse_type_arg("L 0").error, ArgError::out_of_range);
  EXPECT_EQ(parse_type_arg("X").error, ArgError::unsupported);
  EXPECT_EQ(parse_type_arg("I x").error, ArgError::syntax);
  EXPECT_EQ(parse_type_arg("").error, ArgError::missing);
  EXPECT_EQ(parse_mode_arg("s").value, 'S');
  EXPECT_EQ(parse_mode_arg("Z").error, ArgError::unsupported);
  EXPECT_EQ(parse_stru_arg("R").value, 'R');
  EXPECT_EQ(parse_stru_arg("FF").error, ArgError::syntax);
}

TEST(Args, EpsvAuthPbszProt) {
  EXPECT_TRUE(parse_epsv_arg("ALL").value.all);
  EXPECT_TRUE(parse_epsv_arg("all").value.all);
  EXPECT_EQ(parse_epsv_arg("2").value.af, 2);
  EXPECT_TRUE(parse_epsv_arg("").ok());
  EXPECT_EQ(parse_epsv_arg("3").error, ArgError::unsupported);
  EXPECT_EQ(parse_epsv_arg("x").error, ArgError::syntax);
  EXPECT_EQ(parse_auth_arg("tls").value, AuthMech::tls);
  EXPECT_EQ(parse_auth_arg("TLS-P").value, AuthMech::tls_p);
  EXPECT_EQ(parse_auth_arg("GSSAPI").error, ArgError::unsupported);
  EXPECT_EQ(parse_pbsz_arg("0").value, 0u);
  EXPECT_EQ(parse_pbsz_arg("99999999999").error, ArgError::out_of_range);
  EXPECT_EQ(parse_prot_arg("P").value, 'P');
  EXPECT_EQ(parse_prot_arg("Q").error, ArgError::unsupported);
}

TEST(NetAddr, MappedEqualsV4) {
  auto a = NetAddr::parse_host("::ffff:127.0.0.1");
  auto b = NetAddr::parse_host("127.0.0.1");
  ASSERT_TRUE(a && b);
  EXPECT_TRUE(a->same_host(*b));
  EXPECT_FALSE(NetAddr::parse_host("127.0.0.2")->same_host(*b));
  EXPECT_EQ(NetAddr::parse_host_port("[::1]:2121")->to_string(), "[::1]:2121");
  EXPECT_FALSE(NetAddr::parse_host_port("127.0.0.1:99999"));
  EXPECT_FALSE(NetAddr::parse_host_port("localhost:21"));
}
