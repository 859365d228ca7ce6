"""The audit log: event shapes, the 125 annotation and data-connection reuse,
and that the password never reaches the log or the proxy's stderr."""
from __future__ import annotations

import io
import re

import pytest

from checks import assert_common_fields, assert_no_violations
from clients import RawClient, Target, curl_get, ftplib_connect, ftplib_get, lftp, recv_all


def session_events(events, session):
    return [e for e in events if e["session"] == session]


def test_event_shapes_for_a_download(server, audit_proxy, via_audit, tmp_path):
    out = tmp_path / "small.txt"
    curl_get(via_audit, "small.txt", out)
    assert out.read_bytes() == (server.root / "small.txt").read_bytes()
    events = audit_proxy.settle()
    assert_common_fields(events)
    kinds = [e["event"] for e in events]
    for k in ("session_open", "command", "reply", "data_open", "data_close", "transfer", "session_close"):
        assert k in kinds, f"no {k} event: {kinds}"
    assert kinds[0] == "session_open" and kinds[-1] == "session_close"
    assert len({e["session"] for e in events}) == 1

    cmds = [e for e in events if e["event"] == "command"]
    assert [c["verb"] for c in cmds][:2] == ["USER", "PASS"]
    assert cmds[0]["arg"] == server.user
    assert cmds[1]["arg"] == "****"
    retr = next(c for c in cmds if c["verb"] == "RETR")
    assert retr["arg"] == "small.txt"

    replies = [e for e in events if e["event"] == "reply"]
    assert replies[0]["code"] == 220  # the greeting: no command, no latency
    for r in replies:
        assert isinstance(r["code"], int) and 100 <= r["code"] <= 599, r
        assert isinstance(r["text"], str), r
    for r in replies[1:]:  # server replies to commands carry their latency
        assert isinstance(r["latency_us"], int) and r["latency_us"] >= 0, r
    assert 230 in [r["code"] for r in replies] and 226 in [r["code"] for r in replies]

    (t,) = [e for e in events if e["event"] == "transfer"]
    assert t["verb"] == "RETR" and t["path"] == "small.txt" and t["direction"] == "download"
    assert t["bytes"] == (server.root / "small.txt").stat().st_size
    assert isinstance(t["duration_us"], int) and t["duration_us"] >= 0
    assert t["data_conn"] in ("new", "reused")
    assert kinds.index("data_open") < kinds.index("data_close")


def test_client_field_is_the_client_address(audit_proxy, via_audit):
    c = RawClient.to(via_audit)
    local = "%s:%d" % c.sock.getsockname()[:2]
    c.login()
    c.quit()
    events = audit_proxy.settle()
    opened = [e for e in events if e["event"] == "session_open"]
    assert len(opened) == 1 and opened[0]["client"] == local
    assert all(e["client"] == local for e in events)


def test_upload_transfer_event(server, audit_proxy, via_audit, unique_name):
    name = unique_name("up", ".bin")
    data = b"u" * 123_457
    with ftplib_connect(via_audit) as ftp:
        ftp.storbinary(f"STOR upload/{name}", io.BytesIO(data))
    assert (server.root / "upload" / name).read_bytes() == data
    t = audit_proxy.wait_event("transfer", verb="STOR")
    assert t["direction"] == "upload" and t["bytes"] == len(data)
    assert t["path"] == f"upload/{name}"


def test_125_is_annotated_and_data_connection_reused(pyftpdlib_server, make_proxy):
    """ftplib connects the passive data connection before RETR; pyftpdlib
    answers 125 (data connection already open)."""
    proxy = make_proxy(pyftpdlib_server, mode="audit")
    via = Target.via(proxy, pyftpdlib_server)
    buf = io.BytesIO()
    with ftplib_connect(via, pause=0.3) as ftp:
        resp = ftp.retrbinary("RETR blob.bin", buf.write)
        assert resp.startswith("226")
    assert len(buf.getvalue()) == 1 << 20
    r = proxy.wait_event("reply", code=125)
    assert r["annotation"] == "data_connection_already_open", r
    t = proxy.wait_event("transfer", verb="RETR")
    assert t["data_conn"] == "reused", t
    assert t["bytes"] == 1 << 20
    assert_no_violations(proxy)


def test_150_means_new_data_connection(vsftpd_server, make_proxy):
    """vsftpd answers 150 even when the data connection exists already."""
    proxy = make_proxy(vsftpd_server, mode="audit")
    via = Target.via(proxy, vsftpd_server)
    assert len(ftplib_get(via, "blob.bin")) == 1 << 20
    t = proxy.wait_event("transfer", verb="RETR")
    assert t["data_conn"] == "new", t
    events = assert_no_violations(proxy)
    codes = [e["code"] for e in events if e["event"] == "reply"]
    assert 150 in codes and 125 not in codes
    assert not any("annotation" in e for e in events if e["event"] == "reply" and e["code"] == 150)


