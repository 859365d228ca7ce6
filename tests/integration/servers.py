"""Real FTP servers and the proxy under test, as processes on 127.0.0.1.

- VsftpdServer: vsftpd 3, standalone in the foreground, its test user
  authenticated through PAM against a private /etc bound over the real one
  in a mount namespace of its own (the host's accounts are never touched).
- PyftpdServer: pyftpdlib (pyftpd_server.py under /usr/bin/python3).
- Proxy: the ftpwarden binary in front of one of them.

Each server lives in its own temp dir: `root` (the FTP tree), `log` (what the
server received and answered, parsed by `entries()` / `commands()`), and is
stopped with `stop()` (the whole process group: vsftpd forks one process per
session).

Port plan: servers' passive ranges come from 10000-19999, proxies' from
20000-29999, both below the kernel's ephemeral range (32768-60999) so they
never collide with client sockets. Control ports are picked by binding a
socket to port 0 (pyftpdlib binds port 0 itself).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"

FTP_USER = os.environ.get("FTPWARDEN_TEST_USER", "ftpwtest")
# Distinctive, so that a leak into any log is easy to spot.
FTP_PASSWORD = os.environ.get("FTPWARDEN_TEST_PASSWORD", "ftpw-T3st-Pw-6c1f0a9e52")
PAM_SERVICE = "ftpwarden-test"

# ---------------------------------------------------------------------------
# ports


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (bind to 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # as the servers and the proxy bind their listeners: a port whose old
        # connections linger in TIME_WAIT is still usable
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def free_port_range(lo: int, hi: int, count: int = 50, tries: int = 50) -> tuple[int, int]:
    """A block of `count` consecutive free ports with its base in [lo, hi - count]."""
    for _ in range(tries):
        base = random.randint(lo, hi - count + 1)
        if all(port_is_free(p) for p in range(base, base + count)):
            return base, base + count - 1
    # crowded: sweep the whole range once, restarting after each busy port
    base = lo
    while base + count - 1 <= hi:
        busy = next((p for p in range(base, base + count) if not port_is_free(p)), None)
        if busy is None:
            return base, base + count - 1
        base = busy + 1
    raise RuntimeError(f"no free block of {count} ports in {lo}-{hi}")


def wait_for_greeting(port: int, timeout: float = 10.0, host: str = "127.0.0.1",
                      proc: subprocess.Popen | None = None) -> str:
    """Connects until the server sends its 220 greeting; returns the greeting line.
    Gives up early when `proc` exits."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before greeting on port {port}")
        try:
            with socket.create_connection((host, port), timeout=2) as s:
                s.settimeout(3)
                data = b""
                while b"\n" not in data:
                    chunk = s.recv(512)
                    if not chunk:
                        break
                    data += chunk
                line = data.decode("latin-1").strip()
                if line.startswith("220"):
                    try:
                        s.sendall(b"QUIT\r\n")
                    except OSError:
                        pass
                    return line
                last = line
        except OSError as e:
            last = e
        time.sleep(0.05)
    raise RuntimeError(f"127.0.0.1:{port} gave no 220 greeting within {timeout}s (last: {last!r})")


# ---------------------------------------------------------------------------
# processes


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    return children


def descendants(pid: int) -> list[int]:
    children = _children_map()
    out, stack = [], [pid]
    while stack:
        for c in children.get(stack.pop(), []):
            out.append(c)
            stack.append(c)
    return out


