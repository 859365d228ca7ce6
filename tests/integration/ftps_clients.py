"""FTPS clients for test_ftps.py: curl (explicit and implicit), lftp
settings, Python ftplib.FTP_TLS with and without session resumption on its
data connections, and a raw-socket client that can turn TLS on after 234.

Each takes a `target` (.host, .port, .user, .password, as in clients.py) and
a TlsCerts (tls_certs.py) whose CA verifies the proxy's certificate: every
client here checks the certificate against 127.0.0.1, none runs with -k.
"""
from __future__ import annotations

import ftplib
import io
import re
import shlex
import socket
import ssl
import subprocess

from clients import CLIENT_TIMEOUT, RawClient, Reply, _target, recv_all


def tls_context(certs, client_cert=None, client_key=None, minimum=None, maximum=None) -> ssl.SSLContext:
    """A client context trusting only the test CA, checking the host name
    (an IP SAN for 127.0.0.1); `client_cert`: present it when asked."""
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    if client_cert:
        ctx.load_cert_chain(str(client_cert), str(client_key))
    if minimum:
        ctx.minimum_version = minimum
    if maximum:
        ctx.maximum_version = maximum
    return ctx


# ---------------------------------------------------------------------------
# curl


def curl_ftps(target, path: str, *args: str, certs, implicit: bool = False, passive: bool = True,
              check: bool = True, timeout: float = CLIENT_TIMEOUT) -> subprocess.CompletedProcess:
    """curl -v over FTPS: explicit (`ftp://` with --ssl-reqd: AUTH, then PBSZ 0
    and PROT P) or implicit (`ftps://`: TLS from the first byte, PBSZ/PROT
    still sent). Passive is EPSV; active is `-P 127.0.0.1` (EPRT)."""
    t = _target(target)
    scheme = "ftps" if implicit else "ftp"
    mode = ["--ftp-pasv"] if passive else ["-P", "127.0.0.1"]
    argv = ["curl", "-sS", "-v", "--max-time", str(int(timeout)), "--connect-timeout", "5",
            "--user", f"{t.user}:{t.password}", "--cacert", str(certs.ca), *([] if implicit else ["--ssl-reqd"]),
            *mode, *args, f"{scheme}://{t.host}:{t.port}/{path.lstrip('/')}"]
    r = subprocess.run(argv, capture_output=True, timeout=timeout + 10)
    if check and r.returncode != 0:
        raise AssertionError(f"curl failed ({r.returncode}): {shlex.join(argv)}\n"
                             f"{r.stderr.decode(errors='replace')[-3000:]}")
    return r


