"""Limits and timeouts of the real proxy in front of vsftpd and pyftpdlib:
session caps, the login / idle / data-connect / data-stall timers, TCP
keepalive on both control legs, the failed-login cool-down, and the
RLIMIT_NOFILE handling. Every refusal is checked on the wire (421 and the
close), in the audit log, and against a healthy session that keeps moving
files byte for byte."""
from __future__ import annotations

import hashlib
import os
import select
import socket
import resource
import subprocess
import time

import pytest

from checks import healthy_get, open_retr, raw_retr
from clients import RawClient, Target
from servers import Proxy, sha256_bytes


# ---------------------------------------------------------------- helpers

def config_args(tmp_path, text: str) -> list[str]:
    p = tmp_path / "ftpwarden.toml"
    p.write_text(text)
    return ["--config", str(p)]


def raw_from(target: Target, source_ip: str = "127.0.0.1", timeout: float = 5.0) -> RawClient:
    """A RawClient whose control connection comes from `source_ip` (any 127/8 address)."""
    c = RawClient.__new__(RawClient)
    c.sock = socket.create_connection((target.host, target.port), timeout=timeout, source_address=(source_ip, 0))
    c.buf = b""
    c.target = target
    c.greeting = c.reply()
    return c


def replies_until_close(c: RawClient, timeout: float = 5.0) -> list:
    """Every reply until the proxy closes the connection; fails if it stays open."""
    c.sock.settimeout(timeout)
    out = []
    end = time.monotonic() + timeout
    while True:
        try:
            out.append(c.reply())
        except ConnectionError:
            return out
        except socket.timeout:
            raise AssertionError(f"connection still open after {timeout}s; replies so far: {[str(r) for r in out]}")
        if time.monotonic() > end:
            raise AssertionError(f"connection still open after {timeout}s; replies so far: {[str(r) for r in out]}")


def refused(target: Target, source_ip: str = "127.0.0.1"):
    """Connects and expects a 421 greeting followed by the close; returns the reply."""
    c = raw_from(target, source_ip)
    try:
        assert c.greeting.code == 421, c.greeting
        assert replies_until_close(c, 3.0) == []
        return c.greeting
    finally:
        c.close()


def random_file(server, name: str, size: int) -> str:
    data = os.urandom(size)
    (server.root / name).write_bytes(data)
    return sha256_bytes(data)


def sparse_file(server, name: str, size: int) -> None:
    with open(server.root / name, "wb") as f:
        f.truncate(size)


def proxy_sockets(proxy) -> list[dict]:
    """The proxy's TCP sockets as `ss -tanpo` shows them."""
    out = subprocess.run(["ss", "-H", "-tanpo"], capture_output=True, text=True, check=True).stdout
    socks = []
    for line in out.splitlines():
        if f"pid={proxy.proc.pid}," not in line:
            continue
        f = line.split()
        socks.append({"state": f[0], "local": f[3], "peer": f[4], "line": line})
    return socks


