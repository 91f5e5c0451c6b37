"""Timings of the endpoint probe (dockerdoctor.probe.endpoint) against real servers.

Run as root from the repository:  .venv/bin/python bench/probe/bench_probe.py [--n 50]

It starts, and stops again by PID: docker-registry on 127.0.0.1 (plain HTTP and TLS, ports
5260/5261), and a pair of namespaces (prefix ddepb) with an nft DROP rule for the blackholed case.
It prints a Markdown table; bench/probe/README.md records a run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

import lab  # noqa: E402

from dockerdoctor.facts import CheckOptions, Facts, HostPort  # noqa: E402
from dockerdoctor.probe.endpoint import probe_endpoint  # noqa: E402


def stats(xs: list[float]) -> str:
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]
    return f"{statistics.median(xs) * 1000:.1f} | {p95 * 1000:.1f} | {xs[-1] * 1000:.1f}"


def timed(fn, *a, **kw):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    r = fn(*a, **kw)
    return time.perf_counter() - t, r


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces, nft)", file=sys.stderr)
        return 2
    d = Path(tempfile.mkdtemp(prefix="dd-ep-bench-", dir="/tmp"))
    regs: list[lab.DistRegistry] = []
    net = None
    rows: list[tuple[str, str, str]] = []
    try:
        ca = lab.Certs.make_ca("bench-ca")
        crt = lab.Certs.write(d / "certs", "tls", lab.Certs.make_leaf(ca, sans=["127.0.0.1"], cn="127.0.0.1"))
        regs.append(lab.DistRegistry(d, "127.0.0.1", 5260, name="plain").start())
        regs.append(lab.DistRegistry(d, "127.0.0.1", 5261, tls=crt, name="tls").start())
        cdir = d / "certs.d" / "127.0.0.1:5261"
        cdir.mkdir(parents=True)
        (cdir / "ca.crt").write_bytes(ca[0])

        cold, rep = timed(probe_endpoint, HostPort("127.0.0.1", 5261), 2.0, str(cdir))
        assert rep.layer == "ok", rep.summary
        rows.append(("healthy TLS registry, loopback, first probe in the process (cold)",
                     f"{cold * 1000:.1f} | - | -", f"layer {rep.layer}, {rep.summary}"))
        for name, port, certs in (("plain HTTP", 5260, None), ("TLS verified with certs.d CA", 5261, str(cdir))):
            ts = []
            for _ in range(args.n):
                t, rep = timed(probe_endpoint, HostPort("127.0.0.1", port), 2.0, certs)
                ts.append(t)
            rows.append((f"healthy registry, loopback, {name} (n={args.n})", stats(ts), rep.summary))
        ts = [timed(probe_endpoint, HostPort("127.0.0.1", 5269), 2.0)[0] for _ in range(args.n)]
        rows.append((f"closed port, loopback (n={args.n})", stats(ts), "TCP refused"))

        net = lab.LabNet("ddepb")
        r = net.run(net.srv_ns, ["nft", "add table inet b; add chain inet b input "
                                 "{ type filter hook input priority 0; policy accept; }; "
                                 "add rule inet b input tcp dport 5213 drop"])
        assert r.returncode == 0, r.stderr
        for timeout in (0.25, 0.5, 1.0, 2.0):
            ts = []
            for _ in range(3):
                t, rep = timed(lab.in_netns, net.cli_ns, probe_endpoint, HostPort(net.srv_ip, 5213), timeout)
                assert rep.tcp == "timeout"
                ts.append(t)
            rows.append((f"blackholed (nft drop), --timeout {timeout}", stats(ts),
                         f"max overshoot {(max(ts) - timeout) * 1000:.1f} ms"))
        # parallel: 8 targets (4 blackholed) through the endpoint_probes fact, --timeout 1
        from dockerdoctor.sources.live import LiveSource

        hps = [HostPort(net.srv_ip, 5213), HostPort(net.srv_ip, 5214), HostPort(net.srv_ip, 5215),
               HostPort(net.srv_ip, 5216)]
        net.run(net.srv_ns, ["nft", "add rule inet b input tcp dport { 5214, 5215, 5216 } drop"])
        hps += [HostPort("127.0.0.1", p) for p in (5260, 5261, 5262, 5263)]
        facts = Facts(LiveSource(), CheckOptions(registries=hps, timeout=1.0))
        t, probes = timed(lab.in_netns, net.cli_ns, facts.get, "endpoint_probes")
        rows.append(("8 registries in parallel (4 blackholed), --timeout 1, endpoint_probes fact",
                     f"{t * 1000:.1f} | - | -", ", ".join(sorted({p.tcp for p in probes.values()}))))
        exe = str(REPO / ".venv" / "bin" / "dockerdoctor")
        t, cp = timed(subprocess.run, [exe, "check", "--registry", "127.0.0.1:5261", "--select", "DD2",
                                       "--format", "json"], capture_output=True, text=True)
        rows.append(("`dockerdoctor check --registry 127.0.0.1:5261 --select DD2` (whole CLI, wall)",
                     f"{t * 1000:.0f} | - | -", f"exit {cp.returncode}"))
    finally:
        for reg in regs:
            reg.stop()
        if net is not None:
            net.close()
        lab.rmtree(d)
    print("| case | median ms | p95 ms | max ms | note |")
    print("|---|---|---|---|---|")
    for case, s, note in rows:
        print(f"| {case} | {s} | {note} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
