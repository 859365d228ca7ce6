"""Policy rules against real servers and clients: a profile, a path rule that
allows before a broader reject, a user glob, a client address; what the
proxy refuses never reaches the server."""
from __future__ import annotations

from pathlib import Path

import pytest

from clients import RawClient, Target, curl_get, curl_put


def rules_file(tmp_path: Path, text: str) -> str:
    p = tmp_path / "policy.toml"
    p.write_text(text)
    return str(p)


def test_read_only_profile_downloads_and_refuses_uploads(server, make_proxy, tmp_path, sha256):
    conf = tmp_path / "ro.toml"
    conf.write_text('[policy]\nprofiles = ["read-only"]\n')
    proxy = make_proxy(server, mode="enforce", extra_args=["--config", str(conf)])
    via = Target.via(proxy, server)
    out = tmp_path / "blob.bin"
    curl_get(via, "blob.bin", out)
    assert sha256(out) == server.files["blob.bin"]
    mark = server.log_mark()
    local = tmp_path / "up.bin"
    local.write_bytes(b"never stored\n")
    r = curl_put(via, local, "upload/ro.bin", check=False)
    assert r.returncode != 0
    assert b"< 550 Permission denied: this server is read-only." in r.stderr, r.stderr[-2000:]
    ev = proxy.wait_event("violation", rule="read-only")
    assert ev["action"] == "rejected" and ev["reply_code"] == 550 and ev["verb"] == "STOR", ev
    cmd = [e for e in proxy.events("command", verb="STOR")]
    assert cmd and cmd[-1]["rule"] == "read-only", cmd
    # the server never saw the STOR, and has no such file
    server.wait_for_command("QUIT", since=mark)
    assert "STOR" not in server.verbs(since=mark)
    assert not (server.root / "upload" / "ro.bin").exists()


def test_a_path_allow_before_a_broader_reject(server, make_proxy, tmp_path):
    rules = rules_file(tmp_path, """
[[rule]]
id = "uploads-in-upload"
verbs = ["STOR", "DELE"]
paths = ["~/upload/**"]
audit = "allow"
enforce = "allow"

[[rule]]
id = "nothing-else-written"
description = "writes only under ~/upload"
verbs = ["@write"]
audit = "log"
enforce = "reject"
""")
    proxy = make_proxy(server, mode="enforce", extra_args=["--rules", rules])
    via = Target.via(proxy, server)
    local = tmp_path / "ok.bin"
    local.write_bytes(b"allowed\n" * 100)
    curl_put(via, local, "upload/ok.bin")
    assert (server.root / "upload" / "ok.bin").read_bytes() == local.read_bytes()
    mark = server.log_mark()
    with RawClient.to(via) as c:
        c.login()
        assert c.cmd("MKD elsewhere").code == 550
        assert c.cmd("CWD upload").code == 250
        assert c.cmd("DELE ok.bin").code == 250          # ~/upload/ok.bin
        assert c.cmd("DELE ../blob.bin").code == 550     # ~/blob.bin
        c.quit()
    verbs = server.verbs(since=mark)
    assert "MKD" not in verbs and verbs.count("DELE") == 1, verbs
    v = proxy.wait_events("violation", 2, rule="nothing-else-written")
    assert [e["verb"] for e in v] == ["MKD", "DELE"], v
    assert v[1]["path"].endswith("/blob.bin") and not v[1]["path"].endswith("/upload/blob.bin"), v
    allowed = proxy.events("command", rule="uploads-in-upload")
    assert any(e["verb"] == "DELE" and e["path"].endswith("/upload/ok.bin") for e in allowed), allowed
    # the proxy's own PWD after login is in neither the client's view nor the
    # audit log (this session's client sent none; curl's sessions send their own)
    sid = proxy.events("command", verb="MKD")[0]["session"]
    assert not [e for e in proxy.events(session=sid) if e.get("verb") in ("PWD", "XPWD")]


def test_a_user_glob(server, make_proxy, tmp_path):
    def server_saw_dele(users: str) -> bool:
        rules = rules_file(tmp_path, f"""
[[rule]]
id = "users-may-not-delete"
verbs = ["DELE"]
users = [{users}]
enforce = "reject"
""")
        proxy = make_proxy(server, mode="enforce", extra_args=["--rules", rules])
        mark = server.log_mark()
        with RawClient.to(Target.via(proxy, server)) as c:
            c.login()
            assert c.cmd("DELE no-such-file").code == 550  # the proxy's refusal or the server's
            c.quit()
        server.wait_for_command("QUIT", since=mark)
        return "DELE" in server.verbs(since=mark)

    assert not server_saw_dele('"ftpw*"')                # the test user matches: refused
    assert server_saw_dele('"someone-else", "guest*"')   # no match: the server answers


