"""The command line: --version, check-config, lint, start-up line, SIGTERM,
SIGHUP reload, an IPv6 listen address."""
from __future__ import annotations

import contextlib
import ftplib
import io
import re
import secrets
import signal
import socket
import subprocess
import time

import pytest

from checks import assert_no_violations
from clients import RawClient, Target, curl_get, ftplib_get, ftplib_put
from servers import REPO, Proxy, free_port_range, sha256_bytes, sha256_file


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


def test_check_config_busy_poll_range(proxy_bin, tmp_path):
    cfg = tmp_path / "busy.toml"
    cfg.write_text('[upstream]\naddress = "127.0.0.1:21"\n\n[server]\nbusy_poll_us = 20000\n')
    r = run(proxy_bin, "check-config", str(cfg))
    assert r.returncode == 1, r
    assert re.search(re.escape(str(cfg)) + r":5:\d+: .*busy_poll_us must be at most 10000", r.stdout + r.stderr), r
    cfg.write_text('[upstream]\naddress = "127.0.0.1:21"\n\n[server]\nbusy_poll_us = 0\n')
    assert run(proxy_bin, "check-config", str(cfg)).returncode == 0


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
    assert p.terminate(timeout=5) == 0  # an idle proxy exits at once (the wait raises otherwise)


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


# ---------------------------------------------------------------------------
# SIGHUP reload


class ConfigProxy(Proxy):
    """ftpwarden started with `--config FILE` alone: every setting comes from
    the file (flags would override the file on reload too)."""

    def __init__(self, binary, upstream, cfg_path, **kw):
        super().__init__(binary, upstream, **kw)
        self.cfg_path = cfg_path

    def config_text(self, mode: str, extra: str = "") -> str:
        lo, hi = self.passive_ports
        return (f'[listen]\naddress = "127.0.0.1:0"\n\n[upstream]\naddress = "{self.upstream_addr}"\n\n'
                f'[data]\npassive_ports = "{lo}-{hi}"\n\n[policy]\nmode = "{mode}"\n{extra}\n'
                f'[audit]\npath = "{self.audit_path}"\n')

    def argv(self):
        return [self.binary, "--config", str(self.cfg_path)]

    def start(self, timeout: float = 10.0):
        if self.passive_ports is None:
            self.passive_ports = free_port_range(20000, 29999)
        self.cfg_path.write_text(self.config_text(self.mode))
        return super().start(timeout)

    def wait_stderr(self, pattern: str, count: int = 1, timeout: float = 5.0) -> str:
        end = time.monotonic() + timeout
        while True:
            found = re.findall(pattern, self.stderr())
            if len(found) >= count:
                return found[-1]
            if time.monotonic() > end:
                raise AssertionError(f"no {pattern!r} (x{count}) on stderr:\n{self.stderr()[-3000:]}")
            time.sleep(0.05)


def rnto_session_verbs(server, marker: str, since: int) -> list[str]:
    return [e.verb for e in server.session_entries(marker, since=since) if e.direction == "command"]


def open_marked(target) -> tuple[RawClient, str]:
    marker = f"HELP m{secrets.token_hex(8)}"
    c = RawClient.to(target)
    c.cmd(marker)
    c.login()
    return c, marker


@contextlib.contextmanager
def started(p: Proxy):
    """A proxy started by hand (these tests need their own command line): its
    stderr and audit log are printed when the test fails; cleaned up after."""
    try:
        yield p.start()
    except BaseException:
        print(f"--- stderr:\n{p.stderr()[-4000:]}\n--- audit log:\n{p.audit_text()[-6000:]}")
        raise
    finally:
        p.cleanup()


