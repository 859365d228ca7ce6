"""FTP clients for the integration tests: curl, lftp, python ftplib, and a
raw-socket client for hand-made byte sequences.

Every client takes a `target` with .host, .port, .user, .password (an
FtpServer, or a Proxy wrapped by `Target`), so the same test runs directly
against a server or through the proxy.
"""
from __future__ import annotations

import dataclasses
import ftplib
import io
import re
import shlex
import socket
import struct
import subprocess
from pathlib import Path

CLIENT_TIMEOUT = 30  # seconds, for a whole client run


@dataclasses.dataclass
class Target:
    host: str
    port: int
    user: str
    password: str

    @classmethod
    def via(cls, proxy, server) -> "Target":
        """Login data of `server`, address of `proxy`."""
        return cls(proxy.host, proxy.port, server.user, server.password)

    @classmethod
    def direct(cls, server) -> "Target":
        return cls(server.host, server.port, server.user, server.password)


def _target(t) -> Target:
    return t if isinstance(t, Target) else Target.direct(t)


# ---------------------------------------------------------------------------
# curl

CURL_MODES = {
    # name: extra curl args
    "epsv": ["--ftp-pasv"],
    "pasv": ["--ftp-pasv", "--disable-epsv"],
    "eprt": ["-P", "-"],
    "port": ["-P", "-", "--disable-eprt"],
}


def curl(target, path: str, *args: str, mode: str = "epsv", check: bool = True,
         timeout: float = CLIENT_TIMEOUT) -> subprocess.CompletedProcess:
    """curl -sS --user U:P ftp://HOST:PORT/path ARGS... (`-v` so stderr shows the dialogue)."""
    t = _target(target)
    argv = ["curl", "-sS", "-v", "--max-time", str(int(timeout)), "--connect-timeout", "5",
            "--user", f"{t.user}:{t.password}", *CURL_MODES[mode], *args,
            f"ftp://{t.host}:{t.port}/{path.lstrip('/')}"]
    r = subprocess.run(argv, capture_output=True, timeout=timeout + 10)
    if check and r.returncode != 0:
        raise AssertionError(f"curl failed ({r.returncode}): {shlex.join(argv)}\n"
                             f"{r.stderr.decode(errors='replace')[-3000:]}")
    return r


def curl_get(target, path: str, out: Path, mode: str = "epsv", **kw) -> subprocess.CompletedProcess:
    return curl(target, path, "-o", str(out), mode=mode, **kw)


def curl_put(target, local: Path, path: str, mode: str = "epsv", **kw) -> subprocess.CompletedProcess:
    return curl(target, path, "-T", str(local), mode=mode, **kw)


def curl_list(target, path: str = "/", mode: str = "epsv", names_only: bool = False, **kw) -> str:
    """LIST (or NLST with names_only) of a directory; path must end with '/'."""
    extra = ["--list-only"] if names_only else []
    return curl(target, path, *extra, mode=mode, **kw).stdout.decode(errors="replace")


def curl_commands(stderr: bytes) -> list[str]:
    """The commands curl sent, from its -v output ("> RETR x")."""
    return [l[2:] for l in stderr.decode(errors="replace").splitlines() if l.startswith("> ")]


# ---------------------------------------------------------------------------
# lftp


