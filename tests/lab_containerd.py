"""A real containerd (Debian's 1.6, binary ``containerd``, CLI ``ctr``) for tests, in a lab namespace.

The daemon runs with its own root, state, socket and config.toml in a work directory, inside the
client namespace of a LabNet (``nsenter --net``), and is stopped by PID. ``ctr image pull`` resolves
and fetches in the *client* process, so every pull runs inside the namespace too (``ip netns exec``).

    c = Containerd(workdir / "ctd", netns=net.cli_ns, config_path=str(workdir / "certs.d")).start()
    r = c.pull(f"{reg.hostport}/lab/hello:v1", hosts_dir=workdir / "hosts")
    c.stop()

``push_oci_image`` puts a tiny one-layer image into a registry with skopeo, from inside the namespace.
Nothing here imports dockerdoctor.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
import time
from pathlib import Path

from tests import lab


def write_oci_layout(d: Path, tag: str = "v1") -> Path:
    """An OCI image layout with one layer (a single file) and tag `tag`."""
    blobs = d / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> tuple[str, int]:
        h = hashlib.sha256(data).hexdigest()
        (blobs / h).write_bytes(data)
        return f"sha256:{h}", len(data)

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as t:
        body = b"hello from the dockerdoctor containerd lab\n"
        ti = tarfile.TarInfo("hello.txt")
        ti.size, ti.mtime = len(body), 0
        t.addfile(ti, io.BytesIO(body))
    layer_tar = raw.getvalue()
    layer = gzip.compress(layer_tar, mtime=0)
    ldig, lsize = put(layer)
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer_tar).hexdigest()}"]},
    }).encode()
    cdig, csize = put(config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdig, "size": csize},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ldig, "size": lsize}],
    }).encode()
    mdig, msize = put(manifest)
    (d / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (d / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdig, "size": msize,
        "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
    return d


def push_oci_image(netns: str, layout: Path, dest: str, tls: bool) -> None:
    """skopeo copy oci:LAYOUT docker://DEST inside `netns` (TLS unverified: it is the lab's own registry)."""
    argv = ["ip", "netns", "exec", netns, "skopeo", "copy", "--dest-tls-verify=false",
            f"oci:{layout}:v1", f"docker://{dest}"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError(f"skopeo copy to {dest} failed: {r.stderr.strip()}")


class Containerd:
    def __init__(self, workdir: Path, *, netns: str, config_path: str | None = None, extra_toml: str = "",
                 version: int = 2, imports: tuple[str, ...] = ()) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.netns = netns
        self.socket = str(self.workdir / "containerd.sock")
        self.config = self.workdir / "config.toml"
        self.log_path = self.workdir / "containerd.log"
        self.proc: subprocess.Popen | None = None
        section = 'plugins."io.containerd.grpc.v1.cri".registry'
        text = [
            f"version = {version}",
            *([f"imports = {list(imports)!r}".replace("'", '"')] if imports else []),
            f'root = "{self.workdir / "root"}"',
            f'state = "{self.workdir / "state"}"',
            "[grpc]",
            f'  address = "{self.socket}"',
            "[ttrpc]",
            f'  address = "{self.socket}.ttrpc"',
            "[debug]",
            '  level = "info"',
        ]
        if config_path is not None:
            text += [f"[{section}]", f'  config_path = "{config_path}"']
        self.config.write_text("\n".join(text) + "\n" + extra_toml)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, timeout: float = 15.0) -> Containerd:
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{self.netns}", "containerd", "--config", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        lab._record(self.workdir, pid=self.proc.pid)

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited {self.proc.returncode}:\n{self.log_text()[-2000:]}")
            return os.path.exists(self.socket) and self.ctr("version").returncode == 0

        if not lab.wait_for(ready, timeout, 0.1):
            self.stop()
            raise RuntimeError(f"containerd did not answer in {timeout}s:\n{self.log_text()[-2000:]}")
        return self

    def stop(self) -> None:
        lab._stop_proc(self.proc)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_log(self, needle: str, timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if needle in self.log_text():
                return True
            time.sleep(0.1)
        return False

    def ctr(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        argv = ["ip", "netns", "exec", self.netns, "ctr", "-a", self.socket, "-n", "lab", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def pull(self, ref: str, hosts_dir: Path | str | None = None, *extra: str) -> subprocess.CompletedProcess[str]:
        args = ["image", "pull"]
        if hosts_dir is not None:
            args += ["--hosts-dir", str(hosts_dir)]
        r = self.ctr(*args, *extra, ref)
        self.ctr("image", "rm", ref)  # the next pull must reach the registry again
        self.ctr("content", "prune", "references")
        return r
