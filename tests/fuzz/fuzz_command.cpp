// Command line and every typed argument parser.
#include <cstdint>
#include <string_view>

#include "command.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view s(reinterpret_cast<const char*>(data), size);
  ftpw::Command c;
  ftpw::parse_command(s, c);
  (void)ftpw::parse_port_arg(s);
  (void)ftpw::parse_lprt_arg(s);
  (void)ftpw::parse_eprt_arg(s);
  (void)ftpw::parse_rest_arg(s);
  (void)ftpw::parse_type_arg(s);
  (void)ftpw::parse_mode_arg(s);
  (void)ftpw::parse_stru_arg(s);
  (void)ftpw::parse_epsv_arg(s);
  (void)ftpw::parse_auth_arg(s);
  (void)ftpw::parse_pbsz_arg(s);
  (void)ftpw::parse_prot_arg(s);
  (void)ftpw::NetAddr::parse_host_port(s);
  return 0;
}
