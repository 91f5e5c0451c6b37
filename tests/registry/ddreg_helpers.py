"""Helpers for the serve-registry tests: start servers, push blobs and manifests by hand."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import requests

PORT_RANGE = (15000, 16000)
_next_port = [15100 + (os.getpid() % 400)]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"


#: every server started by a test; the conftest stops the ones a failing test left running
LIVE: list[Any] = []


def wait_http(proc: subprocess.Popen[bytes], url: str, seconds: float, what: str, poll: float) -> None:
    """Wait until `url` answers HTTP at all; RuntimeError if `proc` exits or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited {proc.returncode}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(poll)
    stop_process(proc)
    raise RuntimeError(f"{what} did not start")


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM a child server still running, SIGKILL after 15 s."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port() -> int:
    """A free loopback port in this helper's range 15000-15999."""
    for _ in range(1000):
        port = _next_port[0]
        _next_port[0] = port + 1 if port + 1 < PORT_RANGE[1] else PORT_RANGE[0]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 15000-15999")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


_REF_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$")


def tmpdir(tag: str) -> str:
    """A new directory under /tmp whose name is also a valid image-name component: podman names an
    image pulled from `oci:DIR` after DIR, and mkdtemp's suffix may end in "_" (invalid reference)."""
    while True:
        path = tempfile.mkdtemp(prefix=f"dd-reg-{tag}-", dir="/tmp")
        if _REF_COMPONENT.match(os.path.basename(path)):
            return path
        os.rmdir(path)


