#!/usr/bin/python3
"""Sample session through ftpwarden in front of vsftpd (see demo.sh)."""
import ftplib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))
import servers  # noqa: E402

mode = sys.argv[1] if len(sys.argv) > 1 else "enforce"
binary = os.environ.get("FTPWARDEN_BIN", str(REPO / "build/release/proxy/ftpwarden"))
password = "demo-pw-" + os.urandom(4).hex()
vs = servers.VsftpdServer(servers.FTP_USER, password, servers.find_vsftpd())
(vs.root / "hello.txt").write_text("hello through ftpwarden\n")
vs.start()
proxy = servers.Proxy(binary, vs, mode=mode)
proxy.start()
url = f"ftp://{servers.FTP_USER}:{password}@127.0.0.1:{proxy.port}"
try:
    print(f"vsftpd on 127.0.0.1:{vs.port}; proxy: {' '.join(proxy.argv())}\n")
    print("$ curl -s " + url.replace(password, "****") + "/")
    print(subprocess.run(["curl", "-sS", url + "/"], capture_output=True, text=True).stdout)
    print("$ curl -s " + url.replace(password, "****") + "/hello.txt")
    print(subprocess.run(["curl", "-sS", url + "/hello.txt"], capture_output=True, text=True).stdout)
    up = Path(tempfile.mkdtemp()) / "upload.txt"
    up.write_text("uploaded through ftpwarden\n")
    print("$ curl -s -T upload.txt " + url.replace(password, "****") + "/upload.txt")
    subprocess.run(["curl", "-sS", "-T", str(up), url + "/upload.txt"], check=True)
    print("server received:", (vs.root / "upload.txt").read_text())
    print("$ python3 ftplib: RNTO without RNFR, then RETR without PASV/PORT")
    f = ftplib.FTP()
    f.connect("127.0.0.1", proxy.port, timeout=10)
    f.login(servers.FTP_USER, password)
    for cmd in ("RNTO nowhere.txt", "RETR hello.txt"):
        try:
            print(f"  {cmd} -> {f.sendcmd(cmd)}")
        except ftplib.Error as e:
            print(f"  {cmd} -> {e}")
    f.quit()
    time.sleep(1.2)  # the audit log is flushed within a second
    print(f"\n--- audit log ({proxy.audit_path}) ---")
    for line in proxy.audit_text().splitlines():
        print(line)
    vio = [e for e in proxy.audit() if e.get("event") == "violation"]
    print(f"\n{len(vio)} violation(s): " + ", ".join(f"{e['rule']} ({e['action']})" for e in vio))
finally:
    proxy.stop()
    vs.stop()
