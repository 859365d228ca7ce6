"""The test servers and the proxy under test, gathered for the tests' imports:

- VsftpdServer (server_vsftpd.py), PyftpdServer (server_pyftpdlib.py), and
  in the matrix ProftpdServer and PureftpdServer (server_proftpd.py,
  server_pureftpd.py), each on their FtpServer base (ftp_server.py);
- Proxy (proxy_process.py): the ftpwarden binary in front of one of them;
- ScriptedServer (scripted_server.py): an in-process upstream;
- ports.py, processes.py, trees.py: the helpers they stand on.
"""
from ftp_server import (FTP_PASSWORD, FTP_USER, HERE, REPO, SYSTEM_PYTHON, FtpServer, LogEntry,  # noqa: F401
                        in_private_mounts, sha512_crypt)
from ports import free_port, free_port_range, port_is_free, wait_for_greeting  # noqa: F401
from processes import descendants, kill_tree  # noqa: F401
from proxy_process import LISTEN_RE, Proxy, find_proxy_binary  # noqa: F401
from scripted_server import ScriptedServer  # noqa: F401
from server_pyftpdlib import PyftpdServer  # noqa: F401
from server_vsftpd import PAM_SERVICE, VSFTPD_UID, VsftpdServer, find_vsftpd, private_etc  # noqa: F401
from trees import populate_tree, sha256_bytes, sha256_file  # noqa: F401

__all__ = ["FTP_PASSWORD", "FTP_USER", "HERE", "REPO", "SYSTEM_PYTHON", "FtpServer", "LogEntry", "in_private_mounts",
           "sha512_crypt", "free_port", "free_port_range", "port_is_free", "wait_for_greeting", "descendants",
           "kill_tree", "LISTEN_RE", "Proxy", "find_proxy_binary", "ScriptedServer", "PyftpdServer", "PAM_SERVICE",
           "VSFTPD_UID", "VsftpdServer", "find_vsftpd", "private_etc", "populate_tree", "sha256_bytes", "sha256_file"]
