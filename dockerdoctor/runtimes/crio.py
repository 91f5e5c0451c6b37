"""CRI-O: containers/image's registries.conf (system file) plus its own legacy ``insecure_registries``.

CRI-O is not packaged for Debian 12, so this adapter is tested from captured files in fixtures/hosts
(with their sources). What is modelled (cri-o docs/crio.conf.5.md, cri-o#2193, cri-o#3884):

* ``/etc/crio/crio.conf`` then ``/etc/crio/crio.conf.d/*.conf`` in name order (later files win);
* ``[crio.image] insecure_registries = [...]``: each entry is a CIDR (an IP registry inside it skips TLS
  verification) or a registry name compared as written: ``192.168.122.1`` does not cover
  ``192.168.122.1:443`` (cri-o#2193). The option is deprecated in favour of registries.conf;
* the same key outside ``[crio.image]`` is not read;
* registries.conf as podman reads it, as root (CRI-O is a system service).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from dockerdoctor.runtimes.base import Endpoint, ImageRef, Origin, Resolution, TlsMaterial
from dockerdoctor.runtimes.containers_image import ContainersConfig, resolve
from dockerdoctor.runtimes.toml_scan import tomllib as _toml

CRIO_CONF = "/etc/crio/crio.conf"
CRIO_DIR = "/etc/crio/crio.conf.d"


@dataclass(frozen=True)
class InsecureEntry:
    value: str
    origin: Origin
    ignored: str | None = None  # why CRI-O does not read it (wrong table)

    def covers(self, host: str) -> bool:
        if self.ignored:
            return False
        try:
            net = ipaddress.ip_network(self.value, strict=False)
        except ValueError:
            return self.value.rstrip("/") == host
        if "/" not in self.value:
            return self.value == host  # a bare IP is compared as a name: no port, no match
        h = host.rsplit(":", 1)[0].strip("[]") if host.count(":") == 1 or host.startswith("[") else host
        try:
            return ipaddress.ip_address(h) in net
        except ValueError:
            return False


@dataclass
class CrioConf:
    files: list[str]
    insecure: list[InsecureEntry] = field(default_factory=list)
    problems: list[tuple[Origin, str]] = field(default_factory=list)  # parse errors

    def entry_for(self, host: str) -> InsecureEntry | None:
        return next((e for e in self.insecure if e.covers(host)), None)


def parse_crio(texts: dict[str, str]) -> CrioConf:
    """texts: path -> content, in CRI-O's load order."""
    out = CrioConf(list(texts))
    for path, text in texts.items():
        try:
            data = _toml.loads(text)
        except _toml.TOMLDecodeError as exc:
            m = re.search(r"line (\d+)", str(exc))
            out.problems.append((Origin(path, int(m.group(1)) if m else None), f"does not parse as TOML: {exc}"))
            continue
        lines = text.splitlines()
        section = ""
        where: dict[str, int] = {}
        for n, raw in enumerate(lines, 1):
            s = raw.split("#", 1)[0].strip()
            if s.startswith("["):
                section = s.strip("[] ").replace('"', "")
            elif re.match(r"insecure_registries\s*=", s):
                where.setdefault(section, n)
        crio: dict = data["crio"] if isinstance(data.get("crio"), dict) else {}
        image: dict = crio["image"] if isinstance(crio.get("image"), dict) else {}
        if "insecure_registries" in image:
            vals = image.get("insecure_registries") or []
            # a later file's list replaces the earlier one
            out.insecure = [InsecureEntry(str(v), Origin(path, where.get("crio.image"), f"insecure_registries {v!r}"))
                            for v in vals]
        for sec, table in (("crio", crio), ("", data)):
            if isinstance(table, dict) and "insecure_registries" in table:
                for v in table.get("insecure_registries") or []:
                    out.insecure.append(InsecureEntry(
                        str(v), Origin(path, where.get(sec), f"insecure_registries {v!r}"),
                        f"in [{sec or 'top level'}], not in [crio.image]: CRI-O does not read it there"))
    return out


@dataclass
class CrioRuntime:
    """The Runtime (base.py) for CRI-O: registries.conf, then its insecure_registries on top."""

    config: ContainersConfig
    crio: CrioConf
    dirs: dict[str, list[str]]
    auth: dict[str, set[str]]
    origin: Origin
    name: str = "cri-o"
    display: str = "CRI-O"
    netns: str | None = None

    def resolve(self, ref: ImageRef, *, push: bool = False) -> Resolution:
        res = resolve(ref, self.config, self.dirs, self.auth, push=push)
        eps: list[Endpoint] = []
        notes = list(res.notes)
        for ep in res.endpoints:
            entry = self.crio.entry_for(ep.host)
            if entry is not None and ep.scheme == "https" and not ep.tls.skip_verify:
                tls = TlsMaterial(ep.tls.ca_files, ep.tls.client_pairs, True, True, entry.origin)
                eps.append(Endpoint(ep.url, "https", ep.host, ep.role, ep.capabilities, tls, True, False,
                                    ep.origin, ep.notes + (f"insecure_registries ({entry.origin.where()}): TLS not "
                                                           "verified, then plain HTTP",)))
            else:
                eps.append(ep)
        for e in self.crio.insecure:
            if e.ignored:
                notes.append(f"{e.origin.where()}: {e.ignored}")
        return Resolution(self.name, ref, tuple(eps), res.credentials, res.proxy, res.blocked, tuple(notes),
                          res.rewritten)
