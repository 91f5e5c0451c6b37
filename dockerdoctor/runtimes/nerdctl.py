"""nerdctl as a client of the registry: nerdctl.toml (``hosts_dir``, ``insecure_registry``) and the
hosts.toml directories it reads."""

from __future__ import annotations

from dataclasses import dataclass

from dockerdoctor.facts import Facts, fact
from dockerdoctor.runtimes.base import Origin
from dockerdoctor.runtimes.containerd import (
    CONTAINERD_CERTS_D,
    DOCKER_CERTS_D,
    NERDCTL_TOML,
    source_lister,
    source_reader,
)
from dockerdoctor.runtimes.hosts_toml import HostsDirRuntime
from dockerdoctor.runtimes.toml_scan import load_toml, toml_lines
from dockerdoctor.sources.specs import read_first


@dataclass
class NerdctlConfig:
    path: str
    hosts_dir: tuple[str, ...] = (CONTAINERD_CERTS_D, DOCKER_CERTS_D)
    insecure_registry: bool = False
    error: str | None = None
    line: int | None = None


def parse_nerdctl_toml(text: str, path: str) -> NerdctlConfig:
    nc = NerdctlConfig(path)
    data, bad = load_toml(text, path)
    if data is None:
        assert bad is not None
        nc.error, nc.line = bad.text.removeprefix("does not parse: "), bad.line
        return nc
    hd = data.get("hosts_dir")
    if isinstance(hd, list):
        nc.hosts_dir = tuple(str(d) for d in hd)
        nc.line = toml_lines(text).get(("hosts_dir",))
    nc.insecure_registry = data.get("insecure_registry") is True
    return nc


@fact()
def nerdctl_runtime(facts: Facts) -> HostsDirRuntime | None:
    found = read_first(facts.source, "nerdctl_toml")
    text = found[1] if found else None
    if text is None:
        import shutil

        if not (facts.live and shutil.which("nerdctl")):
            return None
    nc = parse_nerdctl_toml(text, NERDCTL_TOML) if text is not None else NerdctlConfig(NERDCTL_TOML)
    notes = ("nerdctl.toml insecure_registry = true: HTTPS first, then plain HTTP, for every registry",) \
        if nc.insecure_registry else ()
    return HostsDirRuntime("nerdctl", "nerdctl", nc.hosts_dir, source_lister(facts), source_reader(facts),
                           facts.optional("containerd_version"), None,
                           Origin(NERDCTL_TOML if text is not None else "default", nc.line),
                           insecure_all=nc.insecure_registry, notes=notes)
