"""Stopping a server's whole process tree (vsftpd puts each session in a
session of its own, so a process-group kill would miss them)."""
from __future__ import annotations

import os
import signal


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    return children


def descendants(pid: int) -> list[int]:
    children = _children_map()
    out, stack = [], [pid]
    while stack:
        for c in children.get(stack.pop(), []):
            out.append(c)
            stack.append(c)
    return out


def kill_tree(pid: int) -> None:
    """SIGKILL `pid` and all its descendants. Everything is stopped first
    (top-down, repeated until no new process shows up) so nothing forks or
    gets re-parented in between."""
    stopped: list[int] = []
    try:
        os.kill(pid, signal.SIGSTOP)
    except ProcessLookupError:
        return
    stopped.append(pid)
    for _ in range(5):
        new = [c for c in descendants(pid) if c not in stopped]
        if not new:
            break
        for c in new:
            try:
                os.kill(c, signal.SIGSTOP)
            except ProcessLookupError:
                pass
            stopped.append(c)
    for c in reversed(stopped):
        try:
            os.kill(c, signal.SIGKILL)
        except ProcessLookupError:
            pass
