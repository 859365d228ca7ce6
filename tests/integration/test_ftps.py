"""FTPS termination: real FTPS clients (curl, lftp, Python ftplib.FTP_TLS, a
raw TLS socket, openssl s_client) talk TLS to the proxy, which reads every
command in the clear and talks plain FTP to the server (`[tls] upstream =
"off"`) or its own TLS (`upstream = "on"`, to vsftpd with ssl_enable and
require_ssl_reuse, and to pyftpdlib's TLS_FTPHandler).

Every transfer is sha256-checked end to end; what the server received is read
from its own log (a plain upstream never sees AUTH, PBSZ or PROT); the audit
log says which sessions and data connections were protected and resumed.
Broken handshakes, strangers and refusals end only the session concerned:
each such test ends with a fresh FTPS session on the same proxy moving a file.

The certificates are made at test time (tls_certs.py, fixture `tls_certs`).
"""
from __future__ import annotations

import ftplib
import io
import json
import os
import re
import secrets
import select
import socket
import ssl
import subprocess
import time

import pytest

from checks import assert_no_violations, assert_rejected
from clients import RawClient, Target, curl_get, ftplib_connect, lftp, v1, v2
from ftps_clients import (ResumingFTP_TLS, TlsRawClient, client_hello, curl_ftps, curl_version, ftps_connect,
                          ftps_get, lftp_tls_settings, read_to_end, read_until_closed, tls_context)
from servers import sha256_bytes, sha256_file
from tls_certs import CLIENT_CN, OPENSSL

TLS_FEATS = {"AUTH TLS", "AUTH SSL", "PBSZ", "PROT"}
TLS_VERBS = {"AUTH", "PBSZ", "PROT", "CCC"}
# session_close reason when a client's TLS fails (the proxy's README names it
# for an injection after AUTH; the brief leaves handshake failures unnamed)
CLIENT_TLS_FAILED = "client-tls-failed"


# ---------------------------------------------------------------------------
# helpers


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return json.dumps(str(v))


def ftps_proxy(make_proxy, upstream, certs, tmp_path, mode: str = "audit", tls: dict | None = None,
               listen: dict | None = None, limits: dict | None = None, extra_args=(), **kw):
    """A proxy with a config file: [tls] holds the test server certificate and
    client = "optional" unless `tls` says otherwise (a None value drops the
    key); [listen] and [limits] as given."""
    sections = {"listen": listen or {}, "limits": limits or {},
                "tls": {"cert": certs.cert, "key": certs.key, "client": "optional", **(tls or {})}}
    lines = []
    for name, keys in sections.items():
        keys = {k: v for k, v in keys.items() if v is not None}
        if keys:
            lines += [f"[{name}]", *(f"{k} = {toml_value(v)}" for k, v in keys.items())]
    conf = tmp_path / f"ftps-{secrets.token_hex(4)}.toml"
    conf.write_text("\n".join(lines) + "\n")
    return make_proxy(upstream, mode=mode, extra_args=["--config", str(conf), *extra_args], **kw)


def marker() -> str:
    return f"HELP m{secrets.token_hex(8)}"


def session_id(proxy, sock: socket.socket) -> str:
    """The audit session of the control connection `sock` (by its local port)."""
    return proxy.wait_event("session_open", client="127.0.0.1:%d" % sock.getsockname()[1])["session"]


def session_verbs(server, mark_cmd: str, since: int) -> list[str]:
    return [e.verb for e in server.session_entries(mark_cmd, since=since) if e.direction == "command"]


def feat_lines(r) -> set[str]:
    return {l.strip().upper() for l in r.lines[1:-1]}


def fresh_session_works(proxy, server, certs) -> None:
    """A new FTPS session on the same proxy logs in and moves small.txt byte-exact."""
    with TlsRawClient.to(Target.via(proxy, server)) as c:
        c.auth_tls(tls_context(certs))
        c.protect()
        c.login()
        assert sha256_bytes(c.retr("small.txt")) == server.files["small.txt"]
        assert c.quit().code == 221


def upload_file(tmp_path, name: str, size: int = 300_000):
    src = tmp_path / name
    src.write_bytes(os.urandom(size))
    return src


def events_of(events, kind: str, session=None) -> list[dict]:
    return [e for e in events if e["event"] == kind and (session is None or e["session"] == session)]


def assert_tls_event(e: dict, side: str) -> None:
    assert e["side"] == side, e
    assert e["version"] in ("TLSv1.2", "TLSv1.3"), e
    assert isinstance(e["cipher"], str) and e["cipher"], e
    assert isinstance(e["resumed"], bool), e


def assert_protected_data(events: list[dict], resumed: bool | None = True) -> None:
    """Every data connection and transfer of `events` was protected (and its
    client leg resumed the control session, or not)."""
    opens, transfers = events_of(events, "data_open"), events_of(events, "transfer")
    assert opens and transfers, [e["event"] for e in events]
    for e in opens:
        assert e["protected"] is True, e
        if resumed is not None:
            assert e["resumed"] is resumed, e
    assert all(t["protected"] is True for t in transfers), transfers


def wait_ended(proxy, client: str, timeout: float = 5.0) -> dict:
    """The session_close (or, if the proxy never opened a session for it, the
    session_refused) of the connection from `client` ("127.0.0.1:port")."""
    end = time.monotonic() + timeout
    while True:
        found = proxy.events("session_close", client=client) + proxy.events("session_refused", client=client)
        if found:
            return found[0]
        if time.monotonic() > end:
            raise AssertionError(f"no session_close / session_refused for {client}; log:\n{proxy.audit_text()[-3000:]}")
        time.sleep(0.1)


def first_reply_or_close(proxy, user: str):
    """The first reply a client gets (the greeting, or the answer to USER when
    the greeting was 220); None when the connection closed without one."""
    try:
        c = RawClient(proxy.host, proxy.port)
    except ConnectionError:
        return None
    try:
        if c.greeting.code != 220:
            return c.greeting
        try:
            return c.cmd(f"USER {user}")
        except ConnectionError:
            return None
    finally:
        c.close()


# ---------------------------------------------------------------------------
# real clients, explicit and implicit, through a plain upstream


@pytest.mark.parametrize("passive_mode", ["epsv", "pasv"])
def test_curl_explicit_list_get_put(server, make_proxy, tls_certs, tmp_path, unique_name, passive_mode):
    """curl --ssl-reqd (AUTH SSL, PBSZ 0, PROT P): a listing, blob.bin down and
    a file up byte-exact; every session and data connection protected and
    resumed; the plain upstream never saw AUTH, PBSZ or PROT."""
    proxy = ftps_proxy(make_proxy, server, tls_certs, tmp_path, mode="enforce")
    via = Target.via(proxy, server)
    extra = [] if passive_mode == "epsv" else ["--disable-epsv"]
    mark = server.log_mark()

    out = tmp_path / "blob.bin"
    r = curl_ftps(via, "blob.bin", "-o", str(out), *extra, certs=tls_certs)
    assert sha256_file(out) == server.files["blob.bin"]
    assert "SSL certificate verify ok" in r.stderr.decode(errors="replace")
    listing = curl_ftps(via, "/", *extra, certs=tls_certs).stdout.decode(errors="replace")
    assert "small.txt" in listing and "blob.bin" in listing and "tree" in listing
    name = unique_name("ftps-curl", ".bin")
    src = upload_file(tmp_path, name)
    curl_ftps(via, f"upload/{name}", "-T", str(src), *extra, certs=tls_certs)
    assert sha256_file(server.root / "upload" / name) == sha256_file(src)

    events = assert_no_violations(proxy)
    tls = events_of(events, "tls")
    assert len(tls) == 3, tls
    for e in tls:
        assert_tls_event(e, "client")
        assert "peer_cert" not in e, e  # curl presented none
    assert_protected_data(events, resumed=True)
    transfers = events_of(events, "transfer")
    assert [t["verb"] for t in transfers] == ["RETR", "LIST", "STOR"], transfers
    assert transfers[0]["bytes"] == 1 << 20 and transfers[2]["bytes"] == src.stat().st_size, transfers
    verbs = server.verbs(since=mark)
    assert not TLS_VERBS & set(verbs), verbs
    assert verbs.count("RETR") == 1 and verbs.count("STOR") == 1 and verbs.count("LIST") == 1, verbs


