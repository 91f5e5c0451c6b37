"""firewalld: its zones (runtime and permanent), the services they name, and whether a zone opens a port.

Read live over D-Bus (facts/firewalld_dbus.py, `org.fedoraproject.FirewallD1` on the bus named by
DBUS_SYSTEM_BUS_ADDRESS), with `firewall-cmd --list-all-zones` output and the zone XML files as
fallbacks; a snapshot has the firewall-cmd output sos collects and the zone folders of the spec table.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from dockerdoctor.errors import FactUnavailable
from dockerdoctor.facts import Facts, fact
from dockerdoctor.model import Provenance
from dockerdoctor.sources.specs import dir_paths, read_first

FW_NAME = "org.fedoraproject.FirewallD1"
FW_PATH = "/org/fedoraproject/FirewallD1"
FW_CONFIG_PATH = "/org/fedoraproject/FirewallD1/config"
ZONE_DIRS = dir_paths("firewalld_zones")  # later wins
SERVICE_DIRS = dir_paths("firewalld_services")
# Interfaces that never carry registry traffic from other hosts.
VIRTUAL_IFACE = re.compile(r"^(lo|docker\d*|br-[0-9a-f]+|veth.*|virbr\d+.*|cni\d*|flannel.*|cali.*|tun\d+|vxlan.*|"
                           r"podman\d*|kube-.*|weave|tap.*)$")


# --------------------------------------------------------------------------- model


@dataclass
class FwZone:
    name: str
    target: str = "default"
    interfaces: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    ports: list[tuple[str, str]] = field(default_factory=list)  # ("5000", "tcp"), ("5000-5010", "tcp")
    rich_rules: list[str] = field(default_factory=list)
    active: bool = False
    default: bool = False
    source: str = ""

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        return Provenance(self.source, text, line)


@dataclass
class PortVerdict:
    open: bool | None  # None: unknown (no data for this side)
    how: str  # "port 5000/tcp", "service docker-registry", "target ACCEPT", "rich rule ...", "not listed"


@dataclass
class FirewalldState:
    running: bool
    state_source: str
    default_zone: str | None = None
    default_zone_source: str = ""
    runtime: dict[str, FwZone] | None = None
    runtime_source: str = ""
    permanent: dict[str, FwZone] | None = None
    permanent_source: str = ""
    services: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    backend: str | None = None  # nftables | iptables (FirewallBackend= in firewalld.conf)
    backend_source: str = ""
    backend_line: int | None = None
    via: str = ""  # "D-Bus" | "firewall-cmd" | "zone files"

    def backend_evidence(self) -> Provenance:
        return Provenance(self.backend_source, f"FirewallBackend={self.backend}", self.backend_line)

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        """The state's source; the backend's is ``backend_evidence()``."""
        return Provenance(self.state_source, text, line)

    def zones(self) -> dict[str, FwZone]:
        return self.runtime if self.runtime is not None else (self.permanent or {})

    def zone_of_interface(self, iface: str) -> tuple[str | None, str]:
        for zones, label in ((self.runtime, "runtime"), (self.permanent, "permanent")):
            for z in (zones or {}).values():
                if iface in z.interfaces:
                    return z.name, f"{iface} is in zone {z.name} ({label})"
        if self.default_zone:
            return self.default_zone, f"{iface} is in no zone, so in the default zone {self.default_zone}"
        return None, f"{iface}: zone unknown"

    def port(self, zone: str, port: int, proto: str = "tcp", permanent: bool = False) -> PortVerdict:
        zones = self.permanent if permanent else self.runtime
        if zones is None:
            return PortVerdict(None, "unknown")
        z = zones.get(zone)
        if z is None:
            return PortVerdict(None, f"zone {zone} unknown")
        return zone_allows(z, port, proto, self.services)


def _port_in(spec: str, port: int) -> bool:
    a, _, b = spec.partition("-")
    try:
        return int(a) <= port <= int(b or a)
    except ValueError:
        return False


_RICH_PORT = re.compile(r'port\s+port="?(\d+(?:-\d+)?)"?\s+protocol="?(\w+)"?')
_RICH_SERVICE = re.compile(r'service\s+name="?([\w.-]+)"?')


def zone_allows(z: FwZone, port: int, proto: str, services: dict[str, list[tuple[str, str]]]) -> PortVerdict:
    if z.target.upper() == "ACCEPT":
        return PortVerdict(True, f"zone {z.name} has target ACCEPT")
    for p, pr in z.ports:
        if pr == proto and _port_in(p, port):
            return PortVerdict(True, f"port {p}/{pr} in zone {z.name}")
    for s in z.services:
        for p, pr in services.get(s, []):
            if pr == proto and _port_in(p, port):
                return PortVerdict(True, f"service {s} ({p}/{pr}) in zone {z.name}")
    for r in z.rich_rules:
        if not re.search(r"\baccept\b", r):
            continue
        m = _RICH_PORT.search(r)
        ports = [(m.group(1), m.group(2))] if m else []
        ms = _RICH_SERVICE.search(r)
        if ms:
            ports += services.get(ms.group(1), [])
        if any(pr == proto and _port_in(p, port) for p, pr in ports):
            limited = "source address" in r
            return PortVerdict(True, f"rich rule in zone {z.name}: {r.strip()}"
                               + (" (for some sources only)" if limited else ""))
    return PortVerdict(False, f"{port}/{proto} is not open in zone {z.name} (target {z.target})")


# --------------------------------------------------------------------------- parsers


def parse_list_all_zones(text: str, source: str) -> dict[str, FwZone]:
    """`firewall-cmd [--permanent] --list-all-zones`."""
    zones: dict[str, FwZone] = {}
    cur: FwZone | None = None
    in_rich = False
    for raw in text.splitlines():
        if not raw.strip():
            in_rich = False
            continue
        if not raw[0].isspace():
            m = re.match(r"^(\S+)(?:\s+\(([^)]*)\))?\s*$", raw)
            if not m:
                cur = None
                continue
            flags = (m.group(2) or "").replace(" ", "").split(",")
            cur = FwZone(m.group(1), active="active" in flags, default="default" in flags, source=source)
            zones[cur.name] = cur
            in_rich = False
            continue
        if cur is None:
            continue
        line = raw.strip()
        key, sep, val = line.partition(":")
        if in_rich and not (sep and key in ("target", "interfaces", "sources", "services", "ports")):
            if line.startswith("rule"):
                cur.rich_rules.append(line)
            continue
        if not sep:
            continue
        key, val = key.strip(), val.strip()
        words = val.split()
        if key == "target":
            cur.target = val or "default"
        elif key == "interfaces":
            cur.interfaces = words
        elif key == "sources":
            cur.sources = words
        elif key == "services":
            cur.services = words
        elif key == "ports":
            cur.ports = [tuple(w.split("/", 1)) for w in words if "/" in w]  # type: ignore[misc]
        elif key == "rich rules":
            in_rich = True
            if val.startswith("rule"):
                cur.rich_rules.append(val)
    return zones


def _xml_rule_text(rule: ET.Element) -> str:
    """A <rule> element as firewall-cmd prints it (enough for port/service/accept matching)."""
    parts = ["rule"]
    if rule.get("family"):
        parts.append(f'family="{rule.get("family")}"')
    for child in rule:
        tag = child.tag
        if tag == "source":
            parts.append(f'source address="{child.get("address", "")}"')
        elif tag == "port":
            parts.append(f'port port="{child.get("port")}" protocol="{child.get("protocol")}"')
        elif tag == "service":
            parts.append(f'service name="{child.get("name")}"')
        elif tag in ("accept", "reject", "drop", "mark"):
            parts.append(tag)
    return " ".join(parts)


def parse_zone_xml(text: str, name: str, source: str) -> FwZone | None:
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return None
    if root.tag != "zone":
        return None
    z = FwZone(name, target=root.get("target") or "default", source=source)
    if z.target == "%%REJECT%%":
        z.target = "default"
    for el in root:
        if el.tag == "interface" and el.get("name"):
            z.interfaces.append(el.get("name", ""))
        elif el.tag == "source" and el.get("address"):
            z.sources.append(el.get("address", ""))
        elif el.tag == "service" and el.get("name"):
            z.services.append(el.get("name", ""))
        elif el.tag == "port" and el.get("port"):
            z.ports.append((el.get("port", ""), el.get("protocol", "tcp")))
        elif el.tag == "rule":
            z.rich_rules.append(_xml_rule_text(el))
    return z


def parse_service_xml(text: str) -> list[tuple[str, str]]:
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return []
    return [(el.get("port", ""), el.get("protocol", "tcp")) for el in root.findall("port") if el.get("port")]


def parse_firewalld_conf(text: str) -> dict[str, tuple[str, int]]:
    out: dict[str, tuple[str, int]] = {}
    for i, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if s and not s.startswith("#") and "=" in s:
            k, v = s.split("=", 1)
            out[k.strip()] = (v.strip(), i)
    return out


# --------------------------------------------------------------------------- sources


def _services_from_files(facts: Facts, names: set[str]) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for d in SERVICE_DIRS:
        for n in names:
            text = facts.source.read_text(f"{d}/{n}.xml", limit=64 * 1024)
            if text:
                out[n] = parse_service_xml(text)
    # well-known ones, for snapshots that hold no /usr/lib/firewalld
    known = {"docker-registry": [("5000", "tcp")], "http": [("80", "tcp")], "https": [("443", "tcp")],
             "ssh": [("22", "tcp")]}
    for n in names:
        if n not in out and n in known:
            out[n] = known[n]
    return out


def _zones_from_files(facts: Facts) -> tuple[dict[str, FwZone], str]:
    zones: dict[str, FwZone] = {}
    used = []
    for d in ZONE_DIRS:
        for n in facts.source.listdir(d):
            if not n.endswith(".xml"):
                continue
            text = facts.source.read_text(f"{d}/{n}", limit=256 * 1024)
            z = parse_zone_xml(text or "", n[:-4], f"{d}/{n}") if text else None
            if z is not None:
                zones[z.name] = z
                if d.startswith("/etc"):
                    used.append(f"{d}/{n}")
    return zones, ", ".join(used) or ZONE_DIRS[0]


@fact()
def firewalld(facts: Facts) -> FirewalldState:
    from dockerdoctor.facts.firewalld_dbus import firewalld_over_dbus, system_bus_path  # live only

    src = facts.source
    conf_path, conf_text = read_first(src, "firewalld_conf") or ("", "")
    conf = parse_firewalld_conf(conf_text) if conf_text else {}
    st: FirewalldState | None = None
    installed = bool(conf_text) or any(src.listdir(d) for d in ZONE_DIRS)
    if facts.live:
        import importlib.util

        bus = system_bus_path()
        no_bus = bus is not None and not os.path.exists(bus)
        st = None if no_bus else firewalld_over_dbus(max(facts.options.timeout, 3.0))
        if st is not None and not st.running and not installed:
            raise FactUnavailable("firewalld is not installed here")
        if st is None and (no_bus or importlib.util.find_spec("dbus") is not None):
            # firewalld lives on the system bus; with no bus to reach it cannot be running, and
            # firewall-cmd (a D-Bus client that takes ~0.3 s to start, three runs) would only say so slowly.
            if not installed:
                raise FactUnavailable("firewalld is not installed here")
            why = (f"no system bus ({bus} does not exist), so firewalld cannot be running" if no_bus
                   else "D-Bus: no system bus with org.fedoraproject.FirewallD1")
            st = FirewalldState(False, why, via="zone files")
            zones, where = _zones_from_files(facts)
            if zones:
                st.permanent, st.permanent_source = zones, where
    if st is None:
        state_text = src.command("firewall_state")
        runtime_text = src.command("firewall_zones")
        perm_text = src.command("firewall_zones_permanent")
        installed = installed or state_text is not None
        if state_text is None and runtime_text is None and not installed:
            raise FactUnavailable("firewalld is not installed here (no /etc/firewalld, no firewall-cmd output)")
        s = (state_text or "").strip().splitlines()
        running = bool(s) and s[-1].strip() == "running"
        if state_text is None:
            running = bool(runtime_text and "(active)" in runtime_text)
        st = FirewalldState(running, src.command_source("firewall_state") + f": {s[-1].strip() if s else 'no output'}",
                            via="firewall-cmd")
        if runtime_text and running:
            st.runtime = parse_list_all_zones(runtime_text, src.command_source("firewall_zones"))
            st.runtime_source = src.command_source("firewall_zones")
        if perm_text:
            st.permanent = parse_list_all_zones(perm_text, src.command_source("firewall_zones_permanent"))
            st.permanent_source = src.command_source("firewall_zones_permanent")
        if st.permanent is None or not st.permanent:
            zones, where = _zones_from_files(facts)
            if zones:
                st.permanent, st.permanent_source = zones, where
                if st.via == "firewall-cmd" and not perm_text:
                    st.via = "firewall-cmd + zone files"
        for zs in (st.runtime, st.permanent):
            for z in (zs or {}).values():
                if z.default and not st.default_zone:
                    st.default_zone, st.default_zone_source = z.name, z.source
    if not st.default_zone and "DefaultZone" in conf:
        st.default_zone = conf["DefaultZone"][0]
        st.default_zone_source = f"{conf_path}:{conf['DefaultZone'][1]}"
    if "FirewallBackend" in conf:
        st.backend, st.backend_line = conf["FirewallBackend"][0].lower(), conf["FirewallBackend"][1]
        st.backend_source = conf_path
    # zones named as active in the runtime: interfaces of the default zone are implicit
    names = {s for zs in (st.runtime, st.permanent) for z in (zs or {}).values() for s in z.services}
    missing = {n for n in names if n not in st.services}
    if missing:
        st.services.update(_services_from_files(facts, missing))
    return st

