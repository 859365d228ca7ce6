"""125 "Data connection already open" from fast clients: a client that
connects its passive data connection and sends the transfer command at once
(tnftp, wget, ncftpget and python ftplib all do) meets a server (pyftpdlib)
that has already accepted the proxy's upstream data connection and rightly
answers 125. The proxy may be told of its own connect completing after that
125, or (an empty file, an empty listing) see the data connection open and
close before it: neither is a finding about the server. Every 125 is
annotated and its transfer marked "reused"."""
from __future__ import annotations

import os
import socket

from checks import file_on
from clients import RawClient, Target


def test_back_to_back_transfers_with_no_pause(pyftpdlib_server, make_proxy):
    srv = pyftpdlib_server
    empty_dir = srv.root / "reuse-empty"
    empty_dir.mkdir(exist_ok=True)
    os.chmod(empty_dir, 0o777)
    sizes = {"reuse-empty.bin": 0, "reuse-small.bin": 1024, "reuse-large.bin": 4 << 20}
    for name, size in sizes.items():
        file_on(srv, name, size)
    commands = ["RETR reuse-empty.bin", "RETR reuse-small.bin", "LIST reuse-empty", "MLSD reuse-empty",
                "RETR reuse-empty.bin", "RETR reuse-small.bin", "NLST reuse-empty", "RETR reuse-small.bin",
                "MLSD reuse-empty", "RETR reuse-large.bin"]
    proxy = make_proxy(srv, mode="enforce")
    got = {}
    rounds = 200
    with RawClient.to(Target.via(proxy, srv), timeout=20) as c:
        c.login()
        assert c.cmd("TYPE I").code == 200
        for i in range(rounds):
            cmd = commands[i % len(commands)]
            port = c.epsv() if i % 2 else None
            if port is None:
                d = c.data_connect(epsv=False)
            else:
                d = socket.create_connection(("127.0.0.1", port), timeout=20)
            c.send(f"{cmd}\r\n".encode())  # no pause after the connect
            first = c.reply()
            assert first.code in (125, 150), (cmd, first)
            n = 0
            while chunk := d.recv(1 << 16):
                n += len(chunk)
            d.close()
            assert c.reply().code == 226, cmd
            got[first.code] = got.get(first.code, 0) + 1
            if cmd.startswith("RETR"):
                assert n == sizes[cmd.split()[1]], (cmd, n)
        assert c.quit().code == 221
    events = proxy.settle(10.0)
    findings = [e for e in events if e["event"] in ("server_finding", "violation")]
    assert findings == [], findings
    r125 = [e for e in events if e["event"] == "reply" and e["code"] == 125]
    assert len(r125) == got.get(125, 0) and got.get(125, 0) > 0, got
    assert all(e.get("annotation") == "data_connection_already_open" for e in r125)
    transfers = [e for e in events if e["event"] == "transfer"]
    assert len(transfers) == rounds
    assert sum(1 for t in transfers if t["data_conn"] == "reused") == got[125]
    assert all(t["code"] == 226 for t in transfers), [t for t in transfers if t["code"] != 226]
