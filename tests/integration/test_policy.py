"""Sequence rules in both modes.

enforce: the offending command never reaches the server (checked in the
server's own log), the proxy answers it itself and logs a violation with
action "rejected" and the reply code.
audit: the command reaches the server, the server's reply reaches the
client unchanged, and a violation is logged with action "logged".

Each case starts its session with "HELP <random marker>" (allowed before
login by every rule) so the server-side session can be found in the shared
server log.
"""
from __future__ import annotations

import dataclasses
import io
import secrets
import time
from typing import Callable

import pytest

from checks import assert_logged, assert_no_violations, assert_rejected, violations
from clients import RawClient, Target, ftplib_connect, recv_all


def login(c: RawClient) -> None:
    c.login()


def login_binary(c: RawClient) -> None:
    c.login()
    assert c.cmd("TYPE I").code == 200


def login_rest(c: RawClient) -> None:
    login_binary(c)
    assert c.cmd("REST 5").code == 350


def nothing(c: RawClient) -> None:
    pass


@dataclasses.dataclass
class Case:
    id: str
    rule: str
    setup: Callable[[RawClient], None]
    line: bytes                 # sent as is (CRLF included)
    code: int                   # the proxy's reply in enforce mode
    verb: str | None            # the violation's verb (None: not checked)
    forwarded: list[str]        # verbs the server gets in enforce mode (besides HELP and QUIT)


def cases():
    return [
        Case("pass-without-user", "pass-needs-user", nothing, b"PASS @PW@\r\n", 503, "PASS", []),
        Case("rnto-without-rnfr", "rnto-needs-rnfr", login, b"RNTO renamed.txt\r\n", 503, "RNTO",
             ["USER", "PASS"]),
        Case("pwd-after-rest", "rest-needs-transfer", login_rest, b"PWD\r\n", 503, "PWD",
             ["USER", "PASS", "TYPE", "REST"]),
        Case("retr-without-pasv", "transfer-needs-data-setup", login_binary, b"RETR small.txt\r\n", 503, "RETR",
             ["USER", "PASS", "TYPE"]),
        Case("list-without-pasv", "transfer-needs-data-setup", login, b"LIST\r\n", 503, "LIST",
             ["USER", "PASS"]),
        Case("cwd-before-login", "login-required", nothing, b"CWD tree\r\n", 530, "CWD", []),
        Case("list-before-login", "login-required", nothing, b"LIST\r\n", 530, "LIST", []),
        Case("retr-before-login", "login-required", nothing, b"RETR small.txt\r\n", 530, "RETR", []),
        Case("iac-nop-in-line", "telnet-sequence", login, b"NO\xff\xf1OP\r\n", 500, None, ["USER", "PASS"]),
    ]


CASES = cases()


def run_case(case: Case, via: Target, server):
    """Opens a session, runs setup and sends the offending line; returns
    (client, reply, marker)."""
    marker = f"HELP m{secrets.token_hex(8)}"
    c = RawClient.to(via)
    c.cmd(marker)
    case.setup(c)
    c.send(case.line.replace(b"@PW@", server.password.encode()))
    return c, c.reply(), marker


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_enforce_rejects(case, server, make_proxy):
    proxy = make_proxy(server, mode="enforce")
    mark = server.log_mark()
    c, r, marker = run_case(case, Target.via(proxy, server), server)
    try:
        assert r.code == case.code, r
        q = c.quit()
        assert q is not None and q.code == 221, q  # the session survives a rejection
    finally:
        c.close()
    assert_rejected(proxy, case.rule, case.code, case.verb)
    # the server never saw it: only the setup, HELP and QUIT reached it
    server.wait_for_command("QUIT", since=mark)
    session = server.session_entries(marker, since=mark)
    verbs = [e.verb for e in session if e.direction == "command"]
    assert verbs == ["HELP", *case.forwarded, "QUIT"], verbs
    if case.rule == "telnet-sequence":
        assert not [e for e in session if e.direction == "command" and "OP" in e.text]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_audit_forwards_and_logs(case, server, make_proxy):
    proxy = make_proxy(server, mode="audit")
    mark = server.log_mark()
    c, r, marker = run_case(case, Target.via(proxy, server), server)
    try:
        # the offending line reached the server (after the setup) ...
        want = 2 + len(case.forwarded)

        def complete(entries):
            cmds = [e for e in entries if e.direction == "command"]
            return len(cmds) >= want and entries[-1].direction == "reply"

        session = wait_session(server, marker, mark, complete)
        cmds = [e for e in session if e.direction == "command"]
        assert [e.verb for e in cmds[:-1]] == ["HELP", *case.forwarded], [e.text for e in cmds]
        assert len(cmds) == want, [e.text for e in cmds]
        if case.verb is not None:
            assert cmds[-1].verb == case.verb, cmds[-1]
        # ... and the server's own reply reached the client unchanged
        assert r.lines[-1] == session[-1].text, (r.text, session[-1].text)
        assert_logged(proxy, case.rule, case.verb)
    finally:
        # pyftpdlib answers a RETR/LIST without PASV/PORT with 150 and waits
        # for a data connection: no QUIT, just close
        c.close()


