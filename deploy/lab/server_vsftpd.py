"""vsftpd 3 as a test upstream: standalone in the foreground, its test user
authenticated through PAM against a private /etc bound over the real one in a
mount namespace of its own (the host's accounts are never touched)."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from ftp_server import FtpServer, LogEntry, in_private_mounts, sha512_crypt


PAM_SERVICE = "ftpwarden-test"


def find_vsftpd() -> str | None:
    env = os.environ.get("VSFTPD")
    cands = [env] if env else []
    cands += [shutil.which("vsftpd"), "/usr/sbin/vsftpd", "/opt/ftpsrv/vsftpd/usr/sbin/vsftpd"]
    for c in cands:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


# The test user's uid inside vsftpd's private /etc (no account of the host has to have it).
VSFTPD_UID = 42421

PAM_STACK = ("# PAM stack for the ftpwarden integration-test vsftpd (unix passwords, its private /etc/shadow)\n"
             "auth     required pam_unix.so\n"
             "account  required pam_unix.so\n")


def private_etc(base: Path, user: str, password: str, uid: int, home: Path) -> Path:
    """Copies of /etc/passwd, /etc/group, /etc/shadow and /etc/pam.d with the
    test user and its PAM service added, under base/etc: vsftpd's namespace
    binds them over the real ones, which no test changes."""
    etc = base / "etc"
    etc.mkdir(exist_ok=True)

    def with_line(src: str, line: str) -> str:
        kept = [l for l in Path(src).read_text().splitlines() if not l.startswith(user + ":")]
        return "\n".join(kept + [line]) + "\n"

    (etc / "passwd").write_text(with_line("/etc/passwd", f"{user}:x:{uid}:{uid}::{home}:/usr/sbin/nologin"))
    (etc / "group").write_text(with_line("/etc/group", f"{user}:x:{uid}:"))
    (etc / "shadow").write_text(with_line("/etc/shadow", f"{user}:{sha512_crypt(password)}:19000:0:99999:7:::"))
    (etc / "shadow").chmod(0o600)
    shutil.copytree("/etc/pam.d", etc / "pam.d", dirs_exist_ok=True)
    (etc / "pam.d" / PAM_SERVICE).write_text(PAM_STACK)
    return etc


VSFTPD_CONF = """\
# vsftpd for the ftpwarden integration tests (standalone, foreground)
listen=YES
listen_ipv6=NO
listen_address={host}
listen_port={port}
background=NO
anonymous_enable=NO
local_enable=YES
write_enable=YES
local_umask=022
local_root={root}
chroot_local_user=NO
pasv_enable=YES
pasv_min_port={pasv_lo}
pasv_max_port={pasv_hi}
port_enable=YES
connect_from_port_20=NO
max_clients=0
max_per_ip=0
idle_session_timeout=300
data_connection_timeout=60
delay_failed_login=0
pam_service_name={pam}
session_support=NO
userlist_enable=NO
tcp_wrappers=NO
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
secure_chroot_dir={empty}
xferlog_enable={logging}
xferlog_std_format=NO
log_ftp_protocol={logging}
vsftpd_log_file={log}
use_sendfile=YES
ftpd_banner=ftpwarden test upstream (vsftpd {tag})
"""


def vsftpd_tls_options(cert: Path, key: Path, require_ssl_reuse: bool = True, force_ssl: bool = True,
                       **more: str) -> dict[str, str]:
    """vsftpd.conf lines for explicit FTPS (AUTH TLS; not implicit_ssl, as
    start() waits for a 220 in clear), per vsftpd.conf(5) of vsftpd 3.0.3:
    the control connection's session resumed on every data connection
    (require_ssl_reuse), login and data over TLS only (force_local_*_ssl).
    This build knows ssl_tlsv1 but no ssl_tlsv1_1 / ssl_tlsv1_2 (unknown
    names are fatal): SSLv2/3 stay off, TLS 1.0 to 1.3 are allowed. Its
    default cipher list (DES-CBC3-SHA) is unusable with OpenSSL 3, hence
    ssl_ciphers=HIGH. debug_ssl logs each handshake's version and whether it
    resumed (ssl_debug())."""
    yn = {True: "YES", False: "NO"}
    return {"ssl_enable": "YES", "rsa_cert_file": str(cert), "rsa_private_key_file": str(key),
            "ssl_ciphers": "HIGH", "ssl_request_cert": "NO", "require_ssl_reuse": yn[require_ssl_reuse],
            "force_local_logins_ssl": yn[force_ssl], "force_local_data_ssl": yn[force_ssl],
            "allow_anon_ssl": "NO", "debug_ssl": "YES", **more}


class VsftpdServer(FtpServer):
    """vsftpd authenticating the test user through PAM (pam_unix) against a
    private /etc: it runs in a mount namespace of its own where copies of
    /etc/passwd, group, shadow and pam.d holding the user are bound over the
    real ones."""

    kind = "vsftpd"
    uid = VSFTPD_UID

    # [pid 123] [user] FTP command: Client "127.0.0.1", "RETR small.txt"
    _LINE = re.compile(r'\[pid (\d+)\] (?:\[[^\]]*\] )?FTP (command|response): Client "[^"]*", "(.*)"$')
    _CONNECT = re.compile(r'\[pid (\d+)\] CONNECT: Client ')
    logs_password = False  # vsftpd logs "PASS <password>", never the password

    def __init__(self, user: str, password: str, binary: str, base: Path | None = None,
                 protocol_log: bool = True, pasv_ports: int = 3000, tls: dict[str, str] | None = None):
        super().__init__(user, password, base)
        self.binary = binary
        # vsftpd.conf lines for FTPS (vsftpd_tls_options()); None: plain FTP only
        self.tls = dict(tls) if tls else None
        self.protocol_log = protocol_log  # off for benchmarks: logging costs the server time
        # vsftpd tries 10 random ports of its range for each PASV and gives up
        # (500 OOPS) when all are taken: under the 500-session load test a
        # range only twice the concurrent transfers fails now and then; six
        # times is the default. (A process's servers share a 5000-port slice
        # when the test suite runs in two shards.)
        self.pasv_ports = pasv_ports
        self.empty = self.base / "empty"
        self.empty.mkdir(exist_ok=True)
        self.empty.chmod(0o755)
        self.conf = self.base / "vsftpd.conf"

    def start(self, tries: int = 8) -> "VsftpdServer":
        etc = private_etc(self.base, self.user, self.password, self.uid, self.root)
        self.own_tree(self.uid)
        binds = "\n".join(f"mount --bind {etc / n} /etc/{n}" for n in ("passwd", "group", "shadow", "pam.d"))
        def launch():
            self.conf.write_text(VSFTPD_CONF.format(
                host=self.host, port=self.port, root=self.root, pasv_lo=self.pasv_range[0], pasv_hi=self.pasv_range[1],
                pam=PAM_SERVICE, empty=self.empty, log=self.log, tag=self.base.name,
                logging="YES" if self.protocol_log else "NO") +
                "".join(f"{k}={v}\n" for k, v in (self.tls or {}).items()))
            os.chown(self.conf, 0, 0)  # vsftpd refuses a config not owned by root
            self.conf.chmod(0o600)
            self._popen(in_private_mounts(binds, [self.binary, str(self.conf)]))

        # the banner names this instance
        self._start_until_greeted(launch, self.base.name, tries)
        return self

    # [pid 123] DEBUG: Client "127.0.0.1", "SSL version: TLSv1.3, SSL cipher: ..., reused, no cert"
    _SSL_DEBUG = re.compile(r'\[pid (\d+)\] (?:\[[^\]]*\] )?DEBUG: Client "[^"]*", "(SSL version: .*)"$')

    def ssl_debug(self, since: int = 0) -> list[str]:
        """The handshakes vsftpd logged with debug_ssl (control and data
        connections alike): "SSL version: TLSv1.3, SSL cipher: ..., reused|not
        reused, no cert"."""
        return [m.group(2) for line in self.log_text(since).splitlines() if (m := self._SSL_DEBUG.search(line))]

    def entries(self, since: int = 0) -> list[LogEntry]:
        """Log entries; `session` is "conn <pid>" of the connection's first process.

        vsftpd serves a connection with one process before login and another
        after it, so a pid that appears without a CONNECT line is joined to the
        connection whose last command was PASS (tests run one session at a time).
        Control characters are logged as '?': the CRLF inside a multi-line
        reply shows as a trailing "??", which is removed here.
        """
        out = []
        conn_of: dict[str, str] = {}
        last_cmd: dict[str, str] = {}
        for line in self.log_text(since).splitlines():
            c = self._CONNECT.search(line)
            if c:
                conn_of[c.group(1)] = f"conn {c.group(1)}"
                continue
            m = self._LINE.search(line)
            if not m:
                continue
            pid, kind, text = m.group(1), m.group(2), m.group(3)
            if pid not in conn_of:
                pending = [conn for conn, cmd in last_cmd.items() if cmd == "PASS"]
                conn_of[pid] = pending[-1] if pending else f"conn {pid}"
            conn = conn_of[pid]
            if kind == "command":
                last_cmd[conn] = text.split(" ", 1)[0].upper()
            elif text.endswith("??"):
                text = text[:-2]
            out.append(LogEntry(conn, "command" if kind == "command" else "reply", text))
        return out
