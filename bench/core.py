#!/usr/bin/env python3
"""Benchmark of the core CLI: median wall time (and peak RSS) of

  1. dockerdoctor --version                      target < 150 ms
  2. dockerdoctor check --root <snapshot>        target < 150 ms
  3. dockerdoctor check            (live host)   target < 300 ms (firewalld installed, not running)

Usage: .venv/bin/python bench/core.py [--runs N] [--snapshot DIR] [--peer OTHER/.venv/bin/dockerdoctor]
Each command runs N times in a fresh process (after one warm-up run); the median is reported. With
--peer, another build runs alternately with this one, so both see the same load.
Not a test: numbers go in bench/README.md, with the load average it prints (other test suites on a
shared machine slow every number down).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SNAPSHOT = ROOT / "fixtures" / "hosts" / "centos7-docker-ce-ignores-sysconfig"


def _time(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, capture_output=True, env={**os.environ, "NO_COLOR": "1"})
    return time.perf_counter() - t0


def measure(argv: list[str], runs: int, peer: str | None = None) -> tuple[list[float], list[float]]:
    """Wall times of this checkout's dockerdoctor (and of `peer`, run alternately: same load for both)."""
    exe = shutil.which("dockerdoctor", path=str(Path(sys.executable).parent)) or "dockerdoctor"
    cmds = [[exe, *argv]] + ([[peer, *argv]] if peer else [])
    for cmd in cmds:
        subprocess.run(cmd, capture_output=True)  # warm-up: page cache, pyc files
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(runs):
        ours.append(_time(cmds[0]))
        if peer:
            theirs.append(_time(cmds[1]))
    return ours, theirs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--snapshot", type=Path, default=DEFAULT_SNAPSHOT)
    ap.add_argument("--peer", metavar="EXE", help="another dockerdoctor (say, main's) to time alternately")
    args = ap.parse_args()
    rows = [
        ("dockerdoctor --version", ["--version"], 0.150),
        (f"dockerdoctor check --root {args.snapshot.name}", ["check", "--root", str(args.snapshot)], 0.150),
        ("dockerdoctor check (live host)", ["check"], 0.300),
        # issue 15: no peer has `resolve` yet, so these rows run this checkout only
        ("dockerdoctor resolve IMAGE --root crio-insecure-registries-without-port",
         ["resolve", "192.168.122.1:443/app:1", "--root", str(ROOT / "fixtures" / "hosts" /
                                                               "crio-insecure-registries-without-port")], 0.150),
        ("dockerdoctor resolve IMAGE (live host: dockerd row, podman, buildah, skopeo)",
         ["resolve", "10.0.0.5:5000/team/app:1"], 0.300),
    ]
    new = {"resolve"}
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    peer_col = f" {'peer':>8} {'peer min':>8}" if args.peer else ""
    print(f"{'command':<70} {'median':>8} {'min':>8}{peer_col} {'target':>8}  verdict")
    for name, argv, target in rows:
        ours, theirs = measure(argv, args.runs, None if argv[0] in new else args.peer)
        med = statistics.median(ours)
        verdict = "ok" if med < target else "MISSED"
        peer = f" {statistics.median(theirs) * 1000:7.0f}ms {min(theirs) * 1000:7.0f}ms" if theirs else ""
        print(f"{name:<70} {med * 1000:7.0f}ms {min(ours) * 1000:7.0f}ms{peer} {target * 1000:7.0f}ms  {verdict}")
    print(f"peak RSS of any run: {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MiB")
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
