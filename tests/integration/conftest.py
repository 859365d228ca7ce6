"""Fixtures for the ftpwarden integration tests.

Session-scoped upstream servers (vsftpd and pyftpdlib, each with small.txt,
a random 1 MiB blob.bin, a tree/ for mirroring and an upload/ dir), and
function-scoped proxies in front of them. Run from the repository root:

    /usr/bin/python3 -m pytest tests/integration

Environment: FTPWARDEN_BIN (the proxy binary; default build/release/proxy/
ftpwarden, then build/proxy/ftpwarden), VSFTPD (the vsftpd binary).
"""
from __future__ import annotations

import os
import secrets
import signal
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy" / "lab"))

from clients import Target  # noqa: E402
from servers import (FTP_PASSWORD, FTP_USER, Proxy, PyftpdServer, ScriptedServer, VsftpdServer,  # noqa: E402
                     find_proxy_binary, find_vsftpd, populate_tree, sha256_bytes, sha256_file)
from server_proftpd import ProftpdServer, find_proftpd  # noqa: E402
from server_pureftpd import PureftpdServer, find_pureftpd  # noqa: E402
from sharding import pytest_collection_modifyitems  # noqa: E402,F401 - FTPW_SHARD=I/N: this process's share

SERVER_KINDS = ["vsftpd", "pyftpdlib"]


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config):
    # `timeout 600 pytest ...` sends SIGTERM: turn it into an interrupt so
    # the fixtures' finalizers still stop the servers and proxies.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _sigterm_as_interrupt)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # lets fixtures see whether the test failed (to dump proxy logs on teardown)
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture(scope="session")
def ftp_password() -> str:
    """A distinctive password, so a leak into any log is easy to spot."""
    return FTP_PASSWORD


def _served(srv):
    """`srv` with the test tree, started, for a session-scoped fixture; cleaned up after."""
    try:
        srv.files = populate_tree(srv.root)
        srv.start()
        yield srv
    finally:
        srv.cleanup()


def _vsftpd(password: str, **options):
    """A vsftpd with its own tree, for a session-scoped fixture (skips where it cannot run)."""
    binary = find_vsftpd()
    if binary is None:
        pytest.skip("vsftpd not found (command -v vsftpd, /usr/sbin/vsftpd, /opt/ftpsrv/vsftpd/usr/sbin/vsftpd)")
    if os.geteuid() != 0:
        pytest.skip("vsftpd tests need root (a private mount namespace, a root-owned config)")
    yield from _served(VsftpdServer(FTP_USER, password, binary, **options))


@pytest.fixture(scope="session")
def vsftpd_server(ftp_password):
    yield from _vsftpd(ftp_password)


@pytest.fixture(scope="session")
def pyftpdlib_server(ftp_password):
    yield from _served(PyftpdServer(FTP_USER, ftp_password))


def unpacked_server(cls, binary: str | None, name: str, why_root: str, password: str):
    """A matrix server unpacked under /opt/ftpsrv by deploy/install-deps.sh:
    skipped without root, a failure when missing (the test command installs it)."""
    if os.geteuid() != 0:
        pytest.skip(f"{name} tests need root ({why_root})")
    if binary is None:
        pytest.fail(f"{name} not found: deploy/install-deps.sh unpacks it under /opt/ftpsrv/{name}")
    srv = cls(FTP_USER, password, binary)
    try:
        srv.start()
        yield srv
    finally:
        srv.cleanup()


@pytest.fixture(scope="session")
def proftpd_server(ftp_password):
    yield from unpacked_server(ProftpdServer, find_proftpd(), "proftpd", "it runs sessions as nobody", ftp_password)


@pytest.fixture(scope="session")
def pureftpd_server(ftp_password):
    yield from unpacked_server(PureftpdServer, find_pureftpd(), "pure-ftpd",
                               "a private mount namespace for its syslog", ftp_password)


@pytest.fixture(params=SERVER_KINDS)
def server(request):
    """Each test using it runs once against vsftpd and once against pyftpdlib."""
    return request.getfixturevalue(f"{request.param}_server")


@pytest.fixture
def scripted_server():
    """Factory: scripted_server({"FEAT": b"211-..."}) -> a started ScriptedServer."""
    made = []

    def make(replies=None, **kw):
        s = ScriptedServer(replies, **kw).start()
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


@pytest.fixture(scope="session")
def proxy_bin() -> str:
    b = find_proxy_binary()
    if b is None or not os.path.isfile(b):
        pytest.fail("ftpwarden binary not found: build it (cmake --preset release && cmake --build "
                    "--preset release) or set FTPWARDEN_BIN", pytrace=False)
    return b