def test_curl_active(server, make_proxy, tls_certs, tmp_path):
    """curl -P 127.0.0.1 --ssl-reqd: the proxy connects to curl, curl is still
    the TLS client on the data connection."""
    if curl_version() < (8, 0, 0):
        pytest.skip("curl 7.88 fails active-mode FTPS on its own accept (\"sa_addr inet_ntop() failed with "
                    "errno 97\", also straight against vsftpd); active FTPS is covered by ftplib and lftp here")
    proxy = ftps_proxy(make_proxy, server, tls_certs, tmp_path)
    out = tmp_path / "blob.bin"
    curl_ftps(Target.via(proxy, server), "blob.bin", "-o", str(out), passive=False, certs=tls_certs)
    assert sha256_file(out) == server.files["blob.bin"]
    assert_protected_data(assert_no_violations(proxy), resumed=True)


def test_curl_implicit_get_put(server, make_proxy, tls_certs, tmp_path, unique_name):
    """Implicit FTPS (ftps://, TLS from the first byte): blob.bin down and a
    file up byte-exact. A client speaking plain FTP to that port gets no
    greeting in clear and is closed; the next session is served."""
    proxy = ftps_proxy(make_proxy, server, tls_certs, tmp_path, listen={"implicit_tls": True})
    via = Target.via(proxy, server)
    out = tmp_path / "blob.bin"
    curl_ftps(via, "blob.bin", "-o", str(out), implicit=True, certs=tls_certs)
    assert sha256_file(out) == server.files["blob.bin"]
    name = unique_name("ftps-implicit", ".bin")
    src = upload_file(tmp_path, name)
    curl_ftps(via, f"upload/{name}", "-T", str(src), implicit=True, certs=tls_certs)
    assert sha256_file(server.root / "upload" / name) == sha256_file(src)
    events = assert_no_violations(proxy)
    for e in events_of(events, "tls"):
        assert_tls_event(e, "client")
    assert len(events_of(events, "tls")) == 2
    assert_protected_data(events, resumed=True)

    plain = socket.create_connection((proxy.host, proxy.port), timeout=10)
    addr = "127.0.0.1:%d" % plain.getsockname()[1]
    plain.sendall(f"USER {server.user}\r\n".encode())
    got = read_until_closed(plain)
    assert not re.search(rb"(?m)^[23]\d\d[ -]", got), got  # no greeting, no 331 in clear
    plain.close()
    wait_ended(proxy, addr)
    with TlsRawClient.implicit(via, tls_context(tls_certs)) as c:
        assert c.greeting.code == 220
        c.protect()
        c.login()
        assert sha256_bytes(c.retr("small.txt")) == server.files["small.txt"]
        assert c.quit().code == 221


@pytest.mark.parametrize("passive", [True, False], ids=["passive", "active"])
def test_lftp_ls_get_put(server, make_proxy, tls_certs, tmp_path, unique_name, passive):
    """lftp (GnuTLS) with ssl-force and ssl-protect-data, the certificate
    checked against the test CA: ls, get, put byte-exact; its data
    connections resume the control session."""
    proxy = ftps_proxy(make_proxy, server, tls_certs, tmp_path, mode="enforce")
    name = unique_name("ftps-lftp", ".bin")
    src = upload_file(tmp_path, name)
    got = tmp_path / "got.bin"
    r = lftp(Target.via(proxy, server), f"ls; get blob.bin -o {got}; put {src} -o upload/{name}",
             passive=passive, settings=lftp_tls_settings(tls_certs))
    assert "small.txt" in r.stdout.decode(errors="replace")
    assert sha256_file(got) == server.files["blob.bin"]
    assert sha256_file(server.root / "upload" / name) == sha256_file(src)
    events = assert_no_violations(proxy)
    assert events_of(events, "tls") and all(e["side"] == "client" for e in events_of(events, "tls"))
    assert_protected_data(events, resumed=True)


@pytest.mark.parametrize("passive", [True, False], ids=["passive", "active"])
def test_ftplib_resuming_get_put_nlst(server, make_proxy, tls_certs, tmp_path, unique_name, passive):
    """ftplib.FTP_TLS with PROT P whose data connections resume the control
    session (ResumingFTP_TLS): download, upload (CR LF and 0xFF bytes
    untouched) and NLST, passive and active."""
    proxy = ftps_proxy(make_proxy, server, tls_certs, tmp_path, mode="enforce")
    via = Target.via(proxy, server)
    name = unique_name("ftps-ftplib", ".bin")
    data = b"\x00\xff\r\n" * 20000
    with ftps_connect(via, tls_context(tls_certs), passive=passive) as ftp:
        assert isinstance(ftp, ResumingFTP_TLS)
        assert sha256_bytes(ftps_get(ftp, "blob.bin")) == server.files["blob.bin"]
        assert ftp.storbinary(f"STOR upload/{name}", io.BytesIO(data)).startswith("226")
        names = [n.rsplit("/", 1)[-1] for n in ftp.nlst("tree")]
        assert ftp.quit().startswith("221")
    assert sha256_file(server.root / "upload" / name) == sha256_bytes(data)
    assert sorted(names) == sorted(p.name for p in (server.root / "tree").iterdir())
    events = assert_no_violations(proxy)
    (tls,) = events_of(events, "tls")
    assert_tls_event(tls, "client")
    assert_protected_data(events, resumed=True)
    assert [t["verb"] for t in events_of(events, "transfer")] == ["RETR", "STOR", "NLST"]


def test_ftplib_stock_client_that_does_not_resume_gets_425(vsftpd_server, make_proxy, tls_certs, tmp_path):
    """Stock ftplib.FTP_TLS shakes hands afresh on its data connection: with
    require_session_reuse (the default) that connection is closed, the
    transfer answered 425 and a data-failure (tls-not-resumed) logged; the
    session goes on, and a resuming client on the same proxy is served."""
    server = vsftpd_server
    proxy = ftps_proxy(make_proxy, server, tls_certs, tmp_path, mode="enforce")
    via = Target.via(proxy, server)
    ftp = ftps_connect(via, tls_context(tls_certs), resume=False)
    try:
        with pytest.raises((ftplib.error_temp, ssl.SSLError, OSError)) as e:
            ftps_get(ftp, "blob.bin")
        assert not isinstance(e.value, (socket.timeout, TimeoutError)), "the proxy left the data connection open"
        if not isinstance(e.value, ftplib.error_temp):
            # the data connection failed in the client's hands first: the 425 is still to be read
            with pytest.raises(ftplib.error_temp) as e:
                ftp.voidresp()
        assert str(e.value).startswith("425"), e.value
        v = proxy.wait_event("violation", rule="data-failure")
        assert v["cause"] == "tls-not-resumed", v
        assert ftp.voidcmd("NOOP").startswith("200")  # the session goes on
        ftp.quit()
    finally:
        ftp.close()
    with ftps_connect(via, tls_context(tls_certs)) as good:
        assert sha256_bytes(ftps_get(good, "blob.bin")) == server.files["blob.bin"]
        good.quit()