def test_raw_passive_retr_reused_vs_new(server, audit_proxy, via_audit):
    """The same with a hand-made session: EPSV, connect, pause, RETR."""
    import time
    with RawClient.to(via_audit) as c:
        c.login()
        assert c.cmd("TYPE I").code == 200
        d = c.data_connect(epsv=True)
        time.sleep(0.3)
        r = c.cmd("RETR small.txt")
        assert r.code == (125 if server.kind == "pyftpdlib" else 150), r
        assert recv_all(d) == (server.root / "small.txt").read_bytes()
        assert c.reply().code == 226
        c.quit()
    t = audit_proxy.wait_event("transfer", verb="RETR")
    assert t["data_conn"] == ("reused" if server.kind == "pyftpdlib" else "new"), t


@pytest.mark.parametrize("mode", ["audit", "enforce"])
def test_password_never_logged(server, make_proxy, mode, tmp_path):
    """Neither the audit log nor the proxy's stderr (at debug level) ever holds
    the password: not from a login, nor from a PASS the rules object to."""
    proxy = make_proxy(server, mode=mode, extra_args=["--log-level", "debug"])
    via = Target.via(proxy, server)
    curl_get(via, "small.txt", tmp_path / "a")
    ftplib_get(via, "small.txt")
    lftp(via, f"lcd {tmp_path}; get small.txt -o b")
    with RawClient.to(via) as c:
        c.cmd(f"PASS {server.password}")          # PASS without USER: a violation
        c.cmd(f"USER {server.user}")
        c.cmd("NOOP")
        c.cmd(f"PASS {server.password}")          # PASS not directly after USER
        c.quit()
    with RawClient.to(via) as c:                  # a failed login
        c.cmd(f"USER {server.user}")
        c.cmd(f"PASS {server.password}x")
        c.quit()
    events = proxy.settle()
    assert [e["event"] for e in events].count("session_open") == 5
    for e in events:
        if e["event"] == "command" and e.get("verb") == "PASS":
            assert e["arg"] == "****", e
    assert len([e for e in events if e["event"] == "command" and e.get("verb") == "PASS"]) >= 5
    assert server.password not in proxy.audit_text()
    assert server.password not in proxy.stderr()
    proxy.stop()
    assert server.password not in proxy.audit_text()
    assert server.password not in proxy.stderr()


def test_audit_log_is_valid_json_lines(server, audit_proxy, via_audit):
    """Odd bytes in commands (non-UTF-8, quotes, backslashes) still give one
    valid JSON object per line."""
    with RawClient.to(via_audit) as c:
        c.login()
        c.cmd(b'SIZE "q\\uote\\" \xe9\xff\xff.txt')
        c.cmd("SIZE tab\there")
        c.quit()
    events = audit_proxy.settle()
    text = audit_proxy.audit_text()
    assert text.endswith("\n")
    assert len(text.strip().split("\n")) == len(events)
    sizes = [e for e in events if e["event"] == "command" and e["verb"] == "SIZE"]
    assert len(sizes) == 2
    assert sizes[1]["arg"] == "tab\there"
    assert re.search(r'q\\uote\\" ', sizes[0]["arg"]), sizes[0]


@pytest.mark.parametrize("state", ["idle", "epsv-retr-unconnected"])
def test_session_closes_when_client_disconnects(server, make_proxy, tmp_path, state):
    """The client dropping its control connection ends the session (and the
    upstream one) whatever the session was waiting for: a data connection it
    never made is waited for until data.connect_timeout_s, then given up."""
    cfg = tmp_path / "ftpwarden.toml"
    cfg.write_text("[data]\nconnect_timeout_s = 1\n")
    proxy = make_proxy(server, mode="audit", extra_args=["--config", str(cfg)])
    c = RawClient.to(Target.via(proxy, server))
    c.login()
    if state == "epsv-retr-unconnected":
        assert c.cmd("TYPE I").code == 200
        c.epsv()                        # never connected
        c.send(b"RETR blob.bin\r\n")   # the reply may never come: no data connection
    c.close()
    e = proxy.wait_event("session_close", timeout=5)
    assert e["session"] == proxy.wait_event("session_open")["session"]
    if state == "epsv-retr-unconnected":
        proxy.wait_event("timeout", timer="data_connect")


def test_session_closes_when_client_leaves_a_queued_transfer(pyftpdlib_server, make_proxy):
    """pyftpdlib answers a RETR without PASV/PORT with 150 and waits for a
    data connection; a client that hangs up then must still end the session."""
    proxy = make_proxy(pyftpdlib_server, mode="audit")
    c = RawClient.to(Target.via(proxy, pyftpdlib_server))
    c.login()
    assert c.cmd("RETR small.txt").code == 150
    c.close()
    proxy.wait_event("session_close", timeout=5)


def test_readme_lists_every_event_of_the_schema():
    """rules/audit_schema.h declares the events once; the README's audit-log
    table documents exactly those."""
    import re

    from servers import REPO
    schema = (REPO / "rules" / "audit_schema.h").read_text()
    events = re.findall(r"X\((\w+)\)", schema.split("FTPW_AUDIT_EVENTS(X)")[1].split("#define")[0])
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("| event | fields |"):]
    table = table[:table.index("\n\n")]
    documented = re.findall(r"`(\w+)`", "\n".join(l.split(" | ")[0] for l in table.splitlines()[2:]))
    assert sorted(documented) == sorted(events)
