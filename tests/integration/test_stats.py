"""The counters the proxy prints at exit (proxy/stats.h) agree with its own
audit log, family by family, over a scripted mix of sessions against a real
server: transfers both ways, a rejected violation, a refused connection."""
from __future__ import annotations

import ftplib
import io
import socket
from collections import Counter

from clients import Target, ftplib_connect


def expected_from_audit(events: list[dict]) -> dict[str, int]:
    """What each counter must read, computed from the audit log alone."""
    want: Counter = Counter()
    for e in events:
        ev = e["event"]
        if ev == "session_open":
            want["sessions_total"] += 1
        elif ev == "session_refused":
            want["sessions_refused"] += 1
        elif ev == "command":
            want[f"commands.{e['verb']}"] += 1
        elif ev == "reply":
            want[f"replies.{str(e['code'])[0]}xx"] += 1
            if "latency_us" in e:
                want["reply_latency_us.count"] += 1
                want["reply_latency_us.sum"] += e["latency_us"]
        elif ev == "violation":
            want["violations"] += 1
            want[f"violations_by_rule.{e['rule']}.{e['action']}"] += 1
        elif ev == "server_finding":
            want[f"server_findings.{e['rule']}"] += 1
        elif ev == "data_close":
            want["bytes.download"] += e["bytes_down"]
            want["bytes.upload"] += e["bytes_up"]
        elif ev == "transfer":
            want["transfers"] += 1
            want[f"data_connections.{e['data_conn']}"] += 1
            want["transfer_duration_ms.count"] += 1
    return dict(want)


def test_exit_totals_match_the_audit_log(pyftpdlib_server, make_proxy, tmp_path):
    server = pyftpdlib_server
    conf = tmp_path / "ftpwarden.toml"
    conf.write_text("[limits]\nmax_sessions_per_ip = 1\n")
    proxy = make_proxy(server, mode="enforce", extra_args=["--config", str(conf), "--workers", "2"])
    target = Target.via(proxy, server)
    payload = bytes(range(256)) * 300
    with ftplib_connect(target) as ftp:
        # one session at a time from this address: a second one is refused
        with socket.create_connection((proxy.host, proxy.port), timeout=10) as extra:
            assert extra.recv(200).startswith(b"421 ")
        buf = io.BytesIO()
        ftp.retrbinary("RETR small.txt", buf.write)
        ftp.storbinary("STOR upload/stats.bin", io.BytesIO(payload))
        assert ftp.sendcmd("NOOP").startswith("200")
        try:
            ftp.sendcmd("RNTO nowhere")
            raise AssertionError("RNTO without RNFR was not rejected")
        except ftplib.error_perm as exc:
            assert str(exc).startswith("503"), exc
        ftp.quit()
    proxy.wait_event("session_close", reason="quit")
    assert proxy.terminate(timeout=10) == 0
    got = proxy.exit_stats()
    events = proxy.audit()
    want = expected_from_audit(events)
    assert want["bytes.download"] == len(buf.getvalue()) and want["bytes.upload"] == len(payload), want
    assert want["violations_by_rule.rnto-needs-rnfr.rejected"] == 1, want
    for key, value in want.items():
        assert got.get(key, 0) == value, (key, got.get(key, 0), value)
    # and nothing counted that the audit log does not show
    families = ("commands.", "replies.", "violations_by_rule.", "server_findings.", "data_connections.")
    for key, value in got.items():
        if key.startswith(families):
            assert want.get(key, 0) == value, (key, value)
    assert got["refused.max-sessions-per-ip"] == 1
    assert got["sessions_open"] == 0 and got["upstream_connect_failures"] == 0
    assert got["audit_records_dropped"] == 0