def test_ftplib_stock_client_without_reuse_requirement(server, make_proxy, tls_certs, tmp_path, unique_name):
    """require_session_reuse = false: the stock FTP_TLS moves bytes both ways
    and its data connections are logged protected, not resumed."""
    proxy = ftps_proxy(make_proxy, server, tls_certs, tmp_path, tls={"require_session_reuse": False})
    name = unique_name("ftps-stock", ".bin")
    data = os.urandom(200_000)
    with ftps_connect(Target.via(proxy, server), tls_context(tls_certs), resume=False) as ftp:
        assert type(ftp) is ftplib.FTP_TLS
        assert sha256_bytes(ftps_get(ftp, "blob.bin")) == server.files["blob.bin"]
        assert ftp.storbinary(f"STOR upload/{name}", io.BytesIO(data)).startswith("226")
        ftp.quit()
    assert sha256_file(server.root / "upload" / name) == sha256_bytes(data)
    assert_protected_data(assert_no_violations(proxy), resumed=False)


# ---------------------------------------------------------------------------
# audit log and what the server saw


@pytest.mark.parametrize("version", ["TLSv1.2", "TLSv1.3"])
def test_audit_of_a_protected_and_a_plain_session(vsftpd_server, make_proxy, tls_certs, tmp_path, version):
    """One FTPS session (TLS 1.2 or 1.3 pinned by the client) and one plain
    session on the same proxy: the tls event (side, version, cipher, not
    resumed, no peer_cert), data_open and transfer protected and resumed for
    the first, protected false and no tls event for the second; vsftpd got
    neither AUTH nor PBSZ nor PROT."""
    server = vsftpd_server
    proxy = ftps_proxy(make_proxy, server, tls_certs, tmp_path)
    via = Target.via(proxy, server)
    pinned = getattr(ssl.TLSVersion, version.replace("TLSv1.", "TLSv1_"))
    mark = server.log_mark()
    m = marker()
    with TlsRawClient.to(via) as c:
        c.cmd(m)
        c.auth_tls(tls_context(tls_certs, minimum=pinned, maximum=pinned))
        tls_sid = session_id(proxy, c.sock)
        c.protect()
        c.login()
        assert sha256_bytes(c.retr("blob.bin")) == server.files["blob.bin"]
        assert c.quit().code == 221
    with TlsRawClient.to(via) as p:
        plain_sid = session_id(proxy, p.sock)
        p.login()
        assert sha256_bytes(p.retr("small.txt", protected=False)) == server.files["small.txt"]
        assert p.quit().code == 221
    events = assert_no_violations(proxy)

    (tls,) = events_of(events, "tls", tls_sid)
    assert_tls_event(tls, "client")
    assert tls["version"] == version and tls["resumed"] is False and "peer_cert" not in tls, tls
    (d,) = events_of(events, "data_open", tls_sid)
    assert d["protected"] is True and d["resumed"] is True, d
    (t,) = events_of(events, "transfer", tls_sid)
    assert t["protected"] is True and t["bytes"] == 1 << 20 and t["verb"] == "RETR", t

    assert not events_of(events, "tls", plain_sid)
    (d,) = events_of(events, "data_open", plain_sid)
    assert d["protected"] is False and "resumed" not in d, d
    (t,) = events_of(events, "transfer", plain_sid)
    assert t["protected"] is False, t

    verbs = session_verbs(server, m, mark)
    assert not TLS_VERBS & set(verbs), verbs
    assert verbs[0] == "HELP" and "RETR" in verbs and verbs[-1] == "QUIT", verbs


def test_client_certificates_are_verified_and_named(vsftpd_server, make_proxy, tls_certs, tmp_path):
    """With `ca` set the proxy asks for a client certificate: one signed by
    the CA is accepted and its subject lands in the tls event; a client with
    none is served too (requested, not required)."""
    server = vsftpd_server
    proxy = ftps_proxy(make_proxy, server, tls_certs, tmp_path, tls={"ca": tls_certs.ca})
    via = Target.via(proxy, server)
    with TlsRawClient.to(via) as c:
        c.auth_tls(tls_context(tls_certs, tls_certs.client_cert, tls_certs.client_key))
        with_cert = session_id(proxy, c.sock)
        c.protect()
        c.login()
        assert sha256_bytes(c.retr("small.txt")) == server.files["small.txt"]
        assert c.quit().code == 221
    with TlsRawClient.to(via) as c:
        c.auth_tls(tls_context(tls_certs))
        without = session_id(proxy, c.sock)
        c.protect()
        c.login()
        assert sha256_bytes(c.retr("small.txt")) == server.files["small.txt"]
        assert c.quit().code == 221
    events = assert_no_violations(proxy)
    (named,) = events_of(events, "tls", with_cert)
    assert CLIENT_CN in named["peer_cert"], named
    (anonymous,) = events_of(events, "tls", without)
    assert "peer_cert" not in anonymous, anonymous


def test_feat_advertises_tls(server, make_proxy, tls_certs, tmp_path):
    """With client TLS on, FEAT through the proxy lists AUTH TLS, PBSZ and
    PROT (the server's own FEAT has none of them) and every feature the
    server lists, before AUTH and after login inside TLS."""
    proxy = ftps_proxy(make_proxy, server, tls_certs, tmp_path)
    with RawClient.to(server) as direct:
        theirs = feat_lines(direct.cmd("FEAT"))
        direct.quit()
    assert not theirs & TLS_FEATS, theirs
    with TlsRawClient.to(Target.via(proxy, server)) as c:
        for step in ("before AUTH", "after login"):
            if step == "after login":
                c.auth_tls(tls_context(tls_certs))
                c.login()
            r = c.cmd("FEAT")
            assert r.code == 211, (step, r)
            ours = feat_lines(r)
            assert {"AUTH TLS", "PBSZ", "PROT"} <= ours, (step, r.text)
            assert ours - TLS_FEATS == theirs, (step, r.text)
        assert c.quit().code == 221


def test_client_tls_off_answers_auth_534(server, make_proxy, tls_certs, tmp_path):
    """client = "off" (a certificate configured or not): AUTH TLS and AUTH SSL
    are answered 534 as before and FEAT offers no TLS."""
    proxy = ftps_proxy(make_proxy, server, tls_certs, tmp_path, tls={"client": "off"})
    with RawClient.to(Target.via(proxy, server)) as c:
        assert not feat_lines(c.cmd("FEAT")) & TLS_FEATS
        assert c.cmd("AUTH TLS").code == 534
        assert c.cmd("AUTH SSL").code == 534
        c.login()
        assert c.quit().code == 221
    assert not events_of(proxy.settle(), "tls")


# ---------------------------------------------------------------------------
# requirements: client = "required", data = "required" / "clear", sequence rules


