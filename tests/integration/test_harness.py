"""The harness itself, without the proxy: servers start, clients work directly
against them, server logs and the audit-log reader parse what they should.
If these fail, the proxy tests mean nothing."""
from __future__ import annotations

import io
import sys
import textwrap
import time

import pytest

from checks import lftp_round_trip
from clients import (CURL_MODES, RawClient, Target, curl_commands, curl_get, curl_list, curl_put,
                     ftplib_connect, ftplib_get, ftplib_nlst, ftplib_put, recv_all)
from servers import Proxy, free_port_range, port_is_free, sha256_bytes, sha256_file

pytestmark = pytest.mark.harness


def test_servers_greet_and_hold_files(server):
    assert server.alive()
    c = RawClient.to(server)
    assert c.greeting.code == 220
    assert "ftpwarden test upstream" in c.greeting.text
    c.quit()
    assert set(server.files) >= {"small.txt", "blob.bin", "tree/a.txt", "tree/sub/deeper/d.bin"}
    assert (server.root / "blob.bin").stat().st_size == 1 << 20
    assert server.pasv_range[1] - server.pasv_range[0] >= 49


def test_port_range_helper():
    lo, hi = free_port_range(20000, 29999)
    assert 20000 <= lo and hi <= 29999 and hi - lo == 49
    assert all(port_is_free(p) for p in (lo, hi))


@pytest.mark.parametrize("mode", list(CURL_MODES))
def test_curl_direct(server, mode, tmp_path, unique_name):
    out = tmp_path / "blob.bin"
    r = curl_get(server, "blob.bin", out, mode=mode)
    assert sha256_file(out) == server.files["blob.bin"]
    sent = curl_commands(r.stderr)
    setup = {"epsv": "EPSV", "pasv": "PASV", "eprt": "EPRT", "port": "PORT"}[mode]
    assert any(c.startswith(setup) for c in sent), sent

    listing = curl_list(server, "/", mode=mode)
    assert "small.txt" in listing and "tree" in listing
    names = curl_list(server, "/tree/", mode=mode, names_only=True).split()
    assert "a.txt" in names

    name = unique_name("curl", ".bin")
    src = tmp_path / name
    src.write_bytes(b"upload via curl\n" * 5000)
    mark = server.log_mark()
    curl_put(server, src, f"upload/{name}", mode=mode)
    assert sha256_file(server.root / "upload" / name) == sha256_file(src)
    server.wait_for_command("STOR", since=mark)
    assert setup in server.verbs(since=mark)


@pytest.mark.parametrize("passive", [True, False], ids=["passive", "active"])
def test_lftp_direct(server, passive, tmp_path, unique_name):
    lftp_round_trip(server, server, tmp_path, unique_name("lftp", ".bin"), bytes(range(256)) * 400, passive)


@pytest.mark.parametrize("passive", [True, False], ids=["passive", "active"])
def test_ftplib_direct(server, passive, unique_name):
    assert sha256_bytes(ftplib_get(server, "blob.bin", passive)) == server.files["blob.bin"]
    name = unique_name("ftplib", ".bin")
    data = b"ftplib upload\n" * 1000
    resp = ftplib_put(server, f"upload/{name}", data, passive)
    assert resp.startswith("226")
    assert (server.root / "upload" / name).read_bytes() == data
    assert "small.txt" in [n.rsplit("/", 1)[-1] for n in ftplib_nlst(server, "", passive)]


def test_server_log_records_commands_and_password(server):
    mark = server.log_mark()
    c = RawClient.to(server)
    c.login()
    marker = f"HELP zz{time.time_ns()}"
    c.cmd(marker)
    c.quit()
    e = server.wait_for_command("QUIT", since=mark)
    cmds = [x for x in server.commands(since=mark) if x.session == e.session]
    assert [x.verb for x in cmds] == ["USER", "PASS", "HELP", "QUIT"]
    # pyftpd_server.py logs the password as received; vsftpd masks it itself
    assert cmds[1].arg == (server.password if server.logs_password else "<password>")
    assert cmds[2].text == marker
    replies = [x.code for x in server.replies(since=mark) if x.session == e.session]
    assert replies[:3] == [220, 331, 230] and replies[-1] == 221


def test_multiline_replies_parse(server):
    with RawClient.to(server) as c:
        feat = c.cmd("FEAT")
        assert feat.code == 211 and len(feat.lines) > 2
        assert feat.lines[0].startswith("211-") and feat.lines[-1].startswith("211 ")
        assert any(l.strip() == "EPSV" for l in feat.lines)
        assert not any(l.strip().startswith(("AUTH", "PBSZ", "PROT")) for l in feat.lines)
        assert feat.raw.endswith(b"\r\n") and feat.raw.count(b"\r\n") == len(feat.lines)
        c.login()
        help_ = c.cmd("HELP")
        assert help_.code == 214 and len(help_.lines) > 2
        assert c.cmd("NOOP").code == 200  # the stream stays in step after multi-line replies


