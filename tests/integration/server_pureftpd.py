"""Pure-FTPd 1.0 (Debian's pure-ftpd, unpacked under /opt/ftpsrv/pure-ftpd)
as a test upstream: standalone in the foreground, virtual users from its own
PureDB file (no PAM, no /etc/shadow), the sessions running as `nobody`.

Pure-FTPd writes the commands it receives only to syslog (`-d -d`), so it
runs in a private mount namespace whose /dev/log is a datagram socket this
module reads into the server's log file; the rest of /dev is bound back
from the real one."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading
from pathlib import Path

from ftp_server import NOBODY, FtpServer, LogEntry, in_private_mounts, sha512_crypt


def find_pureftpd() -> str | None:
    for c in (os.environ.get("PUREFTPD"), shutil.which("pure-ftpd"), "/opt/ftpsrv/pure-ftpd/usr/sbin/pure-ftpd"):
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def find_pure_pw(binary: str) -> str | None:
    for c in (shutil.which("pure-pw"), str(Path(binary).parent.parent / "bin" / "pure-pw")):
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


# In its namespace: the real /dev under <base>/realdev, a tmpfs over /dev with
# the devices Pure-FTPd opens bound back in, /dev/log pointing at our socket.
DEV_SETUP = """\
mkdir -p {base}/realdev
mount --bind /dev {base}/realdev
mount -t tmpfs tmpfs /dev
for n in null zero urandom random; do : > /dev/$n; mount --bind {base}/realdev/$n /dev/$n; done
ln -s {base}/log.sock /dev/log"""


class PureftpdServer(FtpServer):
    kind = "pure-ftpd"
    logs_password = False  # "Command [pass] [<*>]"
    uid = NOBODY

    # <95>Nov 28 19:09:29 pure-ftpd: (?@127.0.0.1) [DEBUG] Command [retr] [a.txt]
    _CMD = re.compile(r"pure-ftpd: \(([^)]*)\) \[DEBUG\] Command \[([^\]]*)\] \[(.*)\]$")
    _REPLY = re.compile(r"pure-ftpd: \(([^)]*)\) \[DEBUG\] (\d{3}[ -].*)$")
    _NEW = re.compile(r"pure-ftpd: \(([^)]*)\) \[INFO\] New connection from")

    def __init__(self, user: str, password: str, binary: str, base: Path | None = None):
        super().__init__(user, password, base)
        self.binary = binary
        self.sock_path = self.base / "log.sock"
        self._sock: socket.socket | None = None

    def _read_syslog(self, sock: socket.socket) -> None:
        with open(self.log, "ab", buffering=0) as f:
            while True:
                try:
                    d = sock.recv(65536)
                except OSError:
                    return
                f.write(d.rstrip(b"\n") + b"\n")

    def start(self, tries: int = 5) -> "PureftpdServer":
        pure_pw = find_pure_pw(self.binary)
        if pure_pw is None:
            raise RuntimeError("pure-pw not found beside pure-ftpd")
        passwd, pdb = self.base / "pureftpd.passwd", self.base / "pureftpd.pdb"
        # user:hash:uid:gid:gecos:home/./:(quota and limit fields, empty)
        passwd.write_text(f"{self.user}:{sha512_crypt(self.password)}:{NOBODY}:{NOBODY}::{self.root}/./"
                          "::::::::::::\n")
        passwd.chmod(0o600)
        subprocess.run([pure_pw, "mkdb", str(pdb), "-f", str(passwd)], check=True, capture_output=True)
        self.own_tree(self.uid)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(self.sock_path))
        os.chmod(self.sock_path, 0o666)
        threading.Thread(target=self._read_syslog, args=(self._sock,), daemon=True).start()

        def launch():
            self._popen(in_private_mounts(DEV_SETUP.format(base=self.base), [
                self.binary, "-S", f"127.0.0.1,{self.port}", "-l", f"puredb:{pdb}", "-p", "%d:%d" % self.pasv_range,
                "-E", "-A", "-H", "-d", "-d", "-0", "-c", "1000", "-C", "1000", "-I", "300", "-u", "1"]))

        # its banner cannot be set: a port taken meanwhile fails its bind instead
        self._start_until_greeted(launch, "Pure-FTPd", tries)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def entries(self, since: int = 0) -> list[LogEntry]:
        """Commands and reply lines from the captured syslog. Pure-FTPd logs
        verbs in lower case and a password as <*>; `session` counts the
        connections (it logs no pid or port)."""
        out, conn = [], 0
        for line in self.log_text(since).splitlines():
            if self._NEW.search(line):
                conn += 1
                continue
            m = self._CMD.search(line)
            if m:
                text = m.group(2).upper() + (" " + m.group(3) if m.group(3) else "")
                out.append(LogEntry(f"conn {conn}", "command", text))
                continue
            m = self._REPLY.search(line)
            if m:
                out.append(LogEntry(f"conn {conn}", "reply", m.group(2)))
        return out
