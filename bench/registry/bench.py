#!/usr/bin/env python3
"""serve-registry vs the CNCF registry (`docker-registry`, distribution 2.8) on this machine.

Both servers run at the same time on 127.0.0.1, on separate storage roots under /tmp, and
every measurement alternates A B A B so that load from other work on the machine hits both.

  python bench/registry/bench.py                 # full run: 5 rounds of 256 MiB, 1 GiB RSS test
  python bench/registry/bench.py --quick         # 2 rounds of 64 MiB, short manifest runs

Measures:
  push-mono      POST, then one PUT ?digest= with the whole blob (the client uses sendfile)
  push-chunked   POST, PATCHes of 16 MiB with Content-Range, then PUT ?digest=
  push-stream    POST, one PATCH with Transfer-Encoding: chunked in 32 KiB chunks (as docker pushes), then PUT
  pull           GET of the blob; wall time, and the server's CPU time (utime+stime) per pull
  manifest GET/HEAD  requests/s at concurrency 16 for 5 s with ApacheBench `ab -k` (apache2-utils)
  RSS            peak resident memory (VmHWM) of a fresh server process during a 1 GiB push

Blobs and both storage roots live on /dev/shm (tmpfs) unless --dir says otherwise: on this VM the
disk's write-back otherwise decides the push numbers more than either server does.

Ours runs with --no-access-log (distribution with its access log disabled too); blobs use
one worker, the manifest test uses --workers 2 (distribution uses both cores as well).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
CHUNK = 16 << 20


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ servers
class Srv:
    def __init__(self, label: str, cmd: list[str], port: int, root: str) -> None:
        self.label, self.cmd, self.port, self.root = label, cmd, port, root
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Srv:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                status, _, _ = request(self.port, "GET", "/v2/")
                if status == 200:
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.label} did not start")

    def pids(self) -> list[int]:
        assert self.proc is not None
        pids = [self.proc.pid]
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                pids += [int(p) for p in f.read().split()]
        except OSError:
            pass
        return pids

    def cpu(self) -> float:
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
            except OSError:
                pass
        return total

    def hwm_mib(self) -> float:
        """Peak RSS of the process that does the work (the worker, for a 1-worker server)."""
        best = 0
        for pid in self.pids():
            with open(f"/proc/{pid}/status") as f:
                m = re.search(r"VmHWM:\s+(\d+) kB", f.read())
            best = max(best, int(m.group(1)) if m else 0)
        return best / 1024

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def free_port() -> int:
    for port in range(15800, 16000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port in 15800-15999")


def ours(label: str, root: str, *extra: str) -> Srv:
    port = free_port()
    cmd = [sys.executable, "-m", "dockerdoctor", "serve-registry", "--host", "127.0.0.1", "--port", str(port),
           "--root", root, "--no-access-log", *extra]  # fmt: skip
    return Srv(label, cmd, port, root).start()


def distribution(label: str, root: str, work: str) -> Srv:
    port = free_port()
    cfg = os.path.join(work, f"dist-{port}.yml")
    with open(cfg, "w") as f:
        f.write(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n"
            f"  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{port}\n"
        )
    return Srv(label, ["docker-registry", "serve", cfg], port, root).start()


# ------------------------------------------------------------------ a minimal HTTP/1.1 client
def request(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body_file: str | None = None,
    offset: int = 0,
    count: int = 0,
    sink: bool = False,
) -> tuple[int, dict[str, str], int]:
    """One request on a fresh connection; the body goes out with sendfile, the answer is drained."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        h = {"Host": f"127.0.0.1:{port}", "Content-Length": str(count if body_file else 0)}
        h.update(headers or {})
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
        s.sendall(head.encode())
        if body_file and count:
            with open(body_file, "rb") as f:
                s.sendfile(f, offset, count)
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        data = b""
        while b"\r\n\r\n" not in data:
            n = s.recv_into(view)
            if n == 0:
                raise OSError("connection closed")
            data += bytes(view[:n])
        raw_head, _, rest = data.partition(b"\r\n\r\n")
        lines = raw_head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        resp = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        length = int(resp.get("content-length", "0"))
        got = len(rest)
        if method != "HEAD":
            while got < length:
                n = s.recv_into(view)
                if n == 0:
                    break
                got += n
        return status, resp, got


