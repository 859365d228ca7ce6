"""Hostile peers: the README's "Security" table, against the real proxy in
front of real servers (vsftpd, pyftpdlib) or a scripted upstream.

Each test checks four things: what the client received, what the server
received (its own log, or the scripted upstream's record), the audit event,
and, where the abuse could hurt others, that a well-behaved session on the
same proxy kept moving blob.bin byte-exact while it happened (`Healthy`).

Third parties live on other loopback addresses (127.0.0.2, 127.0.0.3, ::1):
the whole of 127/8 reaches the local host, so a "foreign" listener is a
socket the test owns and can check for connections.
"""
from __future__ import annotations

import hashlib
import secrets
import select
import socket
import threading
import time

import pytest

from checks import pasv_port
from clients import RawClient, Target, ftplib_connect, recv_all
from servers import free_port_range, sha256_bytes

MODES = ["audit", "enforce"]


# ---------------------------------------------------------------------------
# helpers


class Healthy:
    """A well-behaved ftplib session through the same proxy that RETRs
    blob.bin in a loop, from before the abuse until one more complete
    transfer after it; every copy must be byte-exact."""

    def __init__(self, proxy, server):
        self.want = server.files["blob.bin"]
        self.ftp = ftplib_connect(Target.via(proxy, server))
        self.ftp.voidcmd("TYPE I")
        self.digests: list[str] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            while not self._stop.is_set():
                h = hashlib.sha256()
                self.ftp.retrbinary("RETR blob.bin", h.update)
                self.digests.append(h.hexdigest())
                self._stop.wait(0.02)
        except BaseException as e:  # reported by finish()
            self.errors.append(e)

    def _wait_for(self, count: int, timeout: float = 15.0):
        end = time.monotonic() + timeout
        while len(self.digests) < count and not self.errors and time.monotonic() < end:
            time.sleep(0.01)
        assert not self.errors, f"healthy session failed: {self.errors[0]!r}"
        assert len(self.digests) >= count, f"healthy session stalled after {len(self.digests)} transfers"

    def __enter__(self) -> "Healthy":
        self._thread.start()
        self._wait_for(1)
        self._during = len(self.digests)
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self.finish()
        else:
            self._stop.set()
            self._thread.join(15)
            self.ftp.close()

    def finish(self):
        """One more transfer after the abuse, then stop; all copies exact."""
        if self._thread.is_alive() and not self._stop.is_set():
            self._wait_for(self._during + 1)
            self._stop.set()
            self._thread.join(15)
            assert not self._thread.is_alive()
            assert not self.errors, f"healthy session failed: {self.errors[0]!r}"
            assert self.ftp.voidcmd("NOOP").startswith("200")
            self.ftp.quit()
        assert self.digests and all(d == self.want for d in self.digests), "healthy session got a corrupt blob.bin"


def listener(host: str = "127.0.0.2", port: int = 0) -> socket.socket:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(8)
    return s


def privileged_listener(host: str = "127.0.0.1") -> socket.socket:
    """A listener on a free port below 1024 (the tests run as root)."""
    for port in list(range(1023, 600, -1)):
        try:
            return listener(host, port)
        except OSError:
            continue
    raise RuntimeError("no free port below 1024")


def connection_arrived(sock: socket.socket, wait: float = 0.3) -> bool:
    r, _, _ = select.select([sock], [], [], wait)
    return bool(r)


def port_cmd(host: str, port: int) -> str:
    return "PORT %s,%d,%d" % (host.replace(".", ","), port >> 8, port & 255)


def marker() -> str:
    return f"HELP m{secrets.token_hex(8)}"


def open_session(proxy, server, mark_cmd: str | None = None, login: bool = True) -> RawClient:
    c = RawClient.to(Target.via(proxy, server))
    if mark_cmd:
        c.cmd(mark_cmd)
    if login:
        c.login()
    return c


def session_verbs(server, mark_cmd: str, since: int) -> list[str]:
    server.wait_for_command("QUIT", since=since)
    return [e.verb for e in server.session_entries(mark_cmd, since=since) if e.direction == "command"]


def session_commands(server, mark_cmd: str, since: int) -> list[str]:
    return [e.text for e in server.session_entries(mark_cmd, since=since) if e.direction == "command"]


def settled(proxy, sessions: int) -> list[dict]:
    """The whole audit log once `sessions` sessions have opened and every one
    has closed. Each worker hands its events over in batches, so counts and
    "no such event" checks must wait for all of them."""
    end = time.monotonic() + 5
    while True:
        ev = proxy.audit()
        opened = sum(1 for e in ev if e.get("event") == "session_open")
        closed = sum(1 for e in ev if e.get("event") == "session_close")
        if opened >= sessions and opened == closed:
            return ev
        assert time.monotonic() < end, f"{opened} sessions opened, {closed} closed (wanted {sessions})"
        time.sleep(0.05)


def write_config(tmp_path, text: str):
    p = tmp_path / "ftpwarden.toml"
    p.write_text(text)
    return p


def read_exactly_closed(sock: socket.socket, timeout: float = 3.0) -> bytes:
    """Reads until EOF or reset; returns what arrived."""
    sock.settimeout(timeout)
    got = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
    except ConnectionResetError:
        pass
    return got


# ---------------------------------------------------------------------------
# data channel: FTP bounce


