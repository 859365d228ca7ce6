"""deploy/scale-out/: HAProxy's file and the two instances' configurations,
run on loopback with addresses and ports replaced: sessions spread over both
instances, every passive connection reaches the instance that announced its
port, each instance logs the real client, and a draining instance (its /ready
says 503) gets no new sessions."""
from __future__ import annotations

import shutil
import signal
import subprocess
import time
import tomllib
from pathlib import Path

import pytest

from clients import RawClient, Target, curl
from servers import REPO, Proxy, free_port, free_port_range, sha256_file

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
DIR = REPO / "deploy" / "scale-out"


@pytest.mark.skipif(not Path(HAPROXY).exists(), reason="haproxy is not installed (apt-get install haproxy)")
def test_two_instances_behind_haproxy(server, proxy_bin, tmp_path):
    ranges = {"a": free_port_range(30000, 34999, count=20), "b": free_port_range(35000, 39999, count=20)}
    control = {k: free_port() for k in "ab"}
    metrics = {k: free_port() for k in "ab"}
    front = free_port("127.0.0.2")
    proxies = {}
    try:
        for k, lo_hi in ranges.items():
            cfg = tomllib.loads((DIR / f"instance-{k}.toml").read_text())
            assert cfg["listen"]["proxy_protocol"] == "v2" and cfg["data"]["public_address"] == "192.0.2.10"
            text = (DIR / f"instance-{k}.toml").read_text()
            text = text.replace(cfg["listen"]["address"], f"127.0.0.1:{control[k]}")
            text = text.replace(cfg["metrics"]["listen"], f"127.0.0.1:{metrics[k]}")
            text = text.replace(cfg["upstream"]["address"], f"{server.host}:{server.port}")
            text = text.replace(cfg["data"]["passive_ports"], f"{lo_hi[0]}-{lo_hi[1]}")
            text = text.replace("192.0.2.10", "127.0.0.2").replace(cfg["audit"]["path"], str(tmp_path / f"{k}.jsonl"))
            (tmp_path / f"{k}.toml").write_text(text)
            p = Proxy(proxy_bin, server, mode="enforce", passive_ports=lo_hi, base=tmp_path / k,
                      extra_args=["--config", str(tmp_path / f"{k}.toml"), "--listen", f"127.0.0.1:{control[k]}",
                                  "--audit-log", str(tmp_path / k / "audit.jsonl")])
            (tmp_path / k).mkdir()
            proxies[k] = p.start()
        ha = (DIR / "haproxy.cfg").read_text()
        ha = ha.replace("maxconn 20000", "maxconn 200")  # within this machine's descriptor limit
        ha = ha.replace("192.0.2.10:21", f"127.0.0.2:{front}")
        ha = ha.replace("192.0.2.10:50000-50499", f"127.0.0.2:{ranges['a'][0]}-{ranges['a'][1]}")
        ha = ha.replace("192.0.2.10:50500-50999", f"127.0.0.2:{ranges['b'][0]}-{ranges['b'][1]}")
        for k, ip in (("a", "10.0.0.11"), ("b", "10.0.0.12")):
            ha = ha.replace(f"{ip}:2121 send-proxy-v2 check port 9121 ",
                            f"127.0.0.1:{control[k]} send-proxy-v2 check port {metrics[k]} ")
            ha = ha.replace(f"server {k} {ip} send-proxy-v2", f"server {k} 127.0.0.1 send-proxy-v2")
        live = "\n".join(l for l in ha.splitlines() if not l.lstrip().startswith("#"))
        assert "10.0.0." not in live and "192.0.2." not in live, live
        (tmp_path / "haproxy.cfg").write_text(ha)
        chk = subprocess.run([HAPROXY, "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True)
        assert chk.returncode == 0, chk.stdout + chk.stderr
        hp = subprocess.Popen([HAPROXY, "-db", "-f", str(tmp_path / "haproxy.cfg")], stdout=subprocess.DEVNULL,
                              stderr=open(tmp_path / "haproxy.log", "wb"))
        try:
            via = Target("127.0.0.2", front, server.user, server.password)
            deadline = time.monotonic() + 15
            while True:  # up, with both servers checked healthy
                try:
                    with RawClient.to(via, timeout=3) as c:
                        c.quit()
                    if all(p.events("session_open") for p in proxies.values()):
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, "haproxy never spread sessions over both instances: " + \
                    (tmp_path / "haproxy.log").read_text()[-2000:] + proxies["a"].stderr()[-1000:]
                time.sleep(0.2)
            for i in range(6):
                out = tmp_path / f"blob{i}.bin"
                curl(via, "blob.bin", "-o", str(out), "--interface", "127.0.0.5",
                     mode="pasv" if i % 2 else "epsv")
                assert sha256_file(out) == server.files["blob.bin"]
            deadline = time.monotonic() + 5  # (the audit logs are flushed within a second)
            while sum(len(p.events("transfer")) for p in proxies.values()) < 6:
                assert time.monotonic() < deadline, [p.events("transfer") for p in proxies.values()]
                time.sleep(0.05)
            for k, p in proxies.items():
                transfers = p.events("transfer")
                assert transfers, f"instance {k} got no transfer"
                opened = [e for e in p.events("session_open") if e["client"].startswith("127.0.0.5:")]
                assert opened and all(e["via"].startswith("127.0.0.1:") for e in opened)
            # b drains: it stops accepting (and /ready says 503); new sessions all go to a
            b = proxies["b"]
            try:
                held = RawClient.to(Target(b.host, b.port, server.user, server.password),
                                    prefix=b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00")  # v2 LOCAL
            except ConnectionError:
                raise AssertionError(b.stderr()[-2000:] + b.audit_text()[-3000:])
            with held:
                held.login()
                from_curl = lambda p: [e for e in p.events("session_open") if e["client"].startswith("127.0.0.6:")]  # noqa: E731
                b.proc.send_signal(signal.SIGTERM)
                deadline = time.monotonic() + 10
                while "shutting down" not in b.stderr():
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
                for i in range(4):
                    curl(via, "small.txt", "-o", str(tmp_path / f"s{i}.txt"), "--interface", "127.0.0.6")
                deadline = time.monotonic() + 5
                while len(from_curl(proxies["a"])) < 4:
                    assert time.monotonic() < deadline, from_curl(proxies["a"])
                    time.sleep(0.05)
                assert from_curl(b) == []
                assert held.cmd("NOOP").code == 200  # b's open session goes on while it drains
                held.quit()
        finally:
            hp.terminate()
            hp.wait(10)
    finally:
        for p in proxies.values():
            p.stop()
            p.cleanup()
