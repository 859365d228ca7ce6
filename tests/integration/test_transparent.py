"""Transparent interception, for real: three network namespaces joined by
veth pairs (client, router, server), vsftpd on the server's own address,
ftpwarden on the router with nftables redirect rules (deploy/
nftables-transparent-redirect.conf's). The client dials the server; the
transfers show in the proxy's audit log, byte-exact. Destinations outside
upstream.allowed and connections made to the proxy itself get 421."""
from __future__ import annotations

import os
import socket
import subprocess
import uuid

import pytest

from servers import FTP_USER, Proxy, VsftpdServer, find_vsftpd, free_port_range, populate_tree, sha256_file
from ports import in_netns

NET_C, NET_S = "10.77.1", "10.77.2"  # client side, server side


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check)


@pytest.fixture
def lab():
    """Namespaces c (client), r (router, where ftpwarden runs), s (server)."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    tag = uuid.uuid4().hex[:6]
    ns = {k: f"ftpw-{k}-{tag}" for k in "crs"}
    made = []
    try:
        for n in ns.values():
            r = sh("ip", "netns", "add", n, check=False)
            if r.returncode != 0:
                pytest.skip(f"the kernel refuses network namespaces here: {r.stderr.strip()}")
            made.append(n)
        c, r_, s = ns["c"], ns["r"], ns["s"]
        sh("ip", "link", "add", "c0", "netns", c, "type", "veth", "peer", "name", "r1", "netns", r_)
        sh("ip", "link", "add", "s0", "netns", s, "type", "veth", "peer", "name", "r2", "netns", r_)
        sh("ip", "-n", c, "addr", "add", f"{NET_C}.2/24", "dev", "c0")
        sh("ip", "-n", r_, "addr", "add", f"{NET_C}.1/24", "dev", "r1")
        sh("ip", "-n", r_, "addr", "add", f"{NET_S}.1/24", "dev", "r2")
        sh("ip", "-n", s, "addr", "add", f"{NET_S}.2/24", "dev", "s0")
        for n, dev in ((c, "c0"), (r_, "r1"), (r_, "r2"), (s, "s0")):
            sh("ip", "-n", n, "link", "set", dev, "up")
        for n in ns.values():
            sh("ip", "-n", n, "link", "set", "lo", "up")
        sh("ip", "-n", c, "route", "add", "default", "via", f"{NET_C}.1")
        sh("ip", "-n", s, "route", "add", "default", "via", f"{NET_S}.1")
        sh("ip", "netns", "exec", r_, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        yield ns
    finally:
        for n in made:
            sh("ip", "netns", "del", n, check=False)


def nft(ns: str, rules: str):
    r = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rules, capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"nftables refused the redirect rules here: {r.stderr.strip()}")


def curl_in(ns: str, url: str, *args: str, user: str, password: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, "curl", "-sS", "--max-time", "30", "--connect-timeout", "5",
                           "--user", f"{user}:{password}", *args, url], capture_output=True, timeout=60)


def test_redirected_sessions_reach_the_servers_own_address(lab, proxy_bin, ftp_password, tmp_path):
    binary = find_vsftpd()
    if binary is None:
        pytest.skip("vsftpd not found")
    srv = VsftpdServer(FTP_USER, ftp_password, binary, pasv_ports=200)
    srv.host, srv.netns = f"{NET_S}.2", lab["s"]
    try:
        srv.files = populate_tree(srv.root)
        srv.start()
        lo, hi = free_port_range(40000, 49999, count=20)
        conf = tmp_path / "t.toml"
        conf.write_text(f'[listen]\naddress = "0.0.0.0:2121"\ntransparent = true\n'
                        f'[upstream]\nallowed = ["{NET_S}.0/24"]\n')
        proxy = Proxy(proxy_bin, "", mode="enforce", extra_args=["--config", str(conf)], passive_ports=(lo, hi),
                      netns=lab["r"])
        # the flags Proxy passes (--listen 127.0.0.1:0, --upstream "") come first; the file's listen
        # address is overridden by them, so set it again after them
        proxy.extra_args += ["--listen", "0.0.0.0:2121"]
        proxy.start()
        try:
            nft(lab["r"], f"""table ip ftpw {{
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    iifname "r1" tcp dport {srv.port} redirect to :2121
    iifname "r1" tcp dport {lo}-{hi} redirect
  }}
}}
""")
            url = f"ftp://{NET_S}.2:{srv.port}"
            for mode in ([], ["--disable-epsv", "-v"]):
                out = tmp_path / "blob.bin"
                r = curl_in(lab["c"], f"{url}/blob.bin", "-o", str(out), *mode, user=srv.user, password=srv.password)
                assert r.returncode == 0, r.stderr.decode()
                assert sha256_file(out) == srv.files["blob.bin"]
            # the passive reply names the server's own address: the client sees only the server
            assert b"227 Entering Passive Mode (10,77,2,2," in r.stderr, r.stderr.decode()
            up = tmp_path / "up.bin"
            up.write_bytes(os.urandom(300_000))
            r = curl_in(lab["c"], f"{url}/upload/up.bin", "-T", str(up), user=srv.user, password=srv.password)
            assert r.returncode == 0, r.stderr.decode()
            assert sha256_file(srv.root / "upload" / "up.bin") == sha256_file(up)
            opens = proxy.wait_events("session_open", 3)
            assert all(o["client"].startswith(f"{NET_C}.2:") and o["upstream"] == f"{NET_S}.2:{srv.port}"
                       for o in opens), opens
            transfers = proxy.wait_events("transfer", 3)
            blob = (srv.root / "blob.bin").stat().st_size
            assert [t["bytes"] for t in transfers] == [blob, blob, 300_000], transfers

            # a destination outside upstream.allowed: 421, never relayed
            def dial(host: str, port: int) -> bytes:
                with socket.create_connection((host, port), timeout=10) as s:
                    return s.recv(200)
            assert in_netns(lab["c"], lambda: dial("10.77.9.9", srv.port)).startswith(b"421 ")
            # straight to the proxy, not redirected: 421
            assert in_netns(lab["c"], lambda: dial(f"{NET_C}.1", 2121)).startswith(b"421 ")
            refused = proxy.wait_events("session_refused", 2)
            assert {e["reason"] for e in refused} == {
                "Service not available for this destination.", "Service not available: connect to the server, not the proxy."}
        finally:
            assert proxy.terminate() == 0
            proxy.cleanup()
    finally:
        srv.cleanup()