def kill_tree(pid: int) -> None:
    """SIGKILL `pid` and all its descendants. Everything is stopped first
    (top-down, repeated until no new process shows up) so nothing forks or
    gets re-parented in between."""
    stopped: list[int] = []
    try:
        os.kill(pid, signal.SIGSTOP)
    except ProcessLookupError:
        return
    stopped.append(pid)
    for _ in range(5):
        new = [c for c in descendants(pid) if c not in stopped]
        if not new:
            break
        for c in new:
            try:
                os.kill(c, signal.SIGSTOP)
            except ProcessLookupError:
                pass
            stopped.append(c)
    for c in reversed(stopped):
        try:
            os.kill(c, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ---------------------------------------------------------------------------
# files


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def populate_tree(root: Path, seed: int = 1) -> dict[str, str]:
    """The standard test files; returns {relative path: sha256}."""
    rnd = random.Random(seed)
    files = {
        "small.txt": b"ftpwarden small test file\nsecond line\n",
        "blob.bin": rnd.randbytes(1 << 20),
        "tree/a.txt": b"tree a\n",
        "tree/b.bin": rnd.randbytes(70_000),
        "tree/sub/c.txt": b"tree sub c\n",
        "tree/sub/deeper/d.bin": rnd.randbytes(5_000),
        "tree/empty.txt": b"",
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (root / "upload").mkdir(exist_ok=True)
    return {rel: sha256_bytes(data) for rel, data in files.items()}


# ---------------------------------------------------------------------------
# server log entries


@dataclasses.dataclass
class LogEntry:
    session: str      # vsftpd: "conn <pid>"; pyftpdlib: "ip:port" of the client
    direction: str    # "command" (server received) or "reply" (server sent)
    text: str         # the line, without CRLF

    @property
    def verb(self) -> str:
        return self.text.split(" ", 1)[0].upper() if self.direction == "command" else ""

    @property
    def arg(self) -> str:
        parts = self.text.split(" ", 1)
        return parts[1] if len(parts) > 1 else ""

    @property
    def code(self) -> int | None:
        m = re.match(r"(\d{3})[ -]", self.text)
        return int(m.group(1)) if m and self.direction == "reply" else None


class FtpServer:
    """Common part: a process in its own process group, a root dir, a log."""

    kind = "?"

    def __init__(self, user: str, password: str, base: Path | None = None):
        self.user = user
        self.password = password
        self.host = "127.0.0.1"
        self.port = 0
        self.base = Path(base or tempfile.mkdtemp(prefix=f"ftpw-{self.kind}-"))
        self.base.chmod(0o755)
        self.root = self.base / "root"
        self.root.mkdir(exist_ok=True)
        self.log = self.base / f"{self.kind}.log"
        self.stdout_path = self.base / "stdout.log"
        self.proc: subprocess.Popen | None = None
        self.files: dict[str, str] = {}
        self.pasv_range = (0, 0)

    def __repr__(self):
        return f"<{self.kind} 127.0.0.1:{self.port} root={self.root}>"

    # -- lifecycle
    def stop(self, timeout: float = 5.0) -> None:
        """Stops the server and every process it forked. vsftpd puts each
        session in a session of its own (setsid), so a process-group kill
        would miss them: the tree is frozen with SIGSTOP, then killed."""
        p, self.proc = self.proc, None
        if p is None:
            return
        if p.poll() is None and self.kind == "pyftpdlib":
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        if p.poll() is None:
            kill_tree(p.pid)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    pasv_ports = 200  # size of the passive range
    uid = 0           # who owns the files the server serves (pyftpdlib runs as root)

    def _popen(self, argv: list[str]) -> None:
        out = open(self.stdout_path, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        out.close()

    def _start_until_greeted(self, launch, banner: str, tries: int) -> None:
        """Picks a control port and a passive range, then `launch()` (which
        starts self.proc), until the server greets there with `banner` in its
        greeting: a greeting from whoever else took the port does not count."""
        last = ""
        for _ in range(tries):
            self.port = free_port()
            self.pasv_range = free_port_range(10000, 19999, count=self.pasv_ports)
            launch()
            try:
                greeting = wait_for_greeting(self.port, timeout=5, proc=self.proc)
                if banner in greeting and self.alive():
                    return
                last = f"port {self.port} taken by another server ({greeting})"
            except RuntimeError as e:
                last = str(e)
            last += " / " + self.stdout_path.read_text(errors="replace")[-500:]
            FtpServer.stop(self)
        raise RuntimeError(f"{self.kind} did not start: {last}")

    # -- log
    def log_mark(self) -> int:
        """Current size of the server's log; pass it to entries()/commands()."""
        try:
            return self.log.stat().st_size
        except FileNotFoundError:
            return 0

    def log_text(self, since: int = 0) -> str:
        try:
            with open(self.log, "rb") as f:
                f.seek(since)
                return f.read().decode("utf-8", "backslashreplace")
        except FileNotFoundError:
            return ""

    def entries(self, since: int = 0) -> list[LogEntry]:
        raise NotImplementedError

    def commands(self, since: int = 0) -> list[LogEntry]:
        return [e for e in self.entries(since) if e.direction == "command"]

    def verbs(self, since: int = 0) -> list[str]:
        return [e.verb for e in self.commands(since)]

    def replies(self, since: int = 0) -> list[LogEntry]:
        return [e for e in self.entries(since) if e.direction == "reply"]

    def wait_for_command(self, verb: str, since: int = 0, timeout: float = 3.0) -> LogEntry:
        end = time.monotonic() + timeout
        while True:
            for e in self.commands(since):
                if e.verb == verb.upper():
                    return e
            if time.monotonic() > end:
                raise AssertionError(f"{self.kind} never received {verb}; it saw {self.verbs(since)}")
            time.sleep(0.05)

    def session_entries(self, marker: str, since: int = 0, timeout: float = 3.0) -> list[LogEntry]:
        """Every entry of the connection in which the command line `marker`
        (exact text, e.g. a "HELP <random>") was received."""
        end = time.monotonic() + timeout
        while True:
            entries = self.entries(since)
            sess = next((e.session for e in entries if e.direction == "command" and e.text == marker), None)
            if sess is not None:
                return [e for e in entries if e.session == sess]
            if time.monotonic() > end:
                raise AssertionError(f"{self.kind} never received {marker!r}; it saw {self.verbs(since)}")
            time.sleep(0.05)

    def path(self, rel: str) -> Path:
        return self.root / rel


# ---------------------------------------------------------------------------
# vsftpd


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


def sha512_crypt(password: str) -> str:
    """A crypt(3) hash cheap enough that logins cost the tests nothing."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512, rounds=1000))


def in_private_mounts(setup: str, argv: list[str]) -> list[str]:
    """`argv` run in a mount namespace of its own after the shell lines
    `setup`: what they mount (over /etc, /dev) only that process tree sees."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", f"set -e\n{setup}\nexec \"$@\"", "sh",
            *argv]


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
listen_address=127.0.0.1
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
                 protocol_log: bool = True, pasv_ports: int = 4000):
        super().__init__(user, password, base)
        self.binary = binary
        self.protocol_log = protocol_log  # off for benchmarks: logging costs the server time
        # vsftpd tries 10 random ports of its range for each PASV and gives up
        # (500 OOPS) when all are taken: under the 500-session load test a
        # range only twice the concurrent transfers fails now and then.
        self.pasv_ports = pasv_ports
        self.empty = self.base / "empty"
        self.empty.mkdir(exist_ok=True)
        self.empty.chmod(0o755)
        self.conf = self.base / "vsftpd.conf"

    def start(self, tries: int = 8) -> "VsftpdServer":
        etc = private_etc(self.base, self.user, self.password, self.uid, self.root)
        for dirpath, dirnames, filenames in os.walk(self.root):
            os.chown(dirpath, self.uid, -1)
            for f in filenames:
                os.chown(os.path.join(dirpath, f), self.uid, -1)
        binds = "\n".join(f"mount --bind {etc / n} /etc/{n}" for n in ("passwd", "group", "shadow", "pam.d"))
        def launch():
            self.conf.write_text(VSFTPD_CONF.format(
                port=self.port, root=self.root, pasv_lo=self.pasv_range[0], pasv_hi=self.pasv_range[1],
                pam=PAM_SERVICE, empty=self.empty, log=self.log, tag=self.base.name,
                logging="YES" if self.protocol_log else "NO"))
            os.chown(self.conf, 0, 0)  # vsftpd refuses a config not owned by root
            self.conf.chmod(0o600)
            self._popen(in_private_mounts(binds, [self.binary, str(self.conf)]))

        # the banner names this instance
        self._start_until_greeted(launch, self.base.name, tries)
        return self

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


# ---------------------------------------------------------------------------
# pyftpdlib


class PyftpdServer(FtpServer):
    kind = "pyftpdlib"
    logs_password = True  # pyftpd_server.py logs every line as received

    # 2025-01-01T00:00:00.000000 127.0.0.1:40512 <- RETR small.txt
    _LINE = re.compile(r"^\S+ (\S+) (<-|->) ?(.*)$")

    def start(self, tries: int = 5) -> "PyftpdServer":
        last = ""
        for _ in range(tries):
            self.pasv_range = free_port_range(10000, 19999)
            out = open(self.stdout_path, "wb")
            self.proc = subprocess.Popen(
                [SYSTEM_PYTHON, str(HERE / "pyftpd_server.py"), "--root", str(self.root),
                 "--user", self.user, "--password", self.password, "--log", str(self.log),
                 "--port", "0", "--passive-ports", "%d-%d" % self.pasv_range],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=out, start_new_session=True)
            out.close()
            line = self.proc.stdout.readline().decode(errors="replace")
            m = re.match(r"READY (\d+)", line)
            if m:
                self.port = int(m.group(1))
                self.proc.stdout.close()
                wait_for_greeting(self.port, timeout=5, proc=self.proc)
                return self
            last = line + self.stdout_path.read_text(errors="replace")[-500:]
            self.stop()
        raise RuntimeError(f"pyftpdlib server did not start: {last}")

    def entries(self, since: int = 0) -> list[LogEntry]:
        out = []
        for line in self.log_text(since).splitlines():
            m = self._LINE.match(line)
            if m:
                out.append(LogEntry(m.group(1), "command" if m.group(2) == "<-" else "reply", m.group(3)))
        return out


# ---------------------------------------------------------------------------
# the proxy under test


def find_proxy_binary() -> str | None:
    env = os.environ.get("FTPWARDEN_BIN")
    if env:
        return env
    for c in (REPO / "build/release/proxy/ftpwarden", REPO / "build/proxy/ftpwarden"):
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    return None


LISTEN_RE = re.compile(r"listening on (\S+):(\d+) -> (\S+) \(mode=(\w+)\)")


class Proxy:
    """ftpwarden in front of `upstream` (an FtpServer or "host:port").

    stderr goes to `stderr_path` (a file: a pipe nobody drains could stall the
    proxy); the audit log to `audit_path`.
    """

    def __init__(self, binary: str, upstream, mode: str = "audit", extra_args=(), base: Path | None = None,
                 passive_ports: tuple[int, int] | None = None):
        self.binary = binary
        self.upstream = upstream
        self.upstream_addr = upstream if isinstance(upstream, str) else f"{upstream.host}:{upstream.port}"
        self.mode = mode
        self.extra_args = list(extra_args)
        self.base = Path(base or tempfile.mkdtemp(prefix="ftpw-proxy-"))
        self.audit_path = self.base / "audit.jsonl"
        self.stderr_path = self.base / "stderr.log"
        self.passive_ports = passive_ports
        self.proc: subprocess.Popen | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self.returncode: int | None = None

    def __repr__(self):
        return f"<ftpwarden 127.0.0.1:{self.port} -> {self.upstream_addr} mode={self.mode}>"

    def argv(self) -> list[str]:
        lo, hi = self.passive_ports
        return [self.binary, "--listen", "127.0.0.1:0", "--upstream", self.upstream_addr,
                "--mode", self.mode, "--audit-log", str(self.audit_path),
                "--passive-ports", f"{lo}-{hi}", *self.extra_args]

    def start(self, timeout: float = 10.0) -> "Proxy":
        if not os.path.isfile(self.binary):
            raise FileNotFoundError(f"proxy binary {self.binary} not found (build it or set FTPWARDEN_BIN)")
        if self.passive_ports is None:
            self.passive_ports = free_port_range(20000, 29999)
        err = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=err, start_new_session=True)
        err.close()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            m = LISTEN_RE.search(self.stderr())
            if m:
                self.host, self.port = m.group(1), int(m.group(2))
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        rc = self.proc.poll()
        self.kill()
        raise RuntimeError(f"proxy did not report 'listening on' (exit {rc}); argv={self.argv()}\n"
                           f"stderr:\n{self.stderr()[-3000:]}")

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stats(self, timeout: float = 5.0) -> dict[str, int]:
        """The workers' counters, summed (proxy/worker_stats.h): SIGUSR1 makes
        the proxy print them on its operational log; returns the new line's."""
        before = self.stderr().count(" stats: ")
        self.proc.send_signal(signal.SIGUSR1)
        end = time.monotonic() + timeout
        while True:
            lines = [l for l in self.stderr().splitlines() if " stats: " in l]
            if len(lines) > before:
                return {k: int(v) for k, v in (kv.split("=") for kv in lines[before].split(" stats: ", 1)[1].split())}
            if time.monotonic() > end:
                raise TimeoutError(f"no stats line from {self}")
            time.sleep(0.02)

    def terminate(self, timeout: float = 5.0) -> int:
        """SIGTERM and wait; returns the exit status (negative: killed by a signal)."""
        if self.proc is None:
            return self.returncode if self.returncode is not None else 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self.proc = None
        return self.returncode

    def kill(self) -> None:
        p, self.proc = self.proc, None
        if p is None:
            return
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.returncode = p.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def stop(self) -> int | None:
        """Teardown: SIGTERM, then SIGKILL if it lingers. Returns the exit status."""
        if self.proc is None:
            return self.returncode
        try:
            return self.terminate(5.0)
        except subprocess.TimeoutExpired:
            return self.returncode

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    # -- audit log
    def audit_text(self) -> str:
        try:
            return self.audit_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def audit(self) -> list[dict]:
        """Every complete JSON line of the audit log (a torn last line is skipped)."""
        out = []
        text = self.audit_text()
        lines = text.split("\n")
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                if i == len(lines) - 1:  # still being written
                    continue
                raise AssertionError(f"audit line {i + 1} is not JSON: {line!r}")
        return out

    def events(self, event: str | None = None, **match) -> list[dict]:
        return [e for e in self.audit() if (event is None or e.get("event") == event)
                and all(e.get(k) == v for k, v in match.items())]

    def wait_event(self, event: str, timeout: float = 3.0, **match) -> dict:
        """The first event of that kind whose fields equal `match`, polling (the proxy flushes every second)."""
        end = time.monotonic() + timeout
        while True:
            found = self.events(event, **match)
            if found:
                return found[0]
            if time.monotonic() > end:
                raise AssertionError(f"no {event} event with {match} in the audit log within {timeout}s; "
                                     f"log:\n{self.audit_text()[-4000:]}")
            time.sleep(0.1)

    def wait_events(self, event: str, count: int, timeout: float = 3.0, **match) -> list[dict]:
        end = time.monotonic() + timeout
        while True:
            found = self.events(event, **match)
            if len(found) >= count:
                return found
            if time.monotonic() > end:
                raise AssertionError(f"{len(found)} {event} events with {match} (wanted {count}); "
                                     f"log:\n{self.audit_text()[-4000:]}")
            time.sleep(0.1)

    def settle(self, timeout: float = 3.0) -> list[dict]:
        """Waits until every session seen has closed and returns the log
        (for "no such event" assertions, which need the whole log)."""
        end = time.monotonic() + timeout
        last = None
        while True:
            ev = self.audit()
            opened = sum(1 for e in ev if e.get("event") == "session_open")
            closed = sum(1 for e in ev if e.get("event") == "session_close")
            # all closed, and no session's events still on their way (the
            # proxy writes in batches): the same log twice, 0.3 s apart
            if opened and opened == closed and ev == last:
                return ev
            if time.monotonic() > end:
                return ev
            last = ev if opened and opened == closed else None
            time.sleep(0.3 if last is not None else 0.1)


