#!/usr/bin/env python3
"""Compare two sets of audit logs written by the integration suite.

    FTPW_AUDIT_ARCHIVE=/tmp/before pytest tests/integration   # on the old build
    FTPW_AUDIT_ARCHIVE=/tmp/after  pytest tests/integration   # on the new build
    python3 tests/integration/compare_audit.py /tmp/before /tmp/after

Each test's audit logs are compared record by record after masking what
differs from run to run by nature: timestamps, session ids, ports, temporary
paths and measured durations. Exit status 1 when any log differs; each
difference is printed with the first records that disagree.

--unordered compares each log as a multiset of records: for tests whose
sessions run concurrently, the order of their records is the scheduler's.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

# Fields whose value is measured, not decided (the control bytes count the
# digits of port numbers).
MEASURED = {"ts", "latency_us", "duration_ms", "duration_us", "bytes_from_client", "bytes_to_client"}
ADDR_FIELDS = {"peer", "local", "upstream", "client_side", "server_side"}
PORT_IN_TEXT = [
    (re.compile(r"\d+,\d+,\d+,\d+,\d+,\d+"), "h1,h2,h3,h4,p1,p2"),  # 227, PORT
    (re.compile(r"\|(\d?)\|([^|]*)\|\d+\|"), r"|\1|\2|port|"),        # 229, EPRT
    (re.compile(r"(\d+\.\d+\.\d+\.\d+|\[[0-9a-f:]+\]):\d+"), r"\1:port"),
    (re.compile(r"/tmp/[A-Za-z0-9_.-]+"), "/tmp/X"),
    (re.compile(r"ftpw-[a-z]+-[A-Za-z0-9_]+"), "ftpw-X"),  # a test server's temporary name
    (re.compile(r"\b\d{14}(\.\d+)?\b"), "YYYYMMDDHHMMSS"),  # MDTM, MLST modify=
    (re.compile(r"[0-9a-f]{12,}"), "RANDOM"),  # the tests' random names and markers
    (re.compile(r"-\d{3,7}-"), "-PID-"),        # names made of a process id
    (re.compile(r"-[0-9a-f]{8}-"), "-RANDOM-"),
    (re.compile(r"unique=[^;]+"), "unique=X"),   # MLST: the file's inode
    (re.compile(r"\b\d\d:\d\d\b"), "HH:MM"),      # a greeting's clock
    (re.compile(r"port: \d+"), "port: N"),      # ... and its port
    (re.compile(r"[\d.]+ seconds \(measured here\), [\d.]+ Mbytes per second"), "T seconds, R Mbytes per second"),
]
# Events of the data connections: their order against the control channel's
# is the network's (a client connects before or after its RETR reaches the
# proxy), so each stream is compared in its own order.
# A transfer's record follows its data connection's end, before or after
# the completion reply's record.
DATA_EVENTS = {"data_open", "data_close", "transfer"}
# A session's end is its last word, though its record can come before the
# record of a completion reply logged as it went out.
LAST_EVENTS = {"session_close"}


def mask(rec: dict) -> str:
    if rec.get("event") == "reply" and rec.get("code") in (125, 150):
        # Whether a server says 125 (its data connection already open) or
        # 150 depends on which came first, its accept or the command.
        rec = {k: v for k, v in rec.items() if k not in ("text", "annotation")} | {"code": "125|150"}
    if rec.get("event") == "transfer":
        rec = {k: v for k, v in rec.items() if k != "data_conn"}
        if not 200 <= rec.get("code", 0) < 300:
            rec.pop("bytes", None)  # how far a failed one got is the network's doing
    if rec.get("event") == "reply" and rec.get("verb") == "ABOR" and rec.get("code") in (225, 226):
        # 225 or 226: whether the transfer had ended when the ABOR came
        rec = {k: v for k, v in rec.items() if k != "text"} | {"code": "225|226"}
    if rec.get("event") == "reply" and rec.get("code") == 426:
        rec = {k: v for k, v in rec.items() if k != "text"}  # servers count what they sent by then
    if rec.get("event") == "data_close" and not rec.get("complete"):
        # cut short (ABOR, a peer gone): how far it got is the network's doing
        rec = {k: v for k, v in rec.items() if k not in ("bytes_down", "bytes_up")}
        if rec.get("reason") in ("relay-write-error", "poll-error", "relay-read-error"):
            rec["reason"] = "network-error"  # which side's error is seen first
    out = {}
    for k, v in rec.items():
        if k in MEASURED:
            continue
        if k == "session":
            v = "S"
        elif k in ADDR_FIELDS and isinstance(v, str):
            v = re.sub(r":\d+$", ":port", v)
        elif isinstance(v, str):
            for rx, rep in PORT_IN_TEXT:
                v = rx.sub(rep, v)
        out[k] = v
    return json.dumps(out, sort_keys=True)


def load(path: Path) -> list[str]:
    """Each session's control records, then its data records; the sessions
    in an order of their own content (concurrent sessions interleave in the
    log as the scheduler ran them), then the records of no session."""
    control: dict[str, list[str]] = {}
    data: dict[str, list[str]] = {}
    last: dict[str, list[str]] = {}
    order: list[str] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            rec = {"event": "<not JSON>"}
        sid = rec.get("session") or ""
        if sid not in control:
            control[sid], data[sid], last[sid] = [], [], []
            order.append(sid)
        ev = rec.get("event")
        (data if ev in DATA_EVENTS else last if ev in LAST_EVENTS else control)[sid].append(mask(rec))
    sessions = sorted("\n".join(control[s] + last[s] + ["  -- data connections --"] + data[s]) for s in order if s)
    loose = sorted(control.get("", []) + data.get("", []))
    return [line for block in sessions for line in block.split("\n")] + ["-- no session --"] + loose


def compare(a: list[str], b: list[str], unordered: bool) -> list[str]:
    if unordered:
        ca, cb = Counter(a), Counter(b)
        if ca == cb:
            return []
        return [f"  only before: {r}" for r in (ca - cb).elements()][:5] + \
               [f"  only after:  {r}" for r in (cb - ca).elements()][:5]
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return [f"  record {i + 1}:", f"    before: {x}", f"    after:  {y}"]
    if len(a) != len(b):
        longer, which = (a, "before") if len(a) > len(b) else (b, "after")
        return [f"  {which} has {abs(len(a) - len(b))} more record(s), first: {longer[min(len(a), len(b))]}"]
    return []


# Tests whose volume is set by time (a slow transfer runs for a while), not
# by what they do: their logs differ run to run by design.
DEFAULT_SKIP = [r"test_busy_polling_stops_during_a_slow_transfer", r"test_stalled_readers_keep_memory_bounded",
                # a second session transfers in a loop for as long as the attack runs
                r"test_bounce_refused_",
                # the server is killed mid-transfer: whether its data connection's end or its
                # control connection's is seen first is the kernel's order
                r"test_upstream_dies_mid_transfer_"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--unordered", action="store_true", help="compare each log as a multiset of records")
    ap.add_argument("--skip", action="append", default=[], metavar="REGEX",
                    help="ignore logs whose file name matches (repeatable)")
    args = ap.parse_args()
    before = {p.name: p for p in args.before.glob("*.jsonl")}
    after = {p.name: p for p in args.after.glob("*.jsonl")}
    skip = [re.compile(s) for s in args.skip + DEFAULT_SKIP]
    names = sorted(n for n in before.keys() | after.keys() if not any(s.search(n) for s in skip))
    differ = 0
    for n in names:
        if n not in before or n not in after:
            print(f"{n}: only in {'after' if n not in before else 'before'}")
            differ += 1
            continue
        d = compare(load(before[n]), load(after[n]), args.unordered)
        if d:
            differ += 1
            print(f"{n}: differs")
            print("\n".join(d))
    print(f"{len(names)} audit logs compared, {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