def bounce_cases():
    # (id, how to make the trap listener, how to name it)
    return [
        ("port-foreign-host", lambda: listener("127.0.0.2"), lambda h, p: port_cmd(h, p), "PORT"),
        ("eprt-foreign-host", lambda: listener("127.0.0.2"), lambda h, p: f"EPRT |1|{h}|{p}|", "EPRT"),
        ("port-low-port", lambda: privileged_listener("127.0.0.1"), lambda h, p: port_cmd(h, p), "PORT"),
        ("eprt-low-port", lambda: privileged_listener("127.0.0.1"), lambda h, p: f"EPRT |1|{h}|{p}|", "EPRT"),
        ("eprt-ipv6-on-ipv4", lambda: listener("::1"), lambda h, p: f"EPRT |2|{h}|{p}|", "EPRT"),
    ]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", bounce_cases(), ids=[c[0] for c in bounce_cases()])
def test_bounce_refused(server, make_proxy, mode, case):
    """RFC 2577: PORT/EPRT naming another host, a port below 1024, or IPv6 on
    an IPv4 session is answered 504 by the proxy (both modes), never reaches
    the server, and nobody connects to the named address."""
    _, make_trap, make_cmd, verb = case
    proxy = make_proxy(server, mode=mode)
    trap = make_trap()
    host, port = trap.getsockname()[:2]
    mark = server.log_mark()
    m = marker()
    try:
        with Healthy(proxy, server):
            with open_session(proxy, server, m) as c:
                assert c.cmd("TYPE I").code == 200
                r = c.cmd(make_cmd(host, port))
                assert r.code == 504, r
                assert r.raw == b"504 The data address must be your own, with a port of 1024 or above.\r\n"
                if mode == "enforce":
                    # the refused setup is no data setup: the transfer is refused too
                    assert c.cmd("RETR small.txt").code == 503
                assert c.cmd("NOOP").code == 200
                assert not connection_arrived(trap), "the proxy connected to the bounce target"
                c.quit()
        settled(proxy, 2)
        v = proxy.wait_event("violation", rule="port-bounce")
        assert (v["verb"], v["action"], v["reply_code"]) == (verb, "rejected", 504), v
        reply = proxy.wait_event("reply", code=504)
        assert reply["source"] == "proxy"
        verbs = session_verbs(server, m, mark)
        assert "PORT" not in verbs and "EPRT" not in verbs, verbs
        assert verbs == ["HELP", "USER", "PASS", "TYPE", "NOOP", "QUIT"], verbs
        named = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        assert not [e for e in proxy.events("data_open") if e["client_side"] == named]
        assert not connection_arrived(trap, 0.05)
    finally:
        trap.close()


def test_allow_foreign_active(server, make_proxy, tmp_path):
    """[data] allow_foreign_active lets a listed third party receive active
    data (on a port >= 1024); an unlisted one and a low port stay refused."""
    cfg = write_config(tmp_path, '[data]\nallow_foreign_active = ["127.0.0.2"]\n')
    proxy = make_proxy(server, mode="enforce", extra_args=["--config", str(cfg)])
    third = listener("127.0.0.2")
    other = listener("127.0.0.3")
    low = privileged_listener("127.0.0.2")
    tp = third.getsockname()[1]
    mark = server.log_mark()
    m = marker()
    try:
        with open_session(proxy, server, m) as c:
            assert c.cmd("TYPE I").code == 200
            # unlisted host and a privileged port: still a bounce
            assert c.cmd(port_cmd("127.0.0.3", other.getsockname()[1])).code == 504
            assert c.cmd(f"EPRT |1|127.0.0.2|{low.getsockname()[1]}|").code == 504
            # the listed third party
            assert c.cmd(port_cmd("127.0.0.2", tp)).code == 200
            r = c.cmd("RETR small.txt")
            assert r.code in (125, 150), r
            third.settimeout(5)
            conn, peer = third.accept()
            data = recv_all(conn)
            assert c.reply().code == 226
            assert sha256_bytes(data) == server.files["small.txt"]
            assert not connection_arrived(other, 0.05) and not connection_arrived(low, 0.05)
            c.quit()
    finally:
        for s in (third, other, low):
            s.close()
    settled(proxy, 1)
    bounces = proxy.wait_events("violation", 2, rule="port-bounce")
    assert [b["verb"] for b in bounces] == ["PORT", "EPRT"], bounces
    assert len(proxy.events("violation", rule="port-bounce")) == 2
    opened = proxy.wait_event("data_open")
    assert opened["client_side"] == f"127.0.0.2:{tp}", opened
    assert opened["server_side"].startswith("127.0.0.1:"), opened
    # the server's data arrives at once in active mode: still open, then close
    order = [e["event"] for e in proxy.audit() if e["event"] in ("data_open", "data_close")]
    assert order == ["data_open", "data_close"], order
    t = proxy.wait_event("transfer")
    assert (t["verb"], t["path"], t["bytes"], t["code"]) == ("RETR", "small.txt", len(data), 226), t
    cmds = session_commands(server, m, mark)
    actives = [x for x in cmds if x.split(" ")[0].upper() in ("PORT", "EPRT")]
    # the server got exactly one active command, naming the proxy, not the third party
    assert len(actives) == 1, cmds
    assert "127,0,0,2" not in actives[0] and "127.0.0.2" not in actives[0], actives
    assert actives[0].startswith("PORT 127,0,0,1,") or actives[0].startswith("EPRT |1|127.0.0.1|"), actives


