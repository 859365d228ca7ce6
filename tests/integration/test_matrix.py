"""Every real client against every real server, through the proxy, in audit
and enforce mode, passive and active: a clean session raises nothing, is
relayed byte-exact, and the server receives exactly the commands the client
sent, in order (less those the proxy answers itself by design, such as AUTH
TLS). The linter, run on each pair's audit log, finds nothing either.

Servers: vsftpd, ProFTPD, Pure-FTPd, pyftpdlib. Clients: python ftplib, curl,
lftp, lftp's mirror -R, tnftp, wget, ncftp (ncftpls/ncftpget/ncftpput)."""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from clients import Target
from servers import REPO
from checks import server_uid
from matrix_clients import CLIENTS, RENAME_FROM, DOWN, RESUME, Pair, check_results, masked

# FTPW_RECORD_CORPUS=1: each audit-mode pair's sessions are written to
# tests/corpus/matrix/ as a lint transcript that must lint clean.
CORPUS = REPO / "tests" / "corpus" / "matrix"

SERVERS = {"vsftpd": "vsftpd_server", "proftpd": "proftpd_server", "pure-ftpd": "pureftpd_server",
           "pyftpdlib": "pyftpdlib_server"}

pytestmark = pytest.mark.matrix


def make_pair(server, name: str, passive: bool, tmp_path) -> Pair:
    rel = f"matrix/{name}"
    d = server.root / rel
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    files = {DOWN: os.urandom(300 * 1024), RESUME: os.urandom(200 * 1024), RENAME_FROM: b"rename me\n"}
    for n, data in files.items():
        (d / n).write_bytes(data)
    uid = server_uid(server)
    for p in (server.root / "matrix", d, *d.iterdir()):
        os.chown(p, uid, -1)
    local = tmp_path / "local"
    local.mkdir()
    pair = Pair(rel, d, local, passive, files, os.urandom(200 * 1024))
    pair.prepare_local()
    return pair


def transcript(events: list[dict], title: str) -> str:
    """The sessions of an audit log as a lint transcript, one "# session"
    block each, as the client saw them (commands; replies, the proxy's own
    included)."""
    out = [f"# {title}", "# recorded from a real run by tests/integration/test_matrix.py (FTPW_RECORD_CORPUS=1)"]
    sessions: dict[str, list[str]] = {}
    for e in events:
        lines = sessions.setdefault(e["session"], [])
        if e["event"] == "command":
            lines.append(f"C: {e['verb']} {e['arg']}".rstrip())
        elif e["event"] == "reply":
            lines.extend(f"S: {l}" for l in e["text"].split("\n"))
    for n, lines in enumerate(sessions.values(), 1):
        out.append(f"# session {n}")
        out.extend(lines)
    return "\n".join(out) + "\n"


def proxy_sessions(events: list[dict]) -> list[list[str]]:
    """Per session, the commands the proxy forwarded: every command event but
    those the proxy answered itself (a reply with source "proxy" follows)."""
    sessions: dict[str, list[list]] = {}
    for e in events:
        cmds = sessions.setdefault(e["session"], [])
        if e["event"] == "command":
            cmds.append([f"{e['verb']} {e['arg']}".rstrip(), True])
        elif e["event"] == "reply" and e.get("source") == "proxy" and cmds:
            cmds[-1][1] = False
    return [[masked(c) for c, forwarded in cmds if forwarded] for cmds in sessions.values() if cmds]


def server_sessions(server, since: int) -> list[list[str]]:
    """Per connection that logged in, the commands the server logged."""
    order: dict[str, list[str]] = {}
    for e in server.commands(since):
        order.setdefault(e.session, []).append(masked(e.text))
    return [cmds for cmds in order.values() if cmds and cmds[0].startswith("USER")
            or any(c.startswith("USER") for c in cmds)]


def assert_same_commands(proxy, server, since: int, timeout: float = 5.0) -> None:
    want = proxy_sessions(proxy.settle(5.0))
    end = time.monotonic() + timeout
    while True:  # servers write their logs as they finish each command
        got = server_sessions(server, since)
        if got == want or time.monotonic() > end:
            break
        time.sleep(0.1)
    assert got == want, f"server received\n{got}\nthe client sent (less what the proxy answered)\n{want}"


@pytest.mark.parametrize("mode", ["audit", "enforce"])
@pytest.mark.parametrize("data", ["passive", "active"])
@pytest.mark.parametrize("client", list(CLIENTS))
@pytest.mark.parametrize("server_kind", list(SERVERS))
def test_pair(server_kind, client, data, mode, request, make_proxy, proxy_bin, tmp_path):
    server = request.getfixturevalue(SERVERS[server_kind])
    pair = make_pair(server, f"{client}-{data}-{mode}", data == "passive", tmp_path)
    proxy = make_proxy(server, mode=mode)
    mark = server.log_mark()
    did = CLIENTS[client](Target.via(proxy, server), pair)
    check_results(pair, did)
    events = proxy.settle(5.0)
    noise = [e for e in events if e["event"] in ("violation", "server_finding")]
    assert noise == [], noise
    transfers = [e for e in events if e["event"] == "transfer"]
    assert transfers and all(e["code"] == 226 for e in transfers), transfers
    assert_same_commands(proxy, server, mark)
    lint = subprocess.run([proxy_bin, "lint", str(proxy.audit_path)], capture_output=True, text=True, timeout=30)
    assert lint.returncode == 0 and lint.stdout.strip() == "", lint.stdout + lint.stderr
    if os.environ.get("FTPW_RECORD_CORPUS") and mode == "audit":
        CORPUS.mkdir(exist_ok=True)
        case = CORPUS / f"{server_kind}-{client}-{data}.ftp"
        case.write_text(transcript(events, f"{client} through ftpwarden to {server_kind}, {data} data connections"))
        (CORPUS / (case.name + ".expected")).write_text("exit 0\n")
