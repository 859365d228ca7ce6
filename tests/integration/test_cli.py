"""The command line: --version, check-config, lint, start-up line, SIGTERM."""
from __future__ import annotations

import re
import subprocess
import time

from clients import RawClient, Target, curl_get


def run(proxy_bin, *args, timeout=20):
    return subprocess.run([proxy_bin, *args], capture_output=True, text=True, timeout=timeout)


def test_version(proxy_bin):
    r = run(proxy_bin, "--version")
    assert r.returncode == 0, r
    assert re.search(r"\d+\.\d+\.\d+", r.stdout + r.stderr), r


def test_check_config_unknown_key(proxy_bin, tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[listen]\naddress = "127.0.0.1:2121"\nbogus_key = 1\n')
    r = run(proxy_bin, "check-config", str(cfg))
    assert r.returncode == 1, r
    out = r.stdout + r.stderr
    assert re.search(re.escape(str(cfg)) + r":3:1\b", out), out
    assert "bogus_key" in out


def test_check_config_bad_value_position(proxy_bin, tmp_path):
    cfg = tmp_path / "bad-mode.toml"
    cfg.write_text('[upstream]\naddress = "127.0.0.1:21"\n\n[policy]\nmode = "paranoid"\n')
    r = run(proxy_bin, "check-config", str(cfg))
    assert r.returncode == 1, r
    assert re.search(re.escape(str(cfg)) + r":5:\d+", r.stdout + r.stderr), r


def test_check_config_valid(proxy_bin, tmp_path):
    cfg = tmp_path / "good.toml"
    cfg.write_text('[listen]\naddress = "127.0.0.1:2121"\n\n[upstream]\naddress = "127.0.0.1:21"\n\n'
                   '[data]\npassive_ports = "40000-40099"\n\n[policy]\nmode = "audit"\n')
    r = run(proxy_bin, "check-config", str(cfg))
    assert r.returncode == 0, r


def test_lint_audit_log_of_a_clean_session(server, make_proxy, proxy_bin, tmp_path):
    """The audit log of a real, valid session lints clean (exit 0)."""
    p = make_proxy(server, mode="audit")
    curl_get(Target.via(p, server), "small.txt", tmp_path / "s")
    p.settle()
    assert p.terminate() == 0
    r = run(proxy_bin, "lint", str(p.audit_path))
    assert r.returncode == 0, r


def test_lint_transcript_with_violation(proxy_bin, tmp_path):
    t = tmp_path / "session.ftp"
    t.write_text("# RNTO without RNFR\n"
                 "S: 220 hello\n"
                 "C: USER u\n"
                 "S: 331 password\n"
                 "C: PASS p\n"
                 "S: 230 ok\n"
                 "C: RNTO x\n"
                 "S: 503 RNFR first\n")
    r = run(proxy_bin, "lint", str(t))
    assert r.returncode == 1, r
    assert re.search(re.escape(str(t)) + r":7: rnto-needs-rnfr", r.stdout + r.stderr), r
    assert "\np\n" not in r.stdout + r.stderr


def test_startup_line(server, make_proxy):
    p = make_proxy(server, mode="enforce")
    m = re.search(r"listening on 127\.0\.0\.1:(\d+) -> (\S+) \(mode=(\w+)\)", p.stderr())
    assert m and int(m.group(1)) == p.port and p.port != 0
    assert m.group(2) == f"127.0.0.1:{server.port}"
    assert m.group(3) == "enforce"


def test_sigterm_idle(server, make_proxy):
    p = make_proxy(server, mode="audit")
    t0 = time.monotonic()
    assert p.terminate(timeout=5) == 0
    assert time.monotonic() - t0 < 5


def test_sigterm_after_sessions(server, make_proxy, tmp_path):
    p = make_proxy(server, mode="enforce")
    curl_get(Target.via(p, server), "blob.bin", tmp_path / "b")
    with RawClient.to(Target.via(p, server)) as c:
        c.login()
        c.quit()
    p.settle()
    assert p.terminate(timeout=5) == 0
    # whatever was buffered is on disk after exit
    events = p.audit()
    assert [e["event"] for e in events].count("session_close") == 2
