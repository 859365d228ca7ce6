#!/usr/bin/python3
"""A pyftpdlib upstream server for the integration tests.

Run with the Debian Python (/usr/bin/python3, python3-pyftpdlib):

    pyftpd_server.py --root DIR --user U --password P --log FILE
                     [--port N] [--passive-ports LO-HI]
                     [--tls-cert PEM [--tls-key PEM] [--tls-control-required]
                      [--tls-data-required]]

With --tls-cert it is an explicit FTPS server (pyftpdlib's TLS_FTPHandler,
python3-openssl): AUTH TLS/SSL, PBSZ, PROT; --tls-control-required refuses
USER/PASS before AUTH (550), --tls-data-required refuses PASV/EPSV/PORT/EPRT
before PROT P (550). The protocol log holds the commands as decrypted.

Every control line the server receives is written to --log exactly as it
arrived (non-UTF-8 bytes as \\xNN escapes, the PASS argument included) and
every reply line it sends:

    2025-01-01T00:00:00.000000 127.0.0.1:40512 <- RETR small.txt
    2025-01-01T00:00:00.000100 127.0.0.1:40512 -> 150 File status okay. ...

When the server listens it prints `READY <port>` on stdout. --port 0 (the
default) lets the kernel choose the port.
"""
import argparse
import datetime
import signal
import sys

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer


class ProtocolLog:
    """Mixed into a handler class: logs every line received and sent."""

    protocol_log = None  # set in main()

    def _plog(self, direction, text):
        ts = datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%S.%f")
        peer = "%s:%s" % (self.remote_ip, self.remote_port)
        self.protocol_log.write("%s %s %s %s\n" % (ts, peer, direction, text))
        self.protocol_log.flush()

    def found_terminator(self):
        raw = b"".join(self._in_buffer)
        self._plog("<-", raw.decode("utf-8", "backslashreplace"))
        super().found_terminator()

    def push(self, data):
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        for line in text.split("\r\n"):
            if line:
                self._plog("->", line)
        super().push(data)


class LoggingHandler(ProtocolLog, FTPHandler):
    pass


def tls_handler(certfile: str, keyfile: str, control_required: bool, data_required: bool):
    """A logging TLS_FTPHandler (imported only here: python3-openssl is
    needed only for FTPS)."""
    from pyftpdlib.handlers import TLS_FTPHandler

    class LoggingTLSHandler(ProtocolLog, TLS_FTPHandler):
        pass

    LoggingTLSHandler.certfile = certfile
    LoggingTLSHandler.keyfile = keyfile or certfile
    LoggingTLSHandler.tls_control_required = control_required
    LoggingTLSHandler.tls_data_required = data_required
    return LoggingTLSHandler


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--passive-ports", default="")
    ap.add_argument("--tls-cert", default="")
    ap.add_argument("--tls-key", default="")
    ap.add_argument("--tls-control-required", action="store_true")
    ap.add_argument("--tls-data-required", action="store_true")
    args = ap.parse_args()

    authorizer = DummyAuthorizer()
    authorizer.add_user(args.user, args.password, args.root, perm="elradfmwMT")
    handler = LoggingHandler
    if args.tls_cert:
        handler = tls_handler(args.tls_cert, args.tls_key, args.tls_control_required, args.tls_data_required)
    handler.protocol_log = open(args.log, "a", encoding="utf-8")
    handler.authorizer = authorizer
    handler.banner = "ftpwarden test upstream (pyftpdlib%s)" % (", FTPS" if args.tls_cert else "")
    handler.timeout = 120
    # A legacy server: path bytes that are not UTF-8 (Latin-1 names) pass
    # through unchanged instead of turning into U+FFFD.
    handler.unicode_errors = "surrogateescape"
    if args.passive_ports:
        lo, hi = (int(x) for x in args.passive_ports.split("-"))
        handler.passive_ports = list(range(lo, hi + 1))

    server = FTPServer((args.host, args.port), handler)
    server.max_cons = 256
    server.max_cons_per_ip = 0

    def on_term(signum, frame):
        server.close_all()
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    print("READY %d" % server.address[1], flush=True)
    try:
        server.serve_forever(handle_exit=False)
    finally:
        server.close_all()


if __name__ == "__main__":
    main()
