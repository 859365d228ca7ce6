"""Shipping the audit log: deploy/rsyslog-ftpwarden.conf, run by Debian's
rsyslogd against a live proxy (the file and target adjusted to the test's),
delivers every audit line, unchanged, to a TCP collector, across a
logrotate-style rotation (rename, SIGUSR1)."""
from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from clients import Target, curl_get
from servers import REPO

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"


class Collector:
    """A TCP listener gathering newline-framed lines."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.lines: list[bytes] = []
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.read, args=(c,), daemon=True).start()

    def read(self, c: socket.socket):
        buf = b""
        with c:
            while chunk := c.recv(65536):
                buf += chunk
                *done, buf = buf.split(b"\n")
                with self.lock:
                    self.lines.extend(done)

    def close(self):
        self.sock.close()


@pytest.mark.skipif(not Path(RSYSLOGD).exists(), reason="rsyslogd is not installed (apt-get install rsyslog)")
def test_rsyslog_ships_every_audit_line_across_a_rotation(server, make_proxy, tmp_path):
    collector = Collector()
    work = tmp_path / "spool"
    work.mkdir()
    proxy = make_proxy(server, mode="enforce")
    conf = (REPO / "deploy" / "rsyslog-ftpwarden.conf").read_text()
    conf = conf.replace('File="/var/log/ftpwarden/audit.jsonl"', f'File="{proxy.audit_path}"')
    conf = conf.replace('Target="logs.example.net"', 'Target="127.0.0.1"').replace('Port="10514"',
                                                                                      f'Port="{collector.port}"')
    conf = conf.replace('action.resumeInterval="10"', 'action.resumeInterval="1"')
    assert str(proxy.audit_path) in conf and str(collector.port) in conf
    cfg = tmp_path / "rsyslog.conf"
    cfg.write_text(f'global(workDirectory="{work}")\n' + conf)
    check = subprocess.run([RSYSLOGD, "-N1", "-f", str(cfg)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr + check.stdout
    rs = subprocess.Popen([RSYSLOGD, "-n", "-f", str(cfg), "-i", str(tmp_path / "rsyslogd.pid")],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        via = Target.via(proxy, server)
        for i in range(3):
            curl_get(via, "small.txt", tmp_path / f"a{i}.txt")
        proxy.wait_event("session_close")
        time.sleep(0.5)  # the first lines reach the file (the audit log flushes within a second)
        rotated = proxy.audit_path.with_name("audit.jsonl.1")
        proxy.audit_path.rename(rotated)
        proxy.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while "audit log reopened" not in proxy.stderr():
            assert time.monotonic() < deadline, "no reopen"
            time.sleep(0.05)
        for i in range(3):
            curl_get(via, "small.txt", tmp_path / f"b{i}.txt")
        assert proxy.terminate() == 0
        want = rotated.read_bytes().splitlines() + proxy.audit_path.read_bytes().splitlines()
        assert rotated.stat().st_size > 0 and proxy.audit_path.stat().st_size > 0
        deadline = time.monotonic() + 30
        while True:
            with collector.lock:
                got = list(collector.lines)
            if sorted(got) == sorted(want) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert sorted(got) == sorted(want), f"{len(got)} lines shipped of {len(want)}"
    finally:
        rs.terminate()
        try:
            rs.wait(10)
        except subprocess.TimeoutExpired:
            rs.kill()
        collector.close()
