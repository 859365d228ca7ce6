"""FTP commands beyond plain RETR/STOR through the proxy in enforce mode,
driven by python ftplib in passive (PASV) and active (PORT) mode against both
servers: APPE, STOU, REST+STOR, REST+RETR, LIST, NLST, MLSD, MLST, SIZE, MDTM.
Every byte is checked against the server's own files, replies the server
rejects reach the client unchanged (checked against the server's log), and a
valid session raises no violation.

The EPSV <-> PASV translation (the proxy asks with the other passive command
when the server answers the client's with 5xy) runs against a scripted
upstream that lacks one of them and serves the data itself.
"""
from __future__ import annotations

import ftplib
import io
import os
import random
import re
import socket
import threading
import time

import pytest

from checks import assert_no_violations, pasv_host, pasv_port
from clients import PausingFTP, RawClient, Target, recv_all
from servers import sha256_bytes, sha256_file

PASSIVE = pytest.mark.parametrize("passive", [True, False], ids=["passive", "active"])


class RecordingFTP(PausingFTP):
    """ftplib.FTP that keeps every reply it read (ftplib hides the 150 text)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.replies: list[str] = []

    def getresp(self):
        try:
            resp = super().getresp()
        except ftplib.Error as e:
            self.replies.append(str(e))
            raise
        self.replies.append(resp)
        return resp


def connect(proxy, server, passive: bool) -> RecordingFTP:
    t = Target.via(proxy, server)
    ftp = RecordingFTP()
    ftp.connect(t.host, t.port, timeout=15)
    ftp.login(t.user, t.password)
    ftp.set_pasv(passive)
    return ftp


def payload(seed: str, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def retr(ftp: ftplib.FTP, path: str, rest: int | None = None) -> bytes:
    buf = io.BytesIO()
    ftp.retrbinary(f"RETR {path}", buf.write, rest=rest)
    return buf.getvalue()


def server_reply_to(server, verb: str, since: int) -> str:
    """The last reply line the server sent to the first `verb` it got since `since`."""
    server.wait_for_command(verb, since=since)
    end = time.monotonic() + 3
    while True:
        entries = server.entries(since)
        idx = next(i for i, e in enumerate(entries) if e.direction == "command" and e.verb == verb)
        sess = entries[idx].session
        after = [e for e in entries[idx + 1:] if e.session == sess]
        replies = []
        for e in after:
            if e.direction == "command":
                break
            replies.append(e)
        if replies and re.match(r"\d{3} ", replies[-1].text):
            return replies[-1].text
        if time.monotonic() > end:
            raise AssertionError(f"{server.kind} never answered {verb}: {after}")
        time.sleep(0.05)


# ---------------------------------------------------------------------------
# APPE, STOU, REST


@PASSIVE
def test_appe_concatenates(server, make_proxy, passive, unique_name):
    proxy = make_proxy(server, mode="enforce")
    name = unique_name("appe", ".bin")
    first, second = payload(name + "1", 150_000), payload(name + "2", 90_001)
    mark = server.log_mark()
    with connect(proxy, server, passive) as ftp:
        assert ftp.storbinary(f"STOR upload/{name}", io.BytesIO(first)).startswith("226")
        assert ftp.storbinary(f"APPE upload/{name}", io.BytesIO(second)).startswith("226")
        # and appending to a file that does not exist yet creates it
        assert ftp.storbinary(f"APPE upload/{name}.new", io.BytesIO(second)).startswith("226")
    assert sha256_file(server.root / "upload" / name) == sha256_bytes(first + second)
    assert sha256_file(server.root / "upload" / f"{name}.new") == sha256_bytes(second)
    appe = [e.text for e in server.commands(since=mark) if e.verb == "APPE"]
    assert appe == [f"APPE upload/{name}", f"APPE upload/{name}.new"], appe
    events = assert_no_violations(proxy)
    ups = [e for e in events if e["event"] == "transfer" and e["verb"] == "APPE"]
    assert [(e["bytes"], e["direction"]) for e in ups] == [(len(second), "upload")] * 2, ups


@PASSIVE
def test_stou_unique_names(server, make_proxy, passive, unique_name):
    """STOU twice in a fresh directory: the server names each file in its 150
    ("FILE: <name>" on both servers, in a 150 or 125), the names differ, the directory holds
    exactly those two files and their bytes are the ones sent."""
    proxy = make_proxy(server, mode="enforce")
    d = unique_name("stou")
    sent = [payload(d + "a", 80_000), payload(d + "b", 12_345)]
    names = []
    with connect(proxy, server, passive) as ftp:
        ftp.mkd(f"upload/{d}")
        ftp.cwd(f"upload/{d}")
        for data in sent:
            ftp.replies.clear()
            assert ftp.storbinary("STOU", io.BytesIO(data)).startswith("226")
            prelim = [r for r in ftp.replies if r[:3] in ("125", "150")]
            assert len(prelim) == 1, ftp.replies
            m = re.match(r"(?:125|150) FILE: (\S+)$", prelim[0])
            assert m, prelim
            names.append(m.group(1))
        listed = sorted(ftp.nlst())
    assert names[0] != names[1], names
    assert sorted(os.listdir(server.root / "upload" / d)) == sorted(names)
    assert [n.rsplit("/", 1)[-1] for n in listed] == sorted(names), listed
    for n, data in zip(names, sent):
        assert sha256_file(server.root / "upload" / d / n) == sha256_bytes(data), n
    events = assert_no_violations(proxy)
    stou = [e for e in events if e["event"] == "transfer" and e["verb"] == "STOU"]
    assert [e["bytes"] for e in stou] == [len(x) for x in sent], stou


@PASSIVE
def test_rest_stor_resumes_upload(server, make_proxy, passive, unique_name):
    """A partial upload (its first `n` bytes plus junk past them), then TYPE I,
    REST n, STOR of the rest: the server writes from offset n. A REST lost on
    the way would leave only the tail; an append would keep the junk."""
    proxy = make_proxy(server, mode="enforce")
    name = unique_name("resume-up", ".bin")
    whole = payload(name, 300_000)
    n = 123_457
    mark = server.log_mark()
    with connect(proxy, server, passive) as ftp:
        ftp.storbinary(f"STOR upload/{name}", io.BytesIO(whole[:n] + b"\xee" * 1000))
        assert ftp.storbinary(f"STOR upload/{name}", io.BytesIO(whole[n:]), rest=n).startswith("226")
    assert sha256_file(server.root / "upload" / name) == sha256_bytes(whole)
    cmds = [e.text for e in server.commands(since=mark) if e.verb in ("REST", "STOR", "TYPE")]
    assert cmds == ["TYPE I", f"STOR upload/{name}", "TYPE I", f"REST {n}", f"STOR upload/{name}"], cmds
    assert_no_violations(proxy)


@PASSIVE
def test_rest_retr_resumes_download(server, make_proxy, passive):
    proxy = make_proxy(server, mode="enforce")
    blob = (server.root / "blob.bin").read_bytes()
    mark = server.log_mark()
    with connect(proxy, server, passive) as ftp:
        for n in (1, 654_321, len(blob) - 7):
            assert sha256_bytes(retr(ftp, "blob.bin", rest=n)) == sha256_bytes(blob[n:]), n
    rests = [e.text for e in server.commands(since=mark) if e.verb == "REST"]
    assert rests == ["REST 1", "REST 654321", f"REST {len(blob) - 7}"], rests
    events = assert_no_violations(proxy)
    got = [e["bytes"] for e in events if e["event"] == "transfer" and e["verb"] == "RETR"]
    assert got == [len(blob) - 1, len(blob) - 654_321, 7], got


# ---------------------------------------------------------------------------
# listings and file facts


@PASSIVE
def test_list_and_nlst(server, make_proxy, passive):
    proxy = make_proxy(server, mode="enforce")
    want = sorted(p.name for p in (server.root / "tree").iterdir())
    with connect(proxy, server, passive) as ftp:
        lines: list[str] = []
        ftp.retrlines("LIST tree", lines.append)
        names = [n.rsplit("/", 1)[-1] for n in ftp.nlst("tree")]
        root_lines: list[str] = []
        ftp.retrlines("LIST", root_lines.append)
    # "-rw-r--r-- 1 owner group 70000 Jan 01 00:00 b.bin": the name is the last field
    assert sorted(l.split()[-1] for l in lines) == want, lines
    size_of = {l.split()[-1]: int(l.split()[4]) for l in lines}
    assert size_of["b.bin"] == 70_000 and size_of["empty.txt"] == 0, lines
    assert sorted(names) == want, names
    assert {"small.txt", "blob.bin", "tree", "upload"} <= {l.split()[-1] for l in root_lines}, root_lines
    assert_no_violations(proxy)


@PASSIVE
def test_mlsd(server, make_proxy, passive):
    """pyftpdlib lists with MLSD; vsftpd has no MLSD: its 500 reaches the
    client unchanged, after the data setup the proxy relayed."""
    proxy = make_proxy(server, mode="enforce")
    mark = server.log_mark()
    with connect(proxy, server, passive) as ftp:
        if server.kind == "pyftpdlib":
            facts = dict(ftp.mlsd("tree", facts=["type", "size"]))
            want = {p.name: p for p in (server.root / "tree").iterdir()}
            assert sorted(facts) == sorted(want), facts
            for name, p in want.items():
                if p.is_dir():
                    assert facts[name]["type"] == "dir", (name, facts[name])
                else:
                    assert facts[name]["type"] == "file", (name, facts[name])
                    assert int(facts[name]["size"]) == p.stat().st_size, (name, facts[name])
        else:
            with pytest.raises(ftplib.error_perm) as e:
                list(ftp.mlsd("tree"))
            assert str(e.value) == server_reply_to(server, "MLSD", mark), ftp.replies
            assert str(e.value).startswith(("500 ", "502 ")), e.value
            # the session goes on: a transfer after the refused MLSD works
            assert sha256_bytes(retr(ftp, "tree/b.bin")) == server.files["tree/b.bin"]
    verbs = server.verbs(since=mark)
    assert "MLSD" in verbs and ("PASV" in verbs if passive else "PORT" in verbs), verbs
    assert_no_violations(proxy)


def test_mlst_size_mdtm(server, make_proxy):
    proxy = make_proxy(server, mode="enforce")
    blob = server.root / "blob.bin"
    mtime = time.strftime("%Y%m%d%H%M%S", time.gmtime(blob.stat().st_mtime))
    mark = server.log_mark()
    with connect(proxy, server, True) as ftp:
        ftp.voidcmd("TYPE I")  # pyftpdlib refuses SIZE in ASCII mode
        assert ftp.size("blob.bin") == 1 << 20 == blob.stat().st_size
        assert ftp.sendcmd("SIZE tree/b.bin") == "213 70000"
        assert ftp.sendcmd("MDTM blob.bin") == f"213 {mtime}"
        with pytest.raises(ftplib.error_perm) as e:
            ftp.sendcmd("SIZE no-such-file")
        assert str(e.value).startswith("550"), e.value
        if server.kind == "pyftpdlib":
            r = ftp.sendcmd("MLST blob.bin")
            lines = r.splitlines()
            assert lines[0].startswith("250-") and lines[-1].startswith("250 "), r
            facts = dict(f.split("=", 1) for f in lines[1].strip().split(" ", 1)[0].split(";") if "=" in f)
            assert facts["size"] == str(1 << 20) and facts["type"] == "file", facts
            assert facts["modify"] == mtime, facts
        else:
            with pytest.raises(ftplib.error_perm) as e:
                ftp.sendcmd("MLST blob.bin")
            assert str(e.value) == server_reply_to(server, "MLST", mark)
            assert str(e.value).startswith(("500 ", "502 ")), e.value
    assert [v for v in server.verbs(since=mark) if v in ("SIZE", "MDTM", "MLST")] == \
        ["SIZE", "SIZE", "MDTM", "SIZE", "MLST"]
    assert_no_violations(proxy)


# ---------------------------------------------------------------------------
# EPSV <-> PASV translation


class OnePassiveServer:
    """A scripted upstream that knows only one of PASV / EPSV (`has`) and
    serves `data` for RETR on its own passive listener."""

    def __init__(self, scripted_server, has: str, data: bytes):
        self.data = data
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(5)
        self.data_port = self.listener.getsockname()[1]
        p = self.data_port
        replies = {
            "TYPE": b"200 Type set.\r\n",
            "PASV": (b"227 Entering Passive Mode (127,0,0,1,%d,%d).\r\n" % (p >> 8, p & 255)
                     if has == "PASV" else b"500 PASV not understood.\r\n"),
            "EPSV": (b"229 Entering Extended Passive Mode (|||%d|)\r\n" % p
                     if has == "EPSV" else b"502 EPSV not implemented.\r\n"),
            "RETR": self._retr,
        }
        self.srv = scripted_server(replies)
        self.served = threading.Event()

    def _retr(self, line: bytes) -> bytes:
        # runs in the server's control thread: 150, the data, then 226
        ctrl = self.srv._conns[-1]
        ctrl.sendall(b"150 Opening BINARY mode data connection.\r\n")
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return b"425 No data connection.\r\n"
        with conn:
            conn.sendall(self.data)
        self.served.set()
        return b"226 Transfer complete.\r\n"

    def close(self):
        self.listener.close()


@pytest.mark.parametrize("client_verb", ["EPSV", "PASV"])
def test_passive_translation(scripted_server, make_proxy, client_verb):
    """The server answers the client's passive command with 5xy: the proxy
    asks with the other one, follows the server's reply, and answers the
    client in the form it asked for (229 to EPSV, 227 to PASV) with one of its
    own ports; the download through it is byte-exact. Twice in the session."""
    other = "PASV" if client_verb == "EPSV" else "EPSV"
    data = payload(client_verb, 200_000)
    up = OnePassiveServer(scripted_server, has=other, data=data)
    try:
        proxy = make_proxy(f"127.0.0.1:{up.srv.port}", mode="enforce")
        with RawClient(proxy.host, proxy.port) as c:
            c.target = Target(proxy.host, proxy.port, up.srv.user, up.srv.password)
            c.login()
            assert c.cmd("TYPE I").code == 200
            for _ in range(2):
                up.served.clear()
                r = c.cmd(client_verb)
                if client_verb == "EPSV":
                    assert r.code == 229, r
                    assert re.fullmatch(r"229 .*\(\|\|\|\d+\|\)", r.lines[0]), r
                    host = "127.0.0.1"
                else:
                    assert r.code == 227, r
                    host = pasv_host(r.lines[0])
                    assert host == "127.0.0.1", r
                port = pasv_port(r.lines[0])
                assert proxy.passive_ports[0] <= port <= proxy.passive_ports[1], (r, proxy.passive_ports)
                assert port != up.data_port
                d = socket.create_connection((host, port), timeout=10)
                assert c.cmd("RETR file.bin").code == 150
                assert sha256_bytes(recv_all(d)) == sha256_bytes(data)
                assert c.reply().code == 226
                assert up.served.is_set()
            c.quit()
        verbs = up.srv.verbs()
        # each time: the client's verb (refused), then the other (followed)
        assert verbs == ["USER", "PASS", "TYPE", client_verb, other, "RETR", client_verb, other, "RETR",
                         "QUIT"], verbs
        events = assert_no_violations(proxy)
        # the 5xy from the server is logged, the client got the translated reply
        replies = [(e["verb"], e["code"]) for e in events if e["event"] == "reply" and e.get("verb") in
                   ("EPSV", "PASV")]
        assert (client_verb, 229 if client_verb == "EPSV" else 227) in replies, replies
        t = [e for e in events if e["event"] == "transfer"]
        assert [(e["verb"], e["bytes"]) for e in t] == [("RETR", len(data))] * 2, t
    finally:
        up.close()
