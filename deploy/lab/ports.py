"""Loopback ports for the test servers and proxies, and waiting for a greeting.

Port plan: servers' passive ranges come from 10000-19999, proxies' from
20000-29999, both below the kernel's ephemeral range (32768-60999) so they
never collide with client sockets. Control ports are picked by binding a
socket to port 0 (pyftpdlib binds port 0 itself)."""
from __future__ import annotations

import os
import random
import socket
import subprocess
import time


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (bind to 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # as the servers and the proxy bind their listeners: a port whose old
        # connections linger in TIME_WAIT is still usable
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def shard_slice(lo: int, hi: int) -> tuple[int, int]:
    """[lo, hi], or this process's slice of it when the test suite runs as
    FTPW_SHARD=I/N parallel processes (tests/integration/sharding.py)."""
    spec = os.environ.get("FTPW_SHARD", "")
    if not spec:
        return lo, hi
    i, n = (int(x) for x in spec.split("/"))
    width = (hi - lo + 1) // n
    return lo + (i - 1) * width, lo + i * width - 1


def free_port_range(lo: int, hi: int, count: int = 50, tries: int = 50) -> tuple[int, int]:
    """A block of `count` consecutive free ports with its base in [lo, hi - count]
    (of this shard's slice, when the suite runs sharded)."""
    lo, hi = shard_slice(lo, hi)
    for _ in range(tries):
        base = random.randint(lo, hi - count + 1)
        if all(port_is_free(p) for p in range(base, base + count)):
            return base, base + count - 1
    # crowded: sweep the whole range once, restarting after each busy port
    base = lo
    while base + count - 1 <= hi:
        busy = next((p for p in range(base, base + count) if not port_is_free(p)), None)
        if busy is None:
            return base, base + count - 1
        base = busy + 1
    raise RuntimeError(f"no free block of {count} ports in {lo}-{hi}")


# Server passive ranges handed out by this process and not released: a range
# is only bound port by port as PASVs come, so "free now" alone would let two
# servers be given the same ports.
_reserved: list[tuple[int, int]] = []


def reserve_range(lo: int, hi: int, count: int) -> tuple[int, int]:
    """The lowest block of `count` consecutive ports in [lo, hi] (this shard's
    slice) that no live server of this process holds and whose ports are
    free now; release_range() gives it back. First fit keeps the slice
    unfragmented, so a large range still fits after small ones came and went."""
    lo, hi = shard_slice(lo, hi)
    base = lo
    while base + count - 1 <= hi:
        top = base + count - 1
        clash = next((b for a, b in _reserved if a <= top and base <= b), None)
        if clash is not None:
            base = clash + 1
            continue
        busy = next((p for p in range(base, top + 1) if not port_is_free(p)), None)
        if busy is None:
            _reserved.append((base, top))
            return base, top
        base = busy + 1
    raise RuntimeError(f"no free block of {count} ports in {lo}-{hi} (held: {sorted(_reserved)})")


def release_range(r: tuple[int, int]) -> None:
    if r in _reserved:
        _reserved.remove(r)


def wait_for_greeting(port: int, timeout: float = 10.0, host: str = "127.0.0.1",
                      proc: subprocess.Popen | None = None) -> str:
    """Connects until the server sends its 220 greeting; returns the greeting line.
    Gives up early when `proc` exits."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before greeting on port {port}")
        try:
            with socket.create_connection((host, port), timeout=2) as s:
                s.settimeout(3)
                data = b""
                while b"\n" not in data:
                    chunk = s.recv(512)
                    if not chunk:
                        break
                    data += chunk
                line = data.decode("latin-1").strip()
                if line.startswith("220"):
                    try:
                        s.sendall(b"QUIT\r\n")
                    except OSError:
                        pass
                    return line
                last = line
        except OSError as e:
            last = e
        time.sleep(0.05)
    raise RuntimeError(f"127.0.0.1:{port} gave no 220 greeting within {timeout}s (last: {last!r})")


def in_netns(name: str, fn):
    """fn() run on a thread that has entered network namespace `name`
    (/var/run/netns/NAME, as `ip netns add` makes it); returns its result.
    Sockets it creates live in that namespace and may be used from anywhere."""
    import ctypes
    import threading
    out: dict = {}

    def run():
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
        try:
            if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
                raise OSError(ctypes.get_errno(), f"setns {name}")
        finally:
            os.close(fd)
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            out["error"] = e

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]