def wait_session(server, marker, mark, done, timeout=3.0):
    end = time.monotonic() + timeout
    while True:
        entries = server.session_entries(marker, since=mark)
        if done(entries) or time.monotonic() > end:
            return entries
        time.sleep(0.05)


def test_enforce_valid_sequences_pass(server, make_proxy, unique_name):
    """RNFR+RNTO, REST+EPSV+RETR, and a second transfer after a new EPSV."""
    proxy = make_proxy(server, mode="enforce")
    via = Target.via(proxy, server)
    name = unique_name("ren", ".txt")
    with ftplib_connect(via) as ftp:
        ftp.storbinary(f"STOR upload/{name}", io.BytesIO(b"rename me\n"))
    with RawClient.to(via) as c:
        c.login()
        assert c.cmd(f"RNFR upload/{name}").code == 350
        assert c.cmd(f"RNTO upload/{name}.renamed").code == 250
        assert c.cmd("TYPE I").code == 200
        assert c.cmd("REST 10").code == 350
        d = c.data_connect(epsv=True)
        assert c.cmd("RETR blob.bin").code in (125, 150)
        assert recv_all(d) == (server.root / "blob.bin").read_bytes()[10:]
        assert c.reply().code == 226
        for _ in range(2):
            d = c.data_connect(epsv=False)
            assert c.cmd("RETR small.txt").code in (125, 150)
            assert recv_all(d) == (server.root / "small.txt").read_bytes()
            assert c.reply().code == 226
        c.quit()
    assert (server.root / "upload" / f"{name}.renamed").read_bytes() == b"rename me\n"
    assert not (server.root / "upload" / name).exists()
    assert_no_violations(proxy)


def test_enforce_second_transfer_needs_new_setup(server, make_proxy):
    """After a completed transfer the data setup is used up."""
    proxy = make_proxy(server, mode="enforce")
    mark = server.log_mark()
    with RawClient.to(Target.via(proxy, server)) as c:
        c.login()
        d = c.data_connect(epsv=True)
        assert c.cmd("RETR small.txt").code in (125, 150)
        recv_all(d)
        assert c.reply().code == 226
        assert c.cmd("RETR small.txt").code == 503
        c.quit()
    assert_rejected(proxy, "transfer-needs-data-setup", 503, "RETR")
    server.wait_for_command("QUIT", since=mark)
    assert server.verbs(since=mark).count("RETR") == 1


def test_enforce_login_completes_after_rejected_pass(server, make_proxy):
    """A PASS rejected for coming without USER does not spoil the session."""
    proxy = make_proxy(server, mode="enforce")
    with RawClient.to(Target.via(proxy, server)) as c:
        assert c.cmd(f"PASS {server.password}").code == 503
        c.login()
        assert c.cmd("PWD").code == 257
        c.quit()
    proxy.settle()
    assert len(violations(proxy)) == 1
