"""`docker info`: the Engine API's /info live, its text output in a snapshot, and the engine version."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from dockerdoctor.errors import FactUnavailable
from dockerdoctor.facts import Facts, fact
from dockerdoctor.facts.dockerd_cli import parse_version
from dockerdoctor.facts.dockerhost import (
    EngineAnswer,
)
from dockerdoctor.model import Provenance

# --------------------------------------------------------------------------- docker info


@dataclass
class DockerInfo:
    source: str
    server_version: str | None = None
    insecure_cidrs: list[str] = field(default_factory=list)
    index_configs: dict[str, bool] = field(default_factory=dict)  # name -> secure
    http_proxy: str | None = None
    https_proxy: str | None = None
    no_proxy: str | None = None
    docker_root_dir: str | None = None
    live_restore: bool | None = None
    registry_mirrors: list[str] = field(default_factory=list)
    security_options: list[str] | None = None  # None: not in the output
    # "Storage Driver" and the lines under it (API: Driver, DriverStatus). On the containerd image store:
    # `Storage Driver: overlayfs` with `driver-type: io.containerd.snapshotter.v1` (docker/docs:
    # content/manuals/engine/storage/containerd.md; moby/moby#46757 quotes the text form)
    storage_driver: str | None = None
    driver_status: dict[str, str] = field(default_factory=dict)
    storage_driver_line: int | None = None  # 1-based line of "Storage Driver" in the text output

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        return Provenance(self.source, text, line)

    @property
    def insecure_names(self) -> list[str]:
        return [n for n, secure in self.index_configs.items() if not secure]


def parse_docker_info_text(text: str, source: str) -> DockerInfo:
    info = DockerInfo(source=source)
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        s = line.strip()
        i += 1
        key, sep, val = s.partition(":")
        val = val.strip()
        if not sep:
            continue
        if key == "Server Version":
            info.server_version = val
        elif key == "HTTP Proxy":
            info.http_proxy = val or None
        elif key == "HTTPS Proxy":
            info.https_proxy = val or None
        elif key == "No Proxy":
            info.no_proxy = val or None
        elif key == "Docker Root Dir":
            info.docker_root_dir = val
        elif key == "Live Restore Enabled":
            info.live_restore = val.lower() == "true"
        elif key == "Storage Driver":
            info.storage_driver, info.storage_driver_line = val or None, i
            indent = len(line) - len(line.lstrip())
            while i < len(lines) and (len(lines[i]) - len(lines[i].lstrip())) > indent and ":" in lines[i]:
                k, _, v = lines[i].strip().partition(":")
                info.driver_status[k.strip()] = v.strip()
                i += 1
        elif key == "Security Options" and val:
            info.security_options = val.split()  # docker 1.13: "Security Options: seccomp selinux"
        elif key == "Security Options":
            indent = len(line) - len(line.lstrip())
            opts = []
            while i < len(lines) and (len(lines[i]) - len(lines[i].lstrip())) > indent and lines[i].strip():
                opts.append(lines[i].strip())
                i += 1
            info.security_options = opts
        elif key in ("Insecure Registries", "Registry Mirrors") and not val:
            indent = len(line) - len(line.lstrip())
            items = []
            while i < len(lines) and (len(lines[i]) - len(lines[i].lstrip())) > indent and lines[i].strip():
                items.append(lines[i].strip())
                i += 1
            if key == "Registry Mirrors":
                info.registry_mirrors = items
                continue
            for item in items:
                try:
                    ipaddress.ip_network(item, strict=False)
                    if "/" in item:
                        info.insecure_cidrs.append(item)
                        continue
                except ValueError:
                    pass
                info.index_configs[item] = False
    return info


def _docker_info_live(docker_host: str, timeout: float) -> dict[str, Any] | None:
    import docker  # the Docker SDK

    try:
        client = docker.DockerClient(base_url=docker_host, timeout=timeout, version="auto")
        try:
            return client.info()  # type: ignore[no-any-return]
        finally:
            client.close()
    except Exception:  # the SDK raises many kinds; any failure means "not known live"
        return None


def docker_info_from_api(data: dict[str, Any], source: str) -> DockerInfo:
    reg = data.get("RegistryConfig") or {}
    info = DockerInfo(
        source=source,
        server_version=data.get("ServerVersion"),
        insecure_cidrs=list(reg.get("InsecureRegistryCIDRs") or []),
        index_configs={k: bool((v or {}).get("Secure", True)) for k, v in (reg.get("IndexConfigs") or {}).items()},
        http_proxy=data.get("HttpProxy") or None,
        https_proxy=data.get("HttpsProxy") or None,
        no_proxy=data.get("NoProxy") or None,
        docker_root_dir=data.get("DockerRootDir"),
        live_restore=data.get("LiveRestoreEnabled"),
        registry_mirrors=list(reg.get("Mirrors") or []),
        security_options=[str(o) for o in data.get("SecurityOptions") or []],
        storage_driver=data.get("Driver") or None,
        driver_status={str(p[0]): str(p[1]) for p in data.get("DriverStatus") or []
                       if isinstance(p, (list, tuple)) and len(p) == 2},
    )
    return info


@fact()
def docker_info(facts: Facts) -> DockerInfo:
    if facts.live:
        ans: EngineAnswer = facts.get("engine_answer")
        if not ans.answered:
            raise FactUnavailable(f"nothing answers on {ans.host.url}, so the Engine API cannot be asked")
        data = _docker_info_live(ans.host.url, facts.options.timeout)
        if data is None:
            raise FactUnavailable(f"the Engine API at {ans.host.url} did not answer /info")
        return docker_info_from_api(data, "Engine API /info")
    text = facts.source.command("docker_info")
    if not text or "Server Version" not in text:
        raise FactUnavailable("no docker info output in the snapshot (sos_commands/docker/docker_info)")
    return parse_docker_info_text(text, facts.source.command_source("docker_info"))


@fact()
def engine_version(facts: Facts) -> tuple[int, int, int]:
    info = facts.optional("docker_info")
    if info and parse_version(info.server_version):
        return parse_version(info.server_version)  # type: ignore[return-value]
    # Live, the Engine API is the only witness: the `docker` CLI may resolve another daemon than this run's.
    text = None if facts.live else facts.source.command("docker_version")
    if text:
        m = re.search(r"Server:.*?Version:\s*(\S+)", text, re.S)
        v = parse_version(m.group(1) if m else None)
        if v:
            return v
    raise FactUnavailable("the engine version is unknown (no docker info or docker version)")
