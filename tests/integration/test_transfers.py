"""Real clients through the proxy against real servers: every transfer is
sha256-checked (uploads against the file that landed in the server's dir),
the client sees only the proxy's data addresses, the server only the proxy's,
and a normal session raises no violation."""
from __future__ import annotations

import hashlib
import time

import pytest

from checks import active_addr, assert_no_violations, curl_replies, file_on, lftp_round_trip, pasv_port
from clients import (CURL_MODES, Target, curl, curl_commands, curl_get, curl_list, curl_put, ftplib_connect,
                     ftplib_get, ftplib_nlst, ftplib_put, tnftp)
from servers import sha256_bytes, sha256_file

MODES = ["audit", "enforce"]


def in_range(port, rng):
    return port is not None and rng[0] <= port <= rng[1]


@pytest.mark.parametrize("curl_mode", list(CURL_MODES))
def test_curl_get_list_put(server, make_proxy, curl_mode, tmp_path, unique_name):
    proxy = make_proxy(server, mode="enforce")
    via = proxy_target(proxy, server)
    mark = server.log_mark()

    out = tmp_path / "blob.bin"
    r = curl_get(via, "blob.bin", out, mode=curl_mode)
    assert sha256_file(out) == server.files["blob.bin"]
    check_data_addresses(r.stderr, curl_mode, proxy, server, mark)

    listing = curl_list(via, "/", mode=curl_mode)
    assert "small.txt" in listing and "blob.bin" in listing and "tree" in listing
    assert curl_list(via, "/tree/", mode=curl_mode, names_only=True).split().count("a.txt") == 1

    name = unique_name("curl", ".bin")
    src = tmp_path / name
    src.write_bytes(sha256_bytes(name.encode()).encode() * 3000)
    curl_put(via, src, f"upload/{name}", mode=curl_mode)
    assert sha256_file(server.root / "upload" / name) == sha256_file(src)

    events = assert_no_violations(proxy)
    transfers = [e for e in events if e["event"] == "transfer"]
    down = [t for t in transfers if t["verb"] == "RETR"]
    up = [t for t in transfers if t["verb"] == "STOR"]
    assert len(down) == 1 and down[0]["bytes"] == 1 << 20 and down[0]["direction"] == "download", transfers
    assert down[0]["path"].endswith("blob.bin")
    assert len(up) == 1 and up[0]["bytes"] == src.stat().st_size and up[0]["direction"] == "upload", transfers
    assert up[0]["path"].endswith(name)


def proxy_target(proxy, server) -> Target:
    return Target.via(proxy, server)


def check_data_addresses(curl_stderr: bytes, curl_mode: str, proxy, server, mark: int) -> None:
    """Passive: the 227/229 the client got names a proxy port, not the server's.
    Active: the server got a PORT/EPRT, but not the client's own address."""
    if curl_mode in ("epsv", "pasv"):
        code = "229" if curl_mode == "epsv" else "227"
        got = [l for l in curl_replies(curl_stderr) if l.startswith(code)]
        assert got, curl_replies(curl_stderr)
        port = pasv_port(got[0])
        assert in_range(port, proxy.passive_ports), (got[0], proxy.passive_ports)
        assert not in_range(port, server.pasv_range)
        if curl_mode == "pasv":
            assert "127,0,0,1" in got[0]
    else:
        sent = [c for c in curl_commands(curl_stderr) if c.upper().startswith(("EPRT", "PORT"))]
        assert sent, curl_commands(curl_stderr)
        client_addr = active_addr(sent[0])
        e = server.wait_for_command("RETR", since=mark)
        seen = [active_addr(c.text) for c in server.commands(since=mark)
                if c.session == e.session and c.verb in ("PORT", "EPRT")]
        assert seen, server.verbs(since=mark)
        assert seen[0][0] == "127.0.0.1"
        assert seen[0] != client_addr, "the server was sent the client's own data address"


@pytest.mark.parametrize("passive", [True, False], ids=["passive", "active"])
def test_lftp_get_put_mirror(server, make_proxy, passive, tmp_path, unique_name):
    proxy = make_proxy(server, mode="enforce")
    lftp_round_trip(proxy_target(proxy, server), server, tmp_path, unique_name("lftp", ".bin"),
                    bytes(range(256)) * 1000, passive)
    assert_no_violations(proxy)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("passive", [True, False], ids=["passive", "active"])
