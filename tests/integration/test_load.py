"""Load and resource bounds, against vsftpd through ftpwarden:
500 concurrent sessions byte-exact with fds back to baseline, slowloris
connections that cannot delay a normal RETR, and stalled readers of a big
file that cannot make the proxy's memory grow without bound."""
from __future__ import annotations

import concurrent.futures
import hashlib
import io
import os
import resource
import socket
import threading
import time

import pytest

from checks import file_on, proxy_fds
from clients import RawClient, Target, ftplib_connect, recv_all
from servers import free_port_range

pytestmark = pytest.mark.load


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def proxy_rss_kib(proxy) -> int:
    with open(f"/proc/{proxy.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def proxy_cpu_s(proxy) -> float:
    with open(f"/proc/{proxy.proc.pid}/stat") as f:
        s = f.read()
    return sum(int(x) for x in s[s.rindex(")") + 2:].split()[11:13]) / os.sysconf("SC_CLK_TCK")


def wait_fds(proxy, baseline: int, timeout: float = 15.0) -> int:
    end = time.monotonic() + timeout
    n = proxy_fds(proxy)
    while n > baseline and time.monotonic() < end:
        time.sleep(0.1)
        n = proxy_fds(proxy)
    return n


@pytest.fixture
def load_proxy(vsftpd_server, make_proxy, tmp_path):
    cfg = tmp_path / "load.toml"
    cfg.write_text("[limits]\nmax_sessions_per_ip = 5000\nmax_sessions = 5000\n")
    # 500 concurrent transfers need as many passive ports on each side
    return make_proxy(vsftpd_server, mode="enforce", extra_args=["--config", str(cfg)],
                      passive_ports=free_port_range(20000, 29999, count=1000))


def healthy_retr(target: Target, path: str, sha: str) -> float:
    """A normal session: login, RETR, QUIT; returns the seconds it took."""
    t0 = time.monotonic()
    buf = io.BytesIO()
    with ftplib_connect(target, timeout=20) as ftp:
        ftp.retrbinary(f"RETR {path}", buf.write)
    took = time.monotonic() - t0
    assert hashlib.sha256(buf.getvalue()).hexdigest() == sha
    return took


def test_500_concurrent_sessions(vsftpd_server, load_proxy):
    raise_nofile()
    sha = file_on(vsftpd_server, "load64k.bin", 64 * 1024)
    target = Target.via(load_proxy, vsftpd_server)
    time.sleep(0.3)
    base_fds = proxy_fds(load_proxy)
    base_rss = proxy_rss_kib(load_proxy)
    n = 500
    barrier = threading.Barrier(n, timeout=60)
    peak = {"rss": 0}

    def one(i: int) -> str:
        buf = io.BytesIO()
        with ftplib_connect(target, timeout=60) as ftp:
            barrier.wait()  # all 500 logged in at once
            if i == 0:
                peak["rss"] = proxy_rss_kib(load_proxy)
            lines = []
            ftp.retrlines("LIST", lines.append)
            assert any("load64k.bin" in l for l in lines)
            ftp.retrbinary("RETR load64k.bin", buf.write)
        return hashlib.sha256(buf.getvalue()).hexdigest()

    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
        results = list(pool.map(one, range(n)))
    assert results == [sha] * n
    after = wait_fds(load_proxy, base_fds)
    assert after <= base_fds, f"proxy fds {after} after the load, {base_fds} before"
    print(f"500 sessions: proxy RSS {base_rss} KiB idle, {peak['rss']} KiB with 500 logged in "
          f"({(peak['rss'] - base_rss) / n:.1f} KiB/session), {proxy_rss_kib(load_proxy)} KiB after")


def test_slowloris_cannot_delay_a_normal_session(vsftpd_server, load_proxy):
    raise_nofile()
    sha = file_on(vsftpd_server, "loris.bin", 1 << 20)
    target = Target.via(load_proxy, vsftpd_server)
    socks = []
    for _ in range(200):
        s = socket.create_connection((load_proxy.host, load_proxy.port), timeout=10)
        s.setblocking(False)
        socks.append(s)
    stop = threading.Event()
    msg = b"USER someone-who-never-finishes"

    def trickle():
        i = 0
        while not stop.is_set() and i < len(msg):
            for s in socks:
                try:
                    s.send(msg[i:i + 1])
                except OSError:
                    pass
            i += 1
            stop.wait(1.0)

    t = threading.Thread(target=trickle)
    t.start()
    try:
        time.sleep(1.5)
        took = [healthy_retr(target, "loris.bin", sha) for _ in range(3)]
        assert max(took) < 2.0, f"RETR took {took} s with 200 slow connections open"
    finally:
        stop.set()
        t.join()
        for s in socks:
            s.close()


def test_stalled_readers_keep_memory_bounded(vsftpd_server, load_proxy):
    raise_nofile()
    file_on(vsftpd_server, "big200.bin", 200 << 20, sparse=True)
    sha = file_on(vsftpd_server, "healthy.bin", 1 << 20)
    target = Target.via(load_proxy, vsftpd_server)
    time.sleep(0.3)
    base_fds = proxy_fds(load_proxy)
    base_rss = proxy_rss_kib(load_proxy)
    stalled = []
    for _ in range(20):
        ftp = ftplib_connect(target, timeout=30)
        ftp.voidcmd("TYPE I")
        data = ftp.transfercmd("RETR big200.bin")
        data.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        data.recv(1024)  # started, then never read again
        stalled.append((ftp, data))
    # Each transfer fills the buffers on its way (a few wake-ups each) until
    # all are full; then the workers have nothing left to do.
    wait_until_asleep(load_proxy, timeout=15)
    cpu0, st0 = proxy_cpu_s(load_proxy), load_proxy.stats()
    time.sleep(3)
    st1 = load_proxy.stats()
    stalled_cpu = proxy_cpu_s(load_proxy) - cpu0
    grown_mib = (proxy_rss_kib(load_proxy) - base_rss) / 1024
    took = healthy_retr(target, "healthy.bin", sha)
    for ftp, data in stalled:
        data.close()
        ftp.close()
    print(f"20 stalled readers of 200 MiB: proxy RSS grew {grown_mib:.1f} MiB, {stalled_cpu:.2f} s CPU in 3 s "
          f"of stall; a healthy RETR took {took:.2f} s")
    assert grown_mib < 64, f"proxy RSS grew {grown_mib:.1f} MiB"
    # A relay that polls a full socket would spin here: while every transfer
    # is stalled, the workers wake for their housekeeping timer and nothing else.
    assert_asleep_between(st0, st1, "every transfer was stalled")
    after = wait_fds(load_proxy, base_fds)
    assert after <= base_fds, f"proxy fds {after} after, {base_fds} before"


def extra_wakeups(st0: dict, st1: dict) -> tuple[int, int]:
    """Loop wake-ups and timer ticks between two stats readings."""
    return st1["loop_wakeups"] - st0["loop_wakeups"], st1["loop_ticks"] - st0["loop_ticks"]


def wait_until_asleep(proxy, timeout: float) -> None:
    """Waits for half a second in which the workers woke for their timer
    alone (a relay still filling its buffers wakes for its sockets too)."""
    end = time.monotonic() + timeout
    prev = proxy.stats()
    while time.monotonic() < end:
        time.sleep(0.5)
        cur = proxy.stats()
        wakeups, ticks = extra_wakeups(prev, cur)
        if wakeups <= ticks + 2:
            return
        prev = cur
    raise AssertionError(f"the workers never went quiet within {timeout} s ({wakeups} wake-ups, {ticks} ticks)")


def assert_asleep_between(st0: dict, st1: dict, what: str) -> None:
    """Between two stats readings the workers blocked in their event loops
    except for their own housekeeping timer (one wake-up per tick, and the
    SIGUSR2 reading itself): nothing polled, nothing spun."""
    wakeups, ticks = extra_wakeups(st0, st1)
    assert wakeups <= ticks + 8, f"{wakeups} loop wake-ups for {ticks} timer ticks while {what}"


def test_busy_polling_stops_when_sessions_go_quiet(vsftpd_server, make_proxy):
    """The default busy polling keeps a worker awake only briefly after
    activity: idle sessions wake it for nothing but its timer, and each of a
    series of sparse commands finds it asleep again (counted, not timed)."""
    proxy = make_proxy(vsftpd_server, mode="enforce")
    target = Target.via(proxy, vsftpd_server)
    sessions = [ftplib_connect(target, timeout=10) for _ in range(20)]
    for ftp in sessions:
        ftp.voidcmd("NOOP")
    time.sleep(0.5)
    cpu0, st0 = proxy_cpu_s(proxy), proxy.stats()
    time.sleep(3)
    st1 = proxy.stats()
    idle_cpu = proxy_cpu_s(proxy) - cpu0
    assert_asleep_between(st0, st1, "every session was idle")
    cpu0 = proxy_cpu_s(proxy)
    n = 60
    for i in range(n):
        sessions[i % len(sessions)].voidcmd("NOOP")
        time.sleep(0.05)  # 250 times the polling window
    st2 = proxy.stats()
    sparse_cpu = proxy_cpu_s(proxy) - cpu0
    for ftp in sessions:
        ftp.quit()
    print(f"20 idle sessions: {idle_cpu:.3f} s CPU in 3 s; {n} NOOPs 50 ms apart: {sparse_cpu:.3f} s CPU")
    # Each NOOP opened a window, which ran out before the next one: the loop
    # went back to blocking in between, once per NOOP at least.
    assert st2["poll_windows"] - st1["poll_windows"] >= n
    assert st2["loop_wakeups"] - st1["loop_wakeups"] >= n


def test_busy_polling_stops_during_a_slow_transfer(vsftpd_server, make_proxy):
    """A transfer that trickles, a few KiB every few tens of microseconds, wakes
    the worker far more often than the busy-poll window: data traffic must not
    keep the worker polling (a core burnt for every trickling transfer)."""
    proxy = make_proxy(vsftpd_server, mode="enforce")
    target = Target.via(proxy, vsftpd_server)

    class Trickle(io.RawIOBase):
        def __init__(self, seconds: float):
            self.end = time.monotonic() + seconds
            self.sent = 0

        def readable(self):
            return True

        def read(self, n=-1):
            if time.monotonic() > self.end:
                return b""
            time.sleep(0.00002)
            self.sent += 4096
            return b"x" * 4096

    src = Trickle(2.5)
    with ftplib_connect(target, timeout=30) as ftp:
        ftp.voidcmd("TYPE I")
        cpu0, st0 = proxy_cpu_s(proxy), proxy.stats()
        t0 = time.monotonic()
        ftp.storbinary("STOR upload/trickle.bin", src, blocksize=4096)
        took = time.monotonic() - t0
        st1 = proxy.stats()
        used = proxy_cpu_s(proxy) - cpu0
    print(f"{src.sent >> 20} MiB trickled in {took:.1f} s; {used:.2f} s of proxy CPU; "
          f"{st1['loop_wakeups'] - st0['loop_wakeups']} loop wake-ups")
    assert (vsftpd_server.root / "upload" / "trickle.bin").stat().st_size == src.sent
    # Only the control exchange opens polling windows (EPSV/PASV, STOR, 150,
    # 226: a handful), never the thousands of data chunks of the trickle.
    windows = st1["poll_windows"] - st0["poll_windows"]
    assert windows <= 8, f"{windows} polling windows opened for one STOR of {src.sent // 4096} chunks"


def test_busy_polling_ends_with_the_session(vsftpd_server, make_proxy, tmp_path):
    """A session that has ended brings nothing more: the worker goes back to
    sleep at once instead of polling out its window on a core that the client
    (reading the 221) and the exiting server need. Each session's end closes
    the polling window its QUIT opened (counted by the worker, so the check
    does not depend on how fast the server greets or exits)."""
    cfg = tmp_path / "poll.toml"
    cfg.write_text("[server]\nbusy_poll_us = 10000\n")
    proxy = make_proxy(vsftpd_server, mode="enforce", extra_args=["--config", str(cfg), "--workers", "1"])
    sessions = 20
    st0 = proxy.stats()
    for _ in range(sessions):
        with RawClient(proxy.host, proxy.port) as c:
            assert c.greeting.code == 220, c.greeting
            r = c.cmd("QUIT")
            assert r.code == 221, r
            assert recv_all(c.sock) == b"", "bytes after the 221"  # the session has ended
    # Read at exit: a reading taken as the last client sees its EOF may come
    # before the worker has counted that session's end.
    assert proxy.terminate(timeout=10) == 0
    st1 = proxy.exit_stats()
    assert st1["sessions_total"] - st0["sessions_total"] == sessions
    assert st1["poll_windows_cut"] - st0["poll_windows_cut"] == sessions, (st0, st1)
    closes = proxy.wait_events("session_close", sessions)
    assert {e["reason"] for e in closes} == {"quit"}, closes