def test_foreign_active_off_by_default(server, make_proxy):
    """Without the setting, the same third party is refused."""
    proxy = make_proxy(server, mode="enforce")
    third = listener("127.0.0.2")
    mark = server.log_mark()
    m = marker()
    try:
        with open_session(proxy, server, m) as c:
            assert c.cmd(port_cmd("127.0.0.2", third.getsockname()[1])).code == 504
            assert c.cmd("RETR small.txt").code == 503
            assert not connection_arrived(third)
            c.quit()
    finally:
        third.close()
    v = proxy.wait_event("violation", rule="port-bounce")
    assert v["action"] == "rejected" and v["reply_code"] == 504
    assert session_verbs(server, m, mark) == ["HELP", "USER", "PASS", "QUIT"]


# ---------------------------------------------------------------------------
# data channel: passive-port theft


@pytest.mark.parametrize("epsv", [True, False], ids=["epsv", "pasv"])
def test_passive_port_theft(server, make_proxy, unique_name, epsv):
    """A connection to the proxy's passive port from another address than the
    client's is closed at once, unread and unanswered; the listener keeps
    waiting and the real client gets its data (upload and download)."""
    proxy = make_proxy(server, mode="enforce")
    name = unique_name("theft", ".bin")
    payload = secrets.token_bytes(200_000)
    junk = b"STOLEN" * 10_000
    mark = server.log_mark()
    m = marker()
    with Healthy(proxy, server):
        with open_session(proxy, server, m) as c:
            assert c.cmd("TYPE I").code == 200
            for direction in ("up", "down"):
                if epsv:
                    port = c.epsv()
                else:
                    host, port = c.pasv()
                    assert host == "127.0.0.1"
                assert proxy.passive_ports[0] <= port <= proxy.passive_ports[1]
                thief = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                thief.bind(("127.0.0.2", 0))
                thief.connect(("127.0.0.1", port))
                if direction == "up":
                    try:
                        thief.sendall(junk)
                    except OSError:
                        pass
                got = read_exactly_closed(thief)  # raises if it is not closed (3 s)
                assert got == b"", got[:100]
                thief.close()
                # the real client still gets the port
                d = socket.create_connection(("127.0.0.1", port), timeout=10)
                if direction == "up":
                    r = c.cmd(f"STOR upload/{name}")
                    assert r.code in (125, 150), r
                    d.sendall(payload)
                    d.close()
                    assert c.reply().code == 226
                else:
                    r = c.cmd("RETR blob.bin")
                    assert r.code in (125, 150), r
                    data = recv_all(d)
                    assert c.reply().code == 226
                    assert sha256_bytes(data) == server.files["blob.bin"]
            c.quit()
    assert (server.root / "upload" / name).read_bytes() == payload  # not a byte of the thief's
    settled(proxy, 2)
    thefts = proxy.wait_events("violation", 2, rule="data-peer-mismatch")
    for t in thefts:
        assert t["action"] == "rejected" and t["peer"].startswith("127.0.0.2:"), t
    opens = proxy.wait_events("data_open", 3)  # the healthy session's included
    assert all(o["client_side"].startswith("127.0.0.1:") for o in opens), opens
    verbs = session_verbs(server, m, mark)
    pv = "EPSV" if epsv else "PASV"
    # (the proxy may ask the server with the other passive verb)
    assert [v for v in verbs if v not in ("EPSV", "PASV")] == ["HELP", "USER", "PASS", "TYPE", "STOR", "RETR",
                                                                "QUIT"], verbs
    assert verbs.count("EPSV") + verbs.count("PASV") == 2, (pv, verbs)


# ---------------------------------------------------------------------------
# data channel: a hostile upstream's passive replies


class DataUpstream:
    """A data port for a scripted upstream: RETR accepts the proxy's data
    connection here, sends the payload and closes."""

    def __init__(self, payload: bytes):
        self.payload = payload
        self.sock = listener("127.0.0.1")
        self.port = self.sock.getsockname()[1]
        self.peers: list = []

    def retr(self, line: bytes) -> bytes:
        self.sock.settimeout(5)
        try:
            conn, peer = self.sock.accept()
        except OSError:
            return b"425 No data connection.\r\n"
        self.peers.append(peer)
        conn.sendall(self.payload)
        conn.close()
        return b"150 Here it comes.\r\n226 Done.\r\n"

    def close(self):
        self.sock.close()


def test_upstream_pasv_foreign_address(scripted_server, make_proxy):
    """A 227 naming another host than the server: the proxy connects to the
    server's control address with the announced port, logs
    pasv-foreign-address, and the decoy on the named host gets nothing."""
    payload = secrets.token_bytes(100_000)
    data = DataUpstream(payload)
    decoy = listener("127.0.0.2", data.port)  # the address the 227 names
    p1, p2 = data.port >> 8, data.port & 255
    up = scripted_server({"TYPE": b"200 ok\r\n",
                          "PASV": f"227 Entering Passive Mode (127,0,0,2,{p1},{p2}).\r\n".encode(),
                          "RETR": data.retr})
    proxy = make_proxy(up, mode="enforce")
    try:
        with RawClient.to(Target.via(proxy, up)) as c:
            c.login()
            assert c.cmd("TYPE I").code == 200
            r = c.cmd("PASV")
            assert r.code == 227, r
            assert "127,0,0,1," in r.text and "127,0,0,2" not in r.text, r
            port = pasv_port(r.text)
            assert proxy.passive_ports[0] <= port <= proxy.passive_ports[1]
            d = socket.create_connection(("127.0.0.1", port), timeout=5)
            assert c.cmd("RETR x").code == 150
            got = recv_all(d)
            assert c.reply().code == 226
            assert got == payload
            assert not connection_arrived(decoy, 0.05), "the proxy followed the foreign address"
            c.quit()
    finally:
        decoy.close()
        data.close()
    assert len(data.peers) == 1 and data.peers[0][0] == "127.0.0.1"
    settled(proxy, 1)
    f = proxy.wait_event("server_finding", rule="pasv-foreign-address")
    assert f["verb"] == "PASV" and f["action"] == "logged", f
    o = proxy.wait_event("data_open")
    assert o["server_side"] == f"127.0.0.1:{data.port}", o
    assert up.verbs() == ["USER", "PASS", "TYPE", "PASV", "RETR", "QUIT"]


