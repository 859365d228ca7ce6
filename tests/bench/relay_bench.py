#!/usr/bin/python3
"""ftpwarden relay benchmark: the proxy against a direct connection to the same
FTP server, measured side by side in one run (and the peer proxies of an
ftplab, when one is up on this machine).

    /usr/bin/python3 tests/bench/relay_bench.py            # full run (a few minutes)
    /usr/bin/python3 tests/bench/relay_bench.py --quick    # smaller files, fewer rounds
    /usr/bin/python3 tests/bench/relay_bench.py --smoke    # seconds; checks that everything runs

Root on Debian 12 (vsftpd needs its system user and PAM service), curl, the
release build (build/release/proxy/ftpwarden or FTPWARDEN_BIN).

What it does: starts vsftpd on loopback with a big file and many 4 KiB files,
starts ftpwarden in front of it (enforce mode, default rules, audit log on,
byte accounting on: nothing is turned off for speed), then for every test and
round runs each target in turn (A B C, B C A, C A B ...; the file tests after one
untimed pass that puts the files in the page cache) and prints medians with the
ratio to the direct connection measured in the same run:

  retr    curl RETR of the big file, MB/s; ftpwarden's CPU seconds per GiB
  stor    curl STOR of a file of the same size, MB/s
  small   curl RETRs of N 4 KiB files over one control connection, files/s
  setup   connect + USER + PASS + QUIT, one after another, sessions/s
  noop    NOOP round trips on one logged-in session, p50 / p99 in us
  idle    ftpwarden alone: N idle logged-in sessions (against a minimal
          in-process upstream, so the server's own memory stays out of it),
          proxy RSS growth per session
  workers ftpwarden --workers 1 vs 2: two RETRs of the big file at once

If /tmp/ftplab/targets.conf exists (the shared lab's up.sh) and its "direct"
vsftpd answers, the lab's upstream is used instead and its peers join the
interleaved runs. Exit status 1 when a transfer moved a wrong byte count.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))
sys.path.insert(0, str(HERE.parent.parent / "deploy" / "lab"))

from servers import (FTP_PASSWORD, FTP_USER, Proxy, VsftpdServer, find_proxy_binary,  # noqa: E402
                     find_vsftpd, free_port_range)

CLK = os.sysconf("SC_CLK_TCK")
LAB_TARGETS = Path("/tmp/ftplab/targets.conf")
TESTS = ["retr", "stor", "small", "setup", "noop", "idle", "workers"]


class Failure(Exception):
    pass


# ---------------------------------------------------------------- targets

class Target:
    def __init__(self, name, host, port, user, password, pid=None):
        self.name, self.host, self.port = name, host, int(port)
        self.user, self.password, self.pid = user, password, pid
        self.curl_args: list[str] = []  # put before t_retr's / t_stor's own curl options (ftps_bench.py: TLS)

    def url(self, path: str) -> str:
        from urllib.parse import quote
        return f"ftp://{quote(self.user, safe='')}:{quote(self.password, safe='')}@{self.host}:{self.port}/{path}"


def cpu_seconds(pid) -> float:
    """utime + stime of a process (all its threads) and of its reaped children."""
    if not pid:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    return sum(int(x) for x in fields[11:15]) / CLK


def rss_kib(pid) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def lab_targets() -> list[Target] | None:
    """The shared lab's endpoints, when it is up: [direct, peers...]."""
    if not LAB_TARGETS.is_file():
        return None
    password = os.environ.get("FTPLAB_PASS", "ftpbench-pw")
    out = []
    for line in LAB_TARGETS.read_text().splitlines():
        f = line.split("#", 1)[0].split()
        if len(f) < 2:
            continue
        host, _, port = f[1].rpartition(":")
        pid = None
        if len(f) > 2 and os.path.isfile(f[2]):
            try:
                pid = int(Path(f[2]).read_text().split()[0])
            except (ValueError, IndexError):
                pid = None
        out.append(Target(f[0], host, port, f[3] if len(f) > 3 else "ftpbench", password, pid))
    if not out or out[0].name != "direct":
        return None
    try:
        with socket.create_connection((out[0].host, out[0].port), timeout=2) as s:
            if not s.recv(100).startswith(b"220"):
                return None
    except OSError:
        return None
    return out


# ---------------------------------------------------------------- a control-connection client