@pytest.fixture
def make_proxy(request, proxy_bin):
    """Factory: make_proxy(upstream, mode="audit", extra_args=()) -> a started Proxy.

    On teardown each proxy gets SIGTERM and must exit 0; when the test failed,
    its stderr and audit log are printed (shown in the report)."""
    made: list[Proxy] = []

    def make(upstream, mode: str = "audit", extra_args=(), **kw) -> Proxy:
        p = Proxy(proxy_bin, upstream, mode=mode, extra_args=extra_args, **kw)
        made.append(p)
        return p.start()

    yield make

    problems = []
    for p in made:
        crashed = p.proc is not None and p.proc.poll() is not None
        rc = p.stop()
        failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
        if crashed:
            problems.append(f"{p!r} died during the test (status {rc})")
        elif rc not in (0, None) and not failed:
            # (after a failed test a session may still be open: not news)
            problems.append(f"{p!r} exited with status {rc} on SIGTERM")
        if failed or crashed or rc not in (0, None):
            print(f"--- {p!r} argv: {' '.join(p.argv())}")
            print(f"--- stderr:\n{p.stderr()[-6000:]}")
            print(f"--- audit log:\n{p.audit_text()[-8000:]}")
        p.cleanup()
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture
def audit_proxy(server, make_proxy) -> Proxy:
    return make_proxy(server, mode="audit")


@pytest.fixture
def enforce_proxy(server, make_proxy) -> Proxy:
    return make_proxy(server, mode="enforce")


@pytest.fixture
def via_audit(audit_proxy, server) -> Target:
    """Where a client connects to reach `server` through the audit-mode proxy."""
    return Target.via(audit_proxy, server)


@pytest.fixture
def via_enforce(enforce_proxy, server) -> Target:
    return Target.via(enforce_proxy, server)


@pytest.fixture
def sha256():
    """sha256(path_or_bytes) -> hex digest."""
    def h(x):
        return sha256_bytes(x) if isinstance(x, (bytes, bytearray)) else sha256_file(x)
    return h


@pytest.fixture
def unique_name(request):
    """unique_name("up", ".bin") -> a file name no other test uses on the shared servers."""
    def make(prefix="f", suffix=""):
        return f"{prefix}-{secrets.token_hex(6)}{suffix}"
    return make


# ---------------------------------------------------------------- FTPS (test_ftps.py)

@pytest.fixture(scope="session")
def tls_certs():
    """Throwaway certificates made with openssl at the start of the run
    (tls_certs.py): a CA, a server certificate for 127.0.0.1 / localhost, a
    client certificate, an unrelated CA's client certificate, the server key
    encrypted under a password file. Removed at the end: no key is kept."""
    import shutil
    import tempfile

    from tls_certs import make_certs

    d = Path(tempfile.mkdtemp(prefix="ftpw-tls-"))
    try:
        yield make_certs(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def vsftpd_tls(ftp_password, tls_certs):
    """vsftpd speaking explicit FTPS only (ssl_enable, force_local_logins_ssl
    and force_local_data_ssl, require_ssl_reuse=YES), with its own tree."""
    from server_vsftpd import vsftpd_tls_options

    # (a small passive range: the plain vsftpd's 4000, for the load tests, and
    # this one share a shard's slice of 10000-19999)
    yield from _vsftpd(ftp_password, tls=vsftpd_tls_options(tls_certs.cert, tls_certs.key), pasv_ports=400)


@pytest.fixture(scope="session")
def pyftpdlib_tls(ftp_password, tls_certs):
    """pyftpdlib's TLS_FTPHandler (python3-openssl) requiring TLS on the
    control connection (USER/PASS before AUTH: 550) and PROT P before any
    PASV/EPSV/PORT/EPRT (550), with its own tree."""
    yield from _served(PyftpdServer(FTP_USER, ftp_password, tls_cert=tls_certs.cert, tls_key=tls_certs.key,
                                    tls_control_required=True, tls_data_required=True))


@pytest.fixture(scope="session")
def vsftpd_tls12(ftp_password, tls_certs, tmp_path_factory):
    """vsftpd with FTPS and require_ssl_reuse held to TLS 1.2 (OpenSSL's
    system_default through OPENSSL_CONF: vsftpd 3.0.3 has no option for it),
    where resuming is by ticket or session id and a session freed without a
    shutdown stops being resumable."""
    from server_vsftpd import vsftpd_tls_options

    conf = tmp_path_factory.mktemp("tls12") / "openssl.cnf"
    conf.write_text("openssl_conf = default_conf\n[default_conf]\nssl_conf = ssl_sect\n[ssl_sect]\n"
                    "system_default = sys\n[sys]\nMinProtocol = TLSv1.2\nMaxProtocol = TLSv1.2\n")
    saved = os.environ.get("OPENSSL_CONF")
    os.environ["OPENSSL_CONF"] = str(conf)  # read by the vsftpd started now
    gen = _vsftpd(ftp_password, tls=vsftpd_tls_options(tls_certs.cert, tls_certs.key), pasv_ports=200)
    try:
        srv = next(gen)
    finally:
        if saved is None:
            del os.environ["OPENSSL_CONF"]
        else:
            os.environ["OPENSSL_CONF"] = saved
    yield srv
    next(gen, None)