def test_ftplib_get_put_nlst(server, make_proxy, mode, passive, unique_name):
    proxy = make_proxy(server, mode=mode)
    via = proxy_target(proxy, server)
    assert sha256_bytes(ftplib_get(via, "blob.bin", passive)) == server.files["blob.bin"]
    assert ftplib_get(via, "tree/sub/c.txt", passive) == (server.root / "tree/sub/c.txt").read_bytes()
    name = unique_name("ftplib", ".bin")
    data = b"\x00\xff\r\n" * 20000  # binary, CR LF and 0xFF bytes must pass untouched
    assert ftplib_put(via, f"upload/{name}", data, passive).startswith("226")
    assert sha256_file(server.root / "upload" / name) == sha256_bytes(data)
    names = [n.rsplit("/", 1)[-1] for n in ftplib_nlst(via, "tree", passive)]
    assert sorted(names) == sorted(p.name for p in (server.root / "tree").iterdir())
    assert_no_violations(proxy)


@pytest.mark.parametrize("passive", [True, False], ids=["passive", "active"])
def test_tnftp_get_put_ls(server, make_proxy, passive, tmp_path, unique_name):
    """tnftp (NetBSD ftp): a listing, a download and an upload through the
    proxy in enforce mode, byte-exact, and not one violation."""
    proxy = make_proxy(server, mode="enforce")
    name = unique_name("tnftp", ".bin")
    up = tmp_path / name
    up.write_bytes(bytes(range(256)) * 700)
    got = tmp_path / "blob.bin"
    out = tnftp(proxy_target(proxy, server),
                f"binary\nls tree\nget blob.bin {got}\nput {up} upload/{name}", passive=passive)
    assert "a.txt" in out
    assert sha256_file(got) == server.files["blob.bin"]
    assert sha256_file(server.root / "upload" / name) == sha256_file(up)
    assert_no_violations(proxy)


@pytest.mark.parametrize("mode", MODES)
def test_curl_get_every_mode_no_violation(server, make_proxy, mode, tmp_path):
    """A plain curl download is a valid session in both modes: no violation event."""
    proxy = make_proxy(server, mode=mode)
    out = tmp_path / "small.txt"
    curl_get(proxy_target(proxy, server), "small.txt", out)
    assert out.read_bytes() == (server.root / "small.txt").read_bytes()
    events = assert_no_violations(proxy)
    assert [e["event"] for e in events].count("session_open") == 1


def test_empty_file_and_resume(server, make_proxy, tmp_path):
    """A zero-byte download, and curl's resumed download (REST, then RETR)."""
    proxy = make_proxy(server, mode="enforce")
    via = proxy_target(proxy, server)
    out = tmp_path / "empty.txt"
    curl_get(via, "tree/empty.txt", out)
    assert out.exists() and out.stat().st_size == 0
    part = tmp_path / "blob.part"
    part.write_bytes((server.root / "blob.bin").read_bytes()[:300_000])
    curl(via, "blob.bin", "-C", "-", "-o", str(part))
    assert sha256_file(part) == server.files["blob.bin"]
    assert_no_violations(proxy)


@pytest.mark.parametrize("relay,buffer_kib", [("copy", 4096), ("copy", 64), ("splice", 1024), ("stream", 4096)],
                         ids=["copy", "copy-64k", "splice", "stream"])
def test_relay_kinds_move_every_byte(vsftpd_server, make_proxy, tmp_path, unique_name, relay, buffer_kib):
    """Each way of relaying data ([data] relay) moves big files byte-exact both
    ways, with exact counts, for a fast reader and for a slow one (the proxy's
    buffer or pipe fills, wraps and drains while the server keeps sending)."""
    server = vsftpd_server
    size = 24 << 20
    name = unique_name("relay", ".bin")
    digest = file_on(server, name, size)
    src = server.root / name
    cfg = tmp_path / "relay.toml"
    cfg.write_text(f'[data]\nrelay = "{relay}"\nrelay_buffer_kib = {buffer_kib}\n')
    proxy = make_proxy(server, mode="enforce", extra_args=["--config", str(cfg)])
    via = proxy_target(proxy, server)

    out = tmp_path / "fast.bin"
    curl_get(via, name, out)
    assert sha256_file(out) == digest

    h = hashlib.sha256()
    blocks = 0

    def slow(chunk: bytes) -> None:
        nonlocal blocks
        h.update(chunk)
        blocks += 1
        if blocks % 64 == 0:
            time.sleep(0.002)

    with ftplib_connect(via, timeout=30) as ftp:
        ftp.retrbinary(f"RETR {name}", slow, blocksize=8192)
    assert h.hexdigest() == digest

    up = unique_name("relay-up", ".bin")
    curl_put(via, src, f"upload/{up}")
    assert sha256_file(server.root / "upload" / up) == digest

    events = assert_no_violations(proxy)
    transfers = [e for e in events if e["event"] == "transfer"]
    assert [(t["verb"], t["bytes"]) for t in transfers] == [("RETR", size), ("RETR", size), ("STOR", size)], transfers
