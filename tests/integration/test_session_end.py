"""How a session ends, as the audit log's session_close names it: the list in
rules/end_reasons.def is the one the README documents, and each way a
session ends that no other test file covers is driven here for real (QUIT,
QUIT behind a download still draining, the server's 421, the proxy's
shutdown, too many failed logins)."""
from __future__ import annotations

import re
import socket
import threading
import time

from checks import file_on
from clients import RawClient, Target
from servers import REPO


def end_reasons() -> list[str]:
    text = (REPO / "rules" / "end_reasons.def").read_text()
    return re.findall(r'^FTPW_END_REASON\(\w+, "([a-z0-9-]+)"', text, re.M)


def test_every_reason_is_in_the_readme_table():
    readme = (REPO / "README.md").read_text()
    start = readme.index("| `reason` |")
    table = readme[start:readme.index("\n\n", start)]
    documented = re.findall(r"^\| `([a-z0-9-]+)` \|", table, re.M)[1:]  # after the header
    assert documented == end_reasons()


def test_quit_is_logged_as_quit(server, make_proxy):
    proxy = make_proxy(server, mode="enforce")
    with RawClient.to(Target.via(proxy, server)) as c:
        c.login()
        assert c.cmd("QUIT").code == 221
        c.sock.settimeout(5)
        assert c.sock.recv(100) == b""  # the proxy closes after the 221
    ev = proxy.wait_event("session_close")
    assert ev["reason"] == "quit", ev


def early_completion_server(scripted_server, size: int, retr_reply: bytes = b"150 Sending.\r\n226 Done.\r\n"):
    """A scripted upstream whose RETR answers 150 and 226 at once while its
    data connection is still sending `size` bytes: the completion reply is
    in long before the data (as from a server that reports success once the
    file is queued). QUIT gets 221, and the control connection is closed."""
    state = {}

    def epsv(line):
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(1)
        state["lst"] = lst
        return f"229 Entering Extended Passive Mode (|||{lst.getsockname()[1]}|)\r\n".encode()

    def send_file():
        lst = state.pop("lst")
        d, _ = lst.accept()
        lst.close()
        try:
            d.sendall(bytes(size))
        finally:
            d.close()

    def retr(line):
        threading.Thread(target=send_file, daemon=True).start()
        return retr_reply

    return scripted_server({"TYPE": b"200 Binary.\r\n", "EPSV": epsv, "RETR": retr})


def login_with_an_unread_data_connection(c: RawClient) -> socket.socket:
    """Logs in, TYPE I, and connects a passive data connection with a small
    receive buffer that the caller does not read yet."""
    c.login()
    assert c.cmd("TYPE I").code == 200
    port = c.epsv()
    d = socket.socket()
    d.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    d.connect(("127.0.0.1", port))
    return d


def retr_and_quit_then_read(target, name: str, wait_for, codes=(226, 221)) -> int:
    """RETR and QUIT sent together on a passive connection that is not read
    until `wait_for()` returns; then the data, then the two replies, which
    must be the transfer's 226 and the QUIT's 221 in that order, then the
    close. Returns the bytes received."""
    with RawClient.to(target, timeout=20) as c:
        d = login_with_an_unread_data_connection(c)
        c.send(f"RETR {name}\r\nQUIT\r\n".encode())
        assert c.reply().code in (125, 150)
        wait_for()
        d.settimeout(20)
        got = 0
        while chunk := d.recv(1 << 16):
            got += len(chunk)
        d.close()
        assert (c.reply().code, c.reply().code) == codes
        c.sock.settimeout(5)
        assert c.sock.recv(100) == b""
    return got


def test_quit_behind_a_download_still_draining(scripted_server, make_proxy):
    """RETR and QUIT sent together, the data read only afterwards: the 226 and
    the 221 reach the proxy while the file is still on its way. The client
    gets every byte, then 226, then 221, in that order; the session ends as a
    QUIT, not as the server's close that follows it."""
    size = 24 << 20  # more than the socket buffers toward a client that does not read can hold
    up = early_completion_server(scripted_server, size)
    proxy = make_proxy(up, mode="enforce")
    # both replies are in before the data is read
    got = retr_and_quit_then_read(Target.via(proxy, up), "big.bin",
                                  lambda: proxy.wait_event("reply", code=221, timeout=10))
    assert got == size
    ev = proxy.wait_event("session_close")
    assert ev["reason"] == "quit", ev
    (t,) = proxy.events("transfer")
    assert t["code"] == 226 and t["bytes"] == size, t


