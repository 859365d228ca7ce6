#!/usr/bin/python3
"""ftpwarden FTPS benchmark: TLS bridging by the proxy against the FTP server's
own FTPS, measured side by side, interleaved, in one run.

    /usr/bin/python3 tests/bench/ftps_bench.py            # full run (a few minutes)
    /usr/bin/python3 tests/bench/ftps_bench.py --quick    # 256 MiB, 2 rounds
    /usr/bin/python3 tests/bench/ftps_bench.py --smoke    # seconds: everything runs, byte counts right

Root on Debian 12, curl, openssl, vsftpd, the release build (as relay_bench.py,
whose targets, curl runs, RETR/STOR samples, files and table helpers this
reuses; what is here is what FTPS adds).

Targets (every test, every round, each in turn, rotated from round to round):

  vsftpd-ftps     curl --ssl-reqd straight to vsftpd with ssl_enable=YES (its own FTPS)
  ftpwarden-ftps  curl --ssl-reqd to ftpwarden ([tls] client = "optional",
                  upstream = "off") in front of a plain vsftpd: the proxy
                  terminates TLS and speaks plain FTP to the server
  vsftpd-plain    plain curl straight to that plain vsftpd (the reference)

Both TLS targets get the same protocol version, cipher and key exchange
(--tls, default 1.3 with TLS_AES_128_GCM_SHA256; ECDHE on P-256):

- curl is held to it (--tlsv1.3 --tls-max 1.3 --tls13-ciphers, or --ciphers
  for 1.2; --curves P-256), the setup client and vsftpd through an OpenSSL
  configuration file (OPENSSL_CONF: Min/MaxProtocol, Ciphersuites or
  CipherString, Groups): vsftpd 3.0.3 has no TLS 1.3 option, and Python's ssl
  cannot name TLS 1.3 suites;
- the proxy's [tls] min_version and ciphersuites (or ciphers) name it;
- P-256 because vsftpd 3.0.3 offers ECDHE on prime256v1 only: a client leading
  with X25519 (OpenSSL's default) would get a HelloRetryRequest and P-256 from
  vsftpd but X25519 from the proxy.

What was negotiated is read back and any difference reported: one openssl
s_client -starttls ftp handshake to each (version, cipher, key exchange),
every curl handshake (-v "SSL connection using ..."), every setup handshake
(the client's SSLSocket: never resumed), the proxy's audit log (tls events;
every data connection protected and resumed). Both require that data
connections resume the control connection's session (vsftpd
require_ssl_reuse, the proxy's require_session_reuse).

Tests:

  retr    curl RETR of a big file, MB/s over curl's whole run (connect to 226,
          as relay_bench.py) and over the transfer alone (the RETR line to the
          226, from curl -v --trace-time); ftpwarden's CPU seconds per GiB
  stor    curl STOR of a file of the same size, the same two rates
  setup   sessions/s, one after another: connect, AUTH TLS with a full
          handshake (no session is offered for resumption), USER, PASS, QUIT;
          the plain reference: connect, USER, PASS, QUIT; ftpwarden's CPU
          milliseconds per session

Medians over the rounds, the ratio ftpwarden-ftps / vsftpd-ftps and whether it
meets its target (retr, stor >= 0.9; setup >= 0.8: printed, never a failure).
Exit status 1 when a transfer moved a wrong byte count (or a target could not
run at all), 2 when the binary or vsftpd is missing, 0 otherwise.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import relay_bench  # noqa: E402  (puts tests/integration and deploy/lab on sys.path)
from relay_bench import Ctl, Ctx, Failure, Target, cpu_seconds, fmt, make_files, median_row  # noqa: E402
from servers import FTP_PASSWORD, FTP_USER, Proxy, VsftpdServer, find_proxy_binary, find_vsftpd, free_port_range  # noqa: E402
from server_vsftpd import vsftpd_tls_options  # noqa: E402
from tls_certs import make_certs  # noqa: E402

TESTS = ["retr", "stor", "setup"]
TARGETS = {"retr": 0.9, "stor": 0.9, "setup": 0.8}  # ftpwarden-ftps / vsftpd-ftps
# --tls: (curl's version options, OpenSSL name, cipher as curl/OpenSSL/the audit log name it)
TLS = {"1.3": (["--tlsv1.3", "--tls-max", "1.3"], "TLSv1.3", "TLS_AES_128_GCM_SHA256"),
       "1.2": (["--tlsv1.2", "--tls-max", "1.2"], "TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256")}
# vsftpd 3.0.3 offers ECDHE on prime256v1 only (SSL_CTX_set_tmp_ecdh); a client
# that leads with X25519 gets a HelloRetryRequest from it (an extra round trip)
# and X25519 from the proxy: every client offers P-256 alone.
GROUP = "P-256"
SSL_LINE = re.compile(r"SSL connection using (\S+) / (\S+)")
TRACE = re.compile(r"^(\d\d):(\d\d):(\d\d\.\d+) ([<>]) (RETR|STOR|226)\b", re.M)


class Tls:
    """The one protocol version, cipher and key-exchange group every TLS actor
    of the run is held to."""

    def __init__(self, version: str, cipher: str | None, base: Path, certs):
        self.curl_version, self.version, default = TLS[version]
        self.cipher = cipher or default
        self.v13 = version == "1.3"
        self.certs = certs
        # for vsftpd (no TLS 1.3 option of its own) and the setup client
        # (Python's ssl cannot name TLS 1.3 suites): OpenSSL's system_default
        self.openssl_conf = base / "openssl-bench.cnf"
        self.openssl_conf.write_text(
            "openssl_conf = default_conf\n[default_conf]\nssl_conf = ssl_sect\n"
            "[ssl_sect]\nsystem_default = system_default_sect\n[system_default_sect]\n"
            f"MinProtocol = {self.version}\nMaxProtocol = {self.version}\nGroups = {GROUP}\n"
            + (f"Ciphersuites = {self.cipher}\n" if self.v13 else f"CipherString = {self.cipher}\n"))

    def curl_args(self) -> list[str]:
        return ["--ssl-reqd", "--cacert", str(self.certs.ca), *self.curl_version, "--curves", GROUP,
                *(["--tls13-ciphers", self.cipher] if self.v13 else ["--ciphers", self.cipher])]

    def s_client_args(self) -> list[str]:
        return ["-CAfile", str(self.certs.ca), "-tls1_3" if self.v13 else "-tls1_2", "-groups", GROUP,
                *(["-ciphersuites", self.cipher] if self.v13 else ["-cipher", self.cipher])]

    def vsftpd_options(self) -> dict[str, str]:
        # debug_ssl off: a log line per handshake is work the proxy's side does not do
        return vsftpd_tls_options(self.certs.cert, self.certs.key, ssl_ciphers=self.cipher if not self.v13 else "HIGH",
                                  debug_ssl="NO")

    def proxy_toml(self) -> str:
        return ("[tls]\n"
                f'cert = "{self.certs.cert}"\nkey = "{self.certs.key}"\n'
                'client = "optional"\nupstream = "off"\nrequire_session_reuse = true\n'
                f'min_version = "{self.version[4:]}"\n'
                + (f'ciphersuites = "{self.cipher}"\n' if self.v13 else f'ciphers = "{self.cipher}"\n'))

    def env(self) -> dict[str, str]:
        return {**os.environ, "OPENSSL_CONF": str(self.openssl_conf)}

    def want(self) -> str:
        return f"{self.version}/{self.cipher}"


class CurlTarget(Target):
    """A target whose curl runs log -v --trace-time to a file, read back for
    the TLS handshakes curl made (tls: FTPS with --ssl-reqd) and for the time
    from RETR/STOR to its 226 (the transfer without the session's set-up)."""

    def __init__(self, name, host, port, user, password, pid, tls: Tls | None, vlog: Path):
        super().__init__(name, host, port, user, password, pid)
        self.tls, self.vlog = tls, vlog
        self.curl_args = [*(tls.curl_args() if tls else []), "-v", "--trace-time", "--stderr", str(vlog)]

    def log(self) -> str:
        return self.vlog.read_text(errors="replace") if self.vlog.exists() else ""

    def handshakes(self) -> collections.Counter:
        return collections.Counter(f"{v}/{c}" for v, c in SSL_LINE.findall(self.log()))

    def transfer_seconds(self) -> float:
        """From the RETR/STOR line curl sent to the 226 it read (nan if absent)."""
        marks = [(int(h) * 3600 + int(m) * 60 + float(sec), what) for h, m, sec, _, what in TRACE.findall(self.log())]
        start = next((t for t, what in marks if what in ("RETR", "STOR")), None)
        end = next((t for t, what in reversed(marks) if what == "226"), None)
        if start is None or end is None:
            return float("nan")
        return (end - start) % 86400


# ---------------------------------------------------------------- the tests (one sample each)

def curl_sample(fn, t: CurlTarget, ctx) -> dict:
    """relay_bench's RETR/STOR sample, plus the transfer-only rate and what
    curl's TLS handshakes were."""
    t.vlog.unlink(missing_ok=True)
    try:
        s = fn(t, ctx)
    except Failure as e:
        said = [l for l in t.log().splitlines() if re.search(r" [<>] |SSL connection|curl: |error|fail", l, re.I)]
        raise Failure("\n  ".join([str(e), "curl -v (protocol lines):", *said[-15:]])) from None
    s["xfer_MB/s"] = ctx.big_size / t.transfer_seconds() / 1e6
    if t.tls:
        hs = t.handshakes()
        s["tls"] = ",".join(f"{k}x{n}" for k, n in hs.items())
        if set(hs) != {t.tls.want()} or sum(hs.values()) < 2:  # the control connection and the data connection
            ctx.problems.append(f"{t.name} {fn.__name__}: curl negotiated {dict(hs)}, want {t.tls.want()} "
                                "(control + data)")
    return s


def t_retr(t, ctx):
    return curl_sample(relay_bench.t_retr, t, ctx)


def t_stor(t, ctx):
    return curl_sample(relay_bench.t_stor, t, ctx)


def t_setup(t: CurlTarget, ctx) -> dict:
    if not t.tls:
        return relay_bench.t_setup(t, ctx)
    # In a child process of its own: Python's ssl takes TLS 1.3 suites only
    # from the OpenSSL configuration it reads as it starts.
    spec = {"host": t.host, "port": t.port, "user": t.user, "password": t.password, "n": ctx.sessions,
            "ca": str(t.tls.certs.ca), "v13": t.tls.v13, "cipher": t.tls.cipher}
    cpu0 = cpu_seconds(t.pid)  # the child's start-up is in it: a handful of ms
    r = subprocess.run([sys.executable, __file__, "--setup-client", json.dumps(spec)], env=t.tls.env(),
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise Failure(f"{t.name}: setup client: {r.stderr.strip()[-1500:]}")
    s = json.loads(r.stdout)
    s["cpu_s"] = cpu_seconds(t.pid) - cpu0
    hs = s.pop("handshakes")
    s["tls"] = ",".join(f"{k}x{n}" for k, n in hs.items())
    if set(hs) != {t.tls.want()} or sum(hs.values()) != ctx.sessions:
        ctx.problems.append(f"{t.name} setup: negotiated {hs}, want {t.tls.want()} (full handshakes only)")
    return s


def s_client_check(t: CurlTarget) -> str:
    """One handshake by openssl s_client -starttls ftp under the run's
    constraints: the version, cipher and key exchange the server agreed to
    (curl -v does not print the group)."""
    r = subprocess.run(["openssl", "s_client", "-starttls", "ftp", "-connect", f"{t.host}:{t.port}",
                        *t.tls.s_client_args()], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    got = {}
    for line in map(str.strip, r.stdout.splitlines()):
        if m := re.match(r"(?:New|Reused), (\S+), Cipher is (\S+)", line):
            got["tls"] = f"{m.group(1)}/{m.group(2)}"
        elif line.startswith("Server Temp Key:"):
            got["kx"] = line.split(":", 1)[1].strip()
        elif line.startswith("Verify return code:"):
            got["verify"] = line.split(":", 1)[1].strip()
    return f"{got.get('tls')} kx {got.get('kx')} (verify {got.get('verify')})"


def setup_client(spec: dict) -> None:
    """The TLS setup loop (run as a child with OPENSSL_CONF set): prints
    sessions/s and the handshakes' version/cipher, "resumed" if one was."""
    import ssl
    ctx = ssl.create_default_context(cafile=spec["ca"])  # the certificate is checked, as curl --cacert does
    ctx.set_ecdh_curve("prime256v1")  # GROUP (OPENSSL_CONF says so too)
    if spec["v13"]:
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    else:
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(spec["cipher"])
    t = Target("tls", spec["host"], spec["port"], spec["user"], spec["password"])
    seen: collections.Counter = collections.Counter()
    t0 = time.perf_counter()
    for _ in range(spec["n"]):
        c = Ctl(t)
        c.expect(234, "AUTH TLS")
        c.s = ctx.wrap_socket(c.s, server_hostname=t.host)  # no session= : a full handshake
        version, cipher = c.s.version(), c.s.cipher()[0]
        c.login(t)
        c.expect(221, "QUIT")
        seen[f"{version}/{cipher}" + (" resumed" if c.s.session_reused else "")] += 1
        c.close()
    print(json.dumps({"sessions/s": spec["n"] / (time.perf_counter() - t0), "handshakes": seen}))


# ---------------------------------------------------------------- run

def proxy_audit_summary(p: Proxy, probes: int) -> tuple[str, list[str]]:
    """What the proxy's audit log says of the client side's TLS (`probes`:
    sessions that end without a QUIT, s_client_check's)."""
    events = p.settle(timeout=5)
    hs = collections.Counter(f"{e['version']}/{e['cipher']}" + (" resumed" if e.get("resumed") else "")
                             for e in events if e.get("event") == "tls" and e.get("side") == "client")
    data = [e for e in events if e.get("event") == "data_open"]
    prot = sum(1 for e in data if e.get("protected"))
    res = sum(1 for e in data if e.get("resumed"))
    bad = [e for e in events if e.get("event") in ("violation", "server_finding", "timeout")]
    odd = [e for e in events if e.get("event") == "session_close" and e.get("reason") != "quit"]
    bad += odd if len(odd) > probes else []
    text = (f"control handshakes {dict(hs)}; data connections {len(data)}, protected {prot}, resumed {res}")
    problems = [f"ftpwarden audit: {len(bad)} violation/finding/odd close event(s), first: {bad[0]}"] if bad else []
    if prot != len(data) or res != prot:
        problems.append(f"ftpwarden audit: not every data connection protected and resumed ({text})")
    return text, problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="256 MiB, 100 sessions, 2 rounds")
    ap.add_argument("--smoke", action="store_true", help="8 MiB, 10 sessions, 1 round: everything runs, bytes right")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--big-mb", type=int)
    ap.add_argument("--sessions", type=int)
    ap.add_argument("--tests", default=",".join(TESTS))
    ap.add_argument("--tls", choices=sorted(TLS), default="1.3", help="the TLS version both FTPS targets use")
    ap.add_argument("--cipher", help="the cipher (TLS 1.3 suite, or TLS 1.2 OpenSSL name); default per --tls")
    ap.add_argument("--workers", type=int, default=0, help="ftpwarden --workers (0: cores)")
    ap.add_argument("--binary", default=find_proxy_binary())
    ap.add_argument("--json", help="write every sample here")
    a = ap.parse_args()
    preset = ({"rounds": 1, "big_mb": 8, "sessions": 10} if a.smoke else
              {"rounds": 2, "big_mb": 256, "sessions": 100} if a.quick else
              {"rounds": 5, "big_mb": 1024, "sessions": 250})
    for k, v in preset.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    tests = [x for x in a.tests.split(",") if x]
    if unknown := set(tests) - set(TESTS):
        ap.error(f"unknown tests {sorted(unknown)} (known: {','.join(TESTS)})")
    if not a.binary or not os.access(a.binary, os.X_OK):
        print("ftps_bench: no ftpwarden binary (build the release preset or set FTPWARDEN_BIN)", file=sys.stderr)
        return 2
    vs = find_vsftpd()
    if not vs:
        print("ftps_bench: vsftpd not found (bash deploy/install-deps.sh)", file=sys.stderr)
        return 2

    ctx = Ctx()
    ctx.big_size = ctx.stor_size = a.big_mb << 20
    ctx.small, ctx.sessions, ctx.problems = [], a.sessions, []
    ctx.big, ctx.small_dir, ctx.up = "big.bin", "small", "up"
    base = Path(tempfile.mkdtemp(prefix="ftpw-ftps-bench-"))
    base.chmod(0o755)  # the FTP user must reach the servers' roots below it
    servers: list[VsftpdServer] = []
    fw = None
    try:
        tls = Tls(a.tls, a.cipher, base, make_certs(base / "certs"))

        (base / "vsftpd-plain").mkdir()
        (base / "vsftpd-ftps").mkdir()
        plain = VsftpdServer(FTP_USER, FTP_PASSWORD, vs, base=base / "vsftpd-plain", protocol_log=False, pasv_ports=200)
        ftps = VsftpdServer(FTP_USER, FTP_PASSWORD, vs, base=base / "vsftpd-ftps", protocol_log=False, pasv_ports=200,
                            tls=tls.vsftpd_options())
        plain.start()
        servers.append(plain)
        saved = os.environ.get("OPENSSL_CONF")
        os.environ["OPENSSL_CONF"] = str(tls.openssl_conf)  # read by the vsftpd started now (it inherits it)
        try:
            ftps.start()
            servers.append(ftps)
        finally:
            if saved is None:
                del os.environ["OPENSSL_CONF"]
            else:
                os.environ["OPENSSL_CONF"] = saved
        # One big file for both servers (a hard link: one page-cache copy);
        # it is also the STOR source.
        if {"retr", "stor"} & set(tests):
            make_files(plain.root, plain.uid, ctx)
            os.link(plain.root / ctx.big, ftps.root / ctx.big)
            make_files(ftps.root, ftps.uid, ctx)
        ctx.stor_src = plain.root / ctx.big
        os.sync()

        conf = base / "ftpwarden.toml"
        conf.write_text(tls.proxy_toml())
        fw = Proxy(a.binary, plain, mode="enforce",
                   extra_args=["--config", str(conf), *(["--workers", str(a.workers)] if a.workers else [])],
                   passive_ports=free_port_range(20000, 29999, count=500)).start()

        A = CurlTarget("vsftpd-ftps", ftps.host, ftps.port, ftps.user, ftps.password, ftps.proc.pid, tls,
                       base / "curl-A.log")
        B = CurlTarget("ftpwarden-ftps", fw.host, fw.port, plain.user, plain.password, fw.proc.pid, tls,
                       base / "curl-B.log")
        C = CurlTarget("vsftpd-plain", plain.host, plain.port, plain.user, plain.password, plain.proc.pid, None,
                       base / "curl-C.log")
        targets = [A, B, C]
        where = (f"{os.cpu_count()} cores; vsftpd-ftps 127.0.0.1:{ftps.port}, ftpwarden-ftps 127.0.0.1:{fw.port} -> "
                 f"vsftpd-plain 127.0.0.1:{plain.port}; TLS {tls.want()}, {GROUP}")
        print(f"ftps_bench: {where}; {a.rounds} round(s); RETR/STOR {a.big_mb} MiB; setup {ctx.sessions} sessions",
              flush=True)
        agreed = {t.name: s_client_check(t) for t in (A, B)}
        for name, got in agreed.items():
            print(f"  openssl s_client -starttls ftp to {name}: {got}", flush=True)
        if len(set(agreed.values())) != 1 or not agreed[A.name].startswith(tls.want()):
            ctx.problems.append(f"the servers agree to different TLS parameters: {agreed}")

        samples: dict[str, dict[str, list[dict]]] = {t.name: {} for t in targets}
        fns = {"retr": t_retr, "stor": t_stor, "setup": t_setup}
        for test in tests:
            if test == "retr":  # one untimed pass: no round reads the file from disk
                t_retr(C, ctx)
                print("  retr  warm-up (vsftpd-plain, not counted)", flush=True)
            for r in range(a.rounds):
                for t in targets[r % 3:] + targets[:r % 3]:
                    s = fns[test](t, ctx)
                    samples[t.name].setdefault(test, []).append(s)
                    print(f"  {test:5} round {r + 1} {t.name:14} "
                          + " ".join(f"{k}={fmt(v) if isinstance(v, float) else v}" for k, v in s.items()), flush=True)

        # ------------------------------------------------------------ report
        audit, audit_problems = proxy_audit_summary(fw, probes=1)
        ctx.problems += audit_problems
        cols = [(test, key, label) for test, key, label in
                (("retr", "MB/s", "RETR MB/s"), ("retr", "xfer_MB/s", "RETR MB/s (transfer only)"),
                 ("stor", "MB/s", "STOR MB/s"), ("stor", "xfer_MB/s", "STOR MB/s (transfer only)"),
                 ("setup", "sessions/s", "sessions/s")) if test in tests]
        med = {(t.name, test, key): median_row(samples[t.name].get(test, []), key)
               for t in targets for test, key, _ in cols}
        lines = [f"{where}; medians of {a.rounds} interleaved round(s); (x) = ratio to vsftpd-ftps; "
                 "MB/s: curl's whole run (connect to 226), as relay_bench; transfer only: RETR/STOR to 226", "",
                 "| target | " + " | ".join(c[2] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for t in targets:
            cells = []
            for test, key, _ in cols:
                v, ref = med[(t.name, test, key)], med[(A.name, test, key)]
                cells.append(fmt(v) if t is A or v != v else f"{fmt(v)} ({v / ref:.2f}x)")
            lines.append(f"| {t.name} | " + " | ".join(cells) + " |")
        lines.append("")
        for test, key, label in cols:
            ratio = med[(B.name, test, key)] / med[(A.name, test, key)]
            goal = TARGETS[test]
            lines.append(f"- {label}: ftpwarden-ftps / vsftpd-ftps = {ratio:.2f} (target >= {goal}): "
                         + ("met" if ratio >= goal else "NOT met"))
        if "retr" in tests:
            rs = samples[B.name]["retr"]
            gib = sum(s["bytes"] for s in rs) / (1 << 30)
            lines.append(f"- ftpwarden CPU per GiB relayed (RETR, TLS toward the client): "
                         f"{sum(s['cpu_s'] for s in rs) / gib:.3f} s")
        if "stor" in tests:
            ss = samples[B.name]["stor"]
            gib = ctx.stor_size * len(ss) / (1 << 30)
            lines.append(f"- ftpwarden CPU per GiB relayed (STOR): {sum(s['cpu_s'] for s in ss) / gib:.3f} s")
        if "setup" in tests:
            ss = samples[B.name]["setup"]
            lines.append(f"- ftpwarden CPU per session (setup: TLS handshake, login, QUIT): "
                         f"{sum(s['cpu_s'] for s in ss) / (ctx.sessions * len(ss)) * 1000:.2f} ms")
        lines.append(f"- ftpwarden audit log: {audit}")
        lines.append("- TLS check: " + (f"every handshake {tls.want()}, {GROUP}" if not ctx.problems else
                                        "PROBLEMS:\n  " + "\n  ".join(ctx.problems)))
        print("\n" + "\n".join(lines))
        if a.json:
            Path(a.json).write_text(json.dumps({"samples": samples, "problems": ctx.problems}, indent=1, default=str))
        return 0
    except Failure as e:
        print(f"ftps_bench: FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        if fw:
            fw.stop()
            fw.cleanup()
        for s in servers:
            s.stop()
        subprocess.run(["rm", "-rf", str(base)])


if __name__ == "__main__":
    if sys.argv[1:2] == ["--setup-client"]:
        setup_client(json.loads(sys.argv[2]))
        sys.exit(0)
    sys.exit(main())
