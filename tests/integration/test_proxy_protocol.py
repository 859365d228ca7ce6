"""The PROXY protocol: in front (HAProxy from Debian with send-proxy-v2 on the
control port and the passive range, and scripted headers of both versions,
good and bad) and toward the server (send_proxy_protocol, checked by
upstreams that read what arrives)."""
from __future__ import annotations

import hashlib
import shutil
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

from clients import V2_SIG, RawClient, Target, curl, v1, v2
from servers import free_port, free_port_range, sha256_file

def pp_proxy(make_proxy, upstream, tmp_path: Path, version: str = "any", extra: str = "", **kw):
    conf = tmp_path / "pp.toml"
    conf.write_text(f'[listen]\nproxy_protocol = "{version}"\n{extra}')
    return make_proxy(upstream, extra_args=["--config", str(conf)], **kw)


def test_the_header_names_the_client_everywhere(server, make_proxy, tmp_path):
    proxy = pp_proxy(make_proxy, server, tmp_path, mode="enforce")
    via = Target.via(proxy, server)
    with RawClient.to(via, prefix=v1("203.0.113.7", 40000)) as c:
        c.login()
        host, port = c.pasv()
        # straight from this host, no header: held until it sends one, then refused
        bare = socket.create_connection((host, port), timeout=10)
        bare.sendall(b"hello, no header here\r\n")
        assert bare.recv(10) == b""
        bare.close()
        v = proxy.wait_event("violation", rule="proxy-header")
        assert v["action"] == "rejected", v
        # a header naming someone else: a stranger, closed unread
        thief = socket.create_connection((host, port), timeout=10)
        thief.sendall(v2("198.51.100.9", 5555))
        assert thief.recv(10) == b""
        thief.close()
        m = proxy.wait_event("violation", rule="data-peer-mismatch")
        assert m["peer"].startswith("198.51.100.9:"), m
        # silent connections that never send a header: held a little, never
        # enough to crowd out the client's own
        silent = [socket.create_connection((host, port), timeout=10) for _ in range(12)]
        # the client's own address in the header: its data connection
        d = socket.create_connection((host, port), timeout=10)
        d.sendall(v2("203.0.113.7", 40001))
        assert c.cmd("TYPE I").code == 200
        c.send(b"RETR small.txt\r\n")
        assert c.reply().code in (125, 150)
        data = b""
        while chunk := d.recv(65536):
            data += chunk
        d.close()
        assert c.reply().code == 226
        assert hashlib.sha256(data).hexdigest() == server.files["small.txt"]
        for s in silent:  # every one of them closed, unanswered
            s.settimeout(10)
            try:
                assert s.recv(10) == b""
            except ConnectionResetError:
                pass
            s.close()
        c.quit()
    opened = proxy.wait_event("session_open")
    assert opened["client"] == "203.0.113.7:40000", opened
    assert opened["via"].startswith("127.0.0.1:"), opened
    assert all(e["client"] == "203.0.113.7:40000" for e in proxy.events() if e.get("session") == opened["session"])


def test_per_address_limits_and_policy_see_the_header(server, make_proxy, tmp_path):
    rules = tmp_path / "r.toml"
    rules.write_text('[[rule]]\nid = "no-dele-from-outside"\nverbs = ["DELE"]\nclients = ["203.0.113.0/24"]\n'
                     'enforce = "reject"\n')
    proxy = pp_proxy(make_proxy, server, tmp_path, mode="enforce",
                     extra=f'[limits]\nmax_sessions_per_ip = 1\n[policy]\nrules = ["{rules}"]\n')
    via = Target.via(proxy, server)
    with RawClient.to(via, prefix=v1("203.0.113.7", 40000)) as a:
        a.login()
        assert a.cmd("DELE nothing.txt").code == 550  # the policy's CIDR matched the header's address
        # the same real client again: over its limit, though TCP comes from 127.0.0.1 both times
        s = socket.create_connection((proxy.host, proxy.port), timeout=10)
        s.sendall(v1("203.0.113.7", 40002))
        assert s.recv(200).startswith(b"421 ")
        s.close()
        # another client through the same balancer: its own count
        with RawClient.to(via, prefix=v1("203.0.113.8", 40003)) as b:
            b.login()
            assert b.cmd("DELE nothing.txt").code == 550
            b.quit()
        a.quit()