def test_a_server_that_hangs_up_after_221_during_a_transfer(scripted_server, make_proxy):
    """RETR answered 150 only; the QUIT behind it answered 221 at once, and
    the server closes its control connection, its data still on the way and
    no 226 ever sent. The transfer still runs to its end for the client:
    every byte, then the proxy's 426 (nothing confirmed the transfer: a
    FIN is all a server that died would leave too), then the 221, then the
    end; a server_finding says what the server did."""
    size = 24 << 20
    up = early_completion_server(scripted_server, size, retr_reply=b"150 Sending.\r\n")
    proxy = make_proxy(up, mode="enforce")
    got = retr_and_quit_then_read(Target.via(proxy, up), "big.bin",
                                  lambda: proxy.wait_event("server_finding", rule="server-closed-before-completion",
                                                           timeout=10), codes=(426, 221))
    assert got == size
    assert proxy.wait_event("session_close")["reason"] == "quit"
    (t,) = proxy.events("transfer")
    assert t["code"] == 426 and t["bytes"] == size, t
    replies = [e["code"] for e in proxy.events("reply") if e["code"] in (426, 221)]
    assert replies == [426, 221], replies


def test_server_421_is_upstream_421(scripted_server, make_proxy):
    up = scripted_server({"NOOP": b"421 Shutting down, sorry.\r\n"})
    proxy = make_proxy(up, mode="enforce")
    with RawClient.to(Target.via(proxy, up)) as c:
        c.login()
        r = c.cmd("NOOP")
        assert r.code == 421 and "Shutting down" in r.text, r
        c.sock.settimeout(5)
        assert c.sock.recv(100) == b""
    assert proxy.wait_event("session_close")["reason"] == "upstream-421"


def test_shutdown_grace_over_is_shutdown(server, make_proxy, tmp_path):
    cfg = tmp_path / "grace.toml"
    cfg.write_text("[limits]\nshutdown_grace_s = 1\n")
    proxy = make_proxy(server, mode="enforce", extra_args=["--config", str(cfg)])
    c = RawClient.to(Target.via(proxy, server))
    c.login()
    assert proxy.terminate(timeout=10) == 0
    r = c.reply()
    assert r.code == 421 and "shutting down" in r.text, r
    c.close()
    closes = [e for e in proxy.audit() if e["event"] == "session_close"]
    assert [e["reason"] for e in closes] == ["shutdown"], closes


def test_quit_answered_before_the_transfer_ends(pyftpdlib_server, make_proxy):
    """pyftpdlib answers a QUIT sent during a transfer at once, before the
    transfer's 226 (RFC 959 §4.1.1 has it wait). The proxy holds that 221
    behind the completion: the client gets every byte, then 226, then 221,
    the server's deviation is a server_finding, and the session ends as a QUIT."""
    srv = pyftpdlib_server
    size = 24 << 20  # still on its way when the QUIT is answered: the client does not read yet
    file_on(srv, "quit-early.bin", size, sparse=True)
    proxy = make_proxy(srv, mode="enforce")
    got = retr_and_quit_then_read(Target.via(proxy, srv), "quit-early.bin",
                                  lambda: proxy.wait_event("server_finding", rule="reply-quit-before-transfer-end",
                                                           timeout=10))
    assert got == size
    assert proxy.wait_event("session_close")["reason"] == "quit"
    (t,) = proxy.events("transfer")
    assert t["code"] == 226 and t["bytes"] == size, t
    assert [e["rule"] for e in proxy.events("server_finding")] == ["reply-quit-before-transfer-end"]


def test_replies_behind_a_draining_transfer_stay_bounded(scripted_server, make_proxy):
    """While a completion reply waits for its data to drain, later replies
    wait behind it; a client that keeps sending commands without reading its
    data cannot make them pile up: past a control leg's high watermark the
    proxy stops reading the client (and the server), and once the data is
    read every reply arrives, in order."""
    size = 24 << 20
    up = early_completion_server(scripted_server, size)
    proxy = make_proxy(up, mode="enforce")
    noops = 60000  # about 840 KiB of "200 NOOP ok." replies, 360 KiB of commands
    with RawClient.to(Target.via(proxy, up), timeout=20) as c:
        d = login_with_an_unread_data_connection(c)
        c.send(b"RETR big.bin\r\n")
        assert c.reply().code == 150
        proxy.wait_event("reply", code=226, timeout=10)  # in, and held: the data is not read
        c.sock.setblocking(False)
        burst, sent = b"NOOP\r\n" * noops, 0
        end = time.monotonic() + 3
        while sent < len(burst) and time.monotonic() < end:
            try:
                sent += c.sock.send(burst[sent:])
            except BlockingIOError:
                time.sleep(0.05)
        c.sock.setblocking(True)
        # The proxy forwards NOOPs until the held replies pass 256 KiB (about
        # 19000), then stops reading: the count settles well below all of them.
        forwarded, end = -1, time.monotonic() + 20
        while time.monotonic() < end:
            time.sleep(0.5)
            now = up.verbs().count("NOOP")
            if now == forwarded:
                break
            forwarded = now
        assert 0 < forwarded < 30000, forwarded
        d.settimeout(20)
        got = 0
        while chunk := d.recv(1 << 16):
            got += len(chunk)
        d.close()
        assert got == size
        c.send(burst[sent:])
        c.sock.settimeout(20)
        assert c.reply().code == 226
        codes = {c.reply().code for _ in range(noops)}
        assert codes == {200}, codes
        assert c.cmd("QUIT").code == 221
    assert up.verbs().count("NOOP") == noops