def test_sighup_reload(server, proxy_bin, tmp_path, unique_name):
    """audit -> SIGHUP with mode enforce: a new session is enforced (its RNTO
    without RNFR is answered 503 by the proxy and never reaches the server),
    the session opened before keeps audit mode (its RNTO reaches the server).
    Then a broken file: refused with a log line, the proxy keeps the running
    (enforce) configuration and new sessions still work."""
    p = ConfigProxy(proxy_bin, server, tmp_path / "ftpwarden.toml", mode="audit", base=tmp_path / "proxy")
    (tmp_path / "proxy").mkdir()
    with started(p):
        assert "(mode=audit)" in p.stderr()
        via = Target.via(p, server)
        mark = server.log_mark()
        old, old_marker = open_marked(via)

        p.cfg_path.write_text(p.config_text("enforce"))
        p.proc.send_signal(signal.SIGHUP)
        p.wait_stderr(r"configuration reloaded: mode=enforce")

        new, new_marker = open_marked(via)
        r = new.cmd("RNTO renamed-by-new.txt")
        assert r.code == 503, r
        assert new.cmd("NOOP").code == 200  # the session goes on
        assert new.quit().code == 221

        r_old = old.cmd("RNTO renamed-by-old.txt")
        old_entries = server.session_entries(old_marker, since=mark)
        assert [e.verb for e in old_entries if e.direction == "command"][-1] == "RNTO", old_entries
        # the server's own answer, passed through unchanged
        assert r_old.code == 503 and r_old.lines[-1] == server_last_reply(server, old_marker, mark), r_old
        assert old.cmd("NOOP").code == 200
        assert old.quit().code == 221

        server.wait_for_command("QUIT", since=mark)
        assert rnto_session_verbs(server, new_marker, mark) == ["HELP", "USER", "PASS", "NOOP", "QUIT"]
        p.settle()
        v = [(e["action"], e["session"]) for e in p.events("violation", rule="rnto-needs-rnfr")]
        assert sorted(a for a, _ in v) == ["logged", "rejected"] and v[0][1] != v[1][1], v

        # a broken configuration (it would switch back to audit) is refused
        p.cfg_path.write_text(p.config_text("audit", extra="bogus_key = 1\n"))
        p.proc.send_signal(signal.SIGHUP)
        line = p.wait_stderr(r"reload refused[^\n]*")
        assert "bogus_key" in line, line
        time.sleep(0.2)
        assert p.alive()
        assert len(re.findall("configuration reloaded", p.stderr())) == 1

        mark = server.log_mark()
        third, third_marker = open_marked(via)
        assert third.cmd("RNTO renamed-by-third.txt").code == 503  # still enforce
        assert third.quit().code == 221
        server.wait_for_command("QUIT", since=mark)
        assert "RNTO" not in rnto_session_verbs(server, third_marker, mark)
        name = unique_name("after-reload", ".bin")
        data = secrets.token_bytes(100_000)
        assert ftplib_put(via, f"upload/{name}", data).startswith("226")
        assert sha256_bytes(ftplib_get(via, f"upload/{name}")) == sha256_bytes(data)
        assert sha256_file(server.root / "upload" / name) == sha256_bytes(data)
        assert p.terminate(timeout=5) == 0


def server_last_reply(server, marker: str, since: int, timeout: float = 3.0) -> str:
    """The last complete reply line of the marked session, once it has one after its last command."""
    end = time.monotonic() + timeout
    while True:
        entries = server.session_entries(marker, since=since)
        if entries and entries[-1].direction == "reply" and re.match(r"\d{3} ", entries[-1].text):
            return entries[-1].text
        if time.monotonic() > end:
            raise AssertionError(f"no reply after the last command: {entries}")
        time.sleep(0.05)


# ---------------------------------------------------------------------------
# IPv6 listen address


def have_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class V6Proxy(Proxy):
    def argv(self):
        a = super().argv()
        a[a.index("--listen") + 1] = "[::1]:0"
        return a


def test_listen_ipv6(server, proxy_bin, tmp_path):
    """--listen [::1]:0: the start-up line shows [::1]:PORT; a client over ::1
    (ftplib uses EPSV on IPv6) downloads blob.bin byte-exact from the IPv4
    upstream, and the passive port it was given is the proxy's."""
    if not have_ipv6_loopback():
        pytest.skip("no IPv6 loopback (::1) on this machine")
    p = V6Proxy(proxy_bin, server, mode="enforce", base=tmp_path / "proxy")
    (tmp_path / "proxy").mkdir()
    with started(p):
        m = re.search(r"listening on \[::1\]:(\d+) -> ", p.stderr())
        assert m and int(m.group(1)) == p.port != 0, p.stderr()
        mark = server.log_mark()
        ftp = ftplib.FTP()
        ftp.connect("::1", p.port, timeout=15)
        assert ftp.af == socket.AF_INET6
        ftp.login(server.user, server.password)
        resp = ftp.sendcmd("EPSV")
        assert resp.startswith("229"), resp
        port = int(re.search(r"\(\|\|\|(\d+)\|\)", resp).group(1))
        assert p.passive_ports[0] <= port <= p.passive_ports[1], resp
        buf = io.BytesIO()
        ftp.retrbinary("RETR blob.bin", buf.write)  # EPSV again, as ftplib does on IPv6
        assert sha256_bytes(buf.getvalue()) == server.files["blob.bin"]
        ftp.quit()
        # the server saw an IPv4 session from the proxy, with EPSV
        server.wait_for_command("QUIT", since=mark)
        assert "EPSV" in server.verbs(since=mark) and "RETR" in server.verbs(since=mark)
        events = assert_no_violations(p)
        opened = [e for e in events if e["event"] == "session_open"]
        assert len(opened) == 1 and opened[0]["client"].startswith("[::1]:"), opened
        t = [e for e in events if e["event"] == "transfer"]
        assert [(e["verb"], e["bytes"]) for e in t] == [("RETR", 1 << 20)], t
        assert p.terminate(timeout=5) == 0


