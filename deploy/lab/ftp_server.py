"""What every FTP server started here shares: the login, its temp dir (`root`, the
FTP tree; `log`, what it received and answered, parsed by `entries()` /
`commands()`), its process, a start that retries until the server greets on
its own port, and the private mount namespace helper."""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from ports import free_port, in_netns, release_range, reserve_range, wait_for_greeting
from processes import kill_tree


HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SYSTEM_PYTHON = "/usr/bin/python3"

FTP_USER = os.environ.get("FTPWARDEN_TEST_USER", "ftpwtest")
# Distinctive, so that a leak into any log is easy to spot.
FTP_PASSWORD = os.environ.get("FTPWARDEN_TEST_PASSWORD", "ftpw-T3st-Pw-6c1f0a9e52")


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


NOBODY = 65534  # the uid ProFTPD's and Pure-FTPd's sessions run as


class FtpServer:
    """Common part: a process in its own process group, a root dir, a log."""

    kind = "?"

    def __init__(self, user: str, password: str, base: Path | None = None):
        self.user = user
        self.password = password
        self.host = "127.0.0.1"
        self.netns: str | None = None  # run in this network namespace (ip netns), listening on self.host
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
        release_range(self.pasv_range)
        shutil.rmtree(self.base, ignore_errors=True)

    def own_tree(self, uid: int) -> None:
        """Gives the served tree to the uid the server's sessions run as."""
        for dirpath, _, filenames in os.walk(self.root):
            os.chown(dirpath, uid, -1)
            for f in filenames:
                os.chown(os.path.join(dirpath, f), uid, -1)

    pasv_ports = 200  # size of the passive range
    uid = 0           # who owns the files the server serves (pyftpdlib runs as root)

    def _popen(self, argv: list[str]) -> None:
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
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
            release_range(self.pasv_range)
            self.pasv_range = reserve_range(10000, 19999, count=self.pasv_ports)
            launch()
            try:
                greeting = in_netns(self.netns, lambda: wait_for_greeting(
                    self.port, timeout=5, host=self.host, proc=self.proc)) if self.netns else \
                    wait_for_greeting(self.port, timeout=5, proc=self.proc)
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