def curl_version() -> tuple[int, int, int]:
    out = subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout
    m = re.match(r"curl (\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(x) for x in m.groups()) if m else (0, 0, 0)


# ---------------------------------------------------------------------------
# lftp


def lftp_tls_settings(certs) -> str:
    """lftp (GnuTLS) settings for FTPS: AUTH TLS always, PROT P for every
    data connection (listings too), the certificate checked against the test
    CA and the host name."""
    return (f"set ftp:ssl-force true; set ftp:ssl-protect-data true; set ftp:ssl-protect-list true; "
            f"set ssl:verify-certificate yes; set ssl:check-hostname yes; set ssl:ca-file {certs.ca}")


# ---------------------------------------------------------------------------
# python ftplib


class ResumingFTP_TLS(ftplib.FTP_TLS):
    """ftplib.FTP_TLS whose protected data connections resume the control
    connection's TLS session, as curl, lftp and FileZilla do and as vsftpd's
    require_ssl_reuse (and the proxy's require_session_reuse) demand: the
    stock class wraps the data socket with a fresh handshake."""

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size


def ftps_connect(target, ctx: ssl.SSLContext, resume: bool = True, passive: bool = True, prot_p: bool = True,
                 timeout: float = 15) -> ftplib.FTP_TLS:
    """Connected, AUTH TLS, logged in, PBSZ 0 + PROT P (unless prot_p is False)."""
    t = _target(target)
    ftp = (ResumingFTP_TLS if resume else ftplib.FTP_TLS)(context=ctx, timeout=timeout)
    ftp.connect(t.host, t.port)
    ftp.auth()
    ftp.login(t.user, t.password)
    if prot_p:
        ftp.prot_p()
    ftp.set_pasv(passive)
    return ftp


def ftps_get(ftp: ftplib.FTP, path: str) -> bytes:
    buf = io.BytesIO()
    ftp.retrbinary(f"RETR {path}", buf.write)
    return buf.getvalue()


# ---------------------------------------------------------------------------
# raw socket client


class TlsRawClient(RawClient):
    """RawClient that turns TLS on after a 234 (or from the first byte,
    `implicit`), and wraps data connections in TLS resuming the control
    connection's session (or not, `resume=False`).

        c = TlsRawClient.to(target)
        c.auth_tls(ctx)                 # AUTH TLS, 234, handshake
        c.protect()                     # PBSZ 0, PROT P
        c.login(); data = c.retr("small.txt")
    """

    ctx: ssl.SSLContext | None = None

    @classmethod
    def implicit(cls, target, ctx: ssl.SSLContext, timeout: float = 10.0) -> "TlsRawClient":
        """Implicit FTPS: the handshake first, then the greeting, inside TLS."""
        t = _target(target)
        c = cls.__new__(cls)
        raw = socket.create_connection((t.host, t.port), timeout=timeout)
        c.sock = ctx.wrap_socket(raw, server_hostname=t.host)
        c.ctx = ctx
        c.buf = b""
        c.target = t
        c.greeting = c.reply()
        return c

    def auth_tls(self, ctx: ssl.SSLContext, arg: str = "TLS") -> Reply:
        r = self.cmd(f"AUTH {arg}")
        assert r.code == 234, r
        assert self.buf == b"", f"bytes after the 234, before the handshake: {self.buf!r}"
        self.sock = ctx.wrap_socket(self.sock, server_hostname=self.sock.getpeername()[0])
        self.ctx = ctx
        return r

    def protect(self) -> None:
        r = self.cmd("PBSZ 0")
        assert r.code == 200, r
        r = self.cmd("PROT P")
        assert r.code == 200, r

    def wrap_data(self, sock: socket.socket, resume: bool = True) -> ssl.SSLSocket:
        """The client is the TLS client on every data connection (RFC 4217 §7)."""
        return self.ctx.wrap_socket(sock, server_hostname=self.sock.getpeername()[0],
                                    session=self.sock.session if resume else None)

    def retr(self, path: str, protected: bool = True, epsv: bool = True, resume: bool = True) -> bytes:
        """TYPE I, EPSV (PASV), connect, RETR, then the handshake once the
        125/150 is in (ftplib's order; curl shakes hands before the RETR),
        read to the end, 226."""
        assert self.cmd("TYPE I").code == 200
        d = self.data_connect(epsv=epsv)
        r = self.cmd(f"RETR {path}")
        assert r.code in (125, 150), r
        if protected:
            d = self.wrap_data(d, resume)
        data = read_to_end(d)
        r = self.reply()
        assert r.code == 226, r
        return data

    def nlst(self, path: str = "", protected: bool = True) -> list[str]:
        d = self.data_connect(epsv=True)
        r = self.cmd(f"NLST {path}".rstrip())
        assert r.code in (125, 150), r
        if protected:
            d = self.wrap_data(d)
        data = read_to_end(d)
        r = self.reply()
        assert r.code == 226, r
        return data.decode().split()


# Everything up to EOF, then closed (a TLS socket: up to the peer's
# close_notify, which the proxy must send: a bare FIN raises SSLEOFError).
read_to_end = recv_all


def read_until_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """What arrives until the peer closes (a reset counts as closed); fails
    when the connection is still open after `timeout`."""
    sock.settimeout(timeout)
    got = b""
    try:
        while True:
            c = sock.recv(65536)
            if not c:
                return got
            got += c
    except (ConnectionResetError, ssl.SSLError):
        return got
    except socket.timeout:
        raise AssertionError(f"still open after {timeout}s; received {got[:200]!r}")


def client_hello(host: str = "127.0.0.1") -> bytes:
    """The first flight of a real TLS client (a ClientHello record), made
    with a memory BIO (no connection)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=host)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()