def test_sighup_new_rules_are_versioned(pyftpdlib_server, proxy_bin, tmp_path):
    """Every audit event carries the rules version of its session; a SIGHUP
    that changes the rules logs rules_reloaded (old, new) and new sessions
    run, and are logged, under the new version."""
    server = pyftpdlib_server
    p = ConfigProxy(proxy_bin, server, tmp_path / "ftpwarden.toml", mode="enforce", base=tmp_path / "proxy")
    (tmp_path / "proxy").mkdir()
    with started(p):
        via = Target.via(p, server)
        with RawClient.to(via) as c:
            c.login()
            assert c.cmd("MKD before-reload").code == 257
            assert c.cmd("RMD before-reload").code == 250
            c.quit()
        first = p.wait_event("session_close")["rules_version"]
        p.cfg_path.write_text(p.config_text("enforce", 'profiles = ["read-only"]'))
        p.proc.send_signal(signal.SIGHUP)
        p.wait_stderr(r"configuration reloaded")
        ev = p.wait_event("rules_reloaded")
        assert ev["old"] == first and ev["new"] != first and ev["rules_version"] == ev["new"], ev
        with RawClient.to(via) as c:
            c.login()
            assert c.cmd("MKD after-reload").code == 550  # the read-only profile
            c.quit()
        closes = p.wait_events("session_close", 2)
        assert [e["rules_version"] for e in closes] == [first, ev["new"]], closes
        assert all(e.get("rules_version") for e in p.audit())


# ---------------------------------------------------------------------------
# SIGUSR2: the workers' counters


def test_sigusr1_counts_a_scripted_session(scripted_server, make_proxy):
    """The counters move by exactly what one session did: one session, one
    rejected violation, one forwarded NOOP, no transfer, nothing refused,
    nothing dropped; the same line comes again at exit."""
    up = scripted_server()
    proxy = make_proxy(up, mode="enforce", extra_args=["--workers", "2"])
    st0 = proxy.stats()
    with RawClient.to(Target.via(proxy, up)) as c:
        c.login()
        assert c.cmd("RNTO nowhere").code == 503
        assert c.cmd("NOOP").code == 200
        assert c.cmd("QUIT").code == 221
    proxy.wait_event("session_close", reason="quit")
    st1 = proxy.stats()
    delta = {k: st1[k] - st0[k] for k in st0}
    assert delta["sessions_total"] == 1 and delta["violations"] == 1, delta
    assert delta["sessions_refused"] == 0 and delta["transfers"] == 0, delta
    assert st1["audit_records_dropped"] == 0
    assert proxy.terminate(timeout=10) == 0
    at_exit = [l for l in proxy.stderr().splitlines() if " stats at exit: " in l]
    assert len(at_exit) == 1 and "sessions_total=1 " in at_exit[0], at_exit


def test_help_comes_from_the_flag_table_and_the_readme_shows_it(proxy_bin):
    """proxy/cli_flags.h is the one list: --help prints every flag with the
    config key it sets, each key exists in deploy/ftpwarden.toml, and the
    README's "Running it" block is the --help text."""
    out = subprocess.run([proxy_bin, "--help"], capture_output=True, text=True, check=True).stdout
    flags = re.findall(r"^  (--[a-z-]+) \S+ +.*?(?: \[([a-z_]+\.[a-z_]+)\])?$", out, re.M)
    names = [f for f, _ in flags]
    assert {"--config", "--listen", "--upstream", "--mode", "--rules", "--workers"} <= set(names), names
    sample = (REPO / "deploy" / "ftpwarden.toml").read_text()
    for flag, key in flags:
        if key:
            section, name = key.split(".")
            assert f"[{section}]" in sample and re.search(rf"^#? ?{name} =", sample, re.M), (flag, key)
    readme = (REPO / "README.md").read_text()
    assert "\n".join("    " + l if l else "" for l in out.rstrip("\n").splitlines()) in readme


def test_readme_configuration_reference_is_config_keys(proxy_bin):
    """The README's configuration reference is `ftpwarden config-keys`, as is."""
    out = subprocess.run([proxy_bin, "config-keys"], capture_output=True, text=True, check=True).stdout
    readme = (REPO / "README.md").read_text()
    assert "\n".join("    " + l if l else "" for l in out.rstrip("\n").splitlines()) in readme


def test_sample_config_lists_every_key_with_its_default(proxy_bin):
    """deploy/ftpwarden.toml documents exactly the keys of proxy/config.cpp's
    key table (`ftpwarden config-keys`), each with its default; it names an
    example only where the default cannot serve a real deployment (the
    upstream is required; the audit log goes to a file, not stdout)."""
    import tomllib
    keys = tomllib.loads(subprocess.run([proxy_bin, "config-keys"], capture_output=True, text=True,
                                        check=True).stdout)
    sample = tomllib.loads((REPO / "deploy" / "ftpwarden.toml").read_text())
    flat = lambda t: {f"{s}.{k}": v for s, kv in t.items() for k, v in kv.items()}  # noqa: E731
    keys, sample = flat(keys), flat(sample)
    assert sorted(sample) == sorted(keys)
    examples = {"upstream.address", "audit.path"}
    assert {k: v for k, v in sample.items() if k not in examples} == \
           {k: v for k, v in keys.items() if k not in examples}
    r = subprocess.run([proxy_bin, "check-config", str(REPO / "deploy" / "ftpwarden.toml")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
