"""Lab parts for podman, buildah and skopeo: a private /etc/containers and lab registries.

Every client command runs as
``unshare -m --propagation private sh -c 'mount --bind ETC /etc/containers && mount --bind ETCD /etc/docker
&& exec nsenter --net=/run/netns/CLI "$@"'``: a mount namespace of its own, where /etc/containers and
/etc/docker are the lab's directories (the host's are never touched), inside the lab's client network
namespace (so every packet to a lab address stays on the veth pair: tests/netguard.py). HOME and
XDG_RUNTIME_DIR point into the lab too, so ~/.config/containers is the lab's; storage is a private vfs
root. Processes are started and waited for by PID; nothing outlives the command.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
IMAGE_REPO = "lab/hello"
IMAGE_TAG = "v1"


def _blob(d: Path, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    (d / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (d / "blobs" / "sha256" / digest).write_bytes(data)
    return f"sha256:{digest}", len(data)


def make_oci_image(d: Path, tag: str = IMAGE_TAG, text: str = "hello from the lab\n") -> Path:
    """A one-layer OCI image layout (no network, no daemon): a file /hello in a gzip'd tar."""
    d.mkdir(parents=True, exist_ok=True)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as t:
        info = tarfile.TarInfo("hello")
        body = text.encode()
        info.size, info.mode, info.mtime = len(body), 0o644, 0
        t.addfile(info, io.BytesIO(body))
    layer_tar = raw.getvalue()
    layer = gzip.compress(layer_tar, mtime=0)
    ldig, lsize = _blob(d, layer)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer_tar).hexdigest()}"]},
                         "config": {}}).encode()
    cdig, csize = _blob(d, config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdig,
                                      "size": csize},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ldig,
                                       "size": lsize}]}).encode()
    mdig, msize = _blob(d, manifest)
    (d / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (d / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdig, "size": msize,
         "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
    return d


@dataclass
class Outcome:
    client: str
    rc: int
    output: str
    hits: dict[str, list[str]] = field(default_factory=dict)  # registry hostport -> access-log lines of this run

    @property
    def ok(self) -> bool:
        return self.rc == 0


class ContainersHost:
    """A client host for containers/image tools: private /etc/containers, /etc/docker, HOME, storage."""

    def __init__(self, workdir: Path, cli_ns: str) -> None:
        self.dir = workdir
        self.cli_ns = cli_ns
        self.etc = workdir / "etc-containers"
        self.etc_docker = workdir / "etc-docker"
        self.home = workdir / "home"
        self.xdg = workdir / "xdg"
        self.storage = workdir / "storage"
        # podman refuses a runroot longer than 50 characters: a short one in /tmp, removed by close()
        import tempfile

        self.short = Path(tempfile.mkdtemp(prefix="ddc"))
        self.reset()

    def close(self) -> None:
        shutil.rmtree(self.short, ignore_errors=True)

    def reset(self) -> None:
        for d in (self.etc, self.etc_docker, self.home, self.xdg):
            if d.exists():
                shutil.rmtree(d)
        self.etc.mkdir(parents=True)
        (self.etc / "registries.conf.d").mkdir()
        self.etc_docker.mkdir(parents=True)
        self.home.mkdir(parents=True)
        self.xdg.mkdir(parents=True, mode=0o700)
        (self.etc / "policy.json").write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        (self.etc / "registries.conf").write_text("# lab: empty system registries.conf\n")

    # ---- files, at the paths the clients see
    def path(self, host_path: str) -> Path:
        """Where the lab keeps what the clients see at host_path."""
        for prefix, real in (("/etc/containers", self.etc), ("/etc/docker", self.etc_docker),
                             ("~", self.home)):
            if host_path == prefix or host_path.startswith(prefix + "/"):
                return real / host_path[len(prefix):].lstrip("/")
        raise ValueError(f"not a lab path: {host_path}")

    def write(self, host_path: str, text: str | bytes) -> Path:
        p = self.path(host_path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        return p

    # ---- running
    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "HOME": str(self.home),
               "XDG_RUNTIME_DIR": str(self.xdg), "LC_ALL": "C"}
        env.update(extra or {})
        return env

    def argv(self, argv: list[str]) -> list[str]:
        script = (f"mount --bind {self.etc} /etc/containers && mount --bind {self.etc_docker} /etc/docker && "
                  f'exec nsenter --net=/run/netns/{self.cli_ns} "$@"')
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *argv]

    def run(self, argv: list[str], env: dict[str, str] | None = None,
            timeout: float = 90) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(argv), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, env=self.env(env))

    def storage_args(self, client: str) -> list[str]:
        s = self.storage / client
        if client == "skopeo":
            return []
        args = ["--root", str(s / "root"), "--runroot", str(self.short / client), "--storage-driver", "vfs"]
        if client == "podman":
            args += ["--cgroup-manager", "cgroupfs", "--events-backend", "none", "--tmpdir", str(self.short / "t")]
        return args

    def pull(self, client: str, image: str, env: dict[str, str] | None = None,
             extra: list[str] | None = None) -> subprocess.CompletedProcess:
        if client == "skopeo":
            dest = self.storage / "skopeo-out"
            if dest.exists():
                shutil.rmtree(dest)
            argv = ["skopeo", *(extra or []), "copy", f"docker://{image}", f"dir:{dest}"]
        else:
            shutil.rmtree(self.storage / client, ignore_errors=True)
            shutil.rmtree(self.short / client, ignore_errors=True)
            argv = [client, *self.storage_args(client), *(extra or []), "pull", image]
        return self.run(argv, env)

    def dockerdoctor(self, args: list[str], env: dict[str, str] | None = None,
                     timeout: float = 60) -> subprocess.CompletedProcess:
        """dockerdoctor itself, in the same mount and network namespaces as the clients."""
        return self.run([sys.executable, "-m", "dockerdoctor", *args], env, timeout)


