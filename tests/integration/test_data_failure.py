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
    up = scripted_server({"PASV": f"227 Entering Passive Mode (127,0,0,1,{port >> 8},{port & 255}).\r\n".encode(),
                          "TYPE": b"200 ok\r\n"})
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
