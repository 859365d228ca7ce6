"""Runs the integration suite as several pytest processes at once.

FTPW_SHARD=I/N (1 <= I <= N) keeps the test files of shard I: the files are
dealt to the N shards by their measured running time (durations.json, longest
first, each to the shard with the least so far), so the shards end together;
a file with no measurement goes by its name's hash. Each shard also gets its
own slice of the passive port ranges (deploy/lab/ports.py reads the same
variable), so two shards' servers and proxies never race for a port.

Measure again after adding or changing tests:

    /usr/bin/python3 -m pytest tests/integration --junitxml=/tmp/i.xml
    /usr/bin/python3 tests/integration/sharding.py /tmp/i.xml > tests/integration/durations.json
"""
from __future__ import annotations

import json
import os
import sys
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent


def shard() -> tuple[int, int] | None:
    spec = os.environ.get("FTPW_SHARD", "")
    if not spec:
        return None
    i, n = (int(x) for x in spec.split("/"))
    if not 1 <= i <= n:
        raise ValueError(f"FTPW_SHARD={spec}: want I/N with 1 <= I <= N")
    return i, n


def assign(files: list[str], n: int) -> dict[str, int]:
    """file name -> shard (1..n)."""
    try:
        durations = json.loads((HERE / "durations.json").read_text())
    except FileNotFoundError:
        durations = {}
    load = [0.0] * n
    out: dict[str, int] = {}
    for f in sorted((f for f in files if f in durations), key=lambda f: (-durations[f], f)):
        k = min(range(n), key=lambda j: load[j])
        load[k] += durations[f]
        out[f] = k + 1
    for f in files:
        if f not in out:
            out[f] = zlib.crc32(f.encode()) % n + 1
    return out


def pytest_collection_modifyitems(config, items):
    s = shard()
    if s is None:
        return
    i, n = s
    files = sorted({Path(str(item.fspath)).name for item in items})
    owner = assign(files, n)
    keep = [it for it in items if owner[Path(str(it.fspath)).name] == i]
    drop = [it for it in items if owner[Path(str(it.fspath)).name] != i]
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep


if __name__ == "__main__":
    # junit xml -> {file: seconds}
    import xml.etree.ElementTree as ET
    totals: dict[str, float] = {}
    for case in ET.parse(sys.argv[1]).iter("testcase"):
        name = case.get("classname", "").split(".")[-1] + ".py"
        totals[name] = totals.get(name, 0.0) + float(case.get("time", 0))
    json.dump({k: round(v, 1) for k, v in sorted(totals.items())}, sys.stdout, indent=1)
    print()
