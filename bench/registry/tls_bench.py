"""TLS push and pull: serve-registry vs distribution 2.8.2 (`docker-registry`), A B A B in one run.

Both servers get the same certificate (made by `serve-registry --tls-self-signed`) and listen on
127.0.0.1; each has its own storage root under --dir (default /dev/shm, so the disk does not
decide). The client is curl, as in issue 11: a monolithic `PUT ?digest=` of the whole blob
(`curl -T`) and a GET of it, timed by curl's own `time_total`. Medians over --rounds. Each
server's CPU time (utime + stime from /proc) during each push is recorded too ("push_cpu"):
on this shared 2-core VM the wall time also holds curl's CPU ("curl_cpu": the POST and PUT curls)
and the other work's.

    .venv/bin/python bench/registry/tls_bench.py --rounds 4 --size-mib 256
    .venv/bin/python bench/registry/tls_bench.py --plain --dir /var/tmp   # plain HTTP push on the disk
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, ca: str | None, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(200):
        if proc.poll() is not None:
            raise SystemExit(f"server exited {proc.returncode}")
        args = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url + "/v2/"]
        if ca:
            args[1:1] = ["--cacert", ca]
        if subprocess.run(args, capture_output=True, text=True).stdout.strip() == "200":
            return
        time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its reaped children), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each process still running, SIGKILL after 15 s."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def summarize(res: dict[str, dict[str, list[float]]], load: float, **head: Any) -> dict[str, Any]:
    """Medians, push and pull ratios (distribution / serve-registry) and the raw rounds."""
    med = {w: {k: statistics.median(v) for k, v in d.items()} for w, d in res.items()}
    return {
        **head,
        "load_before": round(load, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "median_seconds": med,
        "speedup_push": round(med["distribution"]["push"] / med["serve-registry"]["push"], 2),
        "speedup_pull": round(med["distribution"]["pull"] / med["serve-registry"]["pull"], 2),
    }


def report(summary: dict[str, Any], res: dict[str, dict[str, list[float]]], json_path: str | None) -> None:
    print(json.dumps(summary, indent=2))
    if json_path:
        with open(json_path, "w") as f:
            json.dump({**summary, "raw": res}, f, indent=2)


def curl_time(args: list[str]) -> float:
    r = subprocess.run(["curl", "-s", "-S", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", *args],
                       capture_output=True, text=True, check=True)  # fmt: skip
    code, seconds = r.stdout.split()
    if not code.startswith("2"):
        raise SystemExit(f"curl {args[-1]}: HTTP {code}")
    return float(seconds)


def push(base: str, ca: list[str], repo: str, blob: str, digest: str) -> float:
    r = subprocess.run(["curl", "-s", "-S", *ca, "-X", "POST", "-D", "-", "-o", "/dev/null",
                        f"{base}/v2/{repo}/blobs/uploads/"], capture_output=True, text=True, check=True)  # fmt: skip
    loc = next(ln.split(":", 1)[1].strip() for ln in r.stdout.splitlines() if ln.lower().startswith("location:"))
    if not loc.startswith("http"):
        loc = base + loc
    sep = "&" if "?" in loc else "?"
    return curl_time([*ca, "-X", "PUT", "-H", "Content-Type: application/octet-stream", "-T", blob,
                      f"{loc}{sep}digest={digest}"])  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--dir", default="/dev/shm" if os.access("/dev/shm", os.W_OK) else "/tmp")
    ap.add_argument("--plain", action="store_true", help="plain HTTP (push on --dir), no TLS")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="dd-tls-bench-", dir=args.dir)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        blob = os.path.join(work, "blob")
        with open(blob, "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(1 << 20))
        with open(blob, "rb") as f:
            digest = "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
        ours_port, dist_port = free_port(), free_port()
        scheme = "http" if args.plain else "https"
        ours_cmd = [sys.executable, "-m", "dockerdoctor", "serve-registry", "--host", "127.0.0.1", "--port",
                    str(ours_port), "--root", os.path.join(work, "ours"), "--no-access-log"]  # fmt: skip
        if not args.plain:
            ours_cmd += ["--tls-self-signed", "127.0.0.1", "--tls-dir", os.path.join(work, "tls")]
        log = open(os.path.join(work, "ours.log"), "ab")  # noqa: SIM115
        procs.append(subprocess.Popen(ours_cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL))
        ca_file = None if args.plain else os.path.join(work, "tls", "ca.crt")
        for _ in range(100):
            if args.plain or os.path.exists(os.path.join(work, "tls", "server.key")):
                break
            time.sleep(0.1)
        wait_up(f"{scheme}://127.0.0.1:{ours_port}", ca_file, procs[0])
        tls_cfg = ""
        if not args.plain:
            tls_cfg = (f"  tls:\n    certificate: {work}/tls/server.crt\n    key: {work}/tls/server.key\n")
        cfg = os.path.join(work, "dist.yml")
        with open(cfg, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n"
                    f"  filesystem:\n    rootdirectory: {work}/dist\n  delete:\n    enabled: true\n"
                    f"http:\n  addr: 127.0.0.1:{dist_port}\n{tls_cfg}")  # fmt: skip
        dlog = open(os.path.join(work, "dist.log"), "ab")  # noqa: SIM115
        procs.append(subprocess.Popen(["docker-registry", "serve", cfg], stdout=dlog, stderr=dlog,
                                      stdin=subprocess.DEVNULL))  # fmt: skip
        wait_up(f"{scheme}://127.0.0.1:{dist_port}", ca_file, procs[1])
        ca = ["--cacert", ca_file] if ca_file else []
        servers = {"serve-registry": f"{scheme}://127.0.0.1:{ours_port}", "distribution": f"{scheme}://127.0.0.1:{dist_port}"}
        kinds = ("push", "pull", "push_cpu", "curl_cpu")
        res: dict[str, dict[str, list[float]]] = {k: {kind: [] for kind in kinds} for k in servers}
        pids = {"serve-registry": procs[0].pid, "distribution": procs[1].pid}
        load = os.getloadavg()[0]
        for r in range(args.rounds):
            for who, base in servers.items():  # A B A B
                repo = f"bench/r{r}"
                cpu0, kids0 = cpu_seconds(pids[who]), resource.getrusage(resource.RUSAGE_CHILDREN)
                res[who]["push"].append(push(base, ca, repo, blob, digest))
                kids = resource.getrusage(resource.RUSAGE_CHILDREN)
                res[who]["push_cpu"].append(round(cpu_seconds(pids[who]) - cpu0, 3))
                res[who]["curl_cpu"].append(round(kids.ru_utime + kids.ru_stime - kids0.ru_utime - kids0.ru_stime, 3))
                res[who]["pull"].append(curl_time([*ca, f"{base}/v2/{repo}/blobs/{digest}"]))
                subprocess.run(["curl", "-s", *ca, "-X", "DELETE", "-o", "/dev/null",
                                f"{base}/v2/{repo}/blobs/{digest}"])  # fmt: skip
            print(f"round {r + 1}: " + "  ".join(
                f"{w} push {res[w]['push'][-1]:.2f}s (cpu {res[w]['push_cpu'][-1]:.2f}s) pull {res[w]['pull'][-1]:.2f}s"
                for w in servers), flush=True)  # fmt: skip
        summary = summarize(res, load, mode="plain HTTP" if args.plain else "TLS", size_mib=args.size_mib,
                            rounds=args.rounds, dir=args.dir)  # fmt: skip
        cpu = {w: m["push_cpu"] for w, m in summary["median_seconds"].items()}
        summary["push_cpu_ratio"] = round(cpu["distribution"] / max(cpu["serve-registry"], 1e-3), 2)
        report(summary, res, args.json)
        return 0
    finally:
        stop(procs)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