def test_tls_required_before_anything_but_auth_feat_syst_help_noop(vsftpd_server, make_proxy, tls_certs, tmp_path):
    """client = "required": HELP, FEAT, SYST and NOOP pass in clear (vsftpd
    itself answers HELP, SYST and NOOP 530 before login: what counts is that
    they reached it); USER and PASV before the handshake are answered 530 by
    the proxy (a tls-required violation) and never reach the server; after
    AUTH TLS the session logs in and transfers."""
    server = vsftpd_server
    proxy = ftps_proxy(make_proxy, server, tls_certs, tmp_path, mode="enforce", tls={"client": "required"})
    mark = server.log_mark()
    m = marker()
    with TlsRawClient.to(Target.via(proxy, server)) as c:
        c.cmd(m)
        assert {"AUTH TLS", "PBSZ", "PROT"} <= feat_lines(c.cmd("FEAT"))
        c.cmd("SYST")
        c.cmd("NOOP")
        assert c.cmd(f"USER {server.user}").code == 530
        assert_rejected(proxy, "tls-required", 530, "USER")
        assert c.cmd("PASV").code == 530
        c.auth_tls(tls_context(tls_certs))
        c.protect()
        c.login()
        assert sha256_bytes(c.retr("small.txt")) == server.files["small.txt"]
        assert c.quit().code == 221
    assert [v["verb"] for v in proxy.settle() if v["event"] == "violation"] == ["USER", "PASV"]
    verbs = session_verbs(server, m, mark)
    assert verbs[0] == "HELP" and "SYST" in verbs and "NOOP" in verbs, verbs
    assert verbs.count("USER") == 1 and verbs.count("PASS") == 1, verbs
    assert len([v for v in verbs if v in ("PASV", "EPSV")]) == 1, verbs  # the one after login
    assert not TLS_VERBS & set(verbs), verbs


def test_data_required_refuses_clear_transfers_521(vsftpd_server, make_proxy, tls_certs, tmp_path):
    """data = "required": a LIST after PROT C, and a RETR in a session that
    never did AUTH, are answered 521 (prot-p-required) and never reach the
    server; after PROT P the same session lists and downloads."""
    server = vsftpd_server
    proxy = ftps_proxy(make_proxy, server, tls_certs, tmp_path, mode="enforce", tls={"data": "required"})
    via = Target.via(proxy, server)
    mark = server.log_mark()
    m = marker()
    with TlsRawClient.to(via) as c:
        c.cmd(m)
        c.auth_tls(tls_context(tls_certs))
        c.login()
        assert c.cmd("PBSZ 0").code == 200
        assert c.cmd("PROT C").code == 200
        d = c.data_connect()
        assert c.cmd("LIST").code == 521
        d.close()
        assert_rejected(proxy, "prot-p-required", 521, "LIST")
        assert c.cmd("PROT P").code == 200
        assert any(n.endswith("a.txt") for n in c.nlst("tree"))
        assert sha256_bytes(c.retr("blob.bin")) == server.files["blob.bin"]
        assert c.quit().code == 221
    with RawClient.to(via) as p:
        p.login()
        assert p.cmd("TYPE I").code == 200
        d = p.data_connect()
        assert p.cmd("RETR small.txt").code == 521
        d.close()
        assert p.quit().code == 221
    assert len(proxy.wait_events("violation", 2, rule="prot-p-required")) == 2
    verbs = session_verbs(server, m, mark)
    assert "LIST" not in verbs and verbs.count("NLST") == 1 and verbs.count("RETR") == 1, verbs
    assert server.verbs(since=mark).count("RETR") == 1  # the plain session's never arrived


def test_data_clear_refuses_prot_p_536(vsftpd_server, make_proxy, tls_certs, tmp_path):
    """data = "clear": PROT P is answered 536, PROT C 200, and the session
    (protected control connection) transfers in clear."""
    server = vsftpd_server
    proxy = ftps_proxy(make_proxy, server, tls_certs, tmp_path, mode="enforce", tls={"data": "clear"})
    with TlsRawClient.to(Target.via(proxy, server)) as c:
        c.auth_tls(tls_context(tls_certs))
        assert c.cmd("PBSZ 0").code == 200
        assert c.cmd("PROT P").code == 536
        assert c.cmd("PROT C").code == 200
        c.login()
        assert sha256_bytes(c.retr("blob.bin", protected=False)) == server.files["blob.bin"]
        assert c.quit().code == 221
    events = proxy.settle()
    (d,) = events_of(events, "data_open")
    assert d["protected"] is False, d
    (t,) = events_of(events, "transfer")
    assert t["protected"] is False and t["bytes"] == 1 << 20, t


def test_sequence_rules_inside_tls(vsftpd_server, make_proxy, tls_certs, tmp_path):
    """Enforce mode inside TLS: PROT before PBSZ and RNTO without RNFR are
    answered 503 by the proxy; PBSZ is answered "200 PBSZ=0"; PROT S and
    PROT E 536; none of them reaches the server, and the session goes on."""
    server = vsftpd_server
    proxy = ftps_proxy(make_proxy, server, tls_certs, tmp_path, mode="enforce")
    mark = server.log_mark()
    m = marker()
    with TlsRawClient.to(Target.via(proxy, server)) as c:
        c.cmd(m)
        c.auth_tls(tls_context(tls_certs))
        assert c.cmd("PROT P").code == 503
        assert_rejected(proxy, "prot-needs-pbsz", 503, "PROT")
        r = c.cmd("PBSZ 0")
        assert r.code == 200 and r.text.startswith("200 PBSZ=0"), r
        assert c.cmd("PROT S").code == 536
        assert c.cmd("PROT E").code == 536
        assert c.cmd("PROT P").code == 200
        c.login()
        assert c.cmd("RNTO renamed.txt").code == 503
        assert_rejected(proxy, "rnto-needs-rnfr", 503, "RNTO")
        assert sha256_bytes(c.retr("small.txt")) == server.files["small.txt"]
        assert c.quit().code == 221
    verbs = session_verbs(server, m, mark)
    assert not (TLS_VERBS | {"RNTO"}) & set(verbs), verbs


def test_refusals_that_keep_the_channel_protected(vsftpd_server, make_proxy, tls_certs, tmp_path):
    """Inside TLS (per the proxy's README): CCC is refused 533 (the control
    channel stays protected), a second AUTH 503, REIN 502; the session goes
    on inside TLS."""
    server = vsftpd_server
    proxy = ftps_proxy(make_proxy, server, tls_certs, tmp_path, mode="enforce")
    with TlsRawClient.to(Target.via(proxy, server)) as c:
        c.auth_tls(tls_context(tls_certs))
        c.protect()
        c.login()
        assert c.cmd("CCC").code == 533
        assert c.cmd("AUTH TLS").code == 503
        assert c.cmd("REIN").code == 502
        assert isinstance(c.sock, ssl.SSLSocket)
        assert sha256_bytes(c.retr("small.txt")) == server.files["small.txt"]
        assert c.quit().code == 221


# ---------------------------------------------------------------------------
# key material and the command line


def test_encrypted_key_with_password_file(vsftpd_server, make_proxy, tls_certs, tmp_path):
    """key_password_file unlocks an encrypted key (the file holds the
    passphrase without a newline); curl --ssl-reqd downloads through it."""
    server = vsftpd_server
    proxy = ftps_proxy(make_proxy, server, tls_certs, tmp_path,
                       tls={"key": tls_certs.encrypted_key, "key_password_file": tls_certs.key_password_file})
    out = tmp_path / "small.txt"
    curl_ftps(Target.via(proxy, server), "small.txt", "-o", str(out), certs=tls_certs)
    assert sha256_file(out) == server.files["small.txt"]


