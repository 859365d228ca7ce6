"""Faults around the real proxy: an upstream that dies mid-transfer or cannot
be reached, clients that vanish mid-transfer (data first, control first, or
with a reset), ABOR in the middle of a RETR, and half-closed connections.
Each test checks what the client received, what the server received, the
audit event that names what happened, and that the proxy lets go of every
socket it no longer needs."""
from __future__ import annotations

import os
import socket
import struct
import subprocess
import time

import pytest

from checks import healthy_get, open_retr, proxy_established, proxy_fds, raw_retr, wait_released
from clients import RawClient, Target
from servers import (FTP_PASSWORD, FTP_USER, HERE, SYSTEM_PYTHON, PyftpdServer, VsftpdServer, find_vsftpd,
                     free_port, kill_tree, populate_tree, sha256_bytes, sha256_file, wait_for_greeting)


# ---------------------------------------------------------------- helpers

def config_args(tmp_path, text: str = "") -> list[str]:
    p = tmp_path / "ftpwarden.toml"
    # open sessions at teardown must not hold the proxy's exit for long
    p.write_text("[limits]\nshutdown_grace_s = 1\n" + text)
    return ["--config", str(p)]


def replies_until_close(c: RawClient, timeout: float = 5.0) -> list:
    c.sock.settimeout(timeout)
    out = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            out.append(c.reply())
        except ConnectionError:
            return out
        except socket.timeout:
            break
    raise AssertionError(f"connection still open after {timeout}s; replies: {[str(r) for r in out]}")


def drain(sock: socket.socket, timeout: float = 5.0) -> int:
    """Reads until EOF or a reset; returns the byte count."""
    sock.settimeout(timeout)
    n = 0
    try:
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            n += len(chunk)
    except ConnectionResetError:
        pass
    sock.close()
    return n


def sparse_file(server, size: int) -> str:
    name = f"big-{os.getpid()}-{time.monotonic_ns()}.bin"
    with open(server.root / name, "wb") as f:
        f.truncate(size)
    return name


def start_retr(c: RawClient, name: str, rcvbuf: int = 32768) -> socket.socket:
    """Logs in, opens a passive data connection (small receive buffer) and starts RETR."""
    c.login()
    d = open_retr(c, name, rcvbuf)
    got = 0
    while got < 256 * 1024:
        chunk = d.recv(65536)
        assert chunk
        got += len(chunk)
    return d