_ACCESS = re.compile(r'"(GET|HEAD|POST|PUT|PATCH) (/v2/[^ ]*) HTTP')


class AccessLog:
    """The witness: what each registry's access log says during one client command."""

    def __init__(self, registries: dict[str, Any]) -> None:
        self.registries = registries  # hostport -> tests.lab.DistRegistry
        self.marks: dict[str, int] = {}

    def mark(self) -> None:
        self.marks = {hp: len(r.log_text()) for hp, r in self.registries.items()}

    def since(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for hp, r in self.registries.items():
            text = r.log_text()[self.marks.get(hp, 0):]
            hits = [f"{m.group(1)} {m.group(2)}" for m in _ACCESS.finditer(text)]
            if hits:
                out[hp] = hits
        return out


def manifest_hits(hits: dict[str, list[str]]) -> set[str]:
    """The registries whose manifest was fetched (the image really came from there)."""
    return {hp for hp, lines in hits.items() if any("/manifests/" in ln and ln.startswith("GET") for ln in lines)}


def seed(host: ContainersHost, oci: Path, dest: str) -> None:
    """Push the lab image to dest (host:port/repo:tag) with skopeo, inside the namespaces."""
    r = host.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{oci}:{IMAGE_TAG}", f"docker://{dest}"])
    if r.returncode != 0:
        raise RuntimeError(f"seeding {dest} failed: {r.stderr.strip()}")


def predict(endpoints: list[dict[str, Any]], lab: dict[str, dict[str, Any]]) -> str | None:
    """The registry a client gets the image from, per resolve's endpoints and what each lab registry is.

    lab: hostport -> {"tls": bool, "ca": path of the lab CA as the client sees it, "has": set of repo paths}.
    """
    for ep in endpoints:
        reg = lab.get(ep["host"])
        if reg is None:
            continue
        if ep["scheme"] == "http":
            if reg["tls"]:
                continue
        else:
            if not reg["tls"]:
                if ep["http_fallback"]:  # HTTPS fails against a plain server, then plain HTTP works
                    return ep["host"]
                continue
            tls = ep["tls"] or {}
            if not tls.get("skip_verify") and reg["ca"] not in tls.get("ca_files", []):
                continue
        return ep["host"]
    return None