@pytest.mark.parametrize("verb,reply", [
    ("PASV", b"227 Entering Passive Mode (127,0,0,1,0,21).\r\n"),
    ("PASV", b"227 Entering Passive Mode (127,0,0,2,3,255).\r\n"),  # foreign and low
    ("EPSV", b"229 Entering Extended Passive Mode (|||21|)\r\n"),
], ids=["pasv-21", "pasv-foreign-1023", "epsv-21"])
def test_upstream_pasv_low_port(scripted_server, make_proxy, verb, reply):
    """A passive reply naming a port below 1024 is refused with 425; the
    proxy opens no passive port and connects nowhere."""
    trap = privileged_listener("127.0.0.1")
    port = trap.getsockname()[1]
    reply = reply.replace(b"0,21)", b"%d,%d)" % (port >> 8, port & 255)).replace(b"|21|", b"|%d|" % port)
    reply = reply.replace(b"3,255)", b"%d,%d)" % (port >> 8, port & 255))
    up = scripted_server({verb: reply})
    proxy = make_proxy(up, mode="enforce")
    try:
        with RawClient.to(Target.via(proxy, up)) as c:
            c.login()
            r = c.cmd(verb)
            assert r.raw == b"425 Can't open data connection.\r\n", r
            assert c.cmd("NOOP").code == 200
            assert not connection_arrived(trap)
            c.quit()
    finally:
        trap.close()
    settled(proxy, 1)
    f = proxy.wait_event("server_finding", rule="pasv-low-port")
    assert (f["verb"], f["action"], f["reply_code"]) == (verb, "rejected", 425), f
    assert not proxy.events("data_open")
    assert up.verbs() == ["USER", "PASS", verb, "NOOP", "QUIT"]


def test_passive_ports_in_range_unpredictable(server, make_proxy):
    """Every passive port comes from --passive-ports, and not in order."""
    lo, hi = free_port_range(20000, 29999)
    proxy = make_proxy(server, mode="enforce", passive_ports=(lo, hi))
    mark = server.log_mark()
    m = marker()
    ports = []
    with open_session(proxy, server, m) as c:
        assert c.cmd("TYPE I").code == 200
        for i in range(12):
            ports.append(c.epsv() if i % 2 else c.pasv()[1])
        # the last one works
        d = socket.create_connection(("127.0.0.1", ports[-1]), timeout=5)
        assert c.cmd("RETR small.txt").code in (125, 150)
        assert sha256_bytes(recv_all(d)) == server.files["small.txt"]
        assert c.reply().code == 226
        c.quit()
    assert all(lo <= p <= hi for p in ports), (lo, hi, ports)
    diffs = {b - a for a, b in zip(ports, ports[1:])}
    assert len(diffs) > 1, f"passive ports in a fixed stride: {ports}"
    assert ports != sorted(ports), f"passive ports handed out in ascending order: {ports}"
    # the server's own ports never reach the client
    slo, shi = server.pasv_range
    assert not any(slo <= p <= shi for p in ports)
    end = time.monotonic() + 3
    while True:
        announced = [pasv_port(e["text"]) for e in proxy.audit()
                     if e.get("event") == "reply" and e["code"] in (227, 229)]
        if len(announced) >= len(ports) or time.monotonic() > end:
            break
        time.sleep(0.1)
    assert announced == ports, announced
    verbs = session_verbs(server, m, mark)
    assert verbs.count("PASV") + verbs.count("EPSV") == 12, verbs


# ---------------------------------------------------------------------------
# control channel: framing


@pytest.mark.parametrize("mode", MODES)
def test_overlong_line(server, make_proxy, mode):
    """A line beyond max_line (4096): exactly one 500, the rest discarded up to
    its CRLF (also when it arrives in pieces), nothing of it reaches the
    server, and the session carries on."""
    proxy = make_proxy(server, mode=mode)
    mark = server.log_mark()
    m = marker()
    tail = secrets.token_hex(8)
    long1 = b"HELP " + b"A" * 5000 + tail.encode() + b"\r\n"
    long2 = b"SIZE " + b"B" * 20000 + b"\r\n"
    with Healthy(proxy, server):
        with open_session(proxy, server, m) as c:
            c.send(long1)
            r = c.reply()
            assert r.raw == b"500 Command line too long.\r\n", r
            assert c.cmd("NOOP").code == 200  # no second 500 was queued
            # in pieces, the CRLF split across segments
            for i in range(0, len(long2) - 1, 3000):
                c.send(long2[i:min(i + 3000, len(long2) - 1)])
                time.sleep(0.01)
            c.send(b"\n")
            assert c.reply().raw == b"500 Command line too long.\r\n"
            r = c.cmd("PWD")
            assert r.code == 257, r
            c.quit()
    settled(proxy, 2)
    vs = proxy.wait_events("violation", 2, rule="line_too_long")
    assert all(v["action"] == "rejected" and v["reply_code"] == 500 for v in vs), vs
    assert len(proxy.events("violation", rule="line_too_long")) == 2
    assert len(proxy.events("reply", code=500)) == 2
    verbs = session_verbs(server, m, mark)
    assert verbs == ["HELP", "USER", "PASS", "NOOP", "PWD", "QUIT"], verbs
    text = server.log_text(mark)
    assert "AAAA" not in text and "BBBB" not in text and tail not in text