class Ctl:
    def __init__(self, t: Target, timeout: float = 30):
        self.s = socket.create_connection((t.host, t.port), timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.expect(220)

    def reply(self) -> tuple[int, str]:
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.s.recv(65536)
                if not chunk:
                    raise Failure("connection closed while waiting for a reply")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            if len(line) >= 4 and line[:3].isdigit() and line[3:4] == b" ":
                return int(line[:3]), line.decode(errors="replace")

    def expect(self, code: int, cmd: str | None = None) -> None:
        if cmd is not None:
            self.s.sendall(cmd.encode() + b"\r\n")
        got, text = self.reply()
        if got != code:
            raise Failure(f"{cmd or 'greeting'}: expected {code}, got {text!r}")

    def login(self, t: Target) -> "Ctl":
        self.expect(331, f"USER {t.user}")
        self.expect(230, f"PASS {t.password}")
        return self

    def close(self) -> None:
        self.s.close()


# ---------------------------------------------------------------- the tests (one sample each)

def curl(args: list[str]) -> list[str]:
    r = subprocess.run(["curl", "-sS", "--ftp-pasv", *args], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise Failure(f"curl {' '.join(args[-2:])}: exit {r.returncode}: {r.stderr.strip()}")
    return r.stdout.split()


def t_retr(t: Target, ctx) -> dict:
    cpu0 = cpu_seconds(t.pid)
    size, secs = curl([*t.curl_args, "-o", "/dev/null", "-w", "%{size_download} %{time_total}",
                       t.url(ctx.big)])
    cpu = cpu_seconds(t.pid) - cpu0
    if int(size) != ctx.big_size:
        raise Failure(f"{t.name}: RETR moved {size} bytes, want {ctx.big_size}")
    return {"MB/s": int(size) / float(secs) / 1e6, "cpu_s": cpu, "bytes": int(size)}


def t_stor(t: Target, ctx) -> dict:
    cpu0 = cpu_seconds(t.pid)
    size, secs = curl([*t.curl_args, "-T", str(ctx.stor_src), "-w", "%{size_upload} %{time_total}",
                       t.url(f"{ctx.up}/bench-{t.name}.bin")])
    if int(size) != ctx.stor_size:
        raise Failure(f"{t.name}: STOR moved {size} bytes, want {ctx.stor_size}")
    return {"MB/s": int(size) / float(secs) / 1e6, "cpu_s": cpu_seconds(t.pid) - cpu0}


def t_small(t: Target, ctx) -> dict:
    cfg = "".join(f'url = "{t.url(f"{ctx.small_dir}/{name}")}"\noutput = "/dev/null"\n' for name in ctx.small)
    with tempfile.NamedTemporaryFile("w", suffix=".curl") as f:
        f.write(cfg)
        f.flush()
        t0 = time.perf_counter()
        sizes = curl(["-K", f.name, "-w", "%{size_download}\n"])
        secs = time.perf_counter() - t0
    if sizes != ["4096"] * len(ctx.small):
        raise Failure(f"{t.name}: small-file RETRs moved {sizes[:5]}...")
    return {"files/s": len(ctx.small) / secs}


def t_setup(t: Target, ctx) -> dict:
    t0 = time.perf_counter()
    for _ in range(ctx.sessions):
        c = Ctl(t).login(t)
        c.expect(221, "QUIT")
        c.close()
    return {"sessions/s": ctx.sessions / (time.perf_counter() - t0)}


def t_noop(t: Target, ctx) -> dict:
    c = Ctl(t).login(t)
    lat = []
    for _ in range(ctx.noops):
        t0 = time.perf_counter_ns()
        c.expect(200, "NOOP")
        lat.append((time.perf_counter_ns() - t0) / 1000)
    c.expect(221, "QUIT")
    c.close()
    lat.sort()
    return {"p50_us": lat[len(lat) // 2], "p99_us": lat[min(len(lat) - 1, int(len(lat) * 0.99))]}


# ---------------------------------------------------------------- idle sessions (ftpwarden alone)

def stub_upstream() -> None:
    """The least an FTP server needs to hold idle logged-in sessions: a greeting,
    USER/PASS/NOOP/QUIT. Runs as its own process (its own fd limit); prints
    its port."""
    async def serve(reader, writer):
        writer.write(b"220 bench stub\r\n")
        try:
            while line := await reader.readline():
                verb = line.split(b" ", 1)[0].strip().upper()
                answer = {b"USER": b"331 ok", b"PASS": b"230 ok", b"NOOP": b"200 ok",
                          b"QUIT": b"221 bye"}.get(verb, b"502 no")
                writer.write(answer + b"\r\n")
                if verb == b"QUIT":
                    break
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def main():
        srv = await asyncio.start_server(serve, "127.0.0.1", 0, backlog=4096)
        print(srv.sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def idle_sessions(binary: str, n: int, base: Path) -> dict:
    # The proxy needs two fds a session: the hard limit (which an unprivileged
    # container cannot raise) may hold fewer sessions than asked for.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    limit = "" if hard >= 2 * n + 64 else f" (asked for {n}; the fd hard limit {hard} allows no more)"
    n = min(n, (hard - 64) // 2)
    stub = subprocess.Popen([sys.executable, __file__, "--stub-upstream"], stdout=subprocess.PIPE, text=True)
    stub_port = int(stub.stdout.readline())
    cfg = base / "idle.toml"
    cfg.write_text(f"[limits]\nmax_sessions = {n + 100}\nmax_sessions_per_ip = {n + 100}\n")
    p = Proxy(binary, f"127.0.0.1:{stub_port}", mode="enforce", extra_args=["--config", str(cfg)],
              passive_ports=free_port_range(20000, 29999)).start()
    try:
        t = Target("ftpwarden", p.host, p.port, "bench", "bench", p.proc.pid)
        time.sleep(0.5)
        before = rss_kib(p.proc.pid)
        t0 = time.perf_counter()
        held = []
        try:
            while len(held) < n:
                held.append(Ctl(t, timeout=60).login(t))
        except (Failure, OSError) as e:
            refused = [e for e in p.audit() if e.get("event") in ("session_refused", "timeout")][-3:]
            raise Failure(f"idle session {len(held) + 1} of {n}: {e}; proxy: {p.stderr()[-500:]} {refused}")
        took = time.perf_counter() - t0
        time.sleep(1.0)
        for c in held[:: max(1, n // 20)]:  # the sessions answer
            c.expect(200, "NOOP")
        after = rss_kib(p.proc.pid)
        for c in held:
            c.close()
        return {"sessions": n, "rss_before_kib": before, "rss_after_kib": after,
                "kib_per_session": (after - before) / n, "login_s": took, "note": limit}
    finally:
        p.stop()
        p.cleanup()
        stub.kill()
        stub.wait()


# ---------------------------------------------------------------- workers scaling

def parallel_retr(t: Target, ctx, streams: int) -> float:
    procs = [subprocess.Popen(["curl", "-sS", "--ftp-pasv", "-o", "/dev/null", "-w", "%{size_download}",
                               t.url(ctx.big)], stdout=subprocess.PIPE, text=True) for _ in range(streams)]
    t0 = time.perf_counter()
    sizes = [int(pr.communicate(timeout=600)[0] or 0) for pr in procs]
    secs = time.perf_counter() - t0
    if sizes != [ctx.big_size] * streams:
        raise Failure(f"{t.name}: parallel RETRs moved {sizes}")
    return sum(sizes) / secs / 1e6


# ---------------------------------------------------------------- set-up

class Ctx:
    pass


def make_files(root: Path, uid: int, ctx) -> None:
    big = root / "big.bin"
    if not big.exists() or big.stat().st_size != ctx.big_size:
        with open(big, "wb") as f:
            chunk = os.urandom(1 << 20)
            for i in range(ctx.big_size >> 20):
                f.write(chunk[i % 7:] + chunk[:i % 7])  # not one page repeated
    (root / "small").mkdir(exist_ok=True)
    (root / "up").mkdir(exist_ok=True)
    for name in ctx.small:
        p = root / "small" / name
        if not p.exists():
            p.write_bytes(os.urandom(4096))
    for dirpath, _, files in os.walk(root):
        os.chown(dirpath, uid, -1)
        for f in files:
            os.chown(os.path.join(dirpath, f), uid, -1)


def median_row(samples: list[dict], key: str) -> float:
    vals = [s[key] for s in samples if key in s]
    return statistics.median(vals) if vals else float("nan")


def fmt(v: float) -> str:
    if v != v:
        return "-"
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="256 MiB, 200 files, 2 rounds, 2000 idle sessions")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, one round: checks that everything runs")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--big-mb", type=int)
    ap.add_argument("--small-n", type=int)
    ap.add_argument("--sessions", type=int)
    ap.add_argument("--noops", type=int)
    ap.add_argument("--idle", type=int)
    ap.add_argument("--workers", type=int, default=0, help="ftpwarden --workers for the main target (0: cores)")
    ap.add_argument("--proxy-config", help="a TOML file passed to ftpwarden --config (to compare settings)")
    ap.add_argument("--tests", default=",".join(TESTS))
    ap.add_argument("--no-lab", action="store_true", help="ignore a running ftplab")
    ap.add_argument("--binary", default=find_proxy_binary())
    ap.add_argument("--json", help="write every sample here")
    ap.add_argument("--md", help="write the table here as well")
    a = ap.parse_args()
    preset = ({"rounds": 1, "big_mb": 8, "small_n": 20, "sessions": 10, "noops": 50, "idle": 50} if a.smoke else
              {"rounds": 2, "big_mb": 256, "small_n": 200, "sessions": 100, "noops": 2000, "idle": 2000}
              if a.quick else
              {"rounds": 3, "big_mb": 1024, "small_n": 500, "sessions": 250, "noops": 5000, "idle": 10000})
    for k, v in preset.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    tests = [x for x in a.tests.split(",") if x]
    if not a.binary or not os.access(a.binary, os.X_OK):
        print("relay_bench: no ftpwarden binary (build the release preset or set FTPWARDEN_BIN)", file=sys.stderr)
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(hard, 4 * a.idle + 4096)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    ctx = Ctx()
    ctx.big_size = a.big_mb << 20
    ctx.small = [f"f{i:03d}" for i in range(a.small_n)]
    ctx.sessions, ctx.noops = a.sessions, a.noops
    base = Path(tempfile.mkdtemp(prefix="ftpw-bench-"))
    server = None
    proxies: list[Proxy] = []
    lab = None if a.no_lab else lab_targets()
    try:
        if lab:
            direct, peers = lab[0], lab[1:]
            upstream = f"{direct.host}:{direct.port}"
            # the lab's files: its big.bin has the size up.sh gave it
            lab_home = Path("/tmp/ftplab/home")
            ctx.big, ctx.small_dir, ctx.up = "big.bin", "small", "up"
            ctx.big_size = (lab_home / "big.bin").stat().st_size
            ctx.small = sorted(os.listdir(lab_home / "small"))[: a.small_n]
            where = f"the ftplab's vsftpd at {upstream} with its peers"
        else:
            vs = find_vsftpd()
            if not vs:
                print("relay_bench: vsftpd not found (bash deploy/install-deps.sh)", file=sys.stderr)
                return 2
            base.chmod(0o755)  # the FTP user must reach the server's root below it
            (base / "vsftpd").mkdir()
            server = VsftpdServer(FTP_USER, FTP_PASSWORD, vs, base=base / "vsftpd", protocol_log=False,
                                  pasv_ports=200)
            server.start()
            make_files(server.root, server.uid, ctx)
            direct = Target("direct", server.host, server.port, server.user, server.password, server.proc.pid)
            peers = []
            upstream = server
            ctx.big, ctx.small_dir, ctx.up = "big.bin", "small", "up"
            where = f"vsftpd at 127.0.0.1:{server.port} (own instance)"
        ctx.stor_src = base / "stor.bin"
        with open(ctx.stor_src, "wb") as f:
            chunk = os.urandom(1 << 20)
            for _ in range(ctx.big_size >> 20):
                f.write(chunk)
        ctx.stor_size = ctx.stor_src.stat().st_size
        os.sync()  # its write-back would otherwise slow whichever target runs first

        def start_proxy(workers: int) -> Proxy:
            extra = ["--workers", str(workers)] if workers else []
            if a.proxy_config:
                extra += ["--config", a.proxy_config]
            p = Proxy(a.binary, upstream, mode="enforce", extra_args=extra,
                      passive_ports=free_port_range(20000, 29999, count=500)).start()
            proxies.append(p)
            return p

        fw = start_proxy(a.workers)
        if lab:
            fw_t = Target("ftpwarden", fw.host, fw.port, direct.user, direct.password, fw.proc.pid)
        else:
            fw_t = Target("ftpwarden", fw.host, fw.port, server.user, server.password, fw.proc.pid)
        targets = [fw_t, direct, *peers]
        print(f"relay_bench: {os.cpu_count()} cores; upstream {where}; {a.rounds} round(s); "
              f"RETR/STOR {ctx.big_size >> 20} MiB, {len(ctx.small)} small files", flush=True)

        samples: dict[str, dict[str, list[dict]]] = {t.name: {} for t in targets}
        fns = {"retr": t_retr, "stor": t_stor, "small": t_small, "setup": t_setup, "noop": t_noop}
        for test in [x for x in tests if x in fns]:
            if test in ("retr", "small"):
                # One untimed pass first, so that no round reads the files from disk.
                fns[test](direct, ctx)
                print(f"  {test:5} warm-up (direct, not counted)", flush=True)
            for r in range(a.rounds):
                # Each round starts with the next target: none always goes first.
                for t in targets[r % len(targets):] + targets[:r % len(targets)]:
                    try:
                        s = fns[test](t, ctx)
                    except Failure as e:
                        if t is fw_t or t is direct:
                            raise
                        s = {"error": str(e)}  # a peer that cannot do it
                    samples[t.name].setdefault(test, []).append(s)
                    print(f"  {test:5} round {r + 1} {t.name:10} "
                          + " ".join(f"{k}={fmt(v) if isinstance(v, float) else v}" for k, v in s.items()),
                          flush=True)

        extra: dict = {}
        if "idle" in tests:
            extra["idle"] = idle_sessions(a.binary, a.idle, base)
            print(f"  idle: {extra['idle']}", flush=True)
        if "workers" in tests:
            scale = {}
            for w in (1, 2):
                p = start_proxy(w)
                t = Target(f"ftpwarden-w{w}", p.host, p.port, fw_t.user, fw_t.password, p.proc.pid)
                scale[w] = statistics.median(parallel_retr(t, ctx, 2) for _ in range(a.rounds))
                p.stop()
            scale["direct"] = statistics.median(parallel_retr(direct, ctx, 2) for _ in range(a.rounds))
            extra["workers"] = scale
            print(f"  workers: {scale}", flush=True)

        # ------------------------------------------------------------ report
        cols = [("retr", "MB/s", "RETR MB/s", True), ("stor", "MB/s", "STOR MB/s", True),
                ("small", "files/s", "small files/s (1 session)", True), ("setup", "sessions/s", "sessions/s", True),
                ("noop", "p50_us", "NOOP p50 us", False), ("noop", "p99_us", "NOOP p99 us", False)]
        cols = [c for c in cols if c[0] in tests]
        base_vals = {(c[0], c[1]): median_row(samples["direct"].get(c[0], []), c[1]) for c in cols}
        lines = [f"{os.cpu_count()} cores; upstream: {where}; medians of {a.rounds} interleaved round(s); "
                 "(x) = ratio to direct in the same run", ""]
        if cols:
            lines += ["| target | " + " | ".join(c[2] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for t in targets if cols else []:
            cells = []
            for test, key, _, _ in cols:
                v = median_row(samples[t.name].get(test, []), key)
                b = base_vals[(test, key)]
                cells.append(fmt(v) if t is direct or v != v else f"{fmt(v)} ({v / b:.2f}x)")
            lines.append(f"| {t.name} | " + " | ".join(cells) + " |")
        lines.append("")
        if "retr" in tests:
            rs = samples["ftpwarden"]["retr"]
            gib = sum(s["bytes"] for s in rs) / (1 << 30)
            lines.append(f"- ftpwarden CPU per GiB relayed (RETR): {sum(s['cpu_s'] for s in rs) / gib:.3f} s")
        if "stor" in tests:
            ss = samples["ftpwarden"]["stor"]
            gib = ctx.stor_size * len(ss) / (1 << 30)
            lines.append(f"- ftpwarden CPU per GiB relayed (STOR): {sum(s['cpu_s'] for s in ss) / gib:.3f} s")
        if "idle" in extra:
            i = extra["idle"]
            lines.append(f"- {i['sessions']} idle logged-in sessions held by one ftpwarden process: "
                         f"{i['kib_per_session']:.1f} KiB of proxy RSS each "
                         f"({i['rss_before_kib'] // 1024} -> {i['rss_after_kib'] // 1024} MiB; logins took "
                         f"{i['login_s']:.1f} s){i['note']}")
        if "workers" in extra:
            w = extra["workers"]
            lines.append(f"- two RETRs at once, aggregate MB/s: ftpwarden --workers 1: {fmt(w[1])}, "
                         f"--workers 2: {fmt(w[2])} ({w[2] / w[1]:.2f}x), direct: {fmt(w['direct'])}")
        report = "\n".join(lines)
        print("\n" + report)
        if a.md:
            Path(a.md).write_text(report + "\n")
        if a.json:
            Path(a.json).write_text(json.dumps({"samples": samples, "extra": extra}, indent=1, default=str))
        return 0
    except Failure as e:
        print(f"relay_bench: FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        for p in proxies:
            p.stop()
            p.cleanup()
        if server:
            server.stop()
        subprocess.run(["rm", "-rf", str(base)])


if __name__ == "__main__":
    if sys.argv[1:] == ["--stub-upstream"]:
        stub_upstream()
    sys.exit(main())