def loc(resp: dict[str, str]) -> str:
    location = resp["location"]
    return re.sub(r"^https?://[^/]+", "", location)


def push_mono(srv: Srv, repo: str, path: str, size: int, digest: str) -> float:
    t0 = time.perf_counter()
    st, h, _ = request(srv.port, "POST", f"/v2/{repo}/blobs/uploads/")
    assert st == 202, st
    sep = "&" if "?" in loc(h) else "?"
    st, _, _ = request(srv.port, "PUT", f"{loc(h)}{sep}digest={digest}",
                       {"Content-Type": "application/octet-stream"}, path, 0, size)  # fmt: skip
    assert st == 201, st
    return time.perf_counter() - t0


def push_stream(srv: Srv, repo: str, path: str, size: int, digest: str) -> float:
    """What docker does: one PATCH with Transfer-Encoding: chunked (no length known), then PUT."""
    t0 = time.perf_counter()
    st, h, _ = request(srv.port, "POST", f"/v2/{repo}/blobs/uploads/")
    assert st == 202, st
    where = loc(h)
    with socket.create_connection(("127.0.0.1", srv.port)) as s, open(path, "rb") as f:
        s.sendall(
            f"PATCH {where} HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nTransfer-Encoding: chunked\r\n"
            "Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        step = 32 << 10  # Go's io.Copy buffer: docker sends 32 KiB chunks
        for off in range(0, size, step):
            n = min(step, size - off)
            s.sendall(f"{n:x}\r\n".encode())
            s.sendfile(f, off, n)
            s.sendall(b"\r\n")
        s.sendall(b"0\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            part = s.recv(65536)
            if not part:
                break
            data += part
        head = data.decode("latin-1").split("\r\n")
        assert head[0].split()[1] == "202", head[0]
        where = next(ln.split(":", 1)[1].strip() for ln in head if ln.lower().startswith("location:"))
        where = re.sub(r"^https?://[^/]+", "", where)
    sep = "&" if "?" in where else "?"
    st, _, _ = request(srv.port, "PUT", f"{where}{sep}digest={digest}")
    assert st == 201, st
    return time.perf_counter() - t0


def push_chunked(srv: Srv, repo: str, path: str, size: int, digest: str) -> float:
    t0 = time.perf_counter()
    st, h, _ = request(srv.port, "POST", f"/v2/{repo}/blobs/uploads/")
    assert st == 202, st
    where = loc(h)
    for off in range(0, size, CHUNK):
        n = min(CHUNK, size - off)
        st, h, _ = request(srv.port, "PATCH", where,
                           {"Content-Range": f"{off}-{off + n - 1}", "Content-Type": "application/octet-stream"},
                           path, off, n)  # fmt: skip
        assert st == 202, (st, off)
        where = loc(h)
    sep = "&" if "?" in where else "?"
    st, _, _ = request(srv.port, "PUT", f"{where}{sep}digest={digest}")
    assert st == 201, st
    return time.perf_counter() - t0


def pull(srv: Srv, repo: str, size: int, digest: str, times: int = 3) -> tuple[float, float]:
    """Seconds per pull and server CPU seconds per pull, over `times` back-to-back GETs
    (CPU is read from /proc in clock ticks of 10 ms, so one pull alone is too coarse)."""
    c0 = srv.cpu()
    t0 = time.perf_counter()
    for _ in range(times):
        st, _, got = request(srv.port, "GET", f"/v2/{repo}/blobs/{digest}")
        assert st == 200 and got == size, (st, got)
    dt = time.perf_counter() - t0
    return dt / times, (srv.cpu() - c0) / times


def make_file(path: str, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 8 << 20))
            f.write(chunk)
            h.update(chunk)
            left -= len(chunk)
    return "sha256:" + h.hexdigest()


def push_manifest(srv: Srv, repo: str) -> None:
    import requests

    base = f"http://127.0.0.1:{srv.port}"
    cfg = b'{"architecture":"amd64","os":"linux"}'
    d = "sha256:" + hashlib.sha256(cfg).hexdigest()
    r = requests.post(f"{base}/v2/{repo}/blobs/uploads/?digest={d}", data=cfg, timeout=30)
    if r.status_code != 201:  # distribution 2.8 has no single-POST push
        r = requests.post(f"{base}/v2/{repo}/blobs/uploads/", timeout=30)
        where = r.headers["Location"]
        where = where if where.startswith("http") else base + where
        sep = "&" if "?" in where else "?"
        assert requests.put(f"{where}{sep}digest={d}", data=cfg, timeout=30).status_code == 201
    doc = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
           "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": d, "size": len(cfg)},
           "layers": []}  # fmt: skip
    r = requests.put(f"{base}/v2/{repo}/manifests/latest", data=json.dumps(doc),
                     headers={"Content-Type": doc["mediaType"]}, timeout=30)  # fmt: skip
    assert r.status_code == 201, r.text


