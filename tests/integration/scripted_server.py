"""An in-process upstream that answers each command from a table, for replies
no real server here sends."""
from __future__ import annotations

import socket


class ScriptedServer:
    """An in-process upstream that answers each command from a table.

        srv = ScriptedServer({"FEAT": b"211-Features:\\r\\n AUTH TLS\\r\\n211 End\\r\\n"}).start()

    USER is answered 331 and PASS 230 unless the table says otherwise; any
    other verb not in the table gets `default`. Every line received (bytes,
    without CRLF) is appended to `received`. No data connections.
    """

    kind = "scripted"

    def __init__(self, replies: dict[str, bytes] | None = None,
                 greeting: bytes = b"220 ftpwarden test upstream (scripted)\r\n",
                 default: bytes = b"502 Command not implemented.\r\n",
                 user: str = "scripted", password: str = "scripted-pw"):
        import threading
        self.replies = {"USER": b"331 Password required.\r\n", "PASS": b"230 Logged in.\r\n",
                        "QUIT": b"221 Bye.\r\n", "NOOP": b"200 NOOP ok.\r\n", **(replies or {})}
        self.greeting = greeting
        self.default = default
        self.user, self.password = user, password
        self.host, self.port = "127.0.0.1", 0
        self.received: list[bytes] = []
        self._lock = threading.Lock()
        self._threading = threading
        self._sock: socket.socket | None = None
        self._conns: list[socket.socket] = []

    def start(self) -> "ScriptedServer":
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self._threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self):
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            self._threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket):
        buf = b""
        try:
            conn.sendall(self.greeting)
            while True:
                while b"\r\n" not in buf:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    buf += chunk
                line, buf = buf.split(b"\r\n", 1)
                with self._lock:
                    self.received.append(line)
                verb = line.split(b" ", 1)[0].decode("latin-1").upper()
                reply = self.replies.get(verb, self.default)
                conn.sendall(reply(line) if callable(reply) else reply)
                if verb == "QUIT":
                    return
        except OSError:
            return
        finally:
            conn.close()

    def verbs(self) -> list[str]:
        with self._lock:
            return [l.split(b" ", 1)[0].decode("latin-1").upper() for l in self.received]

    def stop(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        for c in self._conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    cleanup = stop
