"""nerdctl as a client of the registry: nerdctl.toml (``hosts_dir``, ``insecure_registry``) and the
hosts.toml directories it reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
from dockerdoctor.runtimes.toml_scan import Problem, load_toml, toml_lines
from dockerdoctor.sources.specs import read_first


@dataclass
class NerdctlConfig:
    path: str
    hosts_dir: tuple[str, ...] = (CONTAINERD_CERTS_D, DOCKER_CERTS_D)
    insecure_registry: bool = False
    error: str | None = None
    line: int | None = None
    problems: list[Problem] = field(default_factory=list)  # DD601 names them
    defaults: tuple[str, ...] = (CONTAINERD_CERTS_D, DOCKER_CERTS_D)  # what nerdctl reads without hosts_dir


def parse_nerdctl_toml(text: str, path: str, defaults: tuple[str, ...] = (CONTAINERD_CERTS_D, DOCKER_CERTS_D),
                       ) -> NerdctlConfig:
    nc = NerdctlConfig(path, defaults, defaults=defaults)
    data, bad = load_toml(text, path)
    if data is None:
        assert bad is not None
        nc.error, nc.line = bad.text.removeprefix("does not parse: "), bad.line
        nc.problems.append(Problem(path, bad.line, f"{bad.text}: nerdctl cannot load it"))
        return nc
    hd = data.get("hosts_dir")
    if isinstance(hd, list):
        nc.hosts_dir = tuple(str(d) for d in hd)
        nc.line = toml_lines(text).get(("hosts_dir",))
    nc.insecure_registry = data.get("insecure_registry") is True
    return nc


def nerdctl_adapter(facts: Facts, name: str, display: str, path: str, text: str | None,
                    defaults: tuple[str, ...], why: str = "", lister: Any = None, reader: Any = None,
                    ) -> HostsDirRuntime:
    """nerdctl with this nerdctl.toml (None: none, the defaults apply) and these default hosts directories."""
    nc = parse_nerdctl_toml(text, path, defaults) if text is not None else NerdctlConfig(path, defaults,
                                                                                         defaults=defaults)
    notes: tuple[str, ...] = ()
    if nc.insecure_registry:
        notes += ("nerdctl.toml insecure_registry = true: HTTPS first, then plain HTTP, for every registry",)
    if nc.error:
        notes += (f"{path}:{nc.line or '?'} does not parse: nerdctl refuses to run ({nc.error})",)
    origin = Origin(path, nc.line, why) if text is not None else Origin("default", None, why)
    return HostsDirRuntime(name, display, nc.hosts_dir, lister or source_lister(facts), reader or source_reader(facts),
                           facts.optional("containerd_version"), None, origin, insecure_all=nc.insecure_registry,
                           notes=notes, config=nc)


def replaced_defaults(rt) -> tuple[str, ...]:
    """The default hosts directories that this nerdctl's nerdctl.toml `hosts_dir` replaced: nerdctl never
    reads them (it reads hosts_dir instead of the defaults, not in addition)."""
    nc = getattr(rt, "config", None)
    if not isinstance(nc, NerdctlConfig) or nc.error or nc.hosts_dir == nc.defaults:
        return ()
    return tuple(d for d in nc.defaults if d not in rt.roots)


@fact()
def nerdctl_runtime(facts: Facts) -> HostsDirRuntime | None:
    """nerdctl run as root: /etc/nerdctl/nerdctl.toml (rootless nerdctl: rootless.py)."""
    found = read_first(facts.source, "nerdctl_toml")
    text = found[1] if found else None
    if text is None:
        import shutil

        if not (facts.live and shutil.which("nerdctl")):
            return None
    return nerdctl_adapter(facts, "nerdctl", "nerdctl", NERDCTL_TOML, text, (CONTAINERD_CERTS_D, DOCKER_CERTS_D))
