"""The test servers and the proxy under test, gathered for the tests' imports:

- VsftpdServer, PyftpdServer and the FtpServer base they share, the Proxy
  launcher, and the helpers they stand on (ports, processes, trees) live in
  deploy/lab/, where the demo uses them too;
- ProftpdServer and PureftpdServer (server_proftpd.py, server_pureftpd.py)
  for the matrix, and ScriptedServer (scripted_server.py, an in-process
  upstream) are the tests' own.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy" / "lab"))

from ftp_server import (FTP_PASSWORD, FTP_USER, HERE, REPO, SYSTEM_PYTHON, FtpServer, LogEntry,  # noqa: E402,F401
                        in_private_mounts, sha512_crypt)
from ports import free_port, free_port_range, port_is_free, wait_for_greeting  # noqa: E402,F401
from processes import descendants, kill_tree  # noqa: E402,F401
from proxy_process import LISTEN_RE, Proxy, find_proxy_binary  # noqa: E402,F401
from scripted_server import ScriptedServer  # noqa: E402,F401
from server_pyftpdlib import PyftpdServer  # noqa: E402,F401
from server_vsftpd import PAM_SERVICE, VSFTPD_UID, VsftpdServer, find_vsftpd, private_etc  # noqa: E402,F401
from trees import populate_tree, sha256_bytes, sha256_file  # noqa: E402,F401

__all__ = ["FTP_PASSWORD", "FTP_USER", "HERE", "REPO", "SYSTEM_PYTHON", "FtpServer", "LogEntry", "in_private_mounts",
           "sha512_crypt", "free_port", "free_port_range", "port_is_free", "wait_for_greeting", "descendants",
           "kill_tree", "LISTEN_RE", "Proxy", "find_proxy_binary", "ScriptedServer", "PyftpdServer", "PAM_SERVICE",
           "VSFTPD_UID", "VsftpdServer", "find_vsftpd", "private_etc", "populate_tree", "sha256_bytes", "sha256_file"]
