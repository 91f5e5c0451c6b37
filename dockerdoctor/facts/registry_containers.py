"""Registry containers: which containers are registries, their generation, data directory, port and config.

Its generation ("v2" for distribution, "v0" for the python docker-registry of 2014-2015) is decided from
evidence, because `registry` without a tag meant v0 in 2015 and means v2 today.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from dockerdoctor.facts import Facts, HostPort, fact
from dockerdoctor.facts.containers import ContainerInfo, Mount, registry_kind
from dockerdoctor.model import Provenance
from dockerdoctor.net import ip_of
from dockerdoctor.safetext import isdigits

V2_DATA_DIR = "/var/lib/registry"
V0_DATA_DIR = "/tmp/registry"
V2_CONFIG = "/etc/docker/registry/config.yml"

_V2_TAG = re.compile(r"^(2|3)(\.\d+)*([.-].*)?$")
_V0_TAG = re.compile(r"^0\.\d+")
_V2_LOG = re.compile(r"go\.version=|level=(info|warning|error|fatal) msg=|msg=\"listening on|"
                     r"registry/handlers|distribution_version|configuration error: open /etc/docker/registry")
_V0_LOG = re.compile(r"docker_registry|_setup_database|gunicorn|SETTINGS_FLAVOR|Booting worker with pid")


@dataclass
class RegistryContainer:
    container: ContainerInfo
    kind: str  # distribution | python | harbor | zot
    version: str  # v2 | v0 | unknown
    why: list[str]  # how it was recognised
    version_why: list[str]
    data_dir: str | None  # where the registry writes inside the container
    data_dir_why: str
    port: int  # the port the registry listens on inside the container (or the host, with --network host)
    port_why: str
    config_path: str | None = None  # a config.yml on the host, bind-mounted
    config: dict[str, Any] | None = None

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        return self.container.evidence(text, line)

    @property
    def name(self) -> str:
        return self.container.name


def _version(c: ContainerInfo, kind: str) -> tuple[str, list[str]]:
    """v2 or v0 from the evidence: tag, command, env and log lines, in that order of strength."""
    why: list[str] = []
    tag = c.image_tag
    words = " ".join(c.argv)
    if kind in ("harbor", "zot"):
        return "v2", [f"{kind} speaks the v2 API"]
    if c.image_repo.endswith("distribution/registry"):
        return "v2", [f"image {c.image}"]
    if tag and _V0_TAG.match(tag):
        return "v0", [f"image tag {tag}"]
    if tag and _V2_TAG.match(tag):
        return "v2", [f"image tag {tag}"]
    if kind == "python" or "docker_registry" in words or "gunicorn" in words:
        return "v0", [f"command {words}"]
    if "serve" in c.argv or V2_CONFIG in words:
        return "v2", [f"command {words}"]
    v0_env = [k for k in ("SETTINGS_FLAVOR", "STORAGE_PATH", "DOCKER_REGISTRY_CONFIG", "GUNICORN_OPTS") if k in c.env]
    v2_env = [k for k in c.env if k.startswith("REGISTRY_") and k not in ("REGISTRY_PORT",)]
    if v0_env and not v2_env:
        return "v0", [f"environment {', '.join(v0_env)}"]
    if v2_env and not v0_env:
        return "v2", [f"environment {', '.join(v2_env)}"]
    v2_log = c.log_grep(_V2_LOG)
    v0_log = c.log_grep(_V0_LOG)
    if v0_log and not v2_log:
        return "v0", [f"log line: {v0_log[0][1][:160]}"]
    if v2_log and not v0_log:
        return "v2", [f"log line: {v2_log[0][1][:160]}"]
    if tag in (None, "latest"):
        why.append(f"image {c.image} without a version tag: registry 2 today, the python v0.x registry before 2015")
    return "unknown", why


def _config_rootdir(cfg: dict[str, Any] | None) -> str | None:
    try:
        root = cfg["storage"]["filesystem"]["rootdirectory"]  # type: ignore[index]
    except (KeyError, TypeError):
        return None
    return str(root) if root else None


def _config_addr(cfg: dict[str, Any] | None) -> str | None:
    try:
        addr = cfg["http"]["addr"]  # type: ignore[index]
    except (KeyError, TypeError):
        return None
    return str(addr) if addr else None


def _port_of_addr(addr: str) -> int | None:
    _, _, port = addr.rpartition(":")
    return int(port) if isdigits(port) else None


def _registry_config_path(c: ContainerInfo) -> str:
    for env in ("REGISTRY_CONFIGURATION_PATH",):
        if c.env.get(env):
            return c.env[env]
    for a in c.argv:
        if a.endswith((".yml", ".yaml")):
            return a
    return V2_CONFIG


def mount_covering(c: ContainerInfo, path: str) -> Mount | None:
    """The mount whose destination is `path` or one of its parents (the deepest one)."""
    best: Mount | None = None
    p = path.rstrip("/") or "/"
    for m in c.mounts:
        d = m.destination.rstrip("/") or "/"
        if p == d or p.startswith(d + "/") or d == "/":
            if best is None or len(d) > len(best.destination.rstrip("/")):
                best = m
    return best


def describe_registry(c: ContainerInfo, kind: str, why: list[str], read_host_file: Any = None) -> RegistryContainer:
    version, vwhy = _version(c, kind)
    config: dict[str, Any] | None = None
    config_path: str | None = None
    if version != "v0":
        cpath = _registry_config_path(c)
        m = mount_covering(c, cpath)
        if m is not None and m.type == "bind" and read_host_file is not None:
            rel = cpath[len(m.destination.rstrip("/")):] if cpath != m.destination else ""
            host_path = m.source.rstrip("/") + rel
            text = read_host_file(host_path)
            if text:
                try:
                    import yaml

                    loaded = yaml.safe_load(text)
                    if isinstance(loaded, dict):
                        config, config_path = loaded, host_path
                except Exception:  # a broken config is the registry's own error, shown in its log
                    pass
    # where the data goes
    data_dir: str | None
    if version == "v0":
        data_dir = c.env.get("STORAGE_PATH") or V0_DATA_DIR
        dwhy = "STORAGE_PATH" if "STORAGE_PATH" in c.env else "the python registry's default (local flavor)"
    elif c.env.get("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY"):
        data_dir = c.env["REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY"]
        dwhy = "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY"
    elif _config_rootdir(config):
        data_dir = _config_rootdir(config)
        dwhy = f"storage.filesystem.rootdirectory in {config_path}"
    elif config is not None and isinstance(config.get("storage"), dict) and not config["storage"].get("filesystem") \
            and any(k in config["storage"] for k in ("s3", "azure", "gcs", "swift", "oss")):
        data_dir = None
        dwhy = f"object storage in {config_path}"
    elif any(k.startswith("REGISTRY_STORAGE_") and k.split("_")[2] in ("S3", "AZURE", "GCS", "SWIFT", "OSS")
             for k in c.env if k.count("_") >= 2):
        data_dir = None
        dwhy = "object storage (REGISTRY_STORAGE_*)"
    elif version == "v2":
        data_dir = V2_DATA_DIR
        dwhy = "registry 2's default"
    else:
        data_dir = None
        dwhy = "unknown registry version"
    # the port it listens on
    port, pwhy = 5000, "the default port"
    if version == "v0":
        for env in ("REGISTRY_PORT", "PORT"):
            if isdigits(c.env.get(env, "")):
                port, pwhy = int(c.env[env]), env
                break
    else:
        addr = c.env.get("REGISTRY_HTTP_ADDR")
        if addr and _port_of_addr(addr):
            port, pwhy = _port_of_addr(addr) or 5000, f"REGISTRY_HTTP_ADDR={addr}"
        elif _config_addr(config) and _port_of_addr(_config_addr(config) or ""):
            port, pwhy = _port_of_addr(_config_addr(config) or "") or 5000, f"http.addr in {config_path}"
        elif kind == "zot" and c.exposed:
            port, pwhy = c.exposed[0][0], "the image's EXPOSE"
    return RegistryContainer(c, kind, version, why, vwhy, data_dir, dwhy, port, pwhy, config_path, config)


@fact()
def registry_containers(facts: Facts) -> list[RegistryContainer]:
    """The containers that are registries, with their version, data directory and port."""
    all_containers: list[ContainerInfo] = facts.get("containers")

    def read_host_file(path: str) -> str | None:
        return facts.source.read_text(path, limit=256 * 1024)

    out = []
    for c in all_containers:
        kind, why = registry_kind(c)
        if kind:
            out.append(describe_registry(c, kind, why, read_host_file))
    return out


def published_endpoints(rc: RegistryContainer) -> list[tuple[HostPort, str]]:
    out: list[tuple[HostPort, str]] = []
    c = rc.container
    if c.host_network:
        addr = c.env.get("REGISTRY_HTTP_ADDR") or _config_addr(rc.config) or ""
        host = ip_of(addr)
        out.append((HostPort(host or "localhost", rc.port), f"registry container {c.name} (--network host)"))
        return out
    for p in c.ports:
        if p.container_port == rc.port and p.proto == "tcp" and p.host_port:
            host = p.host_ip if p.host_ip not in ("", "0.0.0.0", "::") else "localhost"
            hp = HostPort(host, p.host_port)
            if all(hp != o[0] for o in out):
                out.append((hp, f"registry container {c.name} publishes {p.docker_arg()}"))
    return out


@fact()
def registry_endpoints_from_containers(facts: Facts) -> list[tuple[HostPort, str]]:
    """Published ports of registry containers: HOST:PORT as this host reaches them, and why."""
    out: list[tuple[HostPort, str]] = []
    for rc in facts.get("registry_containers"):
        if rc.container.status in ("running", "restarting"):
            out.extend(published_endpoints(rc))
    return out