def lftp(target, script: str, passive: bool = True, settings: str = "", check: bool = True,
         timeout: float = CLIENT_TIMEOUT) -> subprocess.CompletedProcess:
    """lftp -u U,P -p PORT -e 'settings; script; quit' HOST

    Fails fast (one try, 10 s net timeout) and exits non-zero when a command
    fails (cmd:fail-exit).
    """
    t = _target(target)
    pre = (f"set cmd:fail-exit yes; set net:max-retries 1; set net:timeout 10; "
           f"set net:reconnect-interval-base 1; set xfer:clobber on; "
           f"set ftp:passive-mode {'on' if passive else 'off'}; {settings}")
    argv = ["lftp", "-u", f"{t.user},{t.password}", "-p", str(t.port),
            "-e", f"{pre}; {script}; quit", t.host]
    r = subprocess.run(argv, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise AssertionError(f"lftp failed ({r.returncode}): {script}\nstdout:\n"
                             f"{r.stdout.decode(errors='replace')[-2000:]}\nstderr:\n"
                             f"{r.stderr.decode(errors='replace')[-3000:]}")
    return r


def tnftp(target, script: str, passive: bool = True, timeout: float = CLIENT_TIMEOUT) -> str:
    """tnftp (NetBSD ftp) driven on its stdin: `open`, `user`, then the script's
    lines. Returns what it printed; fails when a reply to one of the script's
    commands was 4yz/5yz (tnftp's exit status says nothing of that)."""
    t = _target(target)
    lines = [f"open {t.host} {t.port}", f"user {t.user} {t.password}",
             "passive on" if passive else "passive off", *script.splitlines(), "quit"]
    r = subprocess.run(["tnftp", "-n", "-v"], input="\n".join(lines).encode() + b"\n",
                       capture_output=True, timeout=timeout)
    out = r.stdout.decode(errors="replace")
    bad = [l for l in out.splitlines() if re.match(r"^[45]\d\d[ -]", l)]
    if r.returncode != 0 or bad:
        raise AssertionError(f"tnftp failed ({r.returncode}): {bad}\n{out[-2000:]}\n"
                             f"{r.stderr.decode(errors='replace')[-1000:]}")
    return out


# ---------------------------------------------------------------------------
# python ftplib (in-process)


class PausingFTP(ftplib.FTP):
    """ftplib.FTP that waits `pause` seconds between opening a passive data
    connection and sending the transfer command. ftplib always connects
    first; the pause makes sure the server has accepted the connection when
    the command arrives (pyftpdlib then answers 125, otherwise 150)."""

    pause = 0.0

    def sendcmd(self, cmd):
        if self.pause and self.passiveserver and cmd.split(" ", 1)[0].upper() in (
                "RETR", "STOR", "APPE", "STOU", "LIST", "NLST", "MLSD"):
            import time
            time.sleep(self.pause)
        return super().sendcmd(cmd)


def ftplib_connect(target, passive: bool = True, timeout: float = 15, pause: float = 0.0) -> ftplib.FTP:
    t = _target(target)
    ftp = PausingFTP()
    ftp.pause = pause
    ftp.connect(t.host, t.port, timeout=timeout)
    ftp.login(t.user, t.password)
    ftp.set_pasv(passive)
    return ftp


def ftplib_get(target, path: str, passive: bool = True) -> bytes:
    buf = io.BytesIO()
    with ftplib_connect(target, passive) as ftp:
        ftp.retrbinary(f"RETR {path}", buf.write)
    return buf.getvalue()


def ftplib_put(target, path: str, data: bytes, passive: bool = True) -> str:
    with ftplib_connect(target, passive) as ftp:
        return ftp.storbinary(f"STOR {path}", io.BytesIO(data))


def ftplib_nlst(target, path: str = "", passive: bool = True) -> list[str]:
    with ftplib_connect(target, passive) as ftp:
        return ftp.nlst(*([path] if path else []))


# ---------------------------------------------------------------------------
# raw socket client


@dataclasses.dataclass
class Reply:
    code: int
    lines: list[str]          # every line, without CRLF
    raw: bytes                # the exact bytes of the reply

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def __str__(self):
        return self.text


class RawClient:
    """A control connection under the test's full control.

        c = RawClient(host, port)        # reads the greeting into c.greeting
        r = c.cmd("USER x")              # sends "USER x\\r\\n", returns the Reply
        c.send(b"NO\\xff\\xf1OP\\r\\n"); r = c.reply()
    """

    def __init__(self, host: str, port: int, timeout: float = 10.0, source: str | None = None,
                 prefix: bytes = b""):
        """`source`: the local address to connect from (127.0.0.2 is loopback too);
        `prefix`: sent before the greeting is read (a PROXY header, say)."""
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.buf = b""
        if prefix:
            self.sock.sendall(prefix)
        self.greeting = self.reply()

    @classmethod
    def to(cls, target, timeout: float = 10.0, source: str | None = None, prefix: bytes = b"") -> "RawClient":
        t = _target(target)
        c = cls(t.host, t.port, timeout, source, prefix)
        c.target = t
        return c

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _line(self) -> bytes:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed (pending {self.buf!r})")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line + b"\n"

    def reply(self) -> Reply:
        """One reply; a multi-line reply ("123-" ... "123 ") is read to its end."""
        raw = self._line()
        first = raw.decode("utf-8", "replace").rstrip("\r\n")
        m = re.match(r"(\d{3})([ -])", first)
        if not m:
            raise ValueError(f"not an FTP reply line: {first!r}")
        lines = [first]
        if m.group(2) == "-":
            end = m.group(1) + " "
            while True:
                b = self._line()
                raw += b
                s = b.decode("utf-8", "replace").rstrip("\r\n")
                lines.append(s)
                if s.startswith(end):
                    break
        return Reply(int(m.group(1)), lines, raw)

    def cmd(self, line: str | bytes) -> Reply:
        data = line if isinstance(line, bytes) else line.encode("utf-8")
        self.send(data + b"\r\n")
        return self.reply()

    def login(self, user: str | None = None, password: str | None = None) -> Reply:
        user = user or self.target.user
        password = password or self.target.password
        r = self.cmd(f"USER {user}")
        assert r.code == 331, r
        r = self.cmd(f"PASS {password}")
        assert r.code == 230, r
        return r

    def pasv(self) -> tuple[str, int]:
        r = self.cmd("PASV")
        assert r.code == 227, r
        m = re.search(r"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)", r.lines[0])
        h = ".".join(m.group(i) for i in range(1, 5))
        return h, int(m.group(5)) * 256 + int(m.group(6))

    def epsv(self) -> int:
        r = self.cmd("EPSV")
        assert r.code == 229, r
        m = re.search(r"\(\|\|\|(\d+)\|\)", r.lines[0])
        return int(m.group(1))

    def data_connect(self, epsv: bool = True, timeout: float = 10.0) -> socket.socket:
        """Sets up a passive data connection and connects it (before the transfer command)."""
        if epsv:
            host, port = self.sock.getpeername()[0], self.epsv()
        else:
            host, port = self.pasv()
        return socket.create_connection((host, port), timeout=timeout)

    def quit(self) -> Reply | None:
        try:
            return self.cmd("QUIT")
        except (OSError, ValueError):
            return None
        finally:
            self.close()


def recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        c = sock.recv(65536)
        if not c:
            break
        chunks.append(c)
    sock.close()
    return b"".join(chunks)


# PROXY protocol headers a client sends first (as a balancer would).

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(src: str, sport: int, dst: str = "127.0.0.1", dport: int = 21) -> bytes:
    return f"PROXY TCP4 {src} {dst} {sport} {dport}\r\n".encode()


def v2(src: str, sport: int, dst: str = "127.0.0.1", dport: int = 21, cmd: int = 0x21) -> bytes:
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport) if cmd == 0x21 else b""
    return V2_SIG + bytes([cmd, 0x11 if cmd == 0x21 else 0]) + struct.pack("!H", len(body)) + body