def test_line_length_boundary(scripted_server, make_proxy):
    """4096 bytes of command pass intact; 4097 are refused and nothing of
    them is forwarded (the scripted upstream records raw lines)."""
    up = scripted_server({"SITE": b"200 site ok\r\n"})
    proxy = make_proxy(up, mode="enforce")
    ok = b"SITE " + b"x" * (4096 - 5)
    bad = b"SITE " + b"y" * (4097 - 5)
    with RawClient.to(Target.via(proxy, up)) as c:
        c.login()
        assert c.cmd(ok).raw == b"200 site ok\r\n"
        assert c.cmd(bad).raw == b"500 Command line too long.\r\n"
        assert c.cmd("NOOP").code == 200
        c.quit()
    assert up.received[2] == ok
    assert up.verbs() == ["USER", "PASS", "SITE", "NOOP", "QUIT"]
    assert not any(b"yyyy" in line for line in up.received)
    v = proxy.wait_event("violation", rule="line_too_long")
    assert v["verb"] == "SITE" and v["reply_code"] == 500


@pytest.mark.parametrize("mode", MODES)
def test_junk_flood(server, make_proxy, mode):
    """Framing errors get a 500 each; the eleventh (past max_bad_lines = 10)
    gets its 500, then 421 and the connection closes. Nothing reaches the
    server, not even what followed the flood in the same segment."""
    proxy = make_proxy(server, mode=mode)
    mark = server.log_mark()
    m = marker()
    after = marker()
    junk = [b"NOOP\n", b"NO\rOP\r\n", b"NO\x00OP\r\n", b"X" * 5000 + b"\r\n"]
    with Healthy(proxy, server):
        with open_session(proxy, server, m) as c:
            for i in range(10):
                c.send(junk[i % len(junk)])
                assert c.reply().code == 500
            assert c.cmd("NOOP").code == 200  # still alive at ten
            flood = b"".join(junk[i % len(junk)] for i in range(200)) + after.encode() + b"\r\n"
            c.send(flood)
            assert c.reply().code == 500
            r = c.reply()
            assert r.raw == b"421 Too many invalid commands, closing control connection.\r\n", r
            assert read_exactly_closed(c.sock) == b""
    settled(proxy, 2)
    v = proxy.wait_event("violation", rule="bad-line-flood")
    assert v["action"] == "rejected" and v["reply_code"] == 421
    closed = proxy.wait_event("session_close", reason="bad-line-flood")
    assert closed
    assert len(proxy.events("reply", code=500)) == 11
    server.wait_for_command("NOOP", since=mark)
    time.sleep(0.2)  # anything forwarded after the NOOP would be logged by now
    cmds = session_commands(server, m, mark)
    assert [x.split(" ")[0].upper() for x in cmds][:4] == ["HELP", "USER", "PASS", "NOOP"], cmds
    assert all(x.split(" ")[0].upper() != "HELP" or x == m for x in cmds), cmds
    text = server.log_text(mark)
    assert after not in text and "XXXX" not in text and "NO?OP" not in text and "NO\\x00OP" not in text


@pytest.mark.parametrize("mode", MODES)
def test_bare_lf_cr_nul(server, make_proxy, mode):
    """Bare LF, bare CR and NUL: 500 in both modes, never forwarded; the
    boundaries the proxy acts on are the ones the server gets, so none of
    these can smuggle a second command to the server."""
    proxy = make_proxy(server, mode=mode)
    mark = server.log_mark()
    m = marker()
    h = [f"h{secrets.token_hex(6)}" for _ in range(6)]
    with open_session(proxy, server, m, login=False) as c:
        # before login: USER/PASS hidden behind a bare CR never log in
        c.send(f"USER {server.user}\rPASS {server.password}\r\n".encode())
        assert c.reply().raw == b"500 Bare CR inside a command line.\r\n"
        c.send(f"HELP {h[0]}\rHELP {h[1]}\r\n".encode())
        assert c.reply().raw == b"500 Bare CR inside a command line.\r\n"
        c.send(f"HELP {h[2]}\x00\r\nHELP {h[3]}\0HELP x\r\n".encode())
        assert c.reply().raw == b"500 NUL byte inside a command line.\r\n"
        assert c.reply().raw == b"500 NUL byte inside a command line.\r\n"
        # a bare LF ends the line the proxy judges: that line is refused, what
        # follows is a line of its own, judged and forwarded on its own
        c.send(f"HELP {h[4]}\nHELP {h[5]}\r\n".encode())
        assert c.reply().raw == b"500 Command line not terminated by CRLF.\r\n"
        assert c.reply().code != 500  # the server's answer (530 or 501, by server)
        c.login()
        assert c.cmd("PWD").code == 257
        c.quit()
    server.wait_for_command("QUIT", since=mark)
    cmds = session_commands(server, m, mark)
    assert cmds == [m, f"HELP {h[5]}", f"USER {server.user}", cmds[3], "PWD", "QUIT"], cmds
    assert cmds[3].startswith("PASS ")
    text = server.log_text(mark)
    for x in h[:5]:
        assert x not in text, x
    settled(proxy, 1)
    rules = [v["rule"] for v in proxy.events("violation")]
    assert rules == ["bare_cr", "bare_cr", "nul_in_line", "nul_in_line", "bare_lf"], rules
    assert all(v["action"] == "rejected" and v["reply_code"] == 500 for v in proxy.events("violation"))


