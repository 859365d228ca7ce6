"""Assertions shared by the proxy tests: audit-log shape, address rewriting,
round trips checked byte for byte."""
from __future__ import annotations

import hashlib
import io
import os
import re
import socket
import subprocess
import time

from clients import RawClient, ftplib_connect, lftp, recv_all
from servers import sha256_bytes, sha256_file

COMMON_FIELDS = ("ts", "session", "client", "event")
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
CLIENT_RE = re.compile(r"^127\.0\.0\.1:\d+$")


def assert_common_fields(events: list[dict]) -> None:
    for e in events:
        for k in COMMON_FIELDS:
            assert k in e, f"{k!r} missing in {e}"
        assert TS_RE.match(e["ts"]), e
        assert CLIENT_RE.match(e["client"]), e
        assert isinstance(e["session"], (str, int)) and str(e["session"]), e


def assert_no_violations(proxy, settle: bool = True) -> list[dict]:
    events = proxy.settle() if settle else proxy.audit()
    v = [e for e in events if e.get("event") == "violation"]
    assert not v, f"unexpected violations: {v}"
    return events


def violations(proxy, rule: str | None = None) -> list[dict]:
    return [e for e in proxy.audit() if e.get("event") == "violation" and (rule is None or e.get("rule") == rule)]


def assert_rejected(proxy, rule: str, code: int, verb: str | None = None) -> dict:
    v = proxy.wait_event("violation", rule=rule)
    assert v["action"] == "rejected", v
    assert v["reply_code"] == code, v
    if verb is not None:
        assert v["verb"] == verb, v
    return v


def assert_logged(proxy, rule: str, verb: str | None = None) -> dict:
    v = proxy.wait_event("violation", rule=rule)
    assert v["action"] == "logged", v
    assert "reply_code" not in v, v
    if verb is not None:
        assert v["verb"] == verb, v
    return v


# --- data addresses seen in replies and commands

def pasv_port(text: str) -> int | None:
    """Port of a 227 (h1,h2,h3,h4,p1,p2) or 229 (|||port|) reply."""
    m = re.search(r"\(\|\|\|(\d+)\|\)", text)
    if m:
        return int(m.group(1))
    m = re.search(r"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)", text)
    if m:
        return int(m.group(5)) * 256 + int(m.group(6))
    return None


def pasv_host(text: str) -> str | None:
    m = re.search(r"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)", text)
    return ".".join(m.group(i) for i in range(1, 5)) if m else None


def active_addr(command: str) -> tuple[str, int] | None:
    """(host, port) of "PORT h1,h2,h3,h4,p1,p2" or "EPRT |1|host|port|"."""
    m = re.match(r"(?i)EPRT\s+\|(\d)\|([^|]+)\|(\d+)\|", command)
    if m:
        return m.group(2), int(m.group(3))
    m = re.match(r"(?i)PORT\s+(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)", command)
    if m:
        return ".".join(m.group(i) for i in range(1, 5)), int(m.group(5)) * 256 + int(m.group(6))
    return None


def curl_replies(stderr: bytes) -> list[str]:
    """The reply lines curl received, from its -v output ("< 229 ...")."""
    return [l[2:] for l in stderr.decode(errors="replace").splitlines() if l.startswith("< ")]


def lftp_round_trip(target, server, tmp_path, name: str, payload: bytes, passive: bool) -> None:
    """lftp gets two files, mirrors a tree down, puts a file and mirrors the tree
    back up; every byte is checked against the server's own files."""
    local = tmp_path / "got"
    local.mkdir()
    up = tmp_path / name
    up.write_bytes(payload)
    lftp(target, f"lcd {local}; get small.txt; get blob.bin; mirror tree tree; put -O upload {up}; "
                 f"mirror -R {local}/tree upload/{name}-tree", passive=passive)
    assert sha256_file(local / "small.txt") == server.files["small.txt"]
    assert sha256_file(local / "blob.bin") == server.files["blob.bin"]
    for rel, digest in server.files.items():
        if rel.startswith("tree/"):
            assert sha256_file(local / rel) == digest, rel
            assert sha256_file(server.root / "upload" / f"{name}-tree" / rel[5:]) == digest, rel
    assert sha256_file(server.root / "upload" / name) == sha256_file(up)


def raw_retr(c: RawClient, path: str) -> bytes:
    """RETR over an EPSV data connection on an open RawClient session (TYPE I)."""
    assert c.cmd("TYPE I").code == 200
    d = c.data_connect(epsv=True)
    r = c.cmd(f"RETR {path}")
    assert r.code in (125, 150), r
    data = recv_all(d)
    r = c.reply()
    assert r.code == 226, r
    return data


def healthy_get(target, server, path: str = "blob.bin") -> None:
    """A concurrent healthy session: login, RETR byte-exact, QUIT."""
    buf = io.BytesIO()
    with ftplib_connect(target, timeout=15) as ftp:
        ftp.retrbinary(f"RETR {path}", buf.write)
    assert sha256_bytes(buf.getvalue()) == server.files[path], "healthy session: RETR not byte-exact"


def open_retr(c: RawClient, name: str, rcvbuf: int) -> socket.socket:
    """On a logged-in session: TYPE I, a passive data connection with a small
    receive buffer (so the proxy's side fills up fast), then RETR (125/150).
    Returns the data socket, not yet read."""
    assert c.cmd("TYPE I").code == 200
    port = c.epsv()
    d = socket.socket()
    d.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    d.connect(("127.0.0.1", port))
    r = c.cmd(f"RETR {name}")
    assert r.code in (125, 150), r
    return d


def file_on(server, name: str, size: int, sparse: bool = False) -> str:
    """A file of random bytes (or a sparse one) in the server's root, owned by its
    user; returns its sha256 (empty for a sparse file)."""
    p = server.root / name
    if not p.exists() or p.stat().st_size != size:
        if sparse:
            with open(p, "wb") as f:
                f.truncate(size)
        else:
            p.write_bytes(os.urandom(size))
        os.chown(p, server_uid(server), -1)
    return hashlib.sha256(p.read_bytes()).hexdigest() if not sparse else ""


def server_uid(server) -> int:
    return server.uid


# The proxy's descriptors and connections: nothing left behind.


def proxy_fds(proxy) -> int:
    return len(os.listdir(f"/proc/{proxy.proc.pid}/fd"))


def proxy_established(proxy) -> list[str]:
    out = subprocess.run(["ss", "-H", "-tanp", "state", "established"], capture_output=True, text=True,
                         check=True).stdout
    return [l for l in out.splitlines() if f"pid={proxy.proc.pid},"in l]


def wait_released(proxy, baseline: int, timeout: float = 5.0) -> None:
    """Waits until the proxy holds no connection and no more fds than at `baseline`."""
    end = time.monotonic() + timeout
    while True:
        fds, est = proxy_fds(proxy), proxy_established(proxy)
        if fds <= baseline and not est:
            return
        if time.monotonic() > end:
            raise AssertionError(f"proxy holds {fds} fds (idle baseline {baseline}) and connections {est}")
        time.sleep(0.05)