def load(srv: Srv, method: str, seconds: int) -> tuple[float, float]:
    """Requests/s at concurrency 16 with ApacheBench (keep-alive), and server CPU per request."""
    url = f"http://127.0.0.1:{srv.port}/v2/bench/manifest/manifests/latest"
    cmd = ["ab", "-k", "-c16", "-t", str(seconds), "-n", "100000000",
           "-H", "Accept: application/vnd.docker.distribution.manifest.v2+json"]  # fmt: skip
    if method == "HEAD":
        cmd.append("-i")
    c0 = srv.cpu()
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    cpu = srv.cpu() - c0
    rps = float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"Complete requests:\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    failed = int(re.search(r"Failed requests:\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    assert failed == 0 and "Non-2xx" not in out, out
    return rps, cpu / max(total, 1)


def drop_blob(srv: Srv, digest: str) -> None:
    """Remove a pushed blob's data file (same path for both servers: same on-disk layout)."""
    hexd = digest.split(":", 1)[1]
    path = os.path.join(srv.root, "docker", "registry", "v2", "blobs", "sha256", hexd[:2], hexd, "data")
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def alternate(rounds: int, servers: list[Srv], fn: Callable[[Srv, int], object]) -> dict[str, list[object]]:
    out: dict[str, list[object]] = {s.label: [] for s in servers}
    for r in range(rounds):
        for s in servers:
            out[s.label].append(fn(s, r))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--size-mib", type=int)
    ap.add_argument("--rss-gib", type=float, default=1.0)
    ap.add_argument("--manifest-seconds", type=int)
    ap.add_argument("--json", help="write results here")
    ap.add_argument(
        "--dir",
        help="where blobs and both storage roots live [default: /dev/shm, a tmpfs, so that the VM's disk "
        "write-back does not decide the push numbers; /tmp if /dev/shm is not writable]",
    )
    ap.add_argument("--markdown", help="write a results table (markdown) here")
    args = ap.parse_args()
    rounds = args.rounds or (2 if args.quick else 5)
    size = (args.size_mib or (64 if args.quick else 256)) << 20
    msec = args.manifest_seconds or (2 if args.quick else 5)
    for tool in ("docker-registry", "ab"):
        if shutil.which(tool) is None:
            log(f"error: {tool} is not installed (apt-get install docker-registry apache2-utils)")
            return 2
    base = args.dir or ("/dev/shm" if os.access("/dev/shm", os.W_OK) else "/tmp")
    work = tempfile.mkdtemp(prefix="dd-reg-bench-", dir=base)
    started: list[Srv] = []
    results: dict[str, Any] = {
        "rounds": rounds,
        "size_mib": size >> 20,
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "storage": base,
    }
    try:
        blob = os.path.join(work, "blob")
        digest = make_file(blob, size)
        dist = distribution("distribution", os.path.join(work, "dist"), work)
        me = ours("serve-registry", os.path.join(work, "ours"))
        started += [dist, me]
        pair = [dist, me]
        log(f"blob {size >> 20} MiB, {rounds} rounds, A B A B")
        mib = size / (1 << 20)
        for name, fn in (("push_mono", push_mono), ("push_chunked", push_chunked), ("push_stream", push_stream)):

            def one(s: Srv, r: int, fn: Callable[..., float] = fn, name: str = name) -> float:
                t = fn(s, f"bench/{name}{r}", blob, size, digest)
                drop_blob(s, digest)  # keep memory (tmpfs) and dirty pages flat
                return t

            times = alternate(rounds, pair, one)
            results[name] = {k: [mib / t for t in v] for k, v in times.items()}  # type: ignore[operator]
            log(
                f"{name}: "
                + ", ".join(f"{k} median {statistics.median(v):.0f} MiB/s" for k, v in results[name].items())
            )  # type: ignore[union-attr]
        for s in pair:  # the blob to pull (not timed)
            push_mono(s, "bench/pull", blob, size, digest)
        pulls = alternate(rounds, pair, lambda s, r: pull(s, "bench/pull", size, digest))
        results["pull"] = {k: [mib / t for t, _ in v] for k, v in pulls.items()}  # type: ignore[misc]
        results["pull_cpu_s"] = {k: [c for _, c in v] for k, v in pulls.items()}  # type: ignore[misc]
        log("pull: " + ", ".join(f"{k} median {statistics.median(v):.0f} MiB/s" for k, v in results["pull"].items()))  # type: ignore[union-attr]
        log(
            "pull server CPU s: "
            + ", ".join(f"{k} median {statistics.median(v):.3f}" for k, v in results["pull_cpu_s"].items())
        )  # type: ignore[union-attr]
        # manifests, with two workers on our side
        me.stop()
        me2 = ours("serve-registry", os.path.join(work, "ours"), "--workers", "2")
        started.append(me2)
        for s in (dist, me2):
            push_manifest(s, "bench/manifest")
        # the same, with the access log on (the default), written to /dev/null
        port = free_port()
        logged = Srv("serve-registry+accesslog", [sys.executable, "-m", "dockerdoctor", "serve-registry", "--host",
                     "127.0.0.1", "--port", str(port), "--root", os.path.join(work, "ours"), "--workers", "2"],
                     port, os.path.join(work, "ours")).start()  # fmt: skip
        started.append(logged)
        for method in ("GET", "HEAD"):
            res = alternate(2, [dist, me2, logged], lambda s, r, m=method: load(s, m, msec))
            results[f"manifest_{method}_rps"] = {k: [x for x, _ in v] for k, v in res.items()}  # type: ignore[misc]
            results[f"manifest_{method}_cpu_ms"] = {k: [c * 1000 for _, c in v] for k, v in res.items()}  # type: ignore[misc]
            log(
                f"manifest {method}: "
                + ", ".join(
                    f"{k} {statistics.median(v):.0f} req/s" for k, v in results[f"manifest_{method}_rps"].items()
                )
            )  # type: ignore[union-attr]
        me2.stop()
        logged.stop()
        dist.stop()
        # peak RSS during a big push, fresh processes
        big = int(args.rss_gib * (1 << 30))
        os.unlink(blob)
        bdigest = make_file(blob, big)
        rss: dict[str, float] = {}
        for make in (lambda: distribution("distribution", os.path.join(work, "dist2"), work),
                     lambda: ours("serve-registry", os.path.join(work, "ours2"))):  # fmt: skip
            s = make()
            started.append(s)
            push_mono(s, "bench/big", blob, big, bdigest)
            rss[s.label] = s.hwm_mib()
            s.stop()
            drop_blob(s, bdigest)
        results["peak_rss_mib_1gib_push"] = rss
        results["rss_gib"] = args.rss_gib
        log("peak RSS during push: " + ", ".join(f"{k} {v:.0f} MiB" for k, v in rss.items()))
    finally:
        for s in started:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)
    summary = summarize(results)
    results["summary"] = summary
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    table = markdown(results)
    log(table)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table)
    return 0