def test_crlf_smuggling_after_login(server, make_proxy, unique_name):
    """After login, a DELE hidden behind a bare CR never deletes anything,
    and one behind a bare LF is a command of its own that the rules judge
    (here it is still forwarded, as a clean line)."""
    proxy = make_proxy(server, mode="enforce")
    name = unique_name("keep", ".txt")
    (server.root / "upload" / name).write_bytes(b"keep me\n")
    if server.kind == "vsftpd":
        import os
        os.chown(server.root / "upload" / name, server.uid, -1)
    mark = server.log_mark()
    m = marker()
    with open_session(proxy, server, m) as c:
        c.send(f"NOOP\rDELE upload/{name}\r\n".encode())
        assert c.reply().code == 500
        c.send(f"NOOP\x00DELE upload/{name}\r\n".encode())
        assert c.reply().code == 500
        assert (server.root / "upload" / name).exists()
        c.send(f"NOOP\nRNFR upload/{name}\r\n".encode())
        assert c.reply().code == 500
        assert c.reply().code == 350  # its own line, forwarded clean
        assert c.cmd(f"RNTO upload/{name}.moved").code == 250
        c.quit()
    assert (server.root / "upload" / f"{name}.moved").read_bytes() == b"keep me\n"
    server.wait_for_command("QUIT", since=mark)
    cmds = session_commands(server, m, mark)
    assert [x.split(" ")[0] for x in cmds] == ["HELP", "USER", "PASS", "RNFR", "RNTO", "QUIT"], cmds
    assert cmds[3] == f"RNFR upload/{name}"
    assert proxy.wait_event("command", verb="RNFR")["arg"] == f"upload/{name}"


# ---------------------------------------------------------------------------
# control channel: TELNET


def test_telnet_iac_iac_in_path(server, make_proxy):
    """A literal 0xFF in a path arrives escaped (IAC IAC), is decoded for the
    rules and the audit log, and goes to the server re-escaped (neither
    server decodes TELNET, so it looks up the name with two 0xFF bytes)."""
    proxy = make_proxy(server, mode="enforce")
    tag = secrets.token_hex(4)
    on_disk = f"ff-{tag}-".encode() + b"\xff\xff" + b".bin"
    content = secrets.token_bytes(3000)
    path = server.root / on_disk.decode("utf-8", "surrogateescape")
    path.write_bytes(content)
    try:
        mark = server.log_mark()
        m = marker()
        sent = b"RETR " + on_disk  # one 0xFF in the name, escaped on the wire as IAC IAC
        with open_session(proxy, server, m) as c:
            assert c.cmd("TYPE I").code == 200
            d = c.data_connect()
            r = c.cmd(sent)
            assert r.code in (125, 150), r
            assert recv_all(d) == content
            assert c.reply().code == 226
            c.quit()
        cmds = [e for e in server.session_entries(m, since=mark) if e.direction == "command" and e.verb == "RETR"]
        assert len(cmds) == 1
        if server.kind == "pyftpdlib":  # logs the raw bytes
            assert cmds[0].text == f"RETR ff-{tag}-\\xff\\xff.bin", cmds
        else:  # vsftpd logs each unprintable byte as '?'
            assert cmds[0].text == f"RETR ff-{tag}-??.bin", cmds
        settled(proxy, 1)
        ev = proxy.wait_event("command", verb="RETR")
        assert ev["arg"] == f"ff-{tag}-\u00ff.bin", ev  # decoded: one 0xFF
        assert f"ff-{tag}-\\u00ff.bin" in proxy.audit_text()
        assert not proxy.events("violation")
    finally:
        path.unlink()


@pytest.mark.parametrize("mode", MODES)
def test_telnet_other_sequences(server, make_proxy, mode):
    """IAC NOP / SB / GA / EC inside a line: telnet-sequence, 500 in enforce
    (not forwarded), logged in audit (forwarded without the sequence).
    Option negotiation (IAC WILL x) is decoded and dropped silently."""
    proxy = make_proxy(server, mode=mode)
    mark = server.log_mark()
    m = marker()
    bad = [b"NO\xff\xf1OP", b"NO\xff\xfaOP", b"NOOP\xff\xf9", b"\xff\xf7NOOP"]
    with open_session(proxy, server, m) as c:
        for b in bad:
            r = c.cmd(b)
            if mode == "enforce":
                assert r.raw == b"500 Invalid TELNET sequence.\r\n", r
            else:
                assert r.code == 200, r
        assert c.cmd(b"NO\xff\xfb\x01OP").code == 200
        assert c.cmd(b"NOOP\xff\xfe\x03").code == 200
        c.quit()
    settled(proxy, 1)
    vs = proxy.wait_events("violation", len(bad), rule="telnet-sequence")
    want = ("rejected", 500) if mode == "enforce" else ("logged", None)
    assert all((v["action"], v.get("reply_code")) == want for v in vs), vs
    assert len(proxy.events("violation")) == len(bad)
    verbs = session_verbs(server, m, mark)
    cmds = session_commands(server, m, mark)
    noops = [x for x in cmds if "OP" in x]
    assert all(x == "NOOP" for x in noops), noops  # never an IAC byte
    assert len(noops) == (2 if mode == "enforce" else 2 + len(bad)), verbs


