"""S3 push and pull: serve-registry vs distribution 2.8.2, both on one local S3 server, A B A B in one run.

One moto server (`python -m moto.server`, 127.0.0.1, a free port) holds two buckets, one per
registry; both registries use 10 MiB parts (distribution's default chunksize) and stream blob
GETs themselves (distribution with `redirect: disable: true`, serve-registry without
--s3-redirect), so every byte goes client -> registry -> S3 and back. The client is curl, timed by
its own `time_total`: a monolithic `PUT ?digest=` (`curl -T`) and a GET. Medians over --rounds.

    .venv/bin/python bench/registry/s3_bench.py --rounds 4 --size-mib 128 --json /tmp/s3.json

Needs the s3 extra and moto (moto[s3], flask, flask-cors) in the venv (`pip install -e '.[s3,test]'`)
and docker-registry.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tls_bench import curl_time, free_port, push, report, stop, summarize, wait_up  # noqa: E402

KEY, SECRET = "bench-key", "bench-secret"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--size-mib", type=int, default=128)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--copy-threshold-mib", type=int, default=32,
                    help="both registries' multipartcopythresholdsize (distribution's default: 32)")  # fmt: skip
    args = ap.parse_args()
    import boto3  # moto brings it

    work = tempfile.mkdtemp(prefix="dd-s3-bench-")
    procs: list[subprocess.Popen[bytes]] = []
    env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_EC2_METADATA_DISABLED": "true"}
    env.pop("AWS_CA_BUNDLE", None)  # distribution's SDK refuses it; the endpoint is plain HTTP anyway
    try:
        blob = os.path.join(work, "blob")
        with open(blob, "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(1 << 20))
        with open(blob, "rb") as f:
            digest = "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
        s3_port, ours_port, dist_port = free_port(), free_port(), free_port()
        endpoint = f"http://127.0.0.1:{s3_port}"
        mlog = open(os.path.join(work, "moto.log"), "ab")  # noqa: SIM115
        procs.append(subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
                                      stdout=mlog, stderr=mlog, stdin=subprocess.DEVNULL))  # fmt: skip
        for _ in range(300):
            if subprocess.run(["curl", "-s", "-o", "/dev/null", endpoint + "/"]).returncode == 0:
                break
            time.sleep(0.1)
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=KEY, aws_secret_access_key=SECRET)  # fmt: skip
        for b in ("bench-ours", "bench-dist"):
            s3.create_bucket(Bucket=b)
        ours_cmd = [sys.executable, "-m", "dockerdoctor", "serve-registry", "--host", "127.0.0.1", "--port",
                    str(ours_port), "--no-access-log"]  # fmt: skip
        copy = f"    multipartcopythresholdsize: {args.copy_threshold_mib << 20}\n"
        ocfg = os.path.join(work, "ours.yml")
        with open(ocfg, "w") as f:
            f.write(f"version: 0.1\nstorage:\n  s3:\n    bucket: bench-ours\n    region: us-east-1\n"
                    f"    regionendpoint: {endpoint}\n    forcepathstyle: true\n{copy}  redirect:\n    disable: true\n"
                    f"  delete:\n    enabled: true\n")  # fmt: skip
        ours_cmd += ["--config", ocfg]
        log = open(os.path.join(work, "ours.log"), "ab")  # noqa: SIM115
        procs.append(subprocess.Popen(ours_cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env))
        wait_up(f"http://127.0.0.1:{ours_port}", None, procs[-1])
        cfg = os.path.join(work, "dist.yml")
        with open(cfg, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n"
                    f"  s3:\n    bucket: bench-dist\n    region: us-east-1\n    regionendpoint: {endpoint}\n"
                    f"    forcepathstyle: true\n    accesskey: {KEY}\n    secretkey: {SECRET}\n    secure: false\n"
                    f"{copy}  redirect:\n    disable: true\n  delete:\n    enabled: true\n"
                    f"http:\n  addr: 127.0.0.1:{dist_port}\n")  # fmt: skip
        dlog = open(os.path.join(work, "dist.log"), "ab")  # noqa: SIM115
        procs.append(subprocess.Popen(["docker-registry", "serve", cfg], stdout=dlog, stderr=dlog,
                                      stdin=subprocess.DEVNULL, env=env))  # fmt: skip
        wait_up(f"http://127.0.0.1:{dist_port}", None, procs[-1])
        servers = {"serve-registry": f"http://127.0.0.1:{ours_port}", "distribution": f"http://127.0.0.1:{dist_port}"}
        res: dict[str, dict[str, list[float]]] = {k: {"push": [], "pull": []} for k in servers}
        load = os.getloadavg()[0]
        for r in range(args.rounds):
            for who, base in servers.items():  # A B A B
                repo = f"bench/r{r}"
                res[who]["push"].append(push(base, [], repo, blob, digest))
                res[who]["pull"].append(curl_time([f"{base}/v2/{repo}/blobs/{digest}"]))
            # the next round pushes the same blob again: drop it from both buckets so it is stored anew
            for b in ("bench-ours", "bench-dist"):
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=b, Prefix="docker/registry/v2/blobs/"):
                    for o in page.get("Contents", []):
                        s3.delete_object(Bucket=b, Key=o["Key"])
            print(f"round {r + 1}: " + "  ".join(f"{w} push {res[w]['push'][-1]:.2f}s pull {res[w]['pull'][-1]:.2f}s"
                                                 for w in servers), flush=True)  # fmt: skip
        summary = summarize(res, load, mode="S3 (moto server on loopback, 10 MiB parts, no redirects)",
                            copy_threshold_mib=args.copy_threshold_mib, size_mib=args.size_mib,
                            rounds=args.rounds)  # fmt: skip
        report(summary, res, args.json)
        return 0
    finally:
        stop(list(reversed(procs)))
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
