"""Control-channel relaying: multi-line replies pass intact, AUTH TLS is
refused by the proxy, FEAT loses its TLS lines, the stream stays in step."""
from __future__ import annotations

import secrets

import pytest

from clients import RawClient, Target

MODES = ["audit", "enforce"]


@pytest.mark.parametrize("mode", MODES)
def test_feat_and_help_pass_intact(server, make_proxy, mode):
    """Neither server offers TLS here, so FEAT and HELP must be byte-identical
    through the proxy."""
    proxy = make_proxy(server, mode=mode)
    with RawClient.to(server) as direct, RawClient.to(Target.via(proxy, server)) as via:
        assert via.greeting.raw == direct.greeting.raw
        assert via.cmd("FEAT").raw == direct.cmd("FEAT").raw
        via.login()
        direct.login()
        h1, h2 = via.cmd("HELP"), direct.cmd("HELP")
        assert h1.code == 214 and len(h1.lines) > 2
        assert h1.raw == h2.raw
        assert via.cmd("SYST").raw == direct.cmd("SYST").raw
        assert via.cmd("NOOP").code == 200
        via.quit()
        direct.quit()


@pytest.mark.parametrize("mode", MODES)
def test_auth_tls_refused_by_proxy(server, make_proxy, mode):
    proxy = make_proxy(server, mode=mode)
    mark = server.log_mark()
    marker = f"HELP m{secrets.token_hex(8)}"
    with RawClient.to(Target.via(proxy, server)) as c:
        c.cmd(marker)
        for arg in ("TLS", "SSL", "tls"):
            r = c.cmd(f"AUTH {arg}")
            assert r.code == 534, r
        c.login()  # and the session carries on in clear text
        assert c.cmd("PWD").code == 257
        c.quit()
    server.wait_for_command("QUIT", since=mark)
    verbs = [e.verb for e in server.session_entries(marker, since=mark) if e.direction == "command"]
    assert "AUTH" not in verbs, verbs
    assert verbs == ["HELP", "USER", "PASS", "PWD", "QUIT"], verbs


FEAT_WITH_TLS = (b"211-Extensions supported:\r\n"
                 b" AUTH TLS\r\n"
                 b" EPSV\r\n"
                 b" PBSZ\r\n"
                 b" MDTM\r\n"
                 b" PROT\r\n"
                 b" REST STREAM\r\n"
                 b" SIZE\r\n"
                 b"211 End\r\n")
FEAT_WITHOUT_TLS = (b"211-Extensions supported:\r\n"
                    b" EPSV\r\n"
                    b" MDTM\r\n"
                    b" REST STREAM\r\n"
                    b" SIZE\r\n"
                    b"211 End\r\n")


@pytest.mark.parametrize("mode", MODES)
def test_feat_tls_lines_removed(scripted_server, make_proxy, mode):
    up = scripted_server({"FEAT": FEAT_WITH_TLS})
    proxy = make_proxy(up, mode=mode)
    with RawClient.to(Target.via(proxy, up)) as c:
        assert c.cmd("FEAT").raw == FEAT_WITHOUT_TLS
        c.login()
        assert c.cmd("FEAT").raw == FEAT_WITHOUT_TLS
        assert c.cmd("NOOP").raw == b"200 NOOP ok.\r\n"
        c.quit()


ODD_MULTILINE = (b"214-The following commands are recognized.\r\n"
                 b"200 this line is text, not the end (other code)\r\n"
                 b"214-still text\r\n"
                 b" 214 indented, still text\r\n"
                 b"\r\n"
                 b"214 End of help.\r\n")


def test_odd_multiline_reply_intact(scripted_server, make_proxy):
    """RFC 959 §4.2: only "<same code><SP>" at the start of a line ends a
    multi-line reply; everything before it is relayed as is."""
    up = scripted_server({"HELP": ODD_MULTILINE, "STAT": b"211-a\r\n211-b\r\n211 c\r\n"})
    proxy = make_proxy(up, mode="audit")
    with RawClient.to(Target.via(proxy, up)) as c:
        c.login()
        assert c.cmd("HELP").raw == ODD_MULTILINE
        assert c.cmd("NOOP").raw == b"200 NOOP ok.\r\n"  # still in step
        assert c.cmd("STAT").raw == b"211-a\r\n211-b\r\n211 c\r\n"
        c.quit()
    r = proxy.wait_event("reply", code=214)
    assert "End of help." in r["text"]


def test_pipelined_commands(server, make_proxy):
    """Several commands in one segment are answered in order."""
    proxy = make_proxy(server, mode="enforce")
    with RawClient.to(Target.via(proxy, server)) as c:
        c.send(f"USER {server.user}\r\nPASS {server.password}\r\nPWD\r\nSYST\r\nNOOP\r\n".encode())
        codes = [c.reply().code for _ in range(5)]
        assert codes == [331, 230, 257, 215, 200]
        c.quit()


def test_command_split_across_segments(server, make_proxy):
    import time
    proxy = make_proxy(server, mode="enforce")
    with RawClient.to(Target.via(proxy, server)) as c:
        c.login()
        for chunk in (b"SY", b"S", b"T\r", b"\n"):
            c.send(chunk)
            time.sleep(0.05)
        assert c.reply().code == 215
        c.quit()
