"""explain over the corpus: top-1 / top-3 on the held-out split, the share of negatives claimed,
and the time for a 1 MB paste.

    .venv/bin/python bench/explain/bench_explain.py [--split heldout|tune|all] [--misses] [--json]

A negative (expect NONE: not a private-registry fault) is "claimed" when the answer names a
cause with confidence "cause" or "possible" instead of "no known cause". A positive counts for
top-1 when its rule is ranked first (or tied first), top-3 when it is among the first three rules.
--misses prints the misses; use it on the tune split only (the held-out split is for measuring).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
# --root DIR: measure another tree's explain (the peer, e.g. main unpacked with `git archive`)
_root = sys.argv[sys.argv.index("--root") + 1] if "--root" in sys.argv else str(REPO)
sys.path.insert(0, _root)

from corpus import load  # noqa: E402

from dockerdoctor.explain import explain_result  # noqa: E402


def score(split: str, misses: bool) -> dict:
    entries = load(None if split == "all" else split)
    pos = [e for e in entries if e.expect != "NONE"]
    neg = [e for e in entries if e.expect == "NONE"]
    top1 = top3 = 0
    out_misses = []
    calib: dict[str, list[int]] = {"cause": [0, 0], "possible": [0, 0]}  # verdict -> [right first, total]
    for e in pos:
        res = explain_result(e.text)
        ranked = [m["rule"] for m in res["matches"]] if res["known"] else []
        first = {m["rule"] for m in res["matches"] if res["known"] and m["score"] == res["matches"][0]["score"]}
        if res.get("verdict") in calib:
            calib[res["verdict"]][1] += 1
            calib[res["verdict"]][0] += e.expect in first
        if e.expect in first:
            top1 += 1
        if e.expect in first or e.expect in ranked[:3]:
            top3 += 1
        elif misses:
            out_misses.append((e.expect, ranked[:3], res["verdict"], e.source, e.text[:200]))
        if misses and e.expect not in first and e.expect in ranked[:3]:
            out_misses.append(("top3-only " + e.expect, ranked[:3], res["verdict"], e.source, e.text[:200]))
    claimed = 0
    for e in neg:
        res = explain_result(e.text)
        if res["known"]:
            claimed += 1
            if misses:
                out_misses.append(("NONE", [m["rule"] for m in res["matches"]][:3], res["verdict"], e.source,
                                   e.text[:200]))
    return {"split": split, "positives": len(pos), "top1": top1, "top3": top3, "negatives": len(neg),
            "negatives_claimed": claimed, "calibration": calib, "misses": out_misses}


def timing(runs: int = 7) -> dict:
    """A 1 MB paste: a docker journal of ordinary lines with real errors spread through it."""
    err = ('Dec 02 10:00:00 host dockerd[812]: time="2026-12-02T10:00:00Z" level=info msg="Attempting next endpoint '
           'for push after error: Get \\"https://10.0.0.5:5000/v2/\\": http: server gave HTTP response to HTTPS '
           'client"')
    noise = ('Dec 02 10:00:01 host dockerd[812]: time="2026-12-02T10:00:01Z" level=info msg="ignoring event" '
             'container=4f3c2b1a module=libcontainerd namespace=moby topic=/tasks/delete type="*events.TaskDelete"')
    access = ('10.0.0.7 - - [02/Dec/2026:10:00:02 +0000] "GET /v2/app/manifests/1 HTTP/1.1" 200 528 "" '
              '"docker/20.10.24 go/go1.19.8"')
    lines = []
    size = 0
    i = 0
    while size < 1_000_000:
        line = err if i % 400 == 0 else access if i % 7 == 0 else noise
        lines.append(line)
        size += len(line) + 1
        i += 1
    text = "\n".join(lines)
    explain_result(text)  # warm: the knowledge base loaded, regexes compiled
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        res = explain_result(text)
        times.append((time.perf_counter() - t) * 1000)
    assert res["matches"][0]["rule"] == "DD203", res["matches"][:1]
    return {"bytes": len(text.encode()), "lines": len(lines), "runs": runs,
            "median_ms": round(statistics.median(times), 1),
            "min_ms": round(min(times), 1), "max_ms": round(max(times), 1)}


HOSTILE = {
    "one 900 KB line of repeated AVC records":
        'type=AVC msg=audit(1:2): avc:  denied  { read } for  pid=1 comm="registry" ' * 12000,
    "1 MB of double quotes": '"' * 1_000_000,
    "one 1 MB line": "a" * 1_000_000,
    "12 000 identical x509 errors": 'Get "https://10.0.0.5:5000/v2/": x509: certificate signed by unknown authority\n'
                                    * 12000,
    "one 820 KB line of docker ps rows": 'a1b2c3d4e5f6   registry:2   "/entrypoint.sh"   Up 2 minutes   5000/tcp   '
                                         "registry " * 10000,
    "a docker run with 140 000 arguments": "$ docker run -d " + "-e A=b " * 140000 + "registry:2",
    "12 500 lines of 79 x": ("x" * 79 + "\n") * 12500,
    "'dial tcp ' 100 000 times": "dial tcp " * 100000,
}


def hostile() -> dict:
    """Bad input must cost bounded time: the worst of three runs for each."""
    out = {}
    for name, text in HOSTILE.items():
        worst = 0.0
        for _ in range(3):
            t = time.perf_counter()
            explain_result(text)
            worst = max(worst, (time.perf_counter() - t) * 1000)
        out[name] = round(worst, 1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", default="heldout", choices=["heldout", "tune", "fresh", "fresh2", "all"])
    ap.add_argument("--misses", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--hostile", action="store_true", help="time hostile inputs instead")
    ap.add_argument("--root", default=str(REPO), help="the tree whose dockerdoctor is measured")
    ap.add_argument("--peer", help="a second tree, measured in the same run, alternately (e.g. main)")
    a = ap.parse_args()
    if a.peer:
        return side_by_side(a)
    if a.hostile:
        for name, ms in hostile().items():
            print(f"  {name}: worst {ms} ms")
        return 0
    res = score(a.split, a.misses)
    if not a.no_timing:
        res["paste_1mb"] = timing()
    res["python"] = platform.python_version()
    if a.json:
        print(json.dumps(res, indent=1))
        return 0
    p, n = res["positives"], res["negatives"]
    print(f"split {a.split}: {p} positives, {n} negatives")
    print(f"  top-1 {res['top1']}/{p} ({100 * res['top1'] / max(p, 1):.0f}%), top-3 {res['top3']}/{p} "
          f"({100 * res['top3'] / max(p, 1):.0f}%)")
    print(f"  negatives claimed {res['negatives_claimed']}/{n} ({100 * res['negatives_claimed'] / max(n, 1):.0f}%)")
    for v, (right, total) in res["calibration"].items():
        print(f"  verdict {v!r}: its first rule right {right}/{total}")
    if "paste_1mb" in res:
        t = res["paste_1mb"]
        print(f"  1 MB paste ({t['lines']} lines): median {t['median_ms']} ms, min {t['min_ms']} ms "
              f"over {t['runs']} runs")
    for m in res["misses"]:
        print("MISS", m)
    return 0


def side_by_side(a: argparse.Namespace) -> int:
    """This tree and the peer, each in its own process, alternately (three rounds): same corpus,
    same 1 MB paste, same load."""
    import os
    import subprocess

    rows: dict[str, list[dict]] = {"this": [], "peer": []}
    for _ in range(3):
        for name, root in (("this", a.root), ("peer", a.peer)):
            out = subprocess.run([sys.executable, __file__, "--split", a.split, "--json", "--root", root],
                                 capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": root})
            if out.returncode != 0:
                print(f"{name} failed: {out.stderr[-2000:]}")
                return 1
            rows[name].append(json.loads(out.stdout))
    print(f"split {a.split}; load average before: {os.getloadavg()[0]:.2f}")
    print("| tree | top-1 | top-3 | negatives claimed | 1 MB paste median (min) over 3x7 runs |")
    print("|---|---|---|---|---|")
    for name, root in (("this", a.root), ("peer", a.peer)):
        r = rows[name][0]
        med = statistics.median(x["paste_1mb"]["median_ms"] for x in rows[name])
        mn = min(x["paste_1mb"]["min_ms"] for x in rows[name])
        print(f"| {name} ({root}) | {r['top1']}/{r['positives']} | {r['top3']}/{r['positives']} | "
              f"{r['negatives_claimed']}/{r['negatives']} | {med} ms ({mn} ms) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