def test_abor_with_synch_mid_retr(server, make_proxy, unique_name):
    """ABOR with its TELNET preamble (IAC IP, IAC DM as urgent data) during a
    RETR: the transfer is cut, the server gets ABOR, the client hears the
    426/226 pair (or 226 alone) and the session carries on."""
    proxy = make_proxy(server, mode="enforce")
    name = unique_name("abor", ".bin")
    big = server.root / name
    with open(big, "wb") as f:
        f.truncate(256 << 20)  # sparse: far beyond every socket buffer on the way
    try:
        mark = server.log_mark()
        m = marker()
        with open_session(proxy, server, m) as c:
            assert c.cmd("TYPE I").code == 200
            d = c.data_connect()
            assert c.cmd(f"RETR {name}").code in (125, 150)
            d.settimeout(10)
            got = d.recv(65536)
            assert got
            c.sock.send(b"\xff\xf4\xff")                # IAC IP IAC
            c.sock.send(b"\xf2", socket.MSG_OOB)        # DM, urgent (the Synch)
            c.sock.send(b"ABOR\r\n")
            # the cut RETR is 426 (never a 226), then the ABOR's own reply
            # (vsftpd: 225, nothing left to abort; pyftpdlib: 226)
            codes = [c.reply().code, c.reply().code]
            assert codes in ([426, 225], [426, 226]), codes
            total = len(got) + len(read_exactly_closed(d, 10))
            assert total < 256 << 20, "the transfer was not aborted"
            d.close()
            assert c.cmd("NOOP").code == 200  # in step
            c.quit()
        ab = [e for e in server.session_entries(m, since=mark) if e.direction == "command" and "ABOR" in e.text]
        assert len(ab) == 1, ab
        # the proxy passes the preamble on inline, re-encoded
        assert ab[0].text in ("\\xff\\xf4\\xff\\xf2ABOR", "????ABOR"), ab
        settled(proxy, 1)
        proxy.wait_event("command", verb="ABOR")
        closed = proxy.wait_event("data_close")
        assert closed["complete"] is False and closed["reason"] == "abor", closed
        t = proxy.wait_event("transfer", verb="RETR")
        assert t["code"] == 426 and t["path"] == name and 0 < t["bytes"] < 256 << 20, t
        assert not proxy.events("violation")
    finally:
        big.unlink()


# ---------------------------------------------------------------------------
# non-UTF-8 paths


def test_latin1_path(server, make_proxy, unique_name):
    """A Latin-1 file name passes unchanged both ways (RETR byte-exact, and
    in the listing); the audit log writes the byte as \\u00e9."""
    proxy = make_proxy(server, mode="enforce")
    tag = secrets.token_hex(4)
    raw_name = f"caf-{tag}-".encode() + b"\xe9.txt"
    content = secrets.token_bytes(5000)
    path = server.root / raw_name.decode("utf-8", "surrogateescape")
    path.write_bytes(content)
    try:
        mark = server.log_mark()
        m = marker()
        with open_session(proxy, server, m) as c:
            assert c.cmd("TYPE I").code == 200
            d = c.data_connect()
            assert c.cmd(b"RETR " + raw_name).code in (125, 150)
            assert recv_all(d) == content
            assert c.reply().code == 226
            d = c.data_connect()
            assert c.cmd("NLST").code in (125, 150)
            listing = recv_all(d)
            assert c.reply().code == 226
            assert raw_name in listing.split(b"\r\n"), listing[:500]
            c.quit()
        cmds = [e.text for e in server.session_entries(m, since=mark) if e.direction == "command" and e.verb == "RETR"]
        want = f"RETR caf-{tag}-\\xe9.txt" if server.kind == "pyftpdlib" else f"RETR caf-{tag}-?.txt"
        assert cmds == [want], cmds
        settled(proxy, 1)
        ev = proxy.wait_event("command", verb="RETR")
        assert ev["arg"] == f"caf-{tag}-\u00e9.txt", ev
        t = proxy.wait_event("transfer", verb="RETR")
        assert t["path"] == f"caf-{tag}-\u00e9.txt" and t["bytes"] == len(content), t
        text = proxy.audit_text()
        assert f"caf-{tag}-\\u00e9.txt" in text
        assert not proxy.events("violation")
    finally:
        path.unlink()


# ---------------------------------------------------------------------------
# server replies