def test_a_client_address(server, make_proxy, tmp_path):
    rules = rules_file(tmp_path, """
[[rule]]
id = "read-only-from-127-0-0-2"
verbs = ["@write"]
clients = ["127.0.0.2"]
enforce = "reject"
""")
    proxy = make_proxy(server, mode="enforce", extra_args=["--rules", rules])
    via = Target.via(proxy, server)
    with RawClient.to(via, source="127.0.0.2") as c:
        c.login()
        assert c.cmd("MKD from-two").code == 550
        c.quit()
    with RawClient.to(via, source="127.0.0.1") as c:
        c.login()
        assert c.cmd("MKD from-one").code == 257
        assert c.cmd("RMD from-one").code == 250
        c.quit()
    proxy.wait_event("session_close", timeout=5.0)
    proxy.wait_events("session_close", 2, timeout=5.0)
    v = proxy.events("violation", rule="read-only-from-127-0-0-2")
    assert len(v) == 1 and v[0]["client"].startswith("127.0.0.2:"), v


def test_check_config_reports_a_bad_policy_rule(proxy_bin, tmp_path):
    import subprocess
    bad = rules_file(tmp_path, '[[rule]]\nid = "x"\nverbs = ["@writes"]\n')
    conf = tmp_path / "c.toml"
    conf.write_text(f'[upstream]\naddress = "127.0.0.1:21"\n[policy]\nrules = ["{bad}"]\n')
    r = subprocess.run([proxy_bin, "check-config", str(conf)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert f"{bad}:3:" in r.stderr + r.stdout and "@writes" in r.stderr + r.stdout, r.stderr + r.stdout


def test_a_lenient_server_is_caught_accepting_out_of_sequence(scripted_server, vsftpd_server, make_proxy):
    """Audit mode lets RNTO without RNFR through: a server that answers it
    250 is a server_finding; vsftpd, which answers 503, is not."""
    lenient = scripted_server({"RNTO": b"250 Rename successful.\r\n"})
    proxy = make_proxy(lenient, mode="audit")
    with RawClient.to(Target.via(proxy, lenient)) as c:
        c.login(lenient.user, lenient.password)
        assert c.cmd("RNTO b.txt").code == 250
        c.quit()
    f = proxy.wait_event("server_finding", rule="server-accepted-out-of-sequence")
    assert f["verb"] == "RNTO" and "rnto-needs-rnfr" in f["message"], f
    assert proxy.wait_event("violation", rule="rnto-needs-rnfr")["action"] == "logged"

    strict = make_proxy(vsftpd_server, mode="audit")
    with RawClient.to(Target.via(strict, vsftpd_server)) as c:
        c.login()
        assert c.cmd("RNTO b.txt").code == 503
        c.quit()
    strict.wait_event("session_close")
    assert strict.events("violation", rule="rnto-needs-rnfr")
    assert not strict.events("server_finding"), strict.events("server_finding")


def test_command_rate(server, make_proxy, tmp_path):
    conf = tmp_path / "rate.toml"
    conf.write_text("[limits]\ncommand_rate = 1\ncommand_burst = 5\n")
    proxy = make_proxy(server, mode="enforce", extra_args=["--config", str(conf)])
    with RawClient.to(Target.via(proxy, server)) as c:
        c.login()                       # 2 of the burst
        codes = [c.cmd("NOOP").code for _ in range(3)]   # 5: the burst is spent
        assert codes == [200, 200, 200]
        r = c.cmd("NOOP")               # far less than a second later: no token left
        assert r.code == 421 and "Too many commands" in r.lines[-1], r
    close = proxy.wait_event("session_close")
    assert close["reason"] == "command-rate", close
    assert proxy.events("violation", rule="command-rate")[0]["action"] == "rejected"


def test_lint_dry_runs_a_policy_over_an_audit_log(server, make_proxy, proxy_bin, tmp_path):
    """Sessions recorded with no policy, linted with one: the findings a
    live policy would have made, with their resolved paths, as JSON."""
    import json
    import subprocess
    proxy = make_proxy(server, mode="audit")
    with RawClient.to(Target.via(proxy, server)) as c:
        c.login()
        assert c.cmd("PWD").code == 257
        assert c.cmd("MKD lint-dir").code == 257
        assert c.cmd("CWD lint-dir").code == 250
        assert c.cmd("RMD ../lint-dir").code in (250, 550)
        c.quit()
    proxy.wait_event("session_close")
    assert proxy.terminate() == 0
    rules = rules_file(tmp_path, """
[[rule]]
id = "no-directory-changes"
verbs = ["MKD", "RMD"]
paths = ["~/**"]
audit = "log"
enforce = "reject"
""")
    r = subprocess.run([proxy_bin, "lint", "--rules", rules, "--format", "json", str(proxy.audit_path)],
                       capture_output=True, text=True, timeout=30)
    found = [json.loads(l) for l in r.stdout.splitlines()]
    mine = [f for f in found if f["rule"] == "no-directory-changes"]
    assert [(f["verb"], f["path"].rsplit("/", 1)[-1]) for f in mine] == [("MKD", "lint-dir"), ("RMD", "lint-dir")], found
    assert all(f["file"] == str(proxy.audit_path) and f["line"] > 0 and f["severity"] for f in mine)
    assert mine[0]["path"] == mine[1]["path"], mine  # ../lint-dir from inside it is the same directory


def test_max_sessions_per_user(server, make_proxy, tmp_path):
    conf = tmp_path / "users.toml"
    conf.write_text("[limits]\nmax_sessions_per_user = 1\n")
    proxy = make_proxy(server, mode="enforce", extra_args=["--config", str(conf)])
    via = Target.via(proxy, server)
    with RawClient.to(via) as first:
        first.login()
        with RawClient.to(via) as second:
            assert second.cmd(f"USER {via.user}").code == 331
            r = second.cmd(f"PASS {via.password}")  # the server's 230 never reaches the client
            assert r.code == 421 and "Too many sessions for this user" in r.lines[-1], r
        assert first.cmd("NOOP").code == 200  # the first one goes on
        first.quit()
    reasons = sorted(e["reason"] for e in proxy.wait_events("session_close", 2))
    assert reasons == ["quit", "user-sessions"], reasons
    # once the first is gone the user may log in again
    with RawClient.to(via) as again:
        again.login()
        assert again.cmd("NOOP").code == 200
        again.quit()


def test_check_config_warns_of_a_rule_that_can_never_decide(proxy_bin, tmp_path):
    import subprocess
    rules = rules_file(tmp_path, '[[rule]]\nid = "a"\nverbs = ["@write"]\nenforce = "reject"\n'
                                 '[[rule]]\nid = "b"\nverbs = ["DELE"]\nusers = ["x*"]\nenforce = "reject"\n')
    conf = tmp_path / "c.toml"
    conf.write_text(f'[upstream]\naddress = "127.0.0.1:21"\n[policy]\nrules = ["{rules}"]\n')
    r = subprocess.run([proxy_bin, "check-config", str(conf)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert f"{rules}:5:1: warning: rule 'b' can never decide: rule 'a'" in r.stderr, r.stderr


@pytest.mark.parametrize("relay", ["copy", "splice", "stream"])
def test_an_upload_cap_cuts_at_n(server, make_proxy, tmp_path, relay):
    import os
    cap = 100_000
    rules = rules_file(tmp_path, f"""
[[rule]]
id = "upload-cap"
description = "uploads of at most {cap} bytes"
verbs = ["STOR", "APPE"]
max_upload_bytes = {cap}
audit = "log"
enforce = "reject"
""")
    conf = tmp_path / "cap.toml"
    conf.write_text(f'[data]\nrelay = "{relay}"\n[policy]\nrules = ["{rules}"]\n')
    proxy = make_proxy(server, mode="enforce", extra_args=["--config", str(conf)])
    via = Target.via(proxy, server)
    payload = os.urandom(1 << 20)
    name = f"upload/capped-{relay}.bin"
    # A raw client, so the reply is read whatever the data connection's end
    # (curl, its send reset, leaves without reading it).
    with RawClient.to(via) as c:
        c.login()
        assert c.cmd("TYPE I").code == 200
        d = c.data_connect()
        assert c.cmd(f"STOR {name}").code in (125, 150)
        try:
            d.sendall(payload)
        except OSError:
            pass  # the proxy closed the data connection at the cap
        d.close()
        r = c.reply()
        assert r.code == 552 and r.lines[-1] == "552 Exceeded storage allocation.", r
        assert c.cmd("NOOP").code == 200  # in step with the server again
        c.quit()
    v = proxy.wait_event("violation", rule="upload-cap")
    assert v["action"] == "rejected" and v["reply_code"] == 552 and v["verb"] == "STOR", v
    t = proxy.wait_event("transfer", verb="STOR")
    assert t["code"] == 552 and 0 < t["bytes"] <= cap, t
    stored = (server.root / name).read_bytes()
    assert len(stored) <= cap and stored == payload[:len(stored)], len(stored)
    # a small upload goes through untouched, on a session that stays in step
    small = tmp_path / "small.bin"
    small.write_bytes(b"x" * 1000)
    curl_put(via, small, "upload/small-under-cap.bin")
    assert (server.root / "upload" / "small-under-cap.bin").read_bytes() == small.read_bytes()
