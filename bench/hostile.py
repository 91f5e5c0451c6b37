"""check --root on hostile snapshots (tests/hostile.py, plus a daemon.json of 200,000 insecure-registries
and a tarball of 200,000 members): wall time per snapshot, median of --runs, optionally beside a peer
build (`--peer-src DIR`: an unpacked source tree of another commit, run with this venv's Python).

    .venv/bin/python bench/hostile.py --runs 3 --peer-src /tmp/old-src
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import hostile  # noqa: E402

TIMEOUT = 60.0


def build(base: Path) -> dict[str, Path]:
    out = {name: fn(base / name) for name, fn in hostile.CASES.items()}
    big = hostile.copy_host("docker-ce-http-registry-not-trusted", base / "daemon-json-200k")
    entries = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:5000" for i in range(200_000)]
    (big / "etc/docker/daemon.json").write_text(json.dumps({"insecure-registries": entries}))
    out["daemon-json-200k"] = big
    many = base / "members-200k.tar.xz"
    with tarfile.open(many, "w:xz") as t:
        for n in range(200_000):
            t.addfile(tarfile.TarInfo(f"etc/f{n}"), io.BytesIO(b""))
    out["members-200k.tar.xz"] = many
    return out


def run(src: Path | None, snap: Path) -> tuple[float, int]:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    start = time.perf_counter()
    try:
        r = subprocess.run([sys.executable, "-m", "dockerdoctor", "check", "--root", str(snap), "--format", "json"],
                           capture_output=True, env=env, timeout=TIMEOUT, cwd=src or ROOT)
        rc = r.returncode
    except subprocess.TimeoutExpired:
        return TIMEOUT, -1
    return time.perf_counter() - start, rc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--peer-src", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dd-hostile-") as tmp:
        cases = build(Path(tmp))
        print(f"load average {os.getloadavg()[0]:.2f}")
        print(f"| snapshot | this build: median s (rc) | {'peer: median s (rc)' if args.peer_src else ''} |")
        for name, snap in cases.items():
            mine = [run(None, snap) for _ in range(args.runs)]
            row = f"| {name} | {statistics.median(t for t, _ in mine):.2f} ({mine[-1][1]}) |"
            if args.peer_src:
                peer = run(args.peer_src, snap)  # once: the old build may take the whole timeout
                row += (f" >{TIMEOUT:.0f} (timeout) |" if peer[1] == -1 else f" {peer[0]:.2f} ({peer[1]}) |")
            print(row, flush=True)


if __name__ == "__main__":
    main()
