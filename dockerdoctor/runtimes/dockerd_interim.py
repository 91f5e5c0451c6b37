"""dockerd (classic image store) as a Runtime, built from the existing daemon facts.

A stand-in until issue 14's dockerd adapter is registered in dockerdoctor.runtimes.ADAPTERS (the
``runtimes`` fact then uses that one). What it models is what the DD1xx rules already rely on:
HTTPS with /etc/docker/certs.d/HOST:PORT/*.crt; an insecure-registries entry (or 127.0.0.0/8) means
HTTPS without verification, then plain HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dockerdoctor.facts import Facts
from dockerdoctor.net import HostPort
from dockerdoctor.runtimes.base import DEFAULT, Credentials, Endpoint, ImageRef, Origin, Resolution, TlsMaterial


@dataclass
class DockerdClassic:
    insecure: list[tuple[str, Origin]]  # (entry, where)
    certs: dict[str, list[str]]  # HOST:PORT -> file names in /etc/docker/certs.d
    origin: Origin
    name: str = "dockerd"
    display: str = "dockerd (classic image store)"
    netns: str | None = None

    def resolve(self, ref: ImageRef, *, push: bool = False) -> Resolution:
        from dockerdoctor.facts.daemon import trusted_as_insecure

        host = "registry-1.docker.io" if ref.registry == "docker.io" else ref.registry
        try:
            hp = HostPort.parse(ref.registry)
        except ValueError:
            hp = HostPort(ref.registry, None)
        entry = trusted_as_insecure(hp, [e for e, _ in self.insecure])
        origin = next((o for e, o in self.insecure if e == entry), None) if entry else None
        files = self.certs.get(ref.registry, [])
        d = f"/etc/docker/certs.d/{ref.registry}"
        cas = tuple(f"{d}/{f}" for f in files if f.endswith(".crt"))
        pairs = tuple((f"{d}/{f}", f"{d}/{f[:-5]}.key") for f in files if f.endswith(".cert"))
        ins = entry is not None
        tls = TlsMaterial(cas, pairs, ins, True, (origin or Origin("default", None, entry or "")) if ins
                          else (Origin(d, None, "certs.d") if files else DEFAULT))
        eps = [Endpoint(f"https://{host}/v2/", "https", host, "registry", tls=tls, http_fallback=ins,
                        origin=origin or (Origin(d) if files else DEFAULT))]
        return Resolution(self.name, ref, tuple(eps), Credentials("~/.docker/config.json (docker login)"), None,
                          notes=("interim adapter from the daemon facts (issue 14's adapter replaces it)",))


def from_facts(facts: Facts) -> Any:
    proc = facts.optional("dockerd_process")
    cfg = facts.optional("effective_config")
    if proc is None and cfg is None:
        return None
    insecure: list[tuple[str, Origin]] = []
    if cfg is not None:
        values = cfg.insecure_running if cfg.insecure_running is not None else cfg.insecure_planned
        for v in values:
            insecure.append((v.value, Origin(v.source, v.line, f"{v.via}: {v.value}")))
    certs = {name: c.files for name, c in (facts.optional("certs_d") or {}).items()}
    where = proc.source if proc is not None else "daemon configuration"
    return DockerdClassic(insecure, certs, Origin(where))
