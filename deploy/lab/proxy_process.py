"""The ftpwarden binary under test, as a process in front of an upstream."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from ftp_server import REPO
from ports import free_port_range


def find_proxy_binary() -> str | None:
    env = os.environ.get("FTPWARDEN_BIN")
    if env:
        return env
    for c in (REPO / "build/release/proxy/ftpwarden", REPO / "build/proxy/ftpwarden"):
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    return None


LISTEN_RE = re.compile(r"listening on (\S+):(\d+) -> (\S+) \(mode=(\w+)\)")


def parse_stats(line: str, marker: str) -> dict[str, int]:
    """The name=value pairs after `marker` in an operational-log line."""
    return {k: int(v) for k, v in (kv.split("=") for kv in line.split(marker, 1)[1].split())}


class Proxy:
    """ftpwarden in front of `upstream` (an FtpServer or "host:port").

    stderr goes to `stderr_path` (a file: a pipe nobody drains could stall the
    proxy); the audit log to `audit_path`.
    """

    def __init__(self, binary: str, upstream, mode: str = "audit", extra_args=(), base: Path | None = None,
                 passive_ports: tuple[int, int] | None = None, env: dict[str, str] | None = None,
                 netns: str | None = None, wrap: list[str] | None = None):
        self.binary = binary
        self.upstream = upstream
        self.upstream_addr = upstream if isinstance(upstream, str) else f"{upstream.host}:{upstream.port}"
        self.mode = mode
        self.extra_args = list(extra_args)
        self.base = Path(base or tempfile.mkdtemp(prefix="ftpw-proxy-"))
        self.audit_path = self.base / "audit.jsonl"
        self.stderr_path = self.base / "stderr.log"
        self.passive_ports = passive_ports
        self.env = {**os.environ, **env} if env else None  # added to the environment
        # a command it runs under (prlimit ...), or a network namespace (ip netns exec)
        self.wrap = list(wrap or []) + (["ip", "netns", "exec", netns] if netns else [])
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
        argv = [*self.wrap, *self.argv()]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=err, start_new_session=True, env=self.env)
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

    def exit_stats(self) -> dict[str, int]:
        """The counters the proxy printed as it exited (after terminate()):
        every loop iteration is done, nothing is still being counted."""
        line = [l for l in self.stderr().splitlines() if " stats at exit: " in l][-1]
        return parse_stats(line, " stats at exit: ")

    def stats(self, timeout: float = 5.0) -> dict[str, int]:
        """The workers' counters, summed (proxy/stats.h): SIGUSR2 makes
        the proxy print them on its operational log; returns the new line's."""
        before = self.stderr().count(" stats: ")
        self.proc.send_signal(signal.SIGUSR2)
        end = time.monotonic() + timeout
        while True:
            lines = [l for l in self.stderr().splitlines() if " stats: " in l]
            if len(lines) > before:
                return parse_stats(lines[before], " stats: ")
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
        self.archive_audit()
        shutil.rmtree(self.base, ignore_errors=True)

    def archive_audit(self) -> None:
        """With FTPW_AUDIT_ARCHIVE=dir, keep this proxy's audit log there under
        the test's name (tests/integration/compare_audit.py compares two such
        directories)."""
        dest = os.environ.get("FTPW_AUDIT_ARCHIVE")
        if not dest or not self.audit_path.exists():
            return
        test = os.environ.get("PYTEST_CURRENT_TEST", "outside-a-test").rsplit(" (", 1)[0]
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", test)
        Path(dest).mkdir(parents=True, exist_ok=True)
        n = 0
        while (Path(dest) / f"{name}.{n}.jsonl").exists():
            n += 1
        shutil.copyfile(self.audit_path, Path(dest) / f"{name}.{n}.jsonl")

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
