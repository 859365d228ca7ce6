#include "privileges.h"

#include <grp.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <pwd.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ftpw {

bool drop_privileges(const std::string& user, const std::string& group, bool keep_net_admin, std::string& error) {
  const passwd* pw = getpwnam(user.c_str());
  if (!pw) {
    error = "no such user: '" + user + "'";
    return false;
  }
  const uid_t uid = pw->pw_uid;
  gid_t gid = pw->pw_gid;
  if (!group.empty()) {
    const struct group* gr = getgrnam(group.c_str());
    if (!gr) {
      error = "no such group: '" + group + "'";
      return false;
    }
    gid = gr->gr_gid;
  }
  if (geteuid() != 0) {
    if (geteuid() == uid && getegid() == gid) return true;
    error = "switching to " + user + " needs root (running as uid " + std::to_string(geteuid()) + ")";
    return false;
  }
  auto fail = [&](const char* what) {
    error = std::string(what) + ": " + std::strerror(errno);
    return false;
  };
  // Groups first: once the user is changed they can no longer be.
  if (setgroups(0, nullptr) != 0) return fail("setgroups");
  if (setresgid(gid, gid, gid) != 0) return fail("setresgid");
  // Capabilities survive the user change only when asked to, and then all
  // but CAP_NET_ADMIN are dropped right after it.
  if (keep_net_admin && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) return fail("prctl(PR_SET_KEEPCAPS)");
  if (setresuid(uid, uid, uid) != 0) return fail("setresuid");
  if (keep_net_admin) {
    __user_cap_header_struct head{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    data[CAP_TO_INDEX(CAP_NET_ADMIN)].permitted = data[CAP_TO_INDEX(CAP_NET_ADMIN)].effective =
        CAP_TO_MASK(CAP_NET_ADMIN);
    if (syscall(SYS_capset, &head, data) != 0) return fail("capset");
    prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
  }
  // No way back.
  if (uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
    error = "root could be regained after the switch";
    return false;
  }
  return true;
}

}  // namespace ftpw