def test_wrong_key_password_is_refused_at_start(vsftpd_server, proxy_bin, tls_certs, tmp_path):
    """A wrong passphrase: the proxy does not start (exits non-zero, naming
    the key), rather than run without TLS."""
    server = vsftpd_server
    bad = tmp_path / "bad.password"
    bad.write_text("not-the-password")
    conf = tmp_path / "bad.toml"
    conf.write_text(f'[tls]\ncert = "{tls_certs.cert}"\nkey = "{tls_certs.encrypted_key}"\n'
                    f'key_password_file = "{bad}"\nclient = "optional"\n')
    err_path = tmp_path / "stderr.log"
    with open(err_path, "wb") as err_file:
        proc = subprocess.Popen([proxy_bin, "--listen", "127.0.0.1:0", "--upstream", f"{server.host}:{server.port}",
                                 "--audit-log", str(tmp_path / "audit.jsonl"), "--config", str(conf)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err_file)
    try:
        rc = proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        rc = None
    err = err_path.read_text(errors="replace")
    assert rc is not None, f"the proxy started with a key it could not have decrypted:\n{err}"
    assert rc != 0, err
    assert "listening on" not in err
    assert "key" in err.lower(), err


def test_command_line_flags(vsftpd_server, make_proxy, tls_certs, tmp_path):
    """--tls-cert/--tls-key/--tls-client optional alone give explicit FTPS;
    --implicit-tls gives implicit FTPS; a flag overrides the config file
    (client = "off" there, --tls-client required here: USER before AUTH 530)."""
    server = vsftpd_server
    flags = ["--tls-cert", str(tls_certs.cert), "--tls-key", str(tls_certs.key)]
    out = tmp_path / "small.txt"
    explicit = make_proxy(server, extra_args=[*flags, "--tls-client", "optional"])
    curl_ftps(Target.via(explicit, server), "small.txt", "-o", str(out), certs=tls_certs)
    assert sha256_file(out) == server.files["small.txt"]

    implicit = make_proxy(server, extra_args=[*flags, "--tls-client", "optional", "--implicit-tls"])
    out.unlink()
    curl_ftps(Target.via(implicit, server), "small.txt", "-o", str(out), implicit=True, certs=tls_certs)
    assert sha256_file(out) == server.files["small.txt"]

    conf = tmp_path / "off.toml"
    conf.write_text(f'[tls]\ncert = "{tls_certs.cert}"\nkey = "{tls_certs.key}"\nclient = "off"\n')
    overridden = make_proxy(server, mode="enforce", extra_args=["--config", str(conf), "--tls-client", "required"])
    with RawClient.to(Target.via(overridden, server)) as c:
        assert c.cmd(f"USER {server.user}").code == 530
        assert c.quit().code == 221


# ---------------------------------------------------------------------------
# TLS toward the server (upstream = "on")


@pytest.fixture(params=["vsftpd_tls", "pyftpdlib_tls"])
def tls_server(request):
    """An upstream that speaks FTPS only: vsftpd (require_ssl_reuse) and pyftpdlib."""
    return request.getfixturevalue(request.param)


def test_upstream_tls_both_ways_and_bridged(tls_server, make_proxy, tls_certs, tmp_path, unique_name):
    """upstream = "on" in front of a server that refuses clear logins: curl
    --ssl-reqd down and up byte-exact (TLS on both legs), and plain curl and
    ftplib through the proxy too (clear toward the proxy, TLS toward the
    server). The server got the proxy's own AUTH TLS, PBSZ 0, PROT P once per
    session; the audit log has a tls event for the server side of each
    session and for the client side of the FTPS ones. vsftpd logs its data
    handshakes as resumed (require_ssl_reuse would fail them otherwise)."""
    server = tls_server
    proxy = ftps_proxy(make_proxy, server, tls_certs, tmp_path, mode="enforce",
                       tls={"upstream": "on", "upstream_ca": tls_certs.ca})
    via = Target.via(proxy, server)
    mark = server.log_mark()

    out = tmp_path / "blob.bin"
    curl_ftps(via, "blob.bin", "-o", str(out), certs=tls_certs)
    assert sha256_file(out) == server.files["blob.bin"]
    name = unique_name("ftps-both", ".bin")
    src = upload_file(tmp_path, name)
    curl_ftps(via, f"upload/{name}", "-T", str(src), certs=tls_certs)
    assert sha256_file(server.root / "upload" / name) == sha256_file(src)

    plain_out = tmp_path / "plain-blob.bin"
    curl_get(via, "blob.bin", plain_out)
    assert sha256_file(plain_out) == server.files["blob.bin"]
    plain_name = unique_name("ftps-bridged", ".bin")
    data = os.urandom(150_000)
    with ftplib_connect(via) as ftp:
        assert ftp.storbinary(f"STOR upload/{plain_name}", io.BytesIO(data)).startswith("226")
        ftp.quit()
    assert sha256_file(server.root / "upload" / plain_name) == sha256_bytes(data)

    events = assert_no_violations(proxy)
    sessions = [e["session"] for e in events_of(events, "session_open")]
    assert len(sessions) == 4
    for sid in sessions:
        (up,) = [e for e in events_of(events, "tls", sid) if e["side"] == "server"]
        assert_tls_event(up, "server")
    client_side = [e for e in events_of(events, "tls") if e["side"] == "client"]
    assert len(client_side) == 2 and all(e["session"] in sessions[:2] for e in client_side), client_side
    assert [t["verb"] for t in events_of(events, "transfer")] == ["RETR", "STOR", "RETR", "STOR"]

    cmds = server.commands(since=mark)
    auths = [e.text for e in cmds if e.verb == "AUTH"]
    assert auths == ["AUTH TLS"] * 4, auths  # the proxy's own, never curl's AUTH SSL
    verbs = [e.verb for e in cmds]
    prots = [e.text for e in cmds if e.verb == "PROT"]
    assert verbs.count("PBSZ") >= 4 and len(prots) >= 4 and set(prots) == {"PROT P"}, verbs
    if server.kind == "vsftpd":
        handshakes = server.ssl_debug(since=mark)
        resumed = [h for h in handshakes if ", reused," in h]
        assert len(resumed) >= 4, handshakes  # every data connection (4 transfers)


def test_upstream_tls_with_client_tls_off(vsftpd_tls, make_proxy, tls_certs, tmp_path):
    """upstream = "on" with client = "off": clients speak plain FTP only (FEAT
    offers no TLS, AUTH is 534) while the proxy speaks TLS to vsftpd."""
    server = vsftpd_tls
    proxy = ftps_proxy(make_proxy, server, tls_certs, tmp_path,
                       tls={"client": "off", "upstream": "on", "upstream_ca": tls_certs.ca})
    with TlsRawClient.to(Target.via(proxy, server)) as c:
        assert not feat_lines(c.cmd("FEAT")) & TLS_FEATS
        assert c.cmd("AUTH TLS").code == 534
        c.login()
        assert sha256_bytes(c.retr("blob.bin", protected=False)) == server.files["blob.bin"]
        assert c.quit().code == 221
    (tls,) = events_of(assert_no_violations(proxy), "tls")
    assert_tls_event(tls, "server")


def test_upstream_tls_pyftpdlib_125_annotated(pyftpdlib_tls, make_proxy, tls_certs, tmp_path):
    """The proxy's TLS data connections to pyftpdlib (TLS_FTPHandler): a client
    that connects its passive data connection and pauses before LIST/RETR
    meets pyftpdlib's 125 (it answers 125 under TLS too, as checked straight
    against it). Every 125 it sent reaches the client and is annotated
    data_connection_already_open; its transfers are "reused"; bytes exact.
    (pyftpdlib drops a data connection on which bytes arrive before the
    transfer command: the proxy's handshake toward it must wait for 125/150.)"""
    server = pyftpdlib_tls
    proxy = ftps_proxy(make_proxy, server, tls_certs, tmp_path, mode="enforce",
                       tls={"upstream": "on", "upstream_ca": tls_certs.ca})
    mark = server.log_mark()
    m = marker()
    commands = ["LIST", "RETR small.txt", "LIST tree", "RETR blob.bin"]
    firsts = []
    with RawClient.to(Target.via(proxy, server)) as c:
        c.cmd(m)
        c.login()
        assert c.cmd("TYPE I").code == 200
        for i, cmd in enumerate(commands):
            d = c.data_connect(epsv=bool(i % 2))
            time.sleep(0.3)  # pyftpdlib has accepted the proxy's connection: it will say 125
            r = c.cmd(cmd)
            assert r.code in (125, 150), (cmd, r)
            firsts.append(r.code)
            data = read_to_end(d)
            assert c.reply().code == 226, cmd
            if cmd.startswith("RETR"):
                assert sha256_bytes(data) == server.files[cmd.split()[1]], cmd
            else:
                assert b"small.txt" in data or b"a.txt" in data, (cmd, data)
        assert c.quit().code == 221
    sent_125 = [e for e in server.session_entries(m, since=mark) if e.direction == "reply" and e.code == 125]
    assert len(sent_125) > 0, "pyftpdlib sent no 125"
    events = proxy.settle()
    findings = [e for e in events if e["event"] in ("server_finding", "violation")]
    assert findings == [], findings
    r125 = [e for e in events if e["event"] == "reply" and e["code"] == 125]
    assert len(r125) == len(sent_125) == firsts.count(125), (firsts, r125)
    assert all(e.get("annotation") == "data_connection_already_open" for e in r125), r125
    transfers = events_of(events, "transfer")
    assert len(transfers) == len(commands)
    assert sum(1 for t in transfers if t["data_conn"] == "reused") == firsts.count(125), transfers
    (up,) = events_of(events, "tls")
    assert_tls_event(up, "server")


def test_upstream_refuses_auth_tls(scripted_server, make_proxy, tls_certs, tmp_path):
    """upstream = "on" and the server answers AUTH TLS with 500: the client
    gets 421, the session ends (upstream-tls-refused), and the server never
    gets a USER or PASS in clear."""
    up = scripted_server({"AUTH": b"500 AUTH not understood.\r\n"})
    proxy = ftps_proxy(make_proxy, up, tls_certs, tmp_path, tls={"upstream": "on", "upstream_ca": tls_certs.ca})
    r = first_reply_or_close(proxy, up.user)
    assert r is not None and r.code == 421, r
    proxy.wait_event("session_close", reason="upstream-tls-refused")
    verbs = up.verbs()
    assert "AUTH" in verbs, verbs
    assert "USER" not in verbs and "PASS" not in verbs, verbs


def test_upstream_certificate_not_trusted(vsftpd_tls, make_proxy, tls_certs, tmp_path):
    """upstream_ca names a CA that did not sign vsftpd's certificate: the
    proxy does not log in through that connection (vsftpd never gets USER)
    and the client is told 421 or closed, never a 230."""
    server = vsftpd_tls
    proxy = ftps_proxy(make_proxy, server, tls_certs, tmp_path,
                       tls={"upstream": "on", "upstream_ca": tls_certs.other_ca})
    mark = server.log_mark()
    r = first_reply_or_close(proxy, server.user)
    assert r is None or r.code == 421, r
    proxy.wait_event("session_close")
    server.wait_for_command("AUTH", since=mark)
    assert "USER" not in server.verbs(since=mark)


# ---------------------------------------------------------------------------
# bad input: each ends its own session, the proxy serves the next


def oversized_client_hello() -> bytes:
    """~100 KiB of TLS handshake records: a ClientHello header claiming 16 MiB, then junk."""
    first = b"\x01\xff\xff\xff" + b"\x03\x03" + os.urandom(16380 - 6)
    records = [b"\x16\x03\x01" + len(first).to_bytes(2, "big") + first]
    while sum(map(len, records)) < 100 * 1024:
        body = os.urandom(16384)
        records.append(b"\x16\x03\x01" + len(body).to_bytes(2, "big") + body)
    return b"".join(records)


AFTER_234 = {
    "garbage": bytes(range(256)) * 4,
    "plaintext-commands": b"USER @USER@\r\nPASS @PASS@\r\nSTAT\r\n",
    "http": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "oversized-client-hello": None,  # made per run
}


@pytest.mark.parametrize("payload", list(AFTER_234))
def test_not_a_handshake_after_234(vsftpd_server, make_proxy, tls_certs, tmp_path, payload):
    """After its 234 the proxy expects a ClientHello: garbage, plaintext
    commands, an HTTP request or a 100 KiB "ClientHello" end the session
    (closed, session_close), none of it reaches the server, and the next
    session is served."""
    server = vsftpd_server
    proxy = ftps_proxy(make_proxy, server, tls_certs, tmp_path)
    data = AFTER_234[payload] if payload != "oversized-client-hello" else oversized_client_hello()
    data = data.replace(b"@USER@", server.user.encode()).replace(b"@PASS@", server.password.encode())
    mark = server.log_mark()
    m = marker()
    c = RawClient.to(Target.via(proxy, server))
    sid = session_id(proxy, c.sock)
    c.cmd(m)
    assert c.cmd("AUTH TLS").code == 234
    try:
        c.sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass  # closed while we were still sending: fine
    got = read_until_closed(c.sock)
    c.close()
    # a TLS alert, or an error reply in clear (vsftpd says "500 OOPS: ... wrong
    # version number"), never a 2xx/3xx: nothing sent after the 234 was obeyed
    assert not re.search(rb"(?m)^[23]\d\d[ -]", got), got
    ev = proxy.wait_event("session_close", session=sid)
    assert ev["reason"] == CLIENT_TLS_FAILED, ev
    verbs = session_verbs(server, m, mark)
    assert verbs[0] == "HELP" and not {"USER", "PASS", "STAT", "GET"} & set(verbs), verbs
    assert server.password not in proxy.audit_text()
    fresh_session_works(proxy, server, tls_certs)


def test_injection_behind_auth_line(vsftpd_server, make_proxy, tls_certs, tmp_path):
    """Bytes sent behind the AUTH line before the 234 could have been read
    (CVE-2011-0411's STARTTLS injection; the proxy's README): the session
    ends (tls-injection), the injected command never reaches the server."""
    server = vsftpd_server
    proxy = ftps_proxy(make_proxy, server, tls_certs, tmp_path)
    mark = server.log_mark()
    m = marker()
    c = RawClient.to(Target.via(proxy, server))
    sid = session_id(proxy, c.sock)
    c.cmd(m)
    c.send(f"AUTH TLS\r\nUSER {server.user}\r\n".encode())
    read_until_closed(c.sock)
    c.close()
    assert proxy.wait_event("violation", rule="tls-injection")["session"] == sid
    assert proxy.wait_event("session_close", session=sid)["reason"] == CLIENT_TLS_FAILED
    assert "USER" not in session_verbs(server, m, mark)
    fresh_session_works(proxy, server, tls_certs)


@pytest.mark.parametrize("stall", ["nothing", "half-a-client-hello"])
def test_handshake_that_never_completes(vsftpd_server, make_proxy, tls_certs, tmp_path, stall):
    """AUTH TLS, 234, then silence (or half a ClientHello): the login timer
    (login_timeout_s = 2) ends the session; the next session is served."""
    server = vsftpd_server
    proxy = ftps_proxy(make_proxy, server, tls_certs, tmp_path, limits={"login_timeout_s": 2})
    c = RawClient.to(Target.via(proxy, server))
    sid = session_id(proxy, c.sock)
    assert c.cmd("AUTH TLS").code == 234
    if stall != "nothing":
        hello = client_hello()
        c.send(hello[:len(hello) // 2])
    ev = proxy.wait_event("session_close", timeout=10, session=sid)
    assert ev["reason"] in ("login-timeout", CLIENT_TLS_FAILED), ev
    read_until_closed(c.sock, timeout=5)
    c.close()
    fresh_session_works(proxy, server, tls_certs)


def test_client_certificate_from_another_ca(vsftpd_server, make_proxy, tls_certs, tmp_path):
    """With `ca` set, a client certificate another CA signed fails
    verification: the handshake (or, under TLS 1.3, the first read after it)
    fails, the session ends, the server never gets USER; clients with a good
    certificate or none are served."""
    server = vsftpd_server
    proxy = ftps_proxy(make_proxy, server, tls_certs, tmp_path, tls={"ca": tls_certs.ca})
    mark = server.log_mark()
    m = marker()
    c = TlsRawClient.to(Target.via(proxy, server))
    sid = session_id(proxy, c.sock)
    c.cmd(m)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        c.auth_tls(tls_context(tls_certs, tls_certs.other_client_cert, tls_certs.other_client_key))
        c.cmd(f"USER {server.user}")
    c.close()
    ev = proxy.wait_event("session_close", session=sid)
    assert ev["reason"] == CLIENT_TLS_FAILED, ev
    assert not [e for e in proxy.events("tls") if e["session"] == sid and "peer_cert" in e]
    assert "USER" not in session_verbs(server, m, mark)
    fresh_session_works(proxy, server, tls_certs)
    with TlsRawClient.to(Target.via(proxy, server)) as good:
        good.auth_tls(tls_context(tls_certs, tls_certs.client_cert, tls_certs.client_key))
        good.login()
        assert good.quit().code == 221


def loopback_alias_usable(addr: str = "127.0.0.2") -> bool:
    s = socket.socket()
    try:
        s.bind((addr, 0))
        return True
    except OSError:
        return False
    finally:
        s.close()


def test_protected_data_connection_from_another_address(vsftpd_server, make_proxy, tls_certs, tmp_path):
    """A stranger (127.0.0.2) on the session's passive port, even shaking
    hands: data-peer-mismatch, closed without a byte of the file; the
    client's own protected connection then gets it byte-exact."""
    if not loopback_alias_usable():
        pytest.skip("cannot bind 127.0.0.2")
    server = vsftpd_server
    proxy = ftps_proxy(make_proxy, server, tls_certs, tmp_path, mode="enforce")
    with TlsRawClient.to(Target.via(proxy, server)) as c:
        c.auth_tls(tls_context(tls_certs))
        c.protect()
        c.login()
        assert c.cmd("TYPE I").code == 200
        port = c.epsv()
        thief = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=("127.0.0.2", 0))
        try:
            thief.sendall(client_hello())
        except (BrokenPipeError, ConnectionResetError):
            pass
        v = proxy.wait_event("violation", rule="data-peer-mismatch")
        assert v["peer"].startswith("127.0.0.2:"), v
        stolen = read_until_closed(thief)
        thief.close()
        assert len(stolen) < 4096, len(stolen)  # an alert at most, never the file
        d = socket.create_connection(("127.0.0.1", port), timeout=10)
        r = c.cmd("RETR blob.bin")
        assert r.code in (125, 150), r
        data = read_to_end(c.wrap_data(d))
        assert c.reply().code == 226
        assert sha256_bytes(data) == server.files["blob.bin"]
        assert c.quit().code == 221


def read_for(proc: subprocess.Popen, until: bytes | None, timeout: float) -> bytes:
    """s_client's output until `until` shows up (None: until it exits) or `timeout`."""
    buf = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end and (until is None or until not in buf):
        r, _, _ = select.select([proc.stdout], [], [], 0.1)
        if r:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
    return buf


def test_renegotiation_is_refused(vsftpd_server, make_proxy, tls_certs, tmp_path):
    """openssl s_client -tls1_2 -starttls ftp, then "R" (client-initiated
    renegotiation): the proxy refuses it, the connection ends (s_client exits
    on its own, as it does against vsftpd), no command after it is answered,
    and the next session is served."""
    server = vsftpd_server
    proxy = ftps_proxy(make_proxy, server, tls_certs, tmp_path)
    proc = subprocess.Popen([OPENSSL, "s_client", "-tls1_2", "-starttls", "ftp", "-crlf", "-CAfile",
                             str(tls_certs.ca), "-connect", f"{proxy.host}:{proxy.port}"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out = read_for(proc, b"Verify return code", 10)
        assert b"Verify return code: 0 (ok)" in out, out.decode(errors="replace")[-2000:]
        if b"---\n" not in out.split(b"Verify return code", 1)[1]:
            read_for(proc, b"---\n", 2)
        # a command answered inside TLS first (-crlf: sent with CR LF); its 331
        # also shows s_client has read the line, so "R" arrives alone (a read
        # holding "USER ...\nR\n" would send R as data)
        proc.stdin.write(f"USER {server.user}\n".encode())
        proc.stdin.flush()
        assert b"331 " in read_for(proc, b"331 ", 5), "no 331 inside TLS before renegotiating"
        proc.stdin.write(b"R\n")
        proc.stdin.flush()
        after = read_for(proc, b"RENEGOTIATING", 5)
        try:
            proc.stdin.write(f"PASS {server.password}\n".encode())
            proc.stdin.flush()
        except BrokenPipeError:
            pass
        after += read_for(proc, None, 5)  # to its exit
        try:
            rc = proc.wait(3)
        except subprocess.TimeoutExpired:
            rc = None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = after.decode(errors="replace")
    assert "RENEGOTIATING" in text and server.password not in text, text
    assert not re.search(r"(?m)^\d{3} ", text.split("RENEGOTIATING", 1)[1]), text  # nothing answered after R
    assert rc is not None, f"s_client still connected after renegotiating:\n{text}"
    tls = proxy.wait_event("tls")
    assert tls["version"] == "TLSv1.2" and len(proxy.events("tls")) == 1, proxy.events("tls")
    proxy.wait_event("session_close", session=tls["session"])
    fresh_session_works(proxy, server, tls_certs)


# ---------------------------------------------------------------------------
# reload


def test_sighup_reloads_the_certificate_and_refuses_a_broken_one(vsftpd_server, make_proxy, tls_certs, tmp_path):
    """SIGHUP reloads the certificate and key for new sessions (a session
    already protected goes on); a certificate that does not load is refused
    with a log line, and new sessions keep getting the running one."""
    import hashlib
    import shutil
    import signal

    from tls_certs import SERVER_CN, _leaf

    server = vsftpd_server
    cert, key = tmp_path / "live-cert.pem", tmp_path / "live-key.pem"
    shutil.copy(tls_certs.cert, cert)
    shutil.copy(tls_certs.key, key)
    proxy = ftps_proxy(make_proxy, server, tls_certs, tmp_path, tls={"cert": str(cert), "key": str(key)})

    def served_cert() -> str:
        with TlsRawClient.to(Target.via(proxy, server)) as c:
            c.auth_tls(tls_context(tls_certs))
            der = c.sock.getpeercert(binary_form=True)
            c.login()
            assert c.quit().code == 221
        return hashlib.sha256(der).hexdigest()

    def reload(marker_text: str) -> None:
        before = proxy.stderr().count(marker_text)
        proxy.proc.send_signal(signal.SIGHUP)
        end = time.monotonic() + 10
        while proxy.stderr().count(marker_text) == before:
            assert time.monotonic() < end, proxy.stderr()[-2000:]
            time.sleep(0.05)

    first = served_cert()
    old = TlsRawClient.to(Target.via(proxy, server))  # protected before the reload
    old.auth_tls(tls_context(tls_certs))
    old.login()

    d = tmp_path / "new"
    d.mkdir()
    new_cert, new_key = _leaf(d, "server2", SERVER_CN, tls_certs.ca, tls_certs.ca_key,
                              "keyUsage=critical,digitalSignature,keyEncipherment\n"
                              "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost")
    shutil.copy(new_cert, cert)
    shutil.copy(new_key, key)
    reload("configuration reloaded")
    second = served_cert()
    assert second != first
    assert old.cmd("NOOP").code == 200  # the session from before goes on under its handshake
    assert old.quit().code == 221
    old.close()

    cert.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    reload("reload refused")
    assert "tls.cert" in proxy.stderr().split("reload refused")[-1].splitlines()[0]
    assert served_cert() == second


# ---------------------------------------------------------------------------
# many transfers on one session: every data connection resumes


def test_every_data_connection_of_a_session_resumes_tls12(vsftpd_tls12, make_proxy, tls_certs, tmp_path, unique_name):
    """TLS 1.2 on both sides, one session, five transfers (LIST, RETR, STOR,
    RETR, NLST): toward vsftpd (require_ssl_reuse) each data connection
    resumes the proxy's control session, and from the client (ftplib held to
    TLS 1.2, resuming) each one resumes the session the proxy gave it:
    nothing fails 522 or 425 after the first transfer."""
    server = vsftpd_tls12
    proxy = ftps_proxy(make_proxy, server, tls_certs, tmp_path, mode="enforce",
                       tls={"upstream": "on", "upstream_ca": tls_certs.ca})
    mark = server.log_mark()
    ctx = tls_context(tls_certs, maximum=ssl.TLSVersion.TLSv1_2)
    name = unique_name("tls12", ".bin")
    data = os.urandom(200_000)
    with ftps_connect(Target.via(proxy, server), ctx) as ftp:
        ftp.retrlines("LIST", lambda _l: None)
        got = io.BytesIO()
        ftp.retrbinary("RETR blob.bin", got.write)
        assert sha256_bytes(got.getvalue()) == server.files["blob.bin"]
        assert ftp.storbinary(f"STOR upload/{name}", io.BytesIO(data)).startswith("226")
        again = io.BytesIO()
        ftp.retrbinary(f"RETR upload/{name}", again.write)
        assert again.getvalue() == data
        assert "small.txt" in ftp.nlst()
        ftp.quit()
    events = assert_no_violations(proxy)
    assert [e["version"] for e in events_of(events, "tls")] == ["TLSv1.2", "TLSv1.2"]
    assert_protected_data(events, resumed=True)
    assert len(events_of(events, "transfer")) == 5
    handshakes = server.ssl_debug(since=mark)
    assert len([h for h in handshakes if ", reused," in h]) >= 5, handshakes


def test_bad_tls_input_leaves_no_descriptor_or_connection_behind(vsftpd_server, make_proxy, tls_certs, tmp_path):
    """Broken handshakes (garbage, plaintext, half a ClientHello then a
    close), an injection behind AUTH, a foreign client certificate, a client
    that drops a protected transfer midway, each a few times: once they are
    gone the proxy holds the descriptors and connections it held idle."""
    from checks import proxy_fds, wait_released

    server = vsftpd_server
    proxy = ftps_proxy(make_proxy, server, tls_certs, tmp_path, tls={"ca": tls_certs.ca})
    fresh_session_works(proxy, server, tls_certs)
    wait_released(proxy, 10**6)  # the first session's connections are gone
    baseline = proxy_fds(proxy)
    for _ in range(3):
        for payload in (bytes(range(256)) * 4, b"USER x\r\nPASS y\r\n", client_hello()[:100]):
            c = RawClient.to(Target.via(proxy, server))
            assert c.cmd("AUTH TLS").code == 234
            c.sock.sendall(payload)
            if payload.startswith(b"USER"):
                read_until_closed(c.sock)
            c.close()
        c = RawClient.to(Target.via(proxy, server))
        c.send(b"AUTH TLS\r\nNOOP\r\n")
        read_until_closed(c.sock)
        c.close()
        c = TlsRawClient.to(Target.via(proxy, server))
        with pytest.raises((ssl.SSLError, ConnectionError)):
            c.auth_tls(tls_context(tls_certs, tls_certs.other_client_cert, tls_certs.other_client_key))
            c.cmd("NOOP")
        c.close()
        with TlsRawClient.to(Target.via(proxy, server)) as c:  # a protected download dropped midway
            c.auth_tls(tls_context(tls_certs))
            c.protect()
            c.login()
            assert c.cmd("TYPE I").code == 200
            d = c.wrap_data(socket.create_connection(("127.0.0.1", c.epsv()), timeout=10))
            assert c.cmd("RETR blob.bin").code in (125, 150)
            assert d.recv(65536)
            d.close()
    wait_released(proxy, baseline, timeout=10)
    fresh_session_works(proxy, server, tls_certs)


# ---------------------------------------------------------------------------
# behind a balancer: PROXY headers and TLS


def handshake_behind(sock: socket.socket, ctx: ssl.SSLContext, session, first: bytes) -> ssl.SSLObject:
    """A TLS client on `sock` whose ClientHello goes out in one write with
    `first` (a PROXY header): the proxy reads both in the same read."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(inc, out, server_hostname="127.0.0.1", session=session)
    pending = first
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            pending += out.read()
            if pending:
                sock.sendall(pending)
                pending = b""
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("closed during the handshake")
            inc.write(data)
    if out.pending:
        sock.sendall(out.read())
    tls.inc, tls.out = inc, out  # kept for read_tls
    return tls


def read_tls(sock: socket.socket, tls: ssl.SSLObject) -> bytes:
    got = b""
    while True:
        try:
            chunk = tls.read(65536)
            if not chunk:
                return got
            got += chunk
        except ssl.SSLWantReadError:
            data = sock.recv(65536)
            if not data:
                return got
            tls.inc.write(data)
        except ssl.SSLZeroReturnError:
            return got


def test_proxy_headers_in_front_of_ftps(vsftpd_server, make_proxy, tls_certs, tmp_path):
    """[listen] proxy_protocol with FTPS: the control connection's header,
    then AUTH TLS; the data connection's header and the ClientHello in one
    write (the bytes behind the header are the handshake's): the protected
    download is byte-exact and the session is the header's client."""
    server = vsftpd_server
    proxy = ftps_proxy(make_proxy, server, tls_certs, tmp_path, mode="enforce", listen={"proxy_protocol": "any"})
    ctx = tls_context(tls_certs)
    with TlsRawClient.to(Target.via(proxy, server), prefix=v1("203.0.113.7", 40000)) as c:
        c.auth_tls(ctx)
        c.protect()
        c.login()
        assert c.cmd("TYPE I").code == 200
        d = socket.create_connection(("127.0.0.1", c.epsv()), timeout=10)
        tls = handshake_behind(d, ctx, c.sock.session, v2("203.0.113.7", 40001))
        assert c.cmd("RETR blob.bin").code in (125, 150)
        data = read_tls(d, tls)
        d.close()
        assert c.reply().code == 226
        assert sha256_bytes(data) == server.files["blob.bin"]
    events = assert_no_violations(proxy)
    assert {e["client"] for e in events if "session" in e and e["session"]} == {"203.0.113.7:40000"}
    assert_protected_data(events, resumed=True)