@pytest.mark.parametrize("bad", [b"GET / HTTP/1.0\r\n\r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
                                 b"PROXY " + b"9" * 200, V2_SIG + b"\x22\x11\x00\x0c" + b"\0" * 12,
                                 V2_SIG + b"\x21\x11\x04\x00" + b"\0" * 1024, b"USER anonymous\r\n"],
                         ids=["http", "v1-short", "v1-long", "v2-bad-command", "v2-too-long", "ftp"])
def test_a_bad_header_is_closed_without_a_byte(server, make_proxy, tmp_path, bad):
    proxy = pp_proxy(make_proxy, server, tmp_path)
    s = socket.create_connection((proxy.host, proxy.port), timeout=10)
    s.sendall(bad)
    try:
        assert s.recv(100) == b""
    except ConnectionResetError:
        pass
    s.close()
    r = proxy.wait_event("session_refused")
    assert r["client"].startswith("127.0.0.1:") and r["reason"], r
    # sessions go on
    with RawClient.to(Target.via(proxy, server), prefix=v1("192.0.2.1", 1)) as c:
        c.login()
        c.quit()


def test_no_header_in_time_is_closed_without_a_byte(server, make_proxy, tmp_path):
    proxy = pp_proxy(make_proxy, server, tmp_path, version="v1")
    s = socket.create_connection((proxy.host, proxy.port), timeout=15)
    s.sendall(b"PROXY TCP4 ")  # and then nothing
    assert s.recv(100) == b""  # after the 5 s bound
    s.close()
    assert "no PROXY header in time" in proxy.wait_event("session_refused")["reason"]


def test_local_and_unknown_keep_the_connections_own_address(server, make_proxy, tmp_path):
    proxy = pp_proxy(make_proxy, server, tmp_path)
    via = Target.via(proxy, server)
    for header in (v2("0.0.0.0", 0, cmd=0x20), b"PROXY UNKNOWN\r\n"):
        with RawClient.to(via, prefix=header) as c:
            c.login()
            c.quit()
    opens = proxy.wait_events("session_open", 2)
    assert all(o["client"].startswith("127.0.0.1:") and "via" not in o for o in opens), opens


class HeaderCatcher:
    """A listener that records the first bytes of each connection, then
    (for a control connection) plays a minimal FTP server."""

    def __init__(self, ftp: bool):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.first: list[bytes] = []
        self.ftp = ftp
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            c.settimeout(10)
            data = c.recv(4096)
            self.first.append(data)
            if self.ftp:
                c.sendall(b"220 catcher\r\n")
                try:
                    while chunk := c.recv(4096):
                        if chunk.startswith(b"USER"):
                            c.sendall(b"331 pw\r\n")
                        elif chunk.startswith(b"PASS"):
                            c.sendall(b"230 in\r\n")
                        elif chunk.startswith(b"QUIT"):
                            c.sendall(b"221 bye\r\n")
                            break
                        else:
                            c.sendall(b"200 ok\r\n")
                except OSError:
                    pass
            c.close()

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_the_proxy_sends_the_header_upstream(make_proxy, tmp_path, version):
    up = HeaderCatcher(ftp=True)
    try:
        conf = tmp_path / "send.toml"
        conf.write_text(f'[upstream]\nsend_proxy_protocol = "{version}"\n')
        proxy = make_proxy(f"127.0.0.1:{up.port}", extra_args=["--config", str(conf)])
        with RawClient(proxy.host, proxy.port, source="127.0.0.3") as c:
            assert c.cmd("USER u").code == 331
            cport = c.sock.getsockname()[1]
            c.quit()
        first = up.first[0]
        if version == "v1":
            assert first == f"PROXY TCP4 127.0.0.3 127.0.0.1 {cport} {proxy.port}\r\n".encode(), first
        else:
            assert first[:12] == V2_SIG and first[12] == 0x21 and first[13] == 0x11, first
            src, dst = socket.inet_ntoa(first[16:20]), socket.inet_ntoa(first[20:24])
            sport, dport = struct.unpack("!HH", first[24:28])
            assert (src, dst, sport, dport) == ("127.0.0.3", "127.0.0.1", cport, proxy.port), first
            assert first[28:] in (b"", b"USER u\r\n")  # nothing else before the client's first command
    finally:
        up.close()


