"""pyftpdlib as a test upstream (pyftpd_server.py under /usr/bin/python3)."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from ftp_server import HERE, SYSTEM_PYTHON, FtpServer, LogEntry
from ports import release_range, reserve_range, wait_for_greeting


class PyftpdServer(FtpServer):
    kind = "pyftpdlib"
    logs_password = True  # pyftpd_server.py logs every line as received

    def __init__(self, user: str, password: str, base: Path | None = None, tls_cert: Path | None = None,
                 tls_key: Path | None = None, tls_control_required: bool = False, tls_data_required: bool = False):
        """With `tls_cert`: explicit FTPS (TLS_FTPHandler); the *_required
        flags refuse USER/PASS before AUTH and PASV/PORT before PROT P."""
        super().__init__(user, password, base)
        self.tls_cert, self.tls_key = tls_cert, tls_key
        self.tls_control_required, self.tls_data_required = tls_control_required, tls_data_required

    def _tls_args(self) -> list[str]:
        if not self.tls_cert:
            return []
        return (["--tls-cert", str(self.tls_cert)] + (["--tls-key", str(self.tls_key)] if self.tls_key else []) +
                (["--tls-control-required"] if self.tls_control_required else []) +
                (["--tls-data-required"] if self.tls_data_required else []))

    # 2025-01-01T00:00:00.000000 127.0.0.1:40512 <- RETR small.txt
    _LINE = re.compile(r"^\S+ (\S+) (<-|->) ?(.*)$")

    def start(self, tries: int = 5) -> "PyftpdServer":
        last = ""
        for _ in range(tries):
            release_range(self.pasv_range)
            self.pasv_range = reserve_range(10000, 19999, count=self.pasv_ports)
            out = open(self.stdout_path, "wb")
            self.proc = subprocess.Popen(
                [SYSTEM_PYTHON, str(HERE / "pyftpd_server.py"), "--root", str(self.root),
                 "--user", self.user, "--password", self.password, "--log", str(self.log),
                 "--port", "0", "--passive-ports", "%d-%d" % self.pasv_range, *self._tls_args()],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=out, start_new_session=True)
            out.close()
            line = self.proc.stdout.readline().decode(errors="replace")
            m = re.match(r"READY (\d+)", line)
            if m:
                self.port = int(m.group(1))
                self.proc.stdout.close()
                wait_for_greeting(self.port, timeout=5, proc=self.proc)
                return self
            last = line + self.stdout_path.read_text(errors="replace")[-500:]
            self.stop()
        raise RuntimeError(f"pyftpdlib server did not start: {last}")

    def entries(self, since: int = 0) -> list[LogEntry]:
        out = []
        for line in self.log_text(since).splitlines():
            m = self._LINE.match(line)
            if m:
                out.append(LogEntry(m.group(1), "command" if m.group(2) == "<-" else "reply", m.group(3)))
        return out
