#!/usr/bin/env python3
"""Runs `ftpwarden lint` on every corpus case (*.ftp, *.jsonl) and compares its
output and exit status with the case's .expected file:
  first line  "exit N", then the findings, with the case's path shown as its file name."""
import os
import subprocess
import sys

binary, corpus = sys.argv[1], sys.argv[2]
failed = 0
cases = sorted(os.path.relpath(os.path.join(d, f), corpus) for d, _, files in os.walk(corpus)
               for f in files if f.endswith((".ftp", ".jsonl")))
for case in cases:
    path = os.path.join(corpus, case)
    p = subprocess.run([binary, "lint", path], capture_output=True, text=True, timeout=30)
    got = [f"exit {p.returncode}"] + [l.replace(path, os.path.basename(case)) for l in p.stdout.splitlines()]
    with open(path + ".expected") as f:
        want = f.read().splitlines()
    if got != want:
        failed += 1
        print(f"FAIL {case}\n--- expected\n" + "\n".join(want) + "\n--- got\n" + "\n".join(got))
        if p.stderr:
            print("--- stderr\n" + p.stderr)
    else:
        print(f"ok   {case}")
print(f"{len(cases) - failed}/{len(cases)} corpus cases match")
sys.exit(1 if failed or not cases else 0)
