"""Running it as a daemon: systemd's notifications (READY, RELOADING,
STOPPING, WATCHDOG) captured on a socket of the test's own, the privilege
drop read back from /proc, and the audit log reopened under load by SIGUSR1
with every event in exactly one of the two files."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from clients import RawClient, Target, curl_get, ftplib_connect
from servers import sha256_file


class NotifySocket:
    """An AF_UNIX datagram socket standing in for systemd's."""

    def __init__(self, path: Path | str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        addr = str(path)
        self.sock.bind("\0" + addr[1:] if addr.startswith("@") else addr)
        self.name = addr
        self.got: list[str] = []

    def wait_for(self, prefix: str, timeout: float = 10) -> str:
        """The first message (after those already returned) starting with `prefix`."""
        end = time.monotonic() + timeout
        while True:
            for i, m in enumerate(self.got):
                if m.startswith(prefix):
                    del self.got[: i + 1]
                    return m
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {prefix!r} (got {self.got})")
            self.sock.settimeout(left)
            try:
                self.got.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_systemd_notifications(server, make_proxy, tmp_path, abstract):
    n = NotifySocket(f"@ftpwarden-test-{os.getpid()}-{time.monotonic_ns()}" if abstract else tmp_path / "notify")
    try:
        proxy = make_proxy(server, env={"NOTIFY_SOCKET": n.name, "WATCHDOG_USEC": "300000"})
        assert n.wait_for("READY=1") == "READY=1\nSTATUS=taking sessions"
        for _ in range(3):  # every 150 ms, half of WATCHDOG_USEC
            n.wait_for("WATCHDOG=1")
        before = proxy.stderr().count("configuration reloaded")
        proxy.proc.send_signal(signal.SIGHUP)
        reloading = n.wait_for("RELOADING=1")
        assert reloading.split("\n")[1].startswith("MONOTONIC_USEC=") and int(reloading.split("=")[-1]) > 0
        n.wait_for("READY=1")
        # READY comes after every worker switched, and after the log line saying so
        assert proxy.stderr().count("configuration reloaded") == before + 1
        out = tmp_path / "small.txt"
        curl_get(Target.via(proxy, server), "small.txt", out)
        proxy.proc.send_signal(signal.SIGTERM)
        assert n.wait_for("STOPPING=1").startswith("STOPPING=1")
        proxy.proc.wait(10)  # exits by itself once drained
        assert proxy.terminate() == 0
    finally:
        n.close()


def test_no_notify_socket_no_messages(server, make_proxy):
    proxy = make_proxy(server, env={"NOTIFY_SOCKET": "", "WATCHDOG_USEC": "1000"})
    proxy.proc.send_signal(signal.SIGHUP)
    assert proxy.terminate() == 0


def read_status(pid: int) -> dict[str, str]:
    return dict(l.split(":\t", 1) for l in Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in l)


@pytest.mark.skipif(os.geteuid() != 0, reason="the privilege drop starts as root")
def test_privilege_drop(server, make_proxy, tmp_path):
    conf = tmp_path / "proc.toml"
    conf.write_text('[process]\nuser = "nobody"\ngroup = "nogroup"\n')
    proxy = make_proxy(server, extra_args=["--config", str(conf)])
    st = read_status(proxy.proc.pid)
    assert st["Uid"].split() == ["65534"] * 4, st["Uid"]  # real, effective, saved, filesystem
    assert st["Gid"].split() == ["65534"] * 4, st["Gid"]
    assert st["Groups"].strip() == "", st["Groups"]
    assert int(st["CapEff"], 16) == 0 and int(st["CapPrm"], 16) == 0, st
    # every thread, not just the main one
    for task in Path(f"/proc/{proxy.proc.pid}/task").iterdir():
        assert read_status_task(task)["Uid"].split() == ["65534"] * 4
    out = tmp_path / "blob.bin"  # sessions work as before: passive ports, audit log
    curl_get(Target.via(proxy, server), "blob.bin", out)
    assert sha256_file(out) == server.files["blob.bin"]
    assert proxy.wait_event("transfer")["bytes"] == out.stat().st_size
    # the audit log's directory is root's: a reopen fails and the open file stays in use
    os.chmod(tmp_path, 0o755)
    proxy.audit_path.rename(tmp_path / "rotated.jsonl")
    proxy.proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: "cannot reopen" in proxy.stderr(), "the failed reopen is logged")
    curl_get(Target.via(proxy, server), "small.txt", tmp_path / "small.txt")
    assert proxy.terminate() == 0
    rotated = [json.loads(l) for l in (tmp_path / "rotated.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "transfer" for e in rotated) == 2  # nothing lost


def read_status_task(task: Path) -> dict[str, str]:
    return dict(l.split(":\t", 1) for l in (task / "status").read_text().splitlines() if ":\t" in l)


def wait_for(cond, what: str, timeout: float = 10):
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, what
        time.sleep(0.02)


def test_unknown_user_is_a_config_error(proxy_bin, tmp_path):
    conf = tmp_path / "proc.toml"
    conf.write_text('[process]\nuser = "no-such-user-here"\n')
    r = subprocess.run([proxy_bin, "check-config", str(conf)], capture_output=True, text=True)
    assert r.returncode == 1 and f"{conf}:2:8: no such user: 'no-such-user-here'" in r.stderr, r.stderr


def test_rotation_under_load_loses_and_repeats_nothing(pyftpdlib_server, make_proxy, tmp_path):
    server = pyftpdlib_server
    proxy = make_proxy(server, extra_args=["--workers", "2"])
    target = Target.via(proxy, server)
    sessions, noops, threads = 40, 20, 8
    done = Counter()
    lock = threading.Lock()
    rotated = threading.Event()

    def client(k: int):
        for i in range(sessions // threads):
            with ftplib_connect(target) as ftp:
                for _ in range(noops):
                    ftp.sendcmd("NOOP")
                if i % 2 == 0:
                    ftp.retrbinary("RETR small.txt", lambda b: None)
                ftp.quit()
            with lock:
                done["sessions"] += 1
                done["retr"] += i % 2 == 0
            if k == 0 and i == 1:
                rotated.wait(30)  # some sessions on each side of the switch

    workers = [threading.Thread(target=client, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    wait_for(lambda: done["sessions"] >= threads, "the first sessions ended", 60)
    old = tmp_path / "audit.jsonl.1"
    proxy.audit_path.rename(old)  # what logrotate does, then its postrotate
    proxy.proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: "audit log reopened" in proxy.stderr(), "the reopen is logged")
    rotated.set()
    for w in workers:
        w.join(120)
    assert proxy.terminate() == 0
    lines = old.read_text().splitlines() + proxy.audit_path.read_text().splitlines()
    assert old.stat().st_size > 0 and proxy.audit_path.stat().st_size > 0
    events = [json.loads(l) for l in lines]  # every line whole
    per = Counter((e["event"], e.get("session")) for e in events)
    opens = [s for (ev, s) in per if ev == "session_open"]
    assert len(opens) == sessions == done["sessions"]
    for s in opens:
        assert per[("session_open", s)] == 1 and per[("session_close", s)] == 1, s
    commands = Counter(e["verb"] for e in events if e["event"] == "command")
    assert commands["NOOP"] == sessions * noops
    assert commands["RETR"] == done["retr"]
    assert sum(e["event"] == "transfer" for e in events) == done["retr"]


@pytest.mark.skipif(os.geteuid() != 0, reason="the privilege drop starts as root")
def test_transparent_mode_keeps_net_admin_and_nothing_else(proxy_bin, make_proxy, tmp_path):
    conf = tmp_path / "t.toml"
    conf.write_text('[listen]\ntransparent = true\n[upstream]\nallowed = ["192.0.2.0/24"]\n'
                    '[process]\nuser = "nobody"\n')
    proxy = make_proxy("", extra_args=["--config", str(conf)])
    st = read_status(proxy.proc.pid)
    assert st["Uid"].split() == ["65534"] * 4, st["Uid"]
    assert int(st["CapEff"], 16) == 1 << 12 and int(st["CapPrm"], 16) == 1 << 12, st  # CAP_NET_ADMIN only
    assert int(st["CapInh"], 16) == 0 and int(st.get("CapAmb", "0"), 16) == 0, st
    # connections made to the proxy itself are refused: it is no open relay
    with socket.create_connection((proxy.host, proxy.port), timeout=10) as s:
        assert s.recv(200).startswith(b"421 ")


def test_a_reload_gives_each_session_exactly_one_configuration(server, make_proxy, tmp_path):
    """Sessions open while SIGHUP swaps the rules: each one behaves by the
    rules its session_open names (rules_version), old or new, never a mix;
    the reload's log line comes once every worker has switched, and every
    session opened after it has the new rules."""
    rules = tmp_path / "noop.toml"
    rules.write_text('[[rule]]\nid = "no-noop"\nverbs = ["NOOP"]\nenforce = "reject"\nreply = 504\n')
    conf = tmp_path / "c.toml"
    conf.write_text(f'[policy]\nrules = ["{rules}"]\n')
    proxy = make_proxy(server, mode="enforce", extra_args=["--config", str(conf), "--workers", "2"])
    via = Target.via(proxy, server)
    outcome: dict[str, int] = {}
    after_reload: set[str] = set()
    stop = threading.Event()

    def client():
        while not stop.is_set():
            reloaded = "configuration reloaded" in proxy.stderr()
            with RawClient.to(via) as c:
                me = "%s:%d" % c.sock.getsockname()
                c.login()
                outcome[me] = c.cmd("NOOP").code
                c.quit()
            if reloaded:
                after_reload.add(me)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    wait_for(lambda: len(outcome) >= 8, "sessions before the reload", 30)
    rules.write_text("# no rules\n")
    proxy.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in proxy.stderr(), "the reload")
    wait_for(lambda: len(after_reload) >= 8, "sessions after the reload", 30)
    stop.set()
    for t in threads:
        t.join(30)
    # every session's events have reached the audit log (it is flushed within a second)
    wait_for(lambda: set(outcome) <= {o["client"] for o in proxy.events("session_open")}, "every session_open")
    versions = {o["client"]: o["rules_version"] for o in proxy.events("session_open")}
    old = proxy.events("session_open")[0]["rules_version"]
    assert len(set(versions.values())) == 2, set(versions.values())
    for client, code in outcome.items():
        assert code == (504 if versions[client] == old else 200), (client, code, versions[client])
    assert all(versions[c] != old for c in after_reload)
