"""ProFTPD 1.3 (Debian's proftpd-core, unpacked under /opt/ftpsrv/proftpd:
it conflicts with vsftpd in apt) as a test upstream: standalone in the
foreground, its own user file (mod_auth_file: no PAM, no /etc/shadow), the
sessions running as `nobody`, every command and its reply code in an
ExtendedLog."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from ftp_server import NOBODY, FtpServer, LogEntry, sha512_crypt



def find_proftpd() -> str | None:
    for c in (os.environ.get("PROFTPD"), shutil.which("proftpd"), "/opt/ftpsrv/proftpd/usr/sbin/proftpd"):
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


PROFTPD_CONF = """\
# ProFTPD for the ftpwarden integration tests (standalone, foreground)
ServerName "ftpwarden test upstream (proftpd {tag})"
ServerIdent on "ftpwarden test upstream (proftpd {tag})"
ServerType standalone
DefaultServer on
Port {port}
DefaultAddress 127.0.0.1
UseIPv6 off
User nobody
Group nogroup
PidFile {base}/proftpd.pid
ScoreboardFile {base}/proftpd.scoreboard
DelayTable none
WtmpLog off
UseReverseDNS off
AuthOrder mod_auth_file.c
AuthUserFile {base}/passwd
AuthGroupFile {base}/group
AuthPAM off
RequireValidShell off
DefaultRoot ~
PassivePorts {pasv_lo} {pasv_hi}
AllowOverwrite on
AllowStoreRestart on
AllowRetrieveRestart on
MaxInstances 1000
MaxClientsPerHost none
TimeoutIdle 300
SystemLog {base}/system.log
TransferLog none
LogFormat ftpw "%P %s %r"
ExtendedLog {log} ALL ftpw
"""


class ProftpdServer(FtpServer):
    kind = "proftpd"
    logs_password = False  # "PASS (hidden)"
    uid = NOBODY

    # <pid> <code or -> <command line>
    _LINE = re.compile(r"^(\d+) (\d{3}|-) (.*)$")

    def __init__(self, user: str, password: str, binary: str, base: Path | None = None):
        super().__init__(user, password, base)
        self.binary = binary
        self.conf = self.base / "proftpd.conf"

    def start(self, tries: int = 5) -> "ProftpdServer":
        (self.base / "passwd").write_text(f"{self.user}:{sha512_crypt(self.password)}:{NOBODY}:{NOBODY}::"
                                          f"{self.root}:/bin/false\n")
        (self.base / "passwd").chmod(0o600)
        (self.base / "group").write_text(f"nogroup:x:{NOBODY}:\n")
        self.own_tree(self.uid)
        def launch():
            self.conf.write_text(PROFTPD_CONF.format(
                port=self.port, base=self.base, log=self.log, tag=self.base.name,
                pasv_lo=self.pasv_range[0], pasv_hi=self.pasv_range[1]))
            self._popen([self.binary, "--nodaemon", "-c", str(self.conf)])

        self._start_until_greeted(launch, self.base.name, tries)
        return self

    def entries(self, since: int = 0) -> list[LogEntry]:
        """Commands as ProFTPD logged them once handled (the ExtendedLog has
        no replies but their codes). A command a module dispatches to a
        sub-handler is logged twice, as "OPTS_UTF8 ON" (code) and "OPTS UTF8
        ON" (-): the first is dropped."""
        out = []
        for line in self.log_text(since).splitlines():
            m = self._LINE.match(line)
            if not m or "_" in m.group(3).split(" ", 1)[0]:
                continue
            out.append(LogEntry(f"pid {m.group(1)}", "command", m.group(3)))
        return out
