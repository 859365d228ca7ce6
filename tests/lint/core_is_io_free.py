#!/usr/bin/env python3
"""The protocol core (rules/) stays I/O-free: no file under it may include
libuv, spdlog, sockets, file descriptors, threads or the clock. Exit 1 and
name each offending include otherwise. (arpa/inet.h is allowed: inet_pton and
inet_ntop are pure conversions.)"""
import re
import sys
from pathlib import Path

FORBIDDEN = re.compile(r"^\s*#\s*include\s*[<\"](uv\.h|uv/.*|spdlog/.*|sys/socket\.h|sys/epoll\.h|sys/select\.h|"
                       r"netinet/.*|netdb\.h|unistd\.h|fcntl\.h|poll\.h|thread|mutex|chrono|fstream|iostream|"
                       r"filesystem|cstdio|stdio\.h)[>\"]")

root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2]) / "rules"
bad = []
files = sorted(p for p in root.rglob("*") if p.suffix in (".h", ".cpp", ".def"))
for p in files:
    for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1):
        if FORBIDDEN.match(line):
            bad.append(f"{p.relative_to(root.parent)}:{n}: {line.strip()}")
print("\n".join(bad) if bad else f"{len(files)} files under rules/ include no I/O")
sys.exit(1 if bad or not files else 0)
