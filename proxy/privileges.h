// Dropping root: once every socket is bound and every log is open, the
// process becomes [process] user (and group), supplementary groups cleared,
// real, effective and saved IDs all changed, so there is no way back.
#pragma once
#include <string>

namespace ftpw {

// `group` empty: the user's primary group. Not root: succeeds only if the
// process already runs as them. False and `error` set on any failure (the
// caller must not go on).
// `keep_net_admin`: CAP_NET_ADMIN stays permitted and effective (and only
// it), for IP_TRANSPARENT on the passive listeners of TPROXY mode.
bool drop_privileges(const std::string& user, const std::string& group, bool keep_net_admin, std::string& error);

}  // namespace ftpw