# ---------------------------------------------------------------------------
# a scripted upstream, for replies no real server here sends


class ScriptedServer:
    """An in-process upstream that answers each command from a table.

        srv = ScriptedServer({"FEAT": b"211-Features:\\r\\n AUTH TLS\\r\\n211 End\\r\\n"}).start()

    USER is answered 331 and PASS 230 unless the table says otherwise; any
    other verb not in the table gets `default`. Every line received (bytes,
    without CRLF) is appended to `received`. No data connections.
    """

    kind = "scripted"

    def __init__(self, replies: dict[str, bytes] | None = None,
                 greeting: bytes = b"220 ftpwarden test upstream (scripted)\r\n",
                 default: bytes = b"502 Command not implemented.\r\n",
                 user: str = "scripted", password: str = "scripted-pw"):
        import threading
        self.replies = {"USER": b"331 Password required.\r\n", "PASS": b"230 Logged in.\r\n",
                        "QUIT": b"221 Bye.\r\n", "NOOP": b"200 NOOP ok.\r\n", **(replies or {})}
        self.greeting = greeting
        self.default = default
        self.user, self.password = user, password
        self.host, self.port = "127.0.0.1", 0
        self.received: list[bytes] = []
        self._lock = threading.Lock()
        self._threading = threading
        self._sock: socket.socket | None = None
        self._conns: list[socket.socket] = []

    def start(self) -> "ScriptedServer":
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self._threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self):
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            self._threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket):
        buf = b""
        try:
            conn.sendall(self.greeting)
            while True:
                while b"\r\n" not in buf:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    buf += chunk
                line, buf = buf.split(b"\r\n", 1)
                with self._lock:
                    self.received.append(line)
                verb = line.split(b" ", 1)[0].decode("latin-1").upper()
                reply = self.replies.get(verb, self.default)
                conn.sendall(reply(line) if callable(reply) else reply)
                if verb == "QUIT":
                    return
        except OSError:
            return
        finally:
            conn.close()

    def verbs(self) -> list[str]:
        with self._lock:
            return [l.split(b" ", 1)[0].decode("latin-1").upper() for l in self.received]

    def stop(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        for c in self._conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    cleanup = stop