def linger_rst(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# ---------------------------------------------------------------- dedicated servers

def restart_same_port(srv) -> None:
    """Starts a stopped server again on the port it had."""
    if srv.kind == "pyftpdlib":
        out = open(srv.stdout_path, "ab")
        srv.proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(HERE / "pyftpd_server.py"), "--root", str(srv.root), "--user", srv.user,
             "--password", srv.password, "--log", str(srv.log), "--port", str(srv.port),
             "--passive-ports", "%d-%d" % srv.pasv_range],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=out, start_new_session=True)
        out.close()
        line = srv.proc.stdout.readline()
        assert line.startswith(b"READY"), line + srv.stdout_path.read_bytes()[-500:]
        srv.proc.stdout.close()
    else:
        out = open(srv.stdout_path, "ab")
        srv.proc = subprocess.Popen([srv.binary, str(srv.conf)], stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
    wait_for_greeting(srv.port, timeout=5, proc=srv.proc)


@pytest.fixture(params=["vsftpd", "pyftpdlib"])
def own_server(request):
    """A server of this test's own, which the test may kill."""
    if request.param == "vsftpd":
        binary = find_vsftpd()
        if binary is None or os.geteuid() != 0:
            pytest.skip("vsftpd not available")
        srv = VsftpdServer(FTP_USER, FTP_PASSWORD, binary, pasv_ports=200)
    else:
        srv = PyftpdServer(FTP_USER, FTP_PASSWORD)
    try:
        srv.files = populate_tree(srv.root)
        with open(srv.root / "huge.bin", "wb") as f:
            f.truncate(512 << 20)
        srv.start()
        yield srv
    finally:
        srv.cleanup()


# ---------------------------------------------------------------- dead upstream

def test_upstream_dies_mid_transfer(own_server, make_proxy, tmp_path):
    srv = own_server
    proxy = make_proxy(srv, extra_args=config_args(tmp_path))
    via = Target.via(proxy, srv)
    c = RawClient.to(via)
    d = start_retr(c, "huge.bin")
    srv.wait_for_command("RETR")

    kill_tree(srv.proc.pid)
    srv.proc.wait(5)
    srv.proc = None
    got = replies_until_close(c, 5.0)  # the session must end within it
    codes = [r.code for r in got]
    assert codes and codes[-1] in (421, 426, 451), [str(r) for r in got]
    assert 226 not in codes and not any(200 <= x < 300 for x in codes), codes
    assert drain(d) < 512 << 20
    ev = proxy.wait_event("session_close")
    assert ev["reason"] in ("upstream-closed", "upstream-error"), ev
    assert proxy.wait_event("reply", code=421, source="proxy")["session"] == ev["session"]
    assert not proxy.events("transfer", code=226)

    # while the server is down: 421 and close, the proxy stays up
    down = RawClient.to(via)
    assert down.greeting.code == 421, down.greeting
    assert replies_until_close(down, 3.0) == []
    proxy.wait_event("session_close", reason="upstream-unreachable")
    assert proxy.alive()

    # the server is back: new sessions work at once
    restart_same_port(srv)
    mark = srv.log_mark()
    n = RawClient.to(via)
    assert n.greeting.code == 220, n.greeting
    n.login()
    assert sha256_bytes(raw_retr(n, "blob.bin")) == srv.files["blob.bin"]
    assert n.quit().code == 221
    srv.wait_for_command("QUIT", since=mark)


def test_upstream_unreachable_at_connect(make_proxy, tmp_path):
    port = free_port()  # nothing listens there
    proxy = make_proxy(f"127.0.0.1:{port}", extra_args=config_args(tmp_path))
    for _ in range(2):
        c = RawClient(proxy.host, proxy.port, timeout=5)
        assert c.greeting.code == 421, c.greeting
        assert replies_until_close(c, 3.0) == []
        c.close()
    closes = proxy.wait_events("session_close", 2)
    assert all(e["reason"] == "upstream-unreachable" for e in closes), closes
    assert len(proxy.events("reply", code=421, source="proxy")) == 2
    assert proxy.alive()


def test_upstream_that_never_greets(make_proxy, tmp_path):
    """Accepted by the kernel, never answered: 421 after connect_timeout_ms."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        proxy = make_proxy("127.0.0.1:%d" % silent.getsockname()[1],
                           extra_args=config_args(tmp_path, "[upstream]\nconnect_timeout_ms = 500\n"))
        t0 = time.monotonic()
        c = RawClient(proxy.host, proxy.port, timeout=5)
        took = time.monotonic() - t0
        assert c.greeting.code == 421, c.greeting
        assert took >= 0.5, took  # a timer never fires before its period (it may fire a tick late)
        assert replies_until_close(c, 3.0) == []
        ev = proxy.wait_event("timeout", timer="upstream_connect")
        assert proxy.wait_event("session_close", reason="upstream-connect-timeout")["session"] == ev["session"]
    finally:
        silent.close()


# ---------------------------------------------------------------- vanishing clients

@pytest.mark.parametrize("how", ["data-first", "control-first", "reset-both"])
def test_client_vanishes_mid_transfer(server, make_proxy, tmp_path, how):
    proxy = make_proxy(server, extra_args=config_args(tmp_path))
    via = Target.via(proxy, server)
    name = sparse_file(server, 256 << 20)
    try:
        healthy_get(via, server)  # warms the proxy up; then its idle fd count
        proxy.wait_event("session_close")
        wait_released(proxy, 1 << 30)
        baseline = proxy_fds(proxy)

        c = RawClient.to(via)
        sid = proxy.wait_event("session_open", client="127.0.0.1:%d" % c.sock.getsockname()[1])["session"]
        mark = server.log_mark()
        d = start_retr(c, name)
        assert len(proxy_established(proxy)) == 4  # two control legs, two data legs
        if how == "data-first":
            d.close()
            time.sleep(0.2)
            c.close()
        elif how == "control-first":
            c.close()
            time.sleep(0.2)
            d.close()
        else:
            linger_rst(d)
            linger_rst(c.sock)
        wait_released(proxy, baseline)
        ev = proxy.wait_event("session_close", session=sid)
        assert ev["reason"] in ("client-closed", "client-error", "connection-closed"), ev
        dc = proxy.wait_event("data_close", session=sid)
        assert dc["bytes_down"] < 256 << 20 and dc["complete"] is False, dc
        assert not proxy.events("transfer", session=sid, code=226)
        server.wait_for_command("RETR", since=mark)
        healthy_get(via, server)
        proxy.wait_events("session_close", 3)
        wait_released(proxy, baseline)
    finally:
        (server.root / name).unlink()


# ---------------------------------------------------------------- ABOR

def send_abor(c: RawClient) -> None:
    """ABOR with its TELNET preamble: IAC IP, then IAC DM as urgent data (RFC 959 §4.1.3)."""
    c.sock.send(b"\xff\xf4")
    c.sock.send(b"\xff\xf2", socket.MSG_OOB)
    c.sock.send(b"ABOR\r\n")


def test_abor_mid_retr(server, make_proxy, tmp_path):
    proxy = make_proxy(server, extra_args=config_args(tmp_path))
    via = Target.via(proxy, server)
    name = sparse_file(server, 256 << 20)
    try:
        c = RawClient.to(via)
        mark = server.log_mark()
        d = start_retr(c, name)
        send_abor(c)
        c.sock.settimeout(5)
        first = c.reply()
        second = c.reply()
        assert drain(d) < 256 << 20
        # ABOR reached the server with its TELNET preamble (vsftpd logs
        # control bytes as '?', pyftpd_server.py as escapes)
        end = time.monotonic() + 3
        while not any(e.text.endswith("ABOR") for e in server.commands(mark)):
            assert time.monotonic() < end, server.verbs(mark)
            time.sleep(0.05)
        (abor,) = [e.text for e in server.commands(mark) if e.text.endswith("ABOR")]
        assert abor in ("????ABOR", "\\xff\\xf4\\xff\\xf2ABOR"), abor
        # the server's own replies to RETR and ABOR, relayed as they are, in order
        end = time.monotonic() + 3
        while True:
            sent = [e.code for e in server.replies(mark) if e.code is not None]
            after = sent[sent.index(next(x for x in sent if x in (125, 150))) + 1:]
            if len(after) >= 2 or time.monotonic() > end:
                break
            time.sleep(0.05)
        assert [first.code, second.code] == after[:2], (str(first), str(second), sent)
        # pyftpdlib: "426 Transfer aborted via ABOR." then "226 ABOR command
        # successful."; vsftpd, whose write fails when the proxy drops the data
        # connection: "426 Failure writing network stream." then "225 No
        # transfer to ABOR."
        assert first.code == 426, first
        assert second.code in (225, 226), second
        dc = proxy.wait_event("data_close")
        assert dc["reason"] == "abor" and dc["complete"] is False, dc
        assert [e["verb"] for e in proxy.events("command")][-1] == "ABOR"
        # both data legs are gone, the session goes on
        end = time.monotonic() + 3
        while len(proxy_established(proxy)) != 2 and time.monotonic() < end:
            time.sleep(0.05)
        assert len(proxy_established(proxy)) == 2, proxy_established(proxy)
        assert c.cmd("NOOP").code == 200
        assert sha256_bytes(raw_retr(c, "blob.bin")) == server.files["blob.bin"]
        assert c.quit().code == 221
    finally:
        (server.root / name).unlink()


# ---------------------------------------------------------------- half-close

@pytest.mark.parametrize("relay", ["copy", "splice", "stream"])
def test_stor_ended_by_client_fin(server, make_proxy, tmp_path, relay):
    proxy = make_proxy(server, extra_args=config_args(tmp_path, f'[data]\nrelay = "{relay}"\n'))
    via = Target.via(proxy, server)
    payload = os.urandom(3 << 20) + b"tail"
    name = f"halfclose-{os.getpid()}-{time.monotonic_ns()}.bin"
    c = RawClient.to(via)
    c.login()
    assert c.cmd("TYPE I").code == 200
    d = c.data_connect(epsv=True)
    r = c.cmd(f"STOR upload/{name}")
    assert r.code in (125, 150), r
    d.sendall(payload)
    d.shutdown(socket.SHUT_WR)  # the end of the file is the client's FIN
    assert drain(d) == 0
    c.sock.settimeout(10)
    r = c.reply()
    assert r.code == 226, r
    assert sha256_file(server.root / "upload" / name) == sha256_bytes(payload)
    t = proxy.wait_event("transfer", verb="STOR")
    assert t["bytes"] == len(payload) and t["direction"] == "upload" and t["code"] == 226
    assert proxy.wait_event("data_close")["complete"] is True
    assert c.quit().code == 221


def test_commands_before_the_greeting_then_half_close(server, make_proxy, tmp_path):
    """A script that sends its commands at once and half-closes before the
    server has even greeted still gets every reply."""
    proxy = make_proxy(server, extra_args=config_args(tmp_path))
    s = socket.create_connection((proxy.host, proxy.port), timeout=5)
    s.sendall(f"USER {server.user}\r\nPASS {server.password}\r\nNOOP\r\nQUIT\r\n".encode())
    s.shutdown(socket.SHUT_WR)
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    s.close()
    codes = [int(line[:3]) for line in data.split(b"\r\n") if line[:3].isdigit() and line[3:4] == b" "]
    assert codes == [220, 331, 230, 200, 221], data


def test_active_transfer_after_half_close(server, make_proxy, tmp_path):
    """PORT and RETR sent together, then a half-close: the client can still
    accept the data connection, so the transfer is carried out, every reply
    arrives and then the session ends. (No QUIT in the batch: pyftpdlib
    answers a QUIT during a transfer with 221 before the transfer's 226.)"""
    proxy = make_proxy(server, extra_args=config_args(tmp_path))
    c = RawClient.to(Target.via(proxy, server))
    c.login()
    assert c.cmd("TYPE I").code == 200
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    port = lst.getsockname()[1]
    c.send(f"PORT 127,0,0,1,{port >> 8},{port & 255}\r\nRETR blob.bin\r\n".encode())
    c.sock.shutdown(socket.SHUT_WR)
    lst.settimeout(10)
    d, _ = lst.accept()
    lst.close()
    data = b""
    while chunk := d.recv(65536):
        data += chunk
    d.close()
    assert sha256_bytes(data) == server.files["blob.bin"]
    got = replies_until_close(c, 5.0)
    assert [r.code for r in got] in ([200, 125, 226], [200, 150, 226]), [str(r) for r in got]
    c.close()
    assert proxy.wait_event("session_close")["reason"] == "client-closed"


def test_quit_then_half_close_still_answered(server, make_proxy, tmp_path):
    proxy = make_proxy(server, extra_args=config_args(tmp_path))
    via = Target.via(proxy, server)
    c = RawClient.to(via)
    c.login()
    mark = server.log_mark()
    c.send(b"NOOP\r\nQUIT\r\n")
    c.sock.shutdown(socket.SHUT_WR)
    got = replies_until_close(c, 5.0)
    assert [r.code for r in got] == [200, 221], [str(r) for r in got]
    c.close()
    server.wait_for_command("QUIT", since=mark)
    assert server.verbs(mark)[-2:] == ["NOOP", "QUIT"]
    ev = proxy.wait_event("session_close")
    assert ev["reason"] == "quit", ev