def port_of(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


# ---------------------------------------------------------------- session caps

def test_max_sessions_refuses_with_421(server, make_proxy, tmp_path):
    proxy = make_proxy(server, extra_args=config_args(
        tmp_path, "[limits]\nmax_sessions = 2\nmax_sessions_per_ip = 100\nshutdown_grace_s = 1\n"))
    via = Target.via(proxy, server)
    a, b = RawClient.to(via), RawClient.to(via)
    a.login()
    b.login()

    g = refused(via)
    assert "Too many users" in g.text
    ev = proxy.wait_event("session_refused")
    assert "Too many users" in ev["reason"] and ev["client"].startswith("127.0.0.1:")

    # the open sessions are untouched
    assert b.cmd("NOOP").code == 200
    assert sha256_bytes(raw_retr(a, "blob.bin")) == server.files["blob.bin"]

    # a freed slot is available again
    assert a.quit().code == 221
    proxy.wait_event("session_close")
    c = RawClient.to(via)
    assert c.greeting.code == 220
    c.login()
    assert sha256_bytes(raw_retr(c, "small.txt")) == server.files["small.txt"]
    c.quit()
    b.quit()
    proxy.wait_events("session_close", 3)
    events = proxy.settle()
    assert len([e for e in events if e["event"] == "session_open"]) == 3, "the refused connection became a session"
    assert len([e for e in events if e["event"] == "session_refused"]) == 1


def test_max_sessions_per_ip_refuses_with_421(server, make_proxy, tmp_path):
    proxy = make_proxy(server, extra_args=config_args(
        tmp_path, "[limits]\nmax_sessions = 100\nmax_sessions_per_ip = 2\nshutdown_grace_s = 1\n"))
    via = Target.via(proxy, server)
    a, b = raw_from(via), raw_from(via)
    a.login()
    b.login()

    g = refused(via)
    assert "Too many connections from your address" in g.text
    ev = proxy.wait_event("session_refused")
    assert "from your address" in ev["reason"] and ev["client"].startswith("127.0.0.1:")

    # another address is not affected by 127.0.0.1's count
    mark = server.log_mark()
    other = raw_from(via, "127.0.0.2")
    assert other.greeting.code == 220
    other.login()
    assert other.cmd("NOOP").code == 200
    server.wait_for_command("PASS", since=mark)
    assert proxy.wait_event("session_open", client="127.0.0.2:%d" % other.sock.getsockname()[1])

    # and the two sessions of 127.0.0.1 keep working
    assert sha256_bytes(raw_retr(a, "blob.bin")) == server.files["blob.bin"]
    assert b.cmd("NOOP").code == 200
    for c in (a, b, other):
        assert c.quit().code == 221


# ---------------------------------------------------------------- timers

def test_login_timeout(server, make_proxy, tmp_path):
    proxy = make_proxy(server, extra_args=config_args(tmp_path, "[limits]\nlogin_timeout_s = 1\n"))
    via = Target.via(proxy, server)
    mark = server.log_mark()
    slow = RawClient.to(via)
    t0 = time.monotonic()
    assert slow.cmd(f"USER {server.user}").code == 331
    healthy = RawClient.to(via)
    healthy.login()  # logged in in time: the login timer is off for good

    got = replies_until_close(slow, 5.0)
    took = time.monotonic() - t0
    assert [r.code for r in got] == [421], [str(r) for r in got]
    assert "Login timeout" in got[0].text
    assert took >= 0.9, took  # never before its period (less the moments before t0); replies_until_close bounds the wait
    ev = proxy.wait_event("timeout", timer="login")
    assert ev["session"] == proxy.wait_event("session_close", reason="login-timeout")["session"]
    server.wait_for_command("USER", since=mark)

    time.sleep(0.5)  # the healthy session is now older than login_timeout_s
    assert sha256_bytes(raw_retr(healthy, "blob.bin")) == server.files["blob.bin"]
    assert healthy.quit().code == 221
    assert len(proxy.events("timeout")) == 1


def test_idle_timeout(server, make_proxy, tmp_path):
    proxy = make_proxy(server, extra_args=config_args(tmp_path, "[limits]\nidle_timeout_s = 1\n"))
    via = Target.via(proxy, server)
    idle = RawClient.to(via)
    idle.login()
    t0 = time.monotonic()
    got = replies_until_close(idle, 5.0)
    took = time.monotonic() - t0
    assert [r.code for r in got] == [421] and "Idle timeout" in got[0].text, [str(r) for r in got]
    assert took >= 0.9, took  # never before its period (less the moments before t0); replies_until_close bounds the wait
    ev = proxy.wait_event("timeout", timer="idle")
    assert ev["session"] == proxy.wait_event("session_close", reason="idle-timeout")["session"]
    # a client that keeps talking is never idle
    busy = RawClient.to(via)
    busy.login()
    for _ in range(5):
        time.sleep(0.5)
        assert busy.cmd("NOOP").code == 200
    assert busy.quit().code == 221


def test_idle_timer_never_fires_during_a_transfer(server, make_proxy, tmp_path):
    """A download that moves data slowly for twice idle_timeout_s completes;
    the idle period starts when it ends, not at the client's last command."""
    proxy = make_proxy(server, extra_args=config_args(tmp_path, "[limits]\nidle_timeout_s = 2\n"))
    via = Target.via(proxy, server)
    name = f"slow-{os.getpid()}-{time.monotonic_ns()}.bin"
    size = 48 << 20  # more than every socket buffer and pipe on the way can hold
    sparse_file(server, name, size)
    try:
        c = RawClient.to(via)
        c.login()
        t0 = time.monotonic()
        d = open_retr(c, name, 32768)
        h, got = hashlib.sha256(), 0
        while True:
            chunk = d.recv(65536)
            if not chunk:
                break
            h.update(chunk)
            got += len(chunk)
            if time.monotonic() - t0 < 4.5:  # slowly (about 1 MiB/s) for 4.5 s, then at full speed
                time.sleep(len(chunk) / (1 << 20))
        d.close()
        r = c.reply()
        took = time.monotonic() - t0
        assert r.code == 226, r
        assert got == size and h.hexdigest() == sha256_bytes(bytes(size))
        assert took > 4.5
        assert not proxy.events("timeout"), proxy.events("timeout")
        # the idle clock restarted when the transfer ended
        time.sleep(1.2)
        assert c.cmd("NOOP").code == 200
        got = replies_until_close(c, 5.0)
        assert [r.code for r in got] == [421]
        proxy.wait_event("timeout", timer="idle")
        (t,) = proxy.events("transfer")
        assert t["bytes"] == size and t["code"] == 226
    finally:
        (server.root / name).unlink()


def blackhole_listener() -> tuple[socket.socket, list[socket.socket]]:
    """A listening socket whose accept queue is full: a connection to it is
    never completed (the SYN is dropped), like a client firewall's."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    fill = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(lst.getsockname())
        fill.append(s)
    time.sleep(0.2)
    probe = socket.socket()
    probe.setblocking(False)
    probe.connect_ex(lst.getsockname())
    fill.append(probe)
    _, w, _ = select.select([], [probe], [], 0.5)
    assert not w, "premise: a connection to a full listen queue should hang"
    return lst, fill


def test_data_connect_timeout(server, make_proxy, tmp_path):
    """The proxy cannot reach the client's active data port: after
    connect_timeout_s the data connection is dropped, the server's transfer
    fails (4xx), and the session goes on."""
    proxy = make_proxy(server, extra_args=config_args(tmp_path, "[data]\nconnect_timeout_s = 1\n"))
    via = Target.via(proxy, server)
    lst, fill = blackhole_listener()
    try:
        c = RawClient.to(via)
        c.login()
        assert c.cmd("TYPE I").code == 200
        p = lst.getsockname()[1]
        mark = server.log_mark()
        assert c.cmd(f"PORT 127,0,0,1,{p >> 8},{p & 255}").code == 200
        r = c.cmd("RETR blob.bin")
        codes = [r.code]
        if r.code in (125, 150):
            c.sock.settimeout(6)  # the data connect timeout is 1 s; the reply must come within this
            codes.append(c.reply().code)
        assert codes[-1] in (425, 426, 451), codes
        assert 226 not in codes
        ev = proxy.wait_event("timeout", timer="data_connect")
        assert proxy.wait_event("data_close", reason="data-connect-timeout")["session"] == ev["session"]
        server.wait_for_command("RETR", since=mark)
        # the session is still usable
        assert c.cmd("NOOP").code == 200
        assert sha256_bytes(raw_retr(c, "blob.bin")) == server.files["blob.bin"]
        assert c.quit().code == 221
    finally:
        for s in fill:
            s.close()
        lst.close()


def test_data_stall_timeout_download(server, make_proxy, tmp_path):
    """A client that stops reading a download: after stall_timeout_s the data
    connection is aborted, the client hears 426, and the session goes on
    (while another session moves a file byte-exact)."""
    proxy = make_proxy(server, extra_args=config_args(tmp_path, "[data]\nstall_timeout_s = 1\n"))
    via = Target.via(proxy, server)
    name = f"stall-{os.getpid()}-{time.monotonic_ns()}.bin"
    sparse_file(server, name, 256 << 20)
    try:
        c = RawClient.to(via)
        c.login()
        d = open_retr(c, name, 16384)
        assert d.recv(4096)  # started, then never read again
        healthy_get(via, server)
        c.sock.settimeout(8)
        r = c.reply()
        assert r.code == 426, r
        ev = proxy.wait_event("timeout", timer="data_stall")
        dc = proxy.wait_event("data_close", reason="data-stall-timeout")
        assert dc["session"] == ev["session"] and dc["complete"] is False
        assert dc["bytes_down"] < 256 << 20
        d.close()
        assert c.cmd("NOOP").code == 200
        assert sha256_bytes(raw_retr(c, "small.txt")) == server.files["small.txt"]
        assert c.quit().code == 221
    finally:
        (server.root / name).unlink()


def test_data_stall_timeout_upload(server, make_proxy, tmp_path, unique_name):
    """A client that stops sending in the middle of a STOR: the data
    connection is aborted after stall_timeout_s and the client hears 426,
    never a 226 for the cut-short file, whatever the server made of it."""
    proxy = make_proxy(server, extra_args=config_args(tmp_path, "[data]\nstall_timeout_s = 1\n"))
    via = Target.via(proxy, server)
    name = unique_name("stall-up", ".bin")
    c = RawClient.to(via)
    c.login()
    assert c.cmd("TYPE I").code == 200
    d = c.data_connect(epsv=True)
    mark = server.log_mark()
    assert c.cmd(f"STOR upload/{name}").code in (125, 150)
    d.sendall(os.urandom(100_000))  # then nothing more, and no FIN
    c.sock.settimeout(8)
    r = c.reply()
    assert r.code == 426, r
    ev = proxy.wait_event("timeout", timer="data_stall")
    dc = proxy.wait_event("data_close", reason="data-stall-timeout")
    assert dc["session"] == ev["session"] and dc["complete"] is False and dc["bytes_up"] == 100_000
    t = proxy.wait_event("transfer", verb="STOR")
    assert t["code"] == 426 and t["bytes"] == 100_000
    f = proxy.wait_event("server_finding", rule="data-failure")
    assert f["cause"] == "cut-by-proxy" and f["session"] == ev["session"], f
    # the server saw the STOR end early (what it answered is its own business)
    end = time.monotonic() + 3
    while not [e for e in server.replies(mark) if e.code and e.code >= 200]:
        assert time.monotonic() < end, server.entries(mark)
        time.sleep(0.05)
    d.close()
    assert c.cmd("NOOP").code == 200
    healthy_get(via, server)
    assert c.quit().code == 221


# ---------------------------------------------------------------- keepalive

def test_tcp_keepalive_on_both_control_legs(server, make_proxy):
    proxy = make_proxy(server)
    via = Target.via(proxy, server)
    c = RawClient.to(via)
    c.login()
    client_port = c.sock.getsockname()[1]
    # ss shows the timer that runs: a retransmission timer while a reply is
    # unacknowledged, the keepalive timer once the connection is quiet
    end = time.monotonic() + 3
    while True:
        socks = [s for s in proxy_sockets(proxy) if s["state"] == "ESTAB"]
        client_leg = [s for s in socks if port_of(s["local"]) == proxy.port and port_of(s["peer"]) == client_port]
        upstream_leg = [s for s in socks if port_of(s["peer"]) == server.port]
        assert len(client_leg) == 1 and len(upstream_leg) == 1, socks
        legs = client_leg + upstream_leg
        if all("timer:(keepalive" in s["line"] for s in legs) or time.monotonic() > end:
            break
        time.sleep(0.1)
    for s in legs:
        assert "timer:(keepalive" in s["line"], s["line"]
    assert c.quit().code == 221


# ---------------------------------------------------------------- failed logins

def test_failed_logins_cool_down(server, make_proxy, tmp_path):
    proxy = make_proxy(server, extra_args=config_args(
        tmp_path, "[limits]\nmax_login_failures = 3\nlogin_failure_window_s = 60\nlogin_cooldown_s = 2\n"
                  "shutdown_grace_s = 1\n"))
    via = Target.via(proxy, server)
    wrong = "wrong-Pw-" + os.urandom(6).hex()
    mark = server.log_mark()
    clients = [RawClient.to(via) for _ in range(3)]
    for c in clients:
        assert c.cmd(f"USER {server.user}").code == 331
    # the servers delay a failed login (PAM, pyftpdlib): fail all three at once
    for c in clients:
        c.sock.settimeout(10)
        c.send(f"PASS {wrong}\r\n".encode())
    for c in clients:
        r = c.reply()
        assert r.code == 530, r
    proxy.wait_events("login_failed", 3)
    # the third failure closes its session with 421; the other two stay open
    readable, _, _ = select.select([c.sock for c in clients], [], [], 1.0)
    closed = [c for c in clients if c.buf or c.sock in readable]
    still_open = [c for c in clients if c not in closed]
    assert len(closed) == 1 and len(still_open) == 2, (closed, still_open)
    got = replies_until_close(closed[0], 3.0)
    assert [r.code for r in got] == [421] and "failed logins" in got[0].text
    proxy.wait_event("session_close", reason="login-failures")
    blocked_at = time.monotonic()

    # the address is refused for the cool-down
    g = refused(via)
    assert "failed logins" in g.text
    assert "failed logins" in proxy.wait_event("session_refused")["reason"]
    for c in still_open:
        c.close()

    # every failure audited, the password masked, never in any log
    fails = proxy.events("login_failed")
    assert len(fails) == 3 and all(e["arg"] == "****" and e["code"] == 530 for e in fails), fails
    passes = proxy.events("command", verb="PASS")
    assert len(passes) == 3 and all(e["arg"] == "****" for e in passes), passes
    assert len([e for e in server.commands(mark) if e.verb == "PASS"]) == 3

    # after the cool-down the address may log in again
    time.sleep(max(0.0, 2.3 - (time.monotonic() - blocked_at)))
    ok = RawClient.to(via)
    assert ok.greeting.code == 220, ok.greeting
    ok.login()
    assert sha256_bytes(raw_retr(ok, "small.txt")) == server.files["small.txt"]
    assert ok.quit().code == 221
    proxy.settle()
    assert wrong not in proxy.audit_text() and wrong not in proxy.stderr()
    assert server.password not in proxy.audit_text() and server.password not in proxy.stderr()


# ---------------------------------------------------------------- RLIMIT_NOFILE

def limited_proxy(proxy_bin, server, tmp_path, soft: int, hard: int, extra_args=()) -> Proxy:
    """The proxy started under `ulimit -n` soft/hard (exec keeps the pid)."""
    wrapper = tmp_path / "limited-ftpwarden.sh"
    wrapper.write_text(f'#!/bin/sh\nulimit -S -n {soft} && ulimit -H -n {hard} && exec "{proxy_bin}" "$@"\n')
    wrapper.chmod(0o755)
    return Proxy(str(wrapper), server, mode="audit", extra_args=extra_args, base=tmp_path / "proxy").start()


def nofile_limits(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError("no Max open files line")


@pytest.fixture
def limited(proxy_bin, tmp_path):
    made = []

    def make(server, soft, hard, extra_args=()):
        (tmp_path / "proxy").mkdir(exist_ok=True)
        p = limited_proxy(proxy_bin, server, tmp_path, soft, hard, extra_args)
        made.append(p)
        return p

    yield make
    for p in made:
        rc = p.stop()
        assert rc == 0, f"proxy exited {rc}; stderr:\n{p.stderr()[-3000:]}"


def test_nofile_soft_limit_raised_at_start(pyftpdlib_server, limited):
    hard = min(4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    proxy = limited(pyftpdlib_server, 256, hard)
    assert nofile_limits(proxy.proc.pid) == (hard, hard)
    healthy_get(Target.via(proxy, pyftpdlib_server), pyftpdlib_server)


def test_fd_exhaustion_refuses_new_sessions_cleanly(server, limited, tmp_path):
    """With 64 fds, sessions beyond what fits are refused with 421 (the
    descriptor reserve: never a silent close, never a hang) and counted,
    while a transfer already running completes byte-exact; once sessions
    end, new ones are taken again."""
    args = config_args(tmp_path, "[server]\nworkers = 1\n[limits]\nshutdown_grace_s = 1\n")
    proxy = limited(server, 64, 64, args)
    assert nofile_limits(proxy.proc.pid) == (64, 64)
    via = Target.via(proxy, server)
    name = f"nofile-{os.getpid()}-{time.monotonic_ns()}.bin"
    size = 8 << 20
    sha = random_file(server, name, size)
    flood: list[RawClient] = []
    try:
        a = RawClient.to(via)
        a.login()
        d = open_retr(a, name, 32768)
        h = hashlib.sha256()
        first = d.recv(65536)
        h.update(first)
        got = len(first)

        refusals = []
        for _ in range(60):
            try:
                c = RawClient(via.host, via.port, timeout=3)
            except ConnectionError:  # closed before a greeting: refused by a close
                refusals.append("closed")
            except socket.timeout:
                raise AssertionError("a connection past the fd limit hangs without an answer")
            else:
                if c.greeting.code == 421:
                    assert replies_until_close(c, 3.0) == []
                    refusals.append(c.greeting.text)
                    c.close()
                else:
                    assert c.greeting.code == 220, c.greeting
                    flood.append(c)
            if len(refusals) >= 3:
                break
        assert len(refusals) >= 3, f"{len(flood)} sessions opened, none refused"
        assert all(r.startswith("421 Too many connections") for r in refusals), refusals
        assert [e["reason"] for e in proxy.wait_events("session_refused", 3)][:3] == \
            ["Too many connections, try again later."] * 3
        assert proxy.alive()
        # the transfer already running completes byte-exact
        while True:
            chunk = d.recv(65536)
            if not chunk:
                break
            h.update(chunk)
            got += len(chunk)
        d.close()
        r = a.reply()
        assert r.code == 226, r
        assert got == size and h.hexdigest() == sha
        assert a.cmd("NOOP").code == 200
        # an open session of the flood still answers
        if flood:
            assert flood[0].cmd(f"USER {server.user}").code == 331
        for c in flood:
            c.close()
        flood.clear()
        # the fds come back: a new session works end to end
        end = time.monotonic() + 5
        while True:
            try:
                n = RawClient.to(via)
                if n.greeting.code == 220:
                    break
                n.close()
            except ConnectionError:
                pass
            assert time.monotonic() < end, "no session accepted after the flood ended"
            time.sleep(0.1)
        n.login()
        assert sha256_bytes(raw_retr(n, "blob.bin")) == server.files["blob.bin"]
        n.quit()
        a.quit()
    finally:
        for c in flood:
            c.close()
        (server.root / name).unlink()