def test_the_proxy_sends_the_header_on_its_data_connections(scripted_server, make_proxy, tmp_path):
    data_port = HeaderCatcher(ftp=False)
    try:
        up = scripted_server({"PROXY": b"",  # the header line is recorded, not answered
                              "PASV": f"227 Entering Passive Mode (127,0,0,1,{data_port.port >> 8},"
                                      f"{data_port.port & 255}).\r\n".encode()})
        conf = tmp_path / "send.toml"
        conf.write_text('[upstream]\nsend_proxy_protocol = "v1"\n')
        proxy = make_proxy(up, extra_args=["--config", str(conf)])
        with RawClient(proxy.host, proxy.port, source="127.0.0.4") as c:
            c.login(up.user, up.password)
            host, port = c.pasv()
            d = socket.create_connection((host, port), timeout=10, source_address=("127.0.0.4", 0))
            dport = d.getsockname()[1]
            deadline = time.monotonic() + 10
            while not data_port.first and time.monotonic() < deadline:
                time.sleep(0.02)
            d.sendall(b"upload bytes")
            d.close()
            c.quit()
        assert data_port.first[0].startswith(f"PROXY TCP4 127.0.0.4 127.0.0.1 {dport} {data_port.port}\r\n".encode()), \
            data_port.first
        assert up.received[0].startswith(b"PROXY TCP4 127.0.0.4 127.0.0.1 ")
    finally:
        data_port.close()


HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


@pytest.mark.skipif(not Path(HAPROXY).exists(), reason="haproxy is not installed (apt-get install haproxy)")
def test_behind_haproxy_send_proxy_v2(server, make_proxy, tmp_path):
    """curl -> HAProxy (127.0.0.2: control port and the passive range) ->
    ftpwarden (127.0.0.1, proxy_protocol v2, public_address 127.0.0.2) ->
    the server. The audit log shows curl's own address; a data connection
    through HAProxy from another address is refused."""
    lo, hi = free_port_range(30000, 39999, count=20)
    conf = tmp_path / "pp.toml"
    conf.write_text('[listen]\nproxy_protocol = "v2"\n[data]\npublic_address = "127.0.0.2"\n')
    proxy = make_proxy(server, mode="enforce", extra_args=["--config", str(conf)], passive_ports=(lo, hi))
    ctl = free_port("127.0.0.2")
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(f"""global
    maxconn 200
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend ftp
    bind 127.0.0.2:{ctl}
    default_backend ftpwarden
backend ftpwarden
    server p 127.0.0.1:{proxy.port} send-proxy-v2
frontend passive
    bind 127.0.0.2:{lo}-{hi}
    default_backend passive
backend passive
    server p 127.0.0.1 send-proxy-v2
""")
    assert subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True).returncode == 0
    ha = subprocess.Popen([HAPROXY, "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.2", ctl), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and ha.poll() is None, "haproxy did not start"
                time.sleep(0.05)
        front = Target("127.0.0.2", ctl, server.user, server.password)
        out = tmp_path / "blob.bin"
        curl(front, "blob.bin", "-o", str(out), "--interface", "127.0.0.5", mode="pasv")
        assert sha256_file(out) == server.files["blob.bin"]
        t = proxy.wait_event("transfer")
        assert t["bytes"] == out.stat().st_size
        sessions = [e for e in proxy.events("session_open") if e["client"].startswith("127.0.0.5:")]
        assert len(sessions) == 1 and sessions[0]["via"].startswith("127.0.0.1:"), proxy.events("session_open")
        # another address through HAProxy onto the session's passive port: refused
        with RawClient("127.0.0.2", ctl, source="127.0.0.5") as c:
            c.login(server.user, server.password)
            host, port = c.pasv()
            assert host == "127.0.0.2"
            thief = socket.create_connection((host, port), timeout=10, source_address=("127.0.0.6", 0))
            m = proxy.wait_event("violation", rule="data-peer-mismatch")
            assert m["peer"].startswith("127.0.0.6:"), m
            assert thief.recv(10) == b""
            thief.close()
            c.quit()
    finally:
        ha.terminate()
        ha.wait(10)
