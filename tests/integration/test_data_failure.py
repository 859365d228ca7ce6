"""data-failure: a data connection that goes wrong is logged with the cause
the proxy saw, on the side it belongs to."""
from __future__ import annotations

import socket

from clients import RawClient, Target


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_client_never_connected(server, make_proxy, tmp_path):
    conf = tmp_path / "d.toml"
    conf.write_text("[data]\nconnect_timeout_s = 1\n")
    proxy = make_proxy(server, mode="enforce", extra_args=["--config", str(conf)])
    with RawClient.to(Target.via(proxy, server)) as c:
        c.login()
        c.pasv()  # and never connect
        v = proxy.wait_event("violation", rule="data-failure", timeout=10)
        assert v["cause"] == "client-never-connected" and v["action"] == "logged", v
        assert c.cmd("NOOP").code == 200  # the session goes on
        c.quit()
    assert not proxy.events("server_finding", rule="data-failure")


def test_server_passive_unreachable(scripted_server, make_proxy):
    port = closed_port()
    up = scripted_server({"PASV": pasv_reply("127.0.0.1", port), "TYPE": b"200 ok\r\n"})
    proxy = make_proxy(up, mode="enforce")
    with RawClient.to(Target.via(proxy, up)) as c:
        c.login(up.user, up.password)
        host, dport = c.pasv()
        d = socket.create_connection((host, dport), timeout=10)  # the proxy then fails to reach the server's port
        f = proxy.wait_event("server_finding", rule="data-failure", timeout=10)
        assert f["cause"] == "server-passive-unreachable", f
        assert d.recv(10) == b""  # the client's leg is closed
        d.close()
        c.quit()


def test_server_refused_proxy(scripted_server, make_proxy, tmp_path):
    """Active mode: the server says 150 but never connects to the proxy's port."""
    conf = tmp_path / "d.toml"
    conf.write_text("[data]\nconnect_timeout_s = 1\n")
    up = scripted_server({"PORT": b"200 PORT ok.\r\n", "EPRT": b"200 EPRT ok.\r\n",
                          "RETR": b"150 Opening data connection.\r\n"})
    proxy = make_proxy(up, mode="enforce", extra_args=["--config", str(conf)])
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    port = lst.getsockname()[1]
    with RawClient.to(Target.via(proxy, up)) as c:
        c.login(up.user, up.password)
        assert c.cmd(f"PORT 127,0,0,1,{port >> 8},{port & 255}").code == 200
        c.send(b"RETR f\r\n")
        assert c.reply().code == 150
        f = proxy.wait_event("server_finding", rule="data-failure", timeout=10)
        assert f["cause"] == "server-refused-proxy", f
    lst.close()


def pasv_reply(host: str, port: int) -> bytes:
    return f"227 Entering Passive Mode ({host.replace('.', ',')},{port >> 8},{port & 255}).\r\n".encode()


def test_data_peer_mismatch_then_the_server_gives_up(scripted_server, make_proxy):
    """A stranger knocks on the passive port; the server's transfer fails."""
    up = scripted_server({"PASV": pasv_reply("127.0.0.1", closed_port()),
                          "RETR": b"425 Can't open data connection.\r\n"})
    proxy = make_proxy(up, mode="enforce")
    with RawClient.to(Target.via(proxy, up)) as c:
        c.login(up.user, up.password)
        host, dport = c.pasv()
        thief = socket.create_connection((host, dport), timeout=10, source_address=("127.0.0.2", 0))
        proxy.wait_event("violation", rule="data-peer-mismatch")
        assert c.cmd("RETR f").code == 425
        f = proxy.wait_event("violation", rule="data-failure")
        assert f["cause"] == "data-peer-mismatch", f
        thief.close()


def test_foreign_passive_address_then_the_server_gives_up(scripted_server, make_proxy):
    up = scripted_server({"PASV": pasv_reply("10.9.8.7", closed_port()),
                          "RETR": b"425 Can't open data connection.\r\n"})
    proxy = make_proxy(up, mode="enforce")
    with RawClient.to(Target.via(proxy, up)) as c:
        c.login(up.user, up.password)
        c.pasv()
        assert c.cmd("RETR f").code == 425
        assert proxy.wait_event("server_finding", rule="pasv-foreign-address")
        f = proxy.wait_event("server_finding", rule="data-failure")
        assert f["cause"] == "foreign-passive-address", f


def test_server_aborted(scripted_server, make_proxy):
    """The data connection is made, the server starts the transfer and then
    gives it up with 426: the server's doing."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    lst.settimeout(10)
    up = scripted_server({"PASV": pasv_reply("127.0.0.1", lst.getsockname()[1]),
                          "RETR": b"150 Opening BINARY mode data connection.\r\n"
                                  b"426 Connection closed; transfer aborted.\r\n"})
    proxy = make_proxy(up, mode="enforce")
    with RawClient.to(Target.via(proxy, up)) as c:
        c.login(up.user, up.password)
        host, dport = c.pasv()
        d = socket.create_connection((host, dport), timeout=10)
        leg, _ = lst.accept()  # the proxy's leg to the server's passive port
        leg.sendall(b"partial")
        leg.close()
        c.send(b"RETR f\r\n")
        assert c.reply().code == 150
        assert c.reply().code == 426
        f = proxy.wait_event("server_finding", rule="data-failure")
        assert f["cause"] == "server-aborted" and f["verb"] == "RETR", f
        assert not proxy.events("violation", rule="data-failure")
        t = proxy.wait_event("transfer")
        assert t["code"] == 426, t
        d.close()
        c.quit()
    lst.close()