def test_reply_cr_nul_normalised(scripted_server, make_proxy):
    """A bare CR or NUL inside a server reply never reaches the client: each
    reply line arrives as one CRLF-terminated line, so no client can frame
    an extra line out of it."""
    up = scripted_server({"PWD": b'257 "/a\r200 fake" is cwd.\r\n',
                          "SYST": b"215 UNIX\x00200 fake\r\n",
                          "STAT": b"211-status\r\n x\r211 fake\r\n211 End\r\n"})
    proxy = make_proxy(up, mode="enforce")
    with RawClient.to(Target.via(proxy, up)) as c:
        c.login()
        assert c.cmd("PWD").raw == b'257 "/a200 fake" is cwd.\r\n'
        assert c.cmd("SYST").raw == b"215 UNIX200 fake\r\n"
        assert c.cmd("STAT").raw == b"211-status\r\n x211 fake\r\n211 End\r\n"
        assert c.cmd("NOOP").raw == b"200 NOOP ok.\r\n"  # in step
        c.quit()
    settled(proxy, 1)
    fs = proxy.wait_events("server_finding", 3, rule="reply-framing")
    assert all(f["action"] == "logged" for f in fs)
    assert [e["code"] for e in proxy.events("reply")] == [220, 331, 230, 257, 215, 211, 200, 221]
    assert up.verbs() == ["USER", "PASS", "PWD", "SYST", "STAT", "NOOP", "QUIT"]


@pytest.mark.parametrize("mode", ["enforce", "audit"])
def test_reply_bare_lf_framed_like_the_client(scripted_server, make_proxy, mode):
    """A bare LF in a server reply ends no line (RFC 959 ends lines with
    CRLF): what follows it is the same reply line, relayed with the LF as a
    space so the client frames it as the proxy did, and flagged. A file name
    carrying "\n226 ..." never becomes a reply of its own, so nothing can be
    smuggled in as the answer to the client's next command."""
    up = scripted_server({"PWD": b'257 "/a\nb" is cwd.\r\n',
                          "MKD": b'257 "/x\n226 Transfer complete." created\r\n',
                          "SYST": b"215 UNIX\n215 again\r\n"})
    proxy = make_proxy(up, mode=mode)
    with RawClient.to(Target.via(proxy, up)) as c:
        c.login()
        c.send(b"PWD\r\n")
        assert c.reply().raw == b'257 "/a b" is cwd.\r\n'
        c.send(b"MKD x\r\n")
        assert c.reply().raw == b'257 "/x 226 Transfer complete." created\r\n'
        c.send(b"SYST\r\n")
        assert c.reply().raw == b"215 UNIX 215 again\r\n"
        c.send(b"NOOP\r\n")
        assert c.reply().raw == b"200 NOOP ok.\r\n"  # every reply still paired with its command
        c.quit()
    assert len(proxy.wait_events("server_finding", 3, rule="reply-framing")) == 3
    assert not proxy.events("server_finding", rule="reply-unsolicited")
    noop = proxy.wait_event("reply", verb="NOOP")
    assert noop["code"] == 200
    assert up.verbs() == ["USER", "PASS", "PWD", "MKD", "SYST", "NOOP", "QUIT"]


def test_multiline_reply_bounds(scripted_server, make_proxy):
    """A multi-line reply of 10000 lines passes intact; one line more, or
    more than 1 MiB, and the client gets 421 (nothing of the partial
    reply) and the session is closed."""
    at_limit = b"214-start\r\n" + b" line\r\n" * 9998 + b"214 end\r\n"
    too_many = b"214-start\r\n" + b" line\r\n" * 10000 + b"214 end\r\n"
    too_long = b"211-start\r\n" + (b" " + b"z" * 4000 + b"\r\n") * 300 + b"211 end\r\n"
    up = scripted_server({"HELP": lambda line: at_limit if line == b"HELP" else too_many,
                          "STAT": too_long})
    proxy = make_proxy(up, mode="enforce")
    with RawClient.to(Target.via(proxy, up)) as c:
        c.login()
        assert c.cmd("HELP").raw == at_limit
        assert c.cmd("NOOP").code == 200
        c.send(b"HELP more\r\n")
        r = c.reply()
        assert r.raw == b"421 Reply from the server too long, closing control connection.\r\n", r
        assert read_exactly_closed(c.sock) == b""
    with RawClient.to(Target.via(proxy, up)) as c:
        c.login()
        c.send(b"STAT\r\n")
        assert c.reply().raw == b"421 Reply from the server too long, closing control connection.\r\n"
        assert read_exactly_closed(c.sock) == b""
    f1 = proxy.wait_event("server_finding", rule="reply_too_many_lines")
    f2 = proxy.wait_event("server_finding", rule="reply_too_long")
    for f in (f1, f2):
        assert f["action"] == "rejected" and f["reply_code"] == 421, f
    assert len(proxy.wait_events("session_close", 2, reason="reply-overflow")) == 2
    assert up.verbs()[:5] == ["USER", "PASS", "HELP", "NOOP", "HELP"]
    assert up.verbs()[5:] == ["USER", "PASS", "STAT"]


def test_unfinished_multiline_reply_cut_off(scripted_server, make_proxy, tmp_path):
    """A server that starts a multi-line reply and never ends it is cut off
    after reply_timeout_s: the client gets 421, not a torn reply."""
    cfg = write_config(tmp_path, "[limits]\nreply_timeout_s = 1\n")
    up = scripted_server({"HELP": b"214-start\r\n214-more\r\n"})
    proxy = make_proxy(up, mode="enforce", extra_args=["--config", str(cfg)])
    with RawClient.to(Target.via(proxy, up), timeout=10) as c:
        c.login()
        c.send(b"HELP\r\n")
        r = c.reply()  # within the client's 10 s: reply_timeout_s is 1
        assert r.raw == b"421 Service not available, the server does not answer.\r\n", r
        assert read_exactly_closed(c.sock) == b""
    t = proxy.wait_event("timeout", timer="reply")
    assert t
    proxy.wait_event("session_close", reason="reply-timeout")
    assert up.verbs() == ["USER", "PASS", "HELP"]
