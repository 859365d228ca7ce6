#!/usr/bin/python3
"""Sample sessions through ftpwarden in front of two real servers (see demo.sh):
vsftpd, which always opens a new data connection (150), and pyftpdlib, which
answers 125 when the data connection is already open. The proxy in front of
vsftpd also terminates FTPS (a throwaway certificate): one download goes over
TLS to the proxy and plain FTP to vsftpd. Ends with a summary of both audit
logs, each line pointing into the log it counts."""
import collections
import ftplib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "deploy" / "lab"))
from ftp_server import FTP_USER  # noqa: E402
from proxy_process import Proxy  # noqa: E402
from server_pyftpdlib import PyftpdServer  # noqa: E402
from server_vsftpd import VsftpdServer, find_vsftpd  # noqa: E402

mode = sys.argv[1] if len(sys.argv) > 1 else "enforce"
binary = os.environ.get("FTPWARDEN_BIN", str(REPO / "build/release/proxy/ftpwarden"))
password = "demo-pw-" + os.urandom(4).hex()


def shown(url: str) -> str:
    return url.replace(password, "****")


def throwaway_certificate(d: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl CLI), valid a day."""
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def vsftpd_session(proxy, vs, cert: Path) -> None:
    """curl: a listing, a download, an upload, an FTPS download; ftplib: two
    out-of-sequence commands."""
    url = f"ftp://{FTP_USER}:{password}@127.0.0.1:{proxy.port}"
    print("$ curl -s " + shown(url) + "/")
    print(subprocess.run(["curl", "-sS", url + "/"], capture_output=True, text=True).stdout)
    print("$ curl -s " + shown(url) + "/hello.txt")
    print(subprocess.run(["curl", "-sS", url + "/hello.txt"], capture_output=True, text=True).stdout)
    up = Path(tempfile.mkdtemp()) / "upload.txt"
    up.write_text("uploaded through ftpwarden\n")
    print("$ curl -s -T upload.txt " + shown(url) + "/upload.txt")
    subprocess.run(["curl", "-sS", "-T", str(up), url + "/upload.txt"], check=True)
    print("server received:", (vs.root / "upload.txt").read_text())
    print(f"$ curl -s --ssl-reqd --cacert {cert.name} " + shown(url) + "/hello.txt   # FTPS to the proxy, plain FTP to vsftpd")
    print(subprocess.run(["curl", "-sS", "--ssl-reqd", "--cacert", str(cert), url + "/hello.txt"],
                         capture_output=True, text=True).stdout)
    print("$ python3 ftplib: RNTO without RNFR, then RETR without PASV/PORT")
    f = ftplib.FTP()
    f.connect("127.0.0.1", proxy.port, timeout=10)
    f.login(FTP_USER, password)
    for cmd in ("RNTO nowhere.txt", "RETR hello.txt"):
        try:
            print(f"  {cmd} -> {f.sendcmd(cmd)}")
        except ftplib.Error as e:
            print(f"  {cmd} -> {e}")
    f.quit()


def pyftpdlib_session(proxy) -> None:
    """ftplib: a passive data connection opened and given time to be accepted
    before RETR (the server answers 125 and reuses it), then an ordinary RETR."""
    print("$ python3 ftplib: PASV, connect, RETR hello.txt once the server has the connection")
    f = ftplib.FTP()
    f.connect("127.0.0.1", proxy.port, timeout=10)
    f.login(FTP_USER, password)
    f.voidcmd("TYPE I")
    host, port = ftplib.parse227(f.sendcmd("PASV"))
    data = socket.create_connection((host, port), timeout=10)
    time.sleep(0.3)  # let pyftpdlib accept the proxy's data connection first
    print("  RETR hello.txt ->", f.sendcmd("RETR hello.txt"))
    got = b""
    while chunk := data.recv(65536):
        got += chunk
    data.close()
    print("  ", f.voidresp(), f"({len(got)} bytes: {got.decode().strip()!r})")
    print("$ python3 ftplib: retrbinary('RETR hello.txt')")
    buf = []
    print("  ", f.retrbinary("RETR hello.txt", buf.append))
    f.quit()


def summary(logs: dict) -> None:
    """What a person reads first: counts, and where in which log to look."""
    sessions, commands = 0, 0
    transfers = collections.Counter()
    first = {}
    found = collections.Counter()
    for label, path in logs.items():
        for n, line in enumerate(path.read_text().splitlines(), 1):
            e = json.loads(line)
            where = f"{path}:{n}"
            ev = e["event"]
            if ev == "session_open":
                sessions += 1
            elif ev == "command":
                commands += 1
            elif ev == "tls":
                found[("tls", f"{e['side']} {e['version']}", e["cipher"])] += 1
                first.setdefault(("tls", f"{e['side']} {e['version']}", e["cipher"]), where)
            elif ev == "transfer":
                transfers[e["data_conn"]] += 1
                first.setdefault(("transfer", e["data_conn"]), where)
            elif ev == "reply" and e.get("annotation"):
                found[("125 annotated", e["annotation"], label)] += 1
                first.setdefault(("125 annotated", e["annotation"], label), where)
            elif ev in ("violation", "server_finding"):
                key = (ev, e["rule"], e["action"])
                found[key] += 1
                first.setdefault(key, where)
    print("\n=== summary ===")
    print(f"sessions: {sessions}   commands: {commands}")
    print(f"transfers: {sum(transfers.values())} (new {transfers['new']}, reused {transfers['reused']})")
    for kind in ("new", "reused"):
        if ("transfer", kind) in first:
            print(f"  first {kind:6} -> {first[('transfer', kind)]}")
    for kind, title in (("125 annotated", "125 replies annotated"), ("tls", "TLS handshakes"), ("violation", "violations"),
                        ("server_finding", "server findings")):
        rows = sorted((k, n) for k, n in found.items() if k[0] == kind)
        print(f"{title}: {sum(n for _, n in rows) or 'none'}")
        for key, count in rows:
            print(f"  {key[1]} ({key[2]}) x{count} -> {first[key]}")


vs = VsftpdServer(FTP_USER, password, find_vsftpd())
py = PyftpdServer(FTP_USER, password)
for srv in (vs, py):
    (srv.root / "hello.txt").write_text("hello through ftpwarden\n")
vs.start()
py.start()
cert, key = throwaway_certificate(Path(tempfile.mkdtemp(prefix="ftpw-demo-tls-")))
tls_flags = ["--tls-cert", str(cert), "--tls-key", str(key), "--tls-client", "optional"]
proxies = {"vsftpd": Proxy(binary, vs, mode=mode, extra_args=tls_flags), "pyftpdlib": Proxy(binary, py, mode=mode)}
try:
    for p in proxies.values():
        p.start()
    print(f"vsftpd on 127.0.0.1:{vs.port}, pyftpdlib on 127.0.0.1:{py.port}")
    for name, p in proxies.items():
        print(f"ftpwarden in front of {name}: {' '.join(p.argv())}")
    print("\n##### through ftpwarden to vsftpd\n")
    vsftpd_session(proxies["vsftpd"], vs, cert)
    print("\n##### through ftpwarden to pyftpdlib\n")
    pyftpdlib_session(proxies["pyftpdlib"])
    for p in proxies.values():
        p.settle(5.0)  # every session closed and its events flushed
    for name, p in proxies.items():
        print(f"\n--- audit log, ftpwarden in front of {name} ({p.audit_path}) ---")
        for line in p.audit_text().splitlines():
            print(line)
    summary({name: p.audit_path for name, p in proxies.items()})
finally:
    for p in proxies.values():
        p.stop()
    vs.stop()
    py.stop()
    shutil.rmtree(cert.parent, ignore_errors=True)
