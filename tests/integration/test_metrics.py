"""The metrics endpoint: /metrics in the Prometheus text format, moving by
exactly what a real curl session did; /healthz and /ready; and the refusals
a bad, huge or slow request gets while FTP sessions go on untouched."""
from __future__ import annotations

import re
import signal
import socket
import time
from collections import Counter
from pathlib import Path

from clients import RawClient, Target, curl_get
from servers import free_port, sha256_file

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def http(port: int, request: bytes, timeout: float = 10) -> tuple[int, dict, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
    return status, headers, body


def get(port: int, path: str) -> tuple[int, bytes]:
    status, headers, body = http(port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert int(headers["content-length"]) == len(body)
    return status, body


def scrape(port: int) -> dict[tuple, float]:
    """{(name, ((label, value), ...)): value}, checking the format as it goes."""
    status, body = get(port, "/metrics")
    assert status == 200
    series: dict[tuple, float] = {}
    typed: dict[str, str] = {}
    for line in body.decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram"), line
            typed[name] = kind
            continue
        if line.startswith("# HELP "):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, labels = m.group(1), tuple(LABEL.findall(m.group(3) or ""))
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or base in typed, f"{name} has no TYPE line"
        key = (name, labels)
        assert key not in series, f"{key} twice"
        series[key] = float(m.group(4))
    return series


def value(s: dict, name: str, **labels) -> float:
    return s.get((name, tuple(labels.items())), 0.0)


def metrics_proxy(make_proxy, upstream, tmp_path: Path, extra: str = "", **kw):
    port = free_port()
    conf = tmp_path / "metrics.toml"
    conf.write_text(f'[metrics]\nlisten = "127.0.0.1:{port}"\n{extra}')
    proxy = make_proxy(upstream, extra_args=["--config", str(conf), *kw.pop("extra_args", ())], **kw)
    assert f"metrics on http://127.0.0.1:{port}/metrics" in proxy.stderr()
    return proxy, port


def test_a_scrape_moves_by_what_the_session_did(server, make_proxy, tmp_path):
    proxy, port = metrics_proxy(make_proxy, server, tmp_path, mode="enforce", extra_args=["--workers", "2"])
    before = scrape(port)
    assert value(before, "ftpwarden_sessions_open") == 0
    names = {k[0] for k in before}
    for stable in ("ftpwarden_sessions_open", "ftpwarden_sessions_total", "ftpwarden_replies_total",
                   "ftpwarden_bytes_total", "ftpwarden_upstream_connect_failures_total",
                   "ftpwarden_connections_refused_total", "ftpwarden_audit_records_dropped_total",
                   "ftpwarden_reply_latency_seconds_bucket", "ftpwarden_transfer_duration_seconds_count",
                   "ftpwarden_build_info"):
        assert stable in names, stable
    out = tmp_path / "blob.bin"
    curl_get(Target.via(proxy, server), "blob.bin", out)
    assert sha256_file(out) == server.files["blob.bin"]
    proxy.wait_event("session_close")
    after = scrape(port)
    events = proxy.audit()
    commands = Counter(e["verb"] for e in events if e["event"] == "command")
    replies = Counter(f"{str(e['code'])[0]}xx" for e in events if e["event"] == "reply")
    delta = lambda name, **l: value(after, name, **l) - value(before, name, **l)  # noqa: E731
    assert delta("ftpwarden_sessions_total") == 1
    assert value(after, "ftpwarden_sessions_open") == 0
    for verb, n in commands.items():
        assert delta("ftpwarden_commands_total", verb=verb) == n, verb
    for cls, n in replies.items():
        assert delta("ftpwarden_replies_total", **{"class": cls}) == n, cls
    assert delta("ftpwarden_bytes_total", direction="download") == out.stat().st_size
    assert delta("ftpwarden_bytes_total", direction="upload") == 0
    [t] = [e for e in events if e["event"] == "transfer"]  # pyftpdlib says 125: reused
    assert delta("ftpwarden_transfers_total", verb="RETR", data_conn=t["data_conn"]) == 1
    assert delta("ftpwarden_data_connections_total", data_conn=t["data_conn"]) == 1
    assert delta("ftpwarden_transfer_duration_seconds_count") == 1
    latencies = [e["latency_us"] for e in events if e["event"] == "reply" and "latency_us" in e]
    assert delta("ftpwarden_reply_latency_seconds_count") == len(latencies)
    assert abs(delta("ftpwarden_reply_latency_seconds_sum") - sum(latencies) / 1e6) < 1e-6
    assert value(after, "ftpwarden_reply_latency_seconds_bucket", le="+Inf") == \
        value(after, "ftpwarden_reply_latency_seconds_count")
    version = [k for k in after if k[0] == "ftpwarden_build_info"][0][1]
    assert dict(version)["rules_version"] == events[0]["rules_version"]


def test_violations_and_refusals_by_label(server, make_proxy, tmp_path):
    proxy, port = metrics_proxy(make_proxy, server, tmp_path, mode="enforce",
                                extra="[limits]\nmax_sessions_per_ip = 1\n")
    with RawClient.to(Target.via(proxy, server)) as c:
        c.login()
        assert c.cmd("RNTO x").code == 503
        with socket.create_connection((proxy.host, proxy.port), timeout=10) as extra:
            assert extra.recv(200).startswith(b"421 ")
        c.send(b"XYZZY plugh\r\n")
        assert c.reply().code >= 500
        s = scrape(port)
        assert value(s, "ftpwarden_sessions_open") == 1
        c.quit()
    assert value(s, "ftpwarden_violations_total", rule="rnto-needs-rnfr", action="rejected") == 1
    assert value(s, "ftpwarden_connections_refused_total", reason="max-sessions-per-ip") == 1
    assert value(s, "ftpwarden_commands_total", verb="other") >= 1  # an unknown verb adds no series
    assert not [k for k in s if dict(k[1]).get("verb") == "XYZZY"]


def test_health_and_readiness(server, make_proxy, tmp_path):
    proxy, port = metrics_proxy(make_proxy, server, tmp_path, extra="[limits]\nshutdown_grace_s = 30\n")
    assert get(port, "/healthz") == (200, b"ok\n")
    assert get(port, "/ready")[0] == 200  # no upstream connect tried yet
    assert get(port, "/nope")[0] == 404
    with RawClient.to(Target.via(proxy, server)) as c:
        c.login()
        assert get(port, "/ready")[0] == 200
        proxy.proc.send_signal(signal.SIGTERM)  # drains: the open session holds the process up
        deadline = time.monotonic() + 10
        while get(port, "/ready")[0] != 503:
            assert time.monotonic() < deadline, "never reported draining"
            time.sleep(0.05)
        assert get(port, "/ready") == (503, b"draining\n")
        assert get(port, "/healthz")[0] == 200  # still running
        assert c.cmd("NOOP").code == 200
        c.quit()
    proxy.proc.wait(10)  # exits by itself once drained
    assert proxy.terminate() == 0


def test_not_ready_while_the_upstream_is_unreachable(make_proxy, tmp_path):
    """Not ready after a failed connect, and ready again by itself once the
    server is back, with no session to find out (the proxy probes it)."""
    dead_port = free_port()
    proxy, port = metrics_proxy(make_proxy, f"127.0.0.1:{dead_port}", tmp_path)
    assert get(port, "/ready")[0] == 200
    with socket.create_connection((proxy.host, proxy.port), timeout=10) as s:
        assert s.recv(200).startswith(b"421 ")
    assert get(port, "/ready") == (503, b"upstream unreachable\n")
    assert get(port, "/healthz")[0] == 200
    back = socket.socket()
    back.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    back.bind(("127.0.0.1", dead_port))
    back.listen(4)
    try:
        deadline = time.monotonic() + 15
        while get(port, "/ready")[0] != 200:
            assert time.monotonic() < deadline, "still not ready with the server back"
            time.sleep(0.1)
    finally:
        back.close()


def test_bad_huge_and_slow_requests_are_refused_and_sessions_go_on(server, make_proxy, tmp_path):
    proxy, port = metrics_proxy(make_proxy, server, tmp_path)
    with RawClient.to(Target.via(proxy, server)) as c:
        c.login()
        slow = socket.create_connection(("127.0.0.1", port), timeout=20)
        slow.sendall(b"GET /metr")  # and nothing more
        assert http(port, b"POST /metrics HTTP/1.1\r\n\r\n")[0] == 405
        assert http(port, b"GET metrics\r\n\r\n")[0] == 400
        assert http(port, b"GET /metrics HTTP/1.1\r\nX: \x01\r\n\r\n")[0] == 400
        assert http(port, b"GET /metrics HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 9000 + b"\r\n\r\n")[0] == 431
        status, headers, body = http(port, b"HEAD /metrics HTTP/1.0\r\n\r\n")
        assert status == 200 and body == b"" and int(headers["content-length"]) > 0
        assert c.cmd("NOOP").code == 200  # the FTP session never noticed
        # the slow client is answered 408 and cut after the head timeout
        data = b""
        while chunk := slow.recv(4096):
            data += chunk
        assert data.startswith(b"HTTP/1.1 408 "), data
        slow.close()
        # a crowd of idle connections: past the cap they are closed at once
        crowd = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(40)]
        closed = 0
        for s in crowd[32:]:
            s.settimeout(5)
            try:
                closed += s.recv(10) == b""
            except (ConnectionResetError, socket.timeout):
                closed += 1
        assert closed >= 1
        for s in crowd:
            s.close()
        # once the crowd is gone (its closes read by the proxy), scrapes are served again
        deadline = time.monotonic() + 10
        while True:
            try:
                assert get(port, "/healthz")[0] == 200
                break
            except (ConnectionResetError, ConnectionRefusedError, ValueError, IndexError):
                assert time.monotonic() < deadline, "never served again after the crowd left"
                time.sleep(0.05)
        assert c.cmd("NOOP").code == 200
        c.quit()


def test_metrics_flag_and_check_config(proxy_bin, tmp_path):
    import subprocess
    bad = tmp_path / "bad.toml"
    bad.write_text('[metrics]\nlisten = "nowhere"\n')
    r = subprocess.run([proxy_bin, "check-config", str(bad)], capture_output=True, text=True)
    assert r.returncode == 1 and f"{bad}:2:10: metrics listen address must be IP:PORT" in r.stderr, r.stderr
    r = subprocess.run([proxy_bin, "--help"], capture_output=True, text=True)
    assert "--metrics ADDR:PORT" in r.stdout and "[metrics.listen]" in r.stdout


def test_a_real_prometheus_scrapes_the_endpoint(server, make_proxy, tmp_path):
    """Debian's Prometheus: promtool accepts the exposition as it is, and a
    prometheus server scraping the endpoint every second has the proxy up
    and reports the session a real client made (its query API)."""
    import json
    import shutil
    import subprocess
    import urllib.request

    import pytest

    if not (shutil.which("promtool") and shutil.which("prometheus")):
        pytest.skip("Debian's prometheus package is not installed")
    proxy, port = metrics_proxy(make_proxy, server, tmp_path)
    curl_get(Target.via(proxy, server), "small.txt", tmp_path / "small.txt")
    proxy.wait_event("session_close")
    status, body = get(port, "/metrics")
    assert status == 200
    lint = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert lint.returncode == 0, (lint.stdout + lint.stderr).decode()

    web = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                   f"scrape_configs:\n  - job_name: ftpwarden\n    static_configs:\n"
                   f"      - targets: ['127.0.0.1:{port}']\n")
    log = open(tmp_path / "prometheus.log", "wb")
    prom = subprocess.Popen(["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{web}"], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    log.close()

    def query(q: str):
        url = f"http://127.0.0.1:{web}/api/v1/query?query={urllib.parse.quote(q)}"
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.load(r)["data"]["result"]

    try:
        end = time.monotonic() + 60
        while True:
            try:
                up = query('up{job="ftpwarden"}')
                sessions = query("ftpwarden_sessions_total")
                if up and up[0]["value"][1] == "1" and sessions and float(sessions[0]["value"][1]) >= 1:
                    break
            except OSError:
                pass  # not listening yet
            assert time.monotonic() < end, (tmp_path / "prometheus.log").read_text()[-3000:]
            time.sleep(0.5)
        bytes_down = query('ftpwarden_bytes_total{direction="download"}')
        assert bytes_down and float(bytes_down[0]["value"][1]) == (server.root / "small.txt").stat().st_size
    finally:
        prom.terminate()
        try:
            prom.wait(timeout=10)
        except subprocess.TimeoutExpired:
            prom.kill()
