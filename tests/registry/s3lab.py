"""An S3-compatible server for the registry tests: moto in server mode on 127.0.0.1.

One `moto.server` subprocess per session (a free port, never moto's defaults of port 5000 and
0.0.0.0), stopped by its PID. Each test takes a fresh bucket.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from typing import Any

from ddreg_helpers import free_port, stop_process, wait_http

ACCESS = "ddreg-test-key"
SECRET = "ddreg-test-secret"
CHUNK = 5 << 20  # the smallest part size S3 allows: multipart paths run with small blobs


def s3_missing() -> str | None:
    """Why the S3 tests cannot run here, or None."""
    for mod, what in (("aiobotocore", "the s3 extra (aiobotocore)"), ("moto", "moto[s3]"),
                      ("boto3", "boto3"), ("flask", "flask (moto's server)")):  # fmt: skip
        if importlib.util.find_spec(mod) is None:
            return f"{what} is not installed (pip install -e '.[s3,test]')"
    return None


@dataclass
class Moto:
    workdir: str
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # serve-registry and boto3 read these; AWS_CA_BUNDLE is for https only and confuses distribution
    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": ACCESS, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_EC2_METADATA_DISABLED": "true"}

    def start(self) -> Moto:
        self.port = free_port()
        log = open(os.path.join(self.workdir, "moto.log"), "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()
        wait_http(self.proc, self.endpoint + "/", 30, "moto server", 0.1)
        return self

    def stop(self) -> None:
        stop_process(self.proc)

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=ACCESS, aws_secret_access_key=SECRET,
        )  # fmt: skip

    def bucket(self, tag: str = "b") -> str:
        name = f"ddreg-{tag}-{uuid.uuid4().hex[:8]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        out: list[str] = []
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out.extend(o["Key"] for o in page.get("Contents", []))
        return out

    def multipart_uploads(self, bucket: str) -> list[str]:
        r = self.client().list_multipart_uploads(Bucket=bucket)
        return [u["Key"] for u in r.get("Uploads", [])]

    def args(self, bucket: str, root: str = "", chunk: int = CHUNK) -> list[str]:
        """serve-registry options for this bucket."""
        out = ["--s3-bucket", bucket, "--s3-endpoint", self.endpoint, "--s3-path-style", "--s3-chunk-size", str(chunk)]
        return out + (["--s3-root", root] if root else [])

    def distribution_storage(self, bucket: str, root: str = "") -> str:
        """The storage section of distribution's config.yml for this bucket (indented under `storage:`)."""
        text = (
            f"  s3:\n    bucket: {bucket}\n    region: us-east-1\n    regionendpoint: {self.endpoint}\n"
            f"    forcepathstyle: true\n    accesskey: {ACCESS}\n    secretkey: {SECRET}\n    secure: false\n"
            f"    v4auth: true\n    chunksize: {CHUNK}\n"
        )
        if root:
            text += f"    rootdirectory: {root}\n"
        return text + "  redirect:\n    disable: true\n"