def test_data_connection_already_open(server):
    """pyftpdlib answers 125 when the passive data connection exists before
    RETR (ftplib connects first); vsftpd always says 150."""
    mark = server.log_mark()
    with ftplib_connect(server, pause=0.3) as ftp:
        buf = io.BytesIO()
        resp = ftp.retrbinary("RETR small.txt", buf.write)
        assert resp.startswith("226")
    e = server.wait_for_command("RETR", since=mark)
    codes = [x.code for x in server.replies(since=mark) if x.session == e.session]
    assert (125 if server.kind == "pyftpdlib" else 150) in codes


def test_servers_answer_sequence_errors_themselves(server):
    """What audit mode forwards: the servers' own answers to out-of-order commands."""
    with RawClient.to(server) as c:
        assert c.cmd(f"PASS {server.password}").code == 503       # PASS without USER
        assert c.cmd("CWD tree").code == 530                      # before login
        c.login()
        assert c.cmd("RNTO nowhere").code == 503                  # RNTO without RNFR
        # both refuse REST in ASCII mode (vsftpd at RETR, pyftpdlib at REST)
        assert c.cmd("TYPE I").code == 200
        assert c.cmd("REST 5").code == 350
        d = c.data_connect(epsv=True)
        assert c.cmd("RETR small.txt").code in (125, 150)         # REST then transfer
        assert recv_all(d) == (server.root / "small.txt").read_bytes()[5:]
        assert c.reply().code == 226
        c.send(b"NO\xff\xf1OP\r\n")                                # IAC NOP inside a line
        # vsftpd: unknown command; pyftpdlib (surrogateescape, as a legacy
        # server passes path bytes): "501 can't decode path"
        assert c.reply().code == (500 if server.kind == "vsftpd" else 501)
        # RETR with no PASV/PORT: vsftpd refuses; pyftpdlib says 150 and queues
        # the file for the next data connection (ABOR does not unqueue it), so
        # this comes last
        r = c.cmd("RETR small.txt")
        if server.kind == "vsftpd":
            assert r.text == "425 Use PORT or PASV first."
        else:
            assert r.text == "150 File status okay. About to open data connection."
            assert c.cmd("ABOR").text == "225 No transfer to abort."
        c.quit()


def test_scripted_server(scripted_server):
    feat = b"211-Extensions:\r\n AUTH TLS\r\n PBSZ\r\n PROT\r\n EPSV\r\n211 End\r\n"
    s = scripted_server({"FEAT": feat})
    c = RawClient.to(Target.direct(s))
    assert c.cmd("FEAT").raw == feat
    c.login()
    assert c.cmd("XYZ").code == 502
    c.quit()
    assert s.verbs() == ["FEAT", "USER", "PASS", "XYZ", "QUIT"]


FAKE_PROXY = textwrap.dedent("""\
    import signal, sys, time, json
    args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
    sys.stderr.write("starting\\n"); sys.stderr.flush()
    time.sleep(0.2)
    with open(args["--audit-log"], "w") as f:
        f.write(json.dumps({"ts": "t", "session": "s1", "client": "127.0.0.1:1", "event": "session_open"}) + "\\n")
        f.write(json.dumps({"ts": "t", "session": "s1", "client": "127.0.0.1:1", "event": "command",
                            "verb": "PASS", "arg": "****"}) + "\\n")
        f.write('{"ts": "t", "sess')  # torn line: still being written
    sys.stderr.write("listening on 127.0.0.1:4567 -> %s (mode=%s)\\n" % (args["--upstream"], args["--mode"]))
    sys.stderr.flush()
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    while True:
        time.sleep(1)
""")


def test_proxy_helper_with_fake_binary(tmp_path):
    """The Proxy helper's start-up parsing, audit reading and SIGTERM handling."""
    fake = tmp_path / "fake-ftpwarden"
    fake.write_text(f"#!{sys.executable}\n" + FAKE_PROXY)
    fake.chmod(0o755)
    p = Proxy(str(fake), "127.0.0.1:2121", mode="enforce")
    try:
        p.start()
        assert (p.host, p.port) == ("127.0.0.1", 4567)
        lo, hi = p.passive_ports
        assert 20000 <= lo and hi == lo + 49 and hi <= 29999
        assert "--passive-ports" in p.argv() and f"{lo}-{hi}" in p.argv()
        assert p.wait_event("command", verb="PASS")["arg"] == "****"
        assert [e["event"] for e in p.audit()] == ["session_open", "command"]
        with pytest.raises(AssertionError):
            p.wait_event("violation", timeout=0.3)
        assert p.terminate() == 0
    finally:
        p.cleanup()