def markdown(r: dict[str, Any]) -> str:
    """The README table: medians, ratio ours/distribution, the target and whether it is met."""

    def med(key: str, who: str) -> float:
        return float(statistics.median(r[key][who]))

    def cells(key: str) -> str:
        return ", ".join(f"{x:.0f}" for x in r[key]["serve-registry"])

    rows = [
        "| measurement | distribution 2.8.2 | serve-registry | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for key, label, target in (
        ("push_mono", f"blob push, monolithic, {r['size_mib']} MiB (MiB/s)", 2.0),
        ("push_chunked", f"blob push, chunked 16 MiB PATCHes, {r['size_mib']} MiB (MiB/s)", 2.0),
        ("push_stream", f"blob push, one streamed PATCH like docker, {r['size_mib']} MiB (MiB/s)", None),
        ("pull", f"blob pull, {r['size_mib']} MiB (MiB/s)", 1.0),
        ("manifest_GET_rps", "manifest GET, concurrency 16 (req/s)", 1.5),
        ("manifest_HEAD_rps", "manifest HEAD, concurrency 16 (req/s)", 1.5),
    ):
        a, b = med(key, "distribution"), med(key, "serve-registry")
        ratio = b / a
        goal = f">= {target}x" if target else "(informative)"
        met = ("yes" if ratio >= target else "**no**") if target else ""
        rows.append(f"| {label} | {a:.0f} | {b:.0f} | {ratio:.2f}x | {goal} | {met} |")
    for key in ("manifest_GET_rps", "manifest_HEAD_rps"):
        if "serve-registry+accesslog" in r[key]:
            method = key.split("_")[1]
            b = med(key, "serve-registry+accesslog")
            ratio = b / med(key, "distribution")
            rows.append(f"| manifest {method}, access log on (req/s) | | {b:.0f} | {ratio:.2f}x | (informative) | |")
    ca, cb = med("pull_cpu_s", "distribution"), med("pull_cpu_s", "serve-registry")
    cpu_ratio = cb / ca if ca else 0.0
    rows.append(
        f"| server CPU per pull (s) | {ca:.3f} | {cb:.3f} | {cpu_ratio:.2f}x | <= 0.5x | "
        f"{'yes' if cpu_ratio <= 0.5 else '**no**'} |"
    )
    for key in ("manifest_GET_cpu_ms", "manifest_HEAD_cpu_ms"):
        ca, cb = med(key, "distribution"), med(key, "serve-registry")
        rows.append(f"| server CPU per manifest {key.split('_')[1]} (ms) | {ca:.2f} | {cb:.2f} | "
                    f"{cb / ca:.2f}x | (informative) | |")  # fmt: skip
    rss = r["peak_rss_mib_1gib_push"]
    rows.append(
        f"| peak server RSS during a {r.get('rss_gib', 1)} GiB push (MiB) | {rss['distribution']:.0f} | "
        f"{rss['serve-registry']:.0f} | | <= 100 MiB | {'yes' if rss['serve-registry'] <= 100 else '**no**'} |"
    )
    rows.append("")
    rows.append("Per-round serve-registry values (MiB/s): push mono " + cells("push_mono") + "; chunked "
                + cells("push_chunked") + "; pull " + cells("pull") + ".")  # fmt: skip
    rows.append("Per-round distribution values (MiB/s): push mono "
                + ", ".join(f"{x:.0f}" for x in r["push_mono"]["distribution"]) + "; chunked "
                + ", ".join(f"{x:.0f}" for x in r["push_chunked"]["distribution"]) + "; pull "
                + ", ".join(f"{x:.0f}" for x in r["pull"]["distribution"]) + ".")  # fmt: skip
    return "\n".join(rows) + "\n"


def summarize(r: dict[str, object]) -> dict[str, object]:
    def med(key: str, who: str) -> float:
        return statistics.median(r[key][who])  # type: ignore[index]

    out: dict[str, object] = {}
    for key in ("push_mono", "push_chunked", "push_stream", "pull", "manifest_GET_rps", "manifest_HEAD_rps"):
        out[f"{key}_ratio"] = round(med(key, "serve-registry") / med(key, "distribution"), 2)
    out["pull_cpu_ratio"] = round(med("pull_cpu_s", "serve-registry") / max(med("pull_cpu_s", "distribution"), 1e-9), 2)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