@dataclass
class Server:
    """A `dockerdoctor serve-registry` subprocess."""

    root: str
    port: int
    args: list[str] = field(default_factory=list)
    scheme: str = "http"
    proc: subprocess.Popen[bytes] | None = None
    log: str = ""
    verify: Any = True
    session: bool = False  # owned by a session fixture (not stopped after each test)
    preexec: Any = None  # run in the child before exec (say, a lower open-file limit)
    env: dict[str, str] | None = None  # added to the environment (say, S3 credentials)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> Server:
        self.log = os.path.join(os.path.dirname(self.root.rstrip("/")), f"serve-{self.port}.log")
        cmd = [
            sys.executable, "-m", "dockerdoctor", "serve-registry",
            "--host", "127.0.0.1", "--port", str(self.port), "--root", self.root, *self.args,
        ]  # fmt: skip
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL, preexec_fn=self.preexec,
                env={**os.environ, **self.env} if self.env else None,
            )  # fmt: skip
        LIVE.append(self)
        if wait:
            try:
                self.wait_ready()
            except BaseException:
                self.stop()  # never leave a half-started server behind
                raise
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve-registry exited {self.proc.returncode}: {self.read_log()[-2000:]}")
            try:
                requests.get(self.url + "/v2/", timeout=1, verify=self.verify)
                return
            except OSError:  # requests' errors, and a CA file that does not exist yet
                time.sleep(0.05)
        raise RuntimeError(f"serve-registry did not come up: {self.read_log()[-2000:]}")

    def read_log(self) -> str:
        try:
            with open(self.log, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class Client:
    """Raw distribution-API calls for conformance tests."""

    def __init__(self, base: str, auth: Any = None, verify: Any = True) -> None:
        self.base = base
        self.s = requests.Session()
        self.s.auth = auth
        self.s.verify = verify

    def req(self, method: str, path: str, **kw: Any) -> requests.Response:
        url = path if path.startswith("http") else self.base + path
        kw.setdefault("verify", self.s.verify)  # REQUESTS_CA_BUNDLE would override the session's
        return self.s.request(method, url, timeout=60, allow_redirects=False, **kw)

    def loc(self, r: requests.Response) -> str:
        loc = r.headers["Location"]
        return loc if loc.startswith("http") else self.base + loc

    def push_blob(self, name: str, data: bytes) -> str:
        d = sha256(data)
        r = self.req("POST", f"/v2/{name}/blobs/uploads/")
        assert r.status_code == 202, r.text
        sep = "&" if "?" in r.headers["Location"] else "?"
        r = self.req(
            "PUT",
            f"{self.loc(r)}{sep}digest={d}",
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 201, r.text
        return d

    def push_image(
        self,
        name: str,
        tag: str | None,
        layers: list[bytes] | None = None,
        media_type: str = OCI_MANIFEST,
        subject: dict[str, Any] | None = None,
        artifact_type: str | None = None,
        config: bytes | None = None,
        config_type: str | None = None,
        annotations: dict[str, str] | None = None,
    ) -> tuple[str, bytes]:
        config = config if config is not None else json.dumps({"architecture": "amd64", "os": "linux"}).encode()
        cfg_d = self.push_blob(name, config)
        layers = layers if layers is not None else [os.urandom(64)]
        if media_type == DOCKER_MANIFEST:
            cfg_type = config_type or "application/vnd.docker.container.image.v1+json"
            layer_type = "application/vnd.docker.image.rootfs.diff.tar.gzip"
        else:
            cfg_type = config_type or "application/vnd.oci.image.config.v1+json"
            layer_type = "application/vnd.oci.image.layer.v1.tar+gzip"
        doc: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": cfg_type, "digest": cfg_d, "size": len(config)},
            "layers": [{"mediaType": layer_type, "digest": self.push_blob(name, b), "size": len(b)} for b in layers],
        }
        if artifact_type:
            doc["artifactType"] = artifact_type
        if subject:
            doc["subject"] = subject
        if annotations:
            doc["annotations"] = annotations
        body = json.dumps(doc).encode()
        ref = tag or sha256(body)
        r = self.req("PUT", f"/v2/{name}/manifests/{ref}", data=body, headers={"Content-Type": media_type})
        assert r.status_code == 201, r.text
        assert r.headers["Docker-Content-Digest"] == sha256(body)
        return sha256(body), body


def error_codes(r: requests.Response) -> list[str]:
    body = r.json()
    assert isinstance(body.get("errors"), list) and body["errors"], body
    for e in body["errors"]:
        assert set(e) >= {"code", "message"}, e
    return [e["code"] for e in body["errors"]]


def make_oci_layout(dest: str, rootfs_tar: str, tag: str = "1") -> str:
    """Write an OCI image layout holding one single-layer image; returns the manifest digest."""
    import gzip

    blobs = os.path.join(dest, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)

    def put(data: bytes) -> str:
        d = sha256(data)
        with open(os.path.join(blobs, d.split(":")[1]), "wb") as f:
            f.write(data)
        return d

    with open(rootfs_tar, "rb") as f:
        raw = f.read()
    layer = gzip.compress(raw, mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [sha256(raw)]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(config),
                       "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(layer),
                        "size": len(layer)}],
        }
    ).encode()  # fmt: skip
    md = put(manifest)
    with open(os.path.join(dest, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(dest, "index.json"), "w") as f:
        json.dump(
            {
                "schemaVersion": 2,
                "manifests": [
                    {"mediaType": OCI_MANIFEST, "digest": md, "size": len(manifest),
                     "annotations": {"org.opencontainers.image.ref.name": tag}}
                ],
            },
            f,
        )  # fmt: skip
    return md


@dataclass
class Distribution:
    """The CNCF registry (`docker-registry serve`) on a loopback port."""

    root: str
    port: int
    workdir: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def hostport(self) -> str:
        return f"127.0.0.1:{self.port}"

    delete: bool = True
    session: bool = False  # owned by a session fixture
    storage: str | None = None  # YAML of a storage driver section instead of filesystem at `root` (say, s3)
    secret: str | None = None  # http.secret

    def start(self) -> Distribution:
        cfg = os.path.join(self.workdir, f"distribution-{self.port}.yml")
        storage = self.storage or f"  filesystem:\n    rootdirectory: {self.root}\n"
        with open(cfg, "w") as f:
            f.write(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n"
                f"{storage}  delete:\n    enabled: {str(self.delete).lower()}\n"
                f"http:\n  addr: 127.0.0.1:{self.port}\n"
                + (f"  secret: {self.secret}\n" if self.secret else "")
            )
        log = open(os.path.join(self.workdir, f"distribution-{self.port}.log"), "ab")  # noqa: SIM115
        # its AWS SDK refuses a custom CA bundle (AWS_CA_BUNDLE) with its own HTTP transport
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        self.proc = subprocess.Popen(
            ["docker-registry", "serve", cfg], stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env
        )
        LIVE.append(self)
        log.close()
        wait_http(self.proc, self.url + "/v2/", 20, "docker-registry", 0.05)
        return self

    def stop(self) -> None:
        stop_process(self.proc)
