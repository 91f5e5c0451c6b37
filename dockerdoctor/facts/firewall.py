"""The firewall: firewalld's zones (runtime and permanent), and the packet filter rules that
decide whether a TCP port is reachable (nftables, iptables, ufw).

firewalld is read live over D-Bus (`org.fedoraproject.FirewallD1`, on the bus named by
DBUS_SYSTEM_BUS_ADDRESS), with `firewall-cmd --list-all-zones` output and the zone XML files as
fallbacks; a snapshot has the firewall-cmd output sos collects and /etc/firewalld/zones/*.xml.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from dockerdoctor.errors import FactUnavailable
from dockerdoctor.facts import Facts, fact
from dockerdoctor.safetext import isdigits, loads_json
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


def _to_py(v: Any) -> Any:
    import dbus

    if isinstance(v, (dbus.String, dbus.ObjectPath)):
        return str(v)
    if isinstance(v, dbus.Boolean):
        return bool(v)
    if isinstance(v, (dbus.Int32, dbus.UInt32, dbus.Int64, dbus.UInt64, dbus.Int16, dbus.UInt16, dbus.Byte)):
        return int(v)
    if isinstance(v, (dbus.Array, list, tuple, dbus.Struct)):
        return [_to_py(x) for x in v]
    if isinstance(v, (dbus.Dictionary, dict)):
        return {str(k): _to_py(x) for k, x in v.items()}
    return v


def _zone_from_settings(name: str, s: dict[str, Any], source: str) -> FwZone:
    return FwZone(
        name,
        target=str(s.get("target") or "default").replace("%%REJECT%%", "default"),
        interfaces=list(s.get("interfaces") or []),
        sources=list(s.get("sources") or []),
        services=list(s.get("services") or []),
        ports=[(str(p[0]), str(p[1])) for p in s.get("ports") or []],
        rich_rules=list(s.get("rules_str") or s.get("rich_rules") or []),
        source=source,
    )


def _settings_from_tuple(t: list[Any]) -> dict[str, Any]:
    """firewalld < 0.9 (RHEL 7) has only getZoneSettings/getSettings, a 16-field struct."""
    names = ("version", "short", "description", "unused", "target", "services", "ports", "icmp_blocks", "masquerade",
             "forward_ports", "interfaces", "sources", "rules_str", "protocols", "source_ports",
             "icmp_block_inversion")
    return dict(zip(names, t, strict=False))


def _zone_settings(zif: Any, fw: Any, name: str, timeout: float) -> dict[str, Any]:
    try:
        return dict(_to_py(zif.getZoneSettings2(name, timeout=timeout)))
    except Exception:
        return _settings_from_tuple(_to_py(fw.getZoneSettings(name, timeout=timeout)))


def system_bus_path() -> str | None:
    """The system bus socket's path (DBUS_SYSTEM_BUS_ADDRESS, else the default); None for other transports."""
    address = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or "unix:path=/var/run/dbus/system_bus_socket"
    first = address.split(";", 1)[0]
    if not first.startswith("unix:"):
        return None
    params = dict(p.partition("=")[::2] for p in first[len("unix:"):].split(","))
    return params.get("path")


def firewalld_over_dbus(timeout: float = 5.0) -> FirewalldState | None:
    """firewalld's runtime and permanent zones over D-Bus; None when the bus cannot be reached."""
    try:
        import dbus
        import dbus.bus
    except ImportError:
        return None

    # A private connection to the address in DBUS_SYSTEM_BUS_ADDRESS, read now: libdbus caches the
    # system bus address of its shared connection for the life of the process.
    address = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or "unix:path=/var/run/dbus/system_bus_socket"
    try:
        bus = dbus.bus.BusConnection(address)
    except Exception:
        return None
    try:
        try:
            owned = bool(bus.name_has_owner(FW_NAME))
        except Exception:
            return None
        if not owned:
            return FirewalldState(False, f"D-Bus: nobody owns {FW_NAME}", via="D-Bus")
        obj = bus.get_object(FW_NAME, FW_PATH)
        props = dbus.Interface(obj, "org.freedesktop.DBus.Properties")
        state = str(props.Get(FW_NAME, "state", timeout=timeout))
        fw = dbus.Interface(obj, FW_NAME)
        zif = dbus.Interface(obj, FW_NAME + ".zone")
        st = FirewalldState(state == "RUNNING", f"D-Bus {FW_NAME} state={state}", via="D-Bus")
        st.default_zone = str(fw.getDefaultZone(timeout=timeout))
        st.default_zone_source = "D-Bus getDefaultZone"
        active = _to_py(zif.getActiveZones(timeout=timeout))
        runtime: dict[str, FwZone] = {}
        for name in _to_py(zif.getZones(timeout=timeout)):
            s = _zone_settings(zif, fw, name, timeout)
            z = _zone_from_settings(name, s, f"D-Bus getZoneSettings2({name}) (runtime)")
            z.active = name in active
            z.default = name == st.default_zone
            runtime[name] = z
        st.runtime, st.runtime_source = runtime, "D-Bus getZoneSettings2 (runtime)"
        cobj = bus.get_object(FW_NAME, FW_CONFIG_PATH)
        cif = dbus.Interface(cobj, FW_NAME + ".config")
        permanent: dict[str, FwZone] = {}
        for name in _to_py(cif.getZoneNames(timeout=timeout)):
            path = cif.getZoneByName(name, timeout=timeout)
            zobj = bus.get_object(FW_NAME, path)
            zc = dbus.Interface(zobj, FW_NAME + ".config.zone")
            try:
                s = _to_py(zc.getSettings2(timeout=timeout))
            except Exception:
                s = _settings_from_tuple(_to_py(zc.getSettings(timeout=timeout)))
            permanent[name] = _zone_from_settings(name, s, f"D-Bus config.zone getSettings2({name}) (permanent)")
        st.permanent, st.permanent_source = permanent, "D-Bus config.zone getSettings2 (permanent)"
        names = {s for zs in (runtime, permanent) for z in zs.values() for s in z.services}
        for n in sorted(names):
            try:
                s = _to_py(fw.getServiceSettings2(n, dbus_interface=FW_NAME, timeout=timeout))
                st.services[n] = [(str(p[0]), str(p[1])) for p in s.get("ports") or []]
            except Exception:
                continue
        return st
    except Exception:
        return None
    finally:
        try:
            bus.close()
        except Exception:
            pass


@fact()
def firewalld(facts: Facts) -> FirewalldState:
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


# --------------------------------------------------------------------------- interfaces


@dataclass(frozen=True)
class IfAddr:
    iface: str
    address: str
    prefix: int | None


def parse_ip_addr(text: str) -> list[IfAddr]:
    """`ip -o addr` and `ip addr` output."""
    out: list[IfAddr] = []
    cur = None
    for line in text.splitlines():
        m = re.match(r"^\d+:\s+([^:\s@]+)(?:@\S+)?:?\s", line)
        if m:
            cur = m.group(1)
        a = re.search(r"\binet6?\s+([0-9a-fA-F.:]+)(?:/(\d+))?", line)
        if a and cur:
            out.append(IfAddr(cur, a.group(1), int(a.group(2)) if a.group(2) else None))
    return out


@fact()
def interface_addresses(facts: Facts) -> list[IfAddr]:
    if facts.live:
        try:
            import psutil

            out = []
            for iface, addrs in psutil.net_if_addrs().items():
                for a in addrs:
                    if a.family.name in ("AF_INET", "AF_INET6"):
                        out.append(IfAddr(iface, a.address.split("%")[0], None))
            return out
        except Exception:
            pass
    text = facts.source.command("ip_addr")
    if not text:
        raise FactUnavailable("the host's interface addresses are unknown (no ip addr output)")
    return parse_ip_addr(text)


# --------------------------------------------------------------------------- packet filters


@dataclass(frozen=True)
class FilterRule:
    backend: str  # nftables | iptables | ufw
    chain: str
    text: str
    verdict: str  # drop | reject | accept
    reject_with: str  # "", "tcp reset", "icmp host-prohibited", ...
    ports: tuple[tuple[int, int], ...]  # dport ranges; () = any port
    proto: str | None  # tcp | udp | None (any)
    source_limited: bool
    line: int | None = None
    source: str = ""
    family: str = ""  # nft table family
    table: str = ""
    is_policy: bool = False
    handle: int | None = None  # nft rule handle
    position: int | None = None  # 1-based position in its iptables chain

    def matches(self, port: int, proto: str = "tcp") -> bool:
        if self.proto and self.proto != proto:
            return False
        if not self.ports:
            return True
        return any(a <= port <= b for a, b in self.ports)


@dataclass
class PacketFilter:
    rules: list[FilterRule]  # input-path rules, in evaluation order per backend
    sources: list[str]
    ufw_active: bool | None = None
    docker_chains: bool = False  # docker's DOCKER / DOCKER-USER chains are present
    firewalld_table: bool = False
    docker_dnat_ports: set[int] | None = None  # host ports docker DNATs to containers (None: not known)


def _nft_ports(expr: dict[str, Any]) -> tuple[tuple[int, int], ...] | None:
    right = expr.get("right")
    if isinstance(right, int):
        return ((right, right),)
    if isinstance(right, dict):
        if "range" in right:
            a, b = right["range"]
            return ((int(a), int(b)),)
        if "set" in right:
            out = []
            for x in right["set"]:
                if isinstance(x, int):
                    out.append((x, x))
                elif isinstance(x, dict) and "range" in x:
                    out.append((int(x["range"][0]), int(x["range"][1])))
            return tuple(out)
    if isinstance(right, list):
        return tuple((int(x), int(x)) for x in right if isinstance(x, int))
    return None


def parse_nft_json(text: str, source: str) -> tuple[list[FilterRule], bool, bool]:
    """Rules in input-hook chains (and the chains they jump to) that drop or reject TCP ports."""
    try:
        data = loads_json(text)
    except ValueError:
        return [], False, False
    items = data.get("nftables", []) if isinstance(data, dict) else []
    chains: dict[tuple[str, str, str], dict[str, Any]] = {}
    rules: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    docker = firewalld = False
    for it in items:
        if "chain" in it:
            c = it["chain"]
            key = (c.get("family"), c.get("table"), c.get("name"))
            chains[key] = c
            if c.get("name") in ("DOCKER", "DOCKER-USER"):
                docker = True
        elif "rule" in it:
            r = it["rule"]
            rules.setdefault((r.get("family"), r.get("table"), r.get("chain")), []).append(r)
        elif "table" in it and it["table"].get("name") == "firewalld":
            firewalld = True
    out: list[FilterRule] = []

    def walk(key: tuple[str, str, str], depth: int) -> None:
        if depth > 8:
            return
        for r in rules.get(key, []):
            exprs = r.get("expr") or []
            ports: tuple[tuple[int, int], ...] = ()
            proto = None
            verdict = None
            reject_with = ""
            src_limited = iif_lo = False
            jump = None
            for e in exprs:
                if "match" in e:
                    m = e["match"]
                    left = m.get("left") or {}
                    payload = left.get("payload") if isinstance(left, dict) else None
                    meta = left.get("meta") if isinstance(left, dict) else None
                    if payload and payload.get("field") == "dport":
                        proto = payload.get("protocol")
                        ports = _nft_ports(m) or ()
                    elif payload and payload.get("field") in ("saddr",):
                        src_limited = True
                    elif meta and meta.get("key") in ("iifname", "iif") and m.get("right") in ("lo",):
                        iif_lo = True
                    elif meta and meta.get("key") == "l4proto":
                        proto = m.get("right") if isinstance(m.get("right"), str) else proto
                    elif payload and payload.get("field") == "protocol" and payload.get("protocol") in ("ip", "ip6"):
                        proto = m.get("right") if isinstance(m.get("right"), str) else proto
                    else:
                        # ct state, saddr sets, marks, an interface other than lo, xt matches...: this rule is
                        # not about every new connection, so it decides nothing for "any client"
                        src_limited = True
                elif "drop" in e:
                    verdict = "drop"
                elif "reject" in e:
                    verdict = "reject"
                    rj = e["reject"] or {}
                    reject_with = " ".join(str(x) for x in (rj.get("type"), rj.get("expr")) if x)
                elif "accept" in e:
                    verdict = "accept"
                elif "jump" in e or "goto" in e:
                    jump = (e.get("jump") or e.get("goto") or {}).get("target")
                elif not any(k in e for k in ("counter", "log", "comment", "limit")):
                    src_limited = True
            if iif_lo:
                continue
            if jump:
                if not src_limited:
                    walk((key[0], key[1], jump), depth + 1)
                continue
            if verdict is None:
                continue
            text = f"{key[0]} {key[1]} {key[2]}: handle {r.get('handle')} " + (r.get("comment") or "")
            out.append(FilterRule("nftables", key[2], text.strip(), verdict, reject_with, ports, proto, src_limited,
                                  None, source, key[0], key[1], handle=r.get("handle")))

    for key, c in chains.items():
        if c.get("hook") == "input" and c.get("type", "filter") == "filter":
            walk(key, 0)
            pol = c.get("policy")
            if pol in ("drop",):
                out.append(FilterRule("nftables", key[2], f"{key[0]} {key[1]} {key[2]}: policy {pol}", pol, "", (),
                                      None, False, None, source, key[0], key[1], is_policy=True))
    return out, docker, firewalld


_IPT_RULE = re.compile(r"^-A\s+(\S+)\s+(.*)$")


def parse_iptables_save(text: str, source: str) -> tuple[list[FilterRule], bool]:
    table = ""
    out: list[FilterRule] = []
    chains_input: set[str] = {"INPUT"}
    policies: dict[str, str] = {}
    docker = False
    lines = text.splitlines()
    # chains INPUT jumps to (INPUT_direct, IN_public, ufw-before-input, ...)
    for line in lines:
        m = _IPT_RULE.match(line.strip())
        if m:
            j = re.search(r"-[jg]\s+(\S+)", m.group(2))
            if j and m.group(1) in chains_input and j.group(1) not in ("ACCEPT", "DROP", "REJECT", "RETURN", "LOG"):
                chains_input.add(j.group(1))
    position: dict[str, int] = {}
    for i, line in enumerate(lines, 1):
        s = line.strip()
        if s.startswith("*"):
            table = s[1:]
            position = {}
            continue
        if s.startswith(":"):
            parts = s[1:].split()
            if parts and parts[0] in ("DOCKER", "DOCKER-USER"):
                docker = True
            if table == "filter" and len(parts) >= 2 and parts[0] == "INPUT":
                policies["INPUT"] = parts[1]
            continue
        m = _IPT_RULE.match(s)
        if not m or table != "filter":
            continue
        position[m.group(1)] = position.get(m.group(1), 0) + 1
        if m.group(1) not in chains_input:
            continue
        args = m.group(2)
        j = re.search(r"-j\s+(DROP|REJECT|ACCEPT)\b", args)
        if not j:
            continue
        if re.search(r"-i\s+lo\b", args) or "--ctstate" in args or "--state" in args:
            continue
        dports = re.search(r"--dports?\s+(\S+)", args)
        ports: list[tuple[int, int]] = []
        if dports:
            for part in dports.group(1).split(","):
                a, _, b = part.partition(":")
                if isdigits(a):
                    ports.append((int(a), int(b or a)))
        pm = re.search(r"-p\s+(\w+)", args)
        rw = re.search(r"--reject-with\s+(\S+)", args)
        out.append(FilterRule("iptables", m.group(1), s, j.group(1).lower(),
                              rw.group(1) if rw else ("icmp-port-unreachable" if j.group(1) == "REJECT" else ""),
                              tuple(ports), pm.group(1) if pm else None, bool(re.search(r"(^|\s)-s\s", args)),
                              i, source, position=position[m.group(1)]))
    if policies.get("INPUT") == "DROP":
        out.append(FilterRule("iptables", "INPUT", ":INPUT DROP", "drop", "", (), None, False, None, source,
                              is_policy=True))
    return out, docker


def parse_ufw_status(text: str, source: str) -> tuple[list[FilterRule], bool | None]:
    active = None
    out: list[FilterRule] = []
    default_deny = False
    for i, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if s.lower().startswith("status:"):
            active = s.split(":", 1)[1].strip().lower() == "active"
        elif s.lower().startswith("default:") and "deny (incoming)" in s.lower():
            default_deny = True
        m = re.match(r"^(?:\[\s*\d+\]\s*)?(\d+(?::\d+)?(?:,\d+)*)(?:/(tcp|udp))?(?:\s+\(v6\))?\s+(DENY|REJECT)\s+IN\s+"
                     r"(\S+)", s)
        if m:
            ports = []
            for part in m.group(1).split(","):
                a, _, b = part.partition(":")
                ports.append((int(a), int(b or a)))
            out.append(FilterRule("ufw", "ufw-user-input", s, m.group(3).lower(), "", tuple(ports), m.group(2),
                                  m.group(4).lower() not in ("anywhere", "anywhere(v6)"), i, source))
    if active and default_deny:
        out.append(FilterRule("ufw", "ufw", "Default: deny (incoming)", "drop", "", (), None, False, None, source,
                              is_policy=True))
    return out, active


@fact()
def packet_filter(facts: Facts) -> PacketFilter:
    src = facts.source
    rules: list[FilterRule] = []
    sources: list[str] = []
    docker = fw_table = False
    ufw_active = None
    nft = src.command("nft_ruleset")
    if nft:
        r, d, f = parse_nft_json(nft, src.command_source("nft_ruleset"))
        rules += r
        docker, fw_table = docker or d, fw_table or f
        sources.append(src.command_source("nft_ruleset"))
    else:
        for key in ("nft_ruleset_text", "nft_ruleset_firewalld"):
            nft = src.command(key)
            if nft:
                r, d, f = parse_nft_text(nft, src.command_source(key))
                rules += r
                docker, fw_table = docker or d, fw_table or f
                sources.append(src.command_source(key))
                break
    have_nft = any(x.backend == "nftables" for x in rules)
    ipt = src.command("iptables_save")
    if ipt and ipt.strip():
        r, d = parse_iptables_save(ipt, src.command_source("iptables_save"))
        # iptables-nft shows the same rules nft shows; keep both only when nft said nothing
        if not have_nft:
            rules += r
        docker = docker or d
        sources.append(src.command_source("iptables_save"))
    else:
        ipt = src.command("iptables_list")
        if ipt and ipt.strip():
            r, d = parse_iptables_list(ipt, src.command_source("iptables_list"))
            if not have_nft:
                rules += r
            docker = docker or d
            sources.append(src.command_source("iptables_list"))
    ufw = src.command("ufw_status")
    if ufw:
        r, ufw_active = parse_ufw_status(ufw, src.command_source("ufw_status"))
        if ufw_active:
            rules += r
        sources.append(src.command_source("ufw_status"))
    if not sources:
        raise FactUnavailable("no packet filter rules are readable here (nft -j list ruleset, iptables-save, ufw)")
    dnat: set[int] | None = None
    if ipt and ipt.lstrip().startswith(("#", "*")):
        dnat = docker_dnat_ports(ipt, "iptables-save")
    elif nft:
        dnat = docker_dnat_ports(nft, "nft-json" if nft.lstrip().startswith("{") else "nft-text")
    return PacketFilter(rules, sources, ufw_active, docker, fw_table, dnat)


# --------------------------------------------------------------------------- text formats (sos)

_NFT_TABLE = re.compile(r"^\s*table\s+(\w+)\s+(\S+)\s*\{")
_NFT_CHAIN = re.compile(r"^\s*chain\s+(\S+)\s*\{")
# Linear on any line: the policy is searched for on its own (a lazy `.*?` before `\s*$` was quadratic on a
# hook line followed by 400,000 spaces).
_NFT_HOOK = re.compile(r"type\s+(\w+)\s+hook\s+(\w+)")
_NFT_POLICY = re.compile(r"\bpolicy\s+(\w+)\s*;?\s*$")


def _ports_from_words(spec: str) -> tuple[tuple[int, int], ...]:
    out = []
    for part in re.split(r"[,\s{}]+", spec):
        a, _, b = part.partition("-")
        if isdigits(a) and (not b or isdigits(b)):
            out.append((int(a), int(b or a)))
    return tuple(out)


def parse_nft_text(text: str, source: str) -> tuple[list[FilterRule], bool, bool]:
    """`nft list ruleset` (as sos stores it): the rules of input-hook chains, in order."""
    chains: dict[tuple[str, str, str], list[tuple[int, str]]] = {}
    hooks: dict[tuple[str, str, str], str | None] = {}
    docker = firewalld = False
    table: tuple[str, str] | None = None
    chain: str | None = None
    for i, raw in enumerate(text.splitlines(), 1):
        m = _NFT_TABLE.match(raw)
        if m:
            table, chain = (m.group(1), m.group(2)), None
            if m.group(2) == "firewalld":
                firewalld = True
            continue
        m = _NFT_CHAIN.match(raw)
        if m and table:
            chain = m.group(1)
            chains[(table[0], table[1], chain)] = []
            if chain in ("DOCKER", "DOCKER-USER"):
                docker = True
            continue
        line = raw.strip()
        if not line or line == "}" or table is None or chain is None:
            continue
        h = _NFT_HOOK.match(line) if line.startswith("type ") else None
        if h:
            if h.group(1) == "filter" and h.group(2) == "input":
                pol = _NFT_POLICY.search(line.rstrip())
                hooks[(table[0], table[1], chain)] = pol.group(1) if pol else None
            continue
        chains[(table[0], table[1], chain)].append((i, line))
    out: list[FilterRule] = []

    def walk(key: tuple[str, str, str], depth: int) -> None:
        if depth > 8:
            return
        for lineno, line in chains.get(key, []):
            body = line.split("#", 1)[0].strip()
            handle = re.search(r"#\s*handle\s+(\d+)", line)
            words = body.split()
            if not words:
                continue
            verdict = None
            reject_with = ""
            jump = None
            m = re.search(r"\b(accept|drop)\s*$", body) or re.search(r"\b(reject)(?:\s+with\s+(.+))?$", body)
            if m:
                verdict = m.group(1)
                if verdict == "reject" and m.lastindex and m.lastindex >= 2 and m.group(2):
                    reject_with = m.group(2).strip()
            jm = re.search(r"\b(jump|goto)\s+(\S+)\s*$", body)
            if jm:
                jump = jm.group(2)
            cond = re.sub(r"\b(counter(\s+packets\s+\d+\s+bytes\s+\d+)?|log(\s+prefix\s+\"[^\"]*\")?|"
                          r"accept|drop|reject(\s+with\s+.+)?|(jump|goto)\s+\S+)\s*", " ", body).strip()
            if re.match(r"^(iif|iifname)\s+\"?lo\"?$", cond):
                continue
            ports: tuple[tuple[int, int], ...] = ()
            proto = None
            limited = False
            pm = re.match(r"^(tcp|udp|th)\s+dport\s+(\{[^}]*\}|\S+)$", cond)
            if pm:
                proto = None if pm.group(1) == "th" else pm.group(1)
                ports = _ports_from_words(pm.group(2))
            elif re.match(r"^(ip protocol|meta l4proto|ip6 nexthdr)\s+(\S+)$", cond):
                proto = cond.split()[-1]
            elif cond:
                limited = True  # ct state, saddr, marks, other interfaces: not "every new connection"
            if jump:
                if not limited:
                    walk((key[0], key[1], jump), depth + 1)
                continue
            if verdict is None:
                continue
            out.append(FilterRule("nftables", key[2], f"table {key[0]} {key[1]} chain {key[2]}: {body}", verdict,
                                  reject_with, ports, proto, limited, lineno, source, key[0], key[1],
                                  handle=int(handle.group(1)) if handle else None))

    for key, policy in hooks.items():
        walk(key, 0)
        if policy == "drop":
            out.append(FilterRule("nftables", key[2], f"table {key[0]} {key[1]} chain {key[2]}: policy drop", "drop",
                                  "", (), None, False, None, source, key[0], key[1], is_policy=True))
    return out, docker, firewalld


_IPT_CHAIN = re.compile(r"^Chain\s+(\S+)(?:\s+\(policy\s+(\w+))?")


def parse_iptables_list(text: str, source: str) -> tuple[list[FilterRule], bool]:
    """`iptables -vnxL` / `iptables -t filter -nvL`: the INPUT chain and the chains it jumps to."""
    chains: dict[str, list[tuple[int, list[str]]]] = {}
    policy: dict[str, str] = {}
    cur = None
    docker = False
    for i, line in enumerate(text.splitlines(), 1):
        m = _IPT_CHAIN.match(line)
        if m:
            cur = m.group(1)
            chains[cur] = []
            if m.group(2):
                policy[cur] = m.group(2)
            if cur in ("DOCKER", "DOCKER-USER"):
                docker = True
            continue
        cols = line.split()
        if cur is None or not cols or cols[0] == "pkts" or not isdigits(cols[0]):
            continue
        chains[cur].append((i, cols))
    out: list[FilterRule] = []

    def walk(chain: str, depth: int) -> None:
        if depth > 8:
            return
        for pos, (lineno, cols) in enumerate(chains.get(chain, []), 1):
            if len(cols) < 9:
                continue
            target, prot, _opt, iface, _out, src = cols[2], cols[3], cols[4], cols[5], cols[6], cols[7]
            extra = " ".join(cols[9:])
            if iface == "lo":
                continue
            limited = src not in ("0.0.0.0/0", "::/0") or iface not in ("*",)
            st = re.search(r"state\s+(\S+)", extra)
            if st and "NEW" not in st.group(1):
                limited = True
            extra_wo = re.sub(r"(ct)?state\s+\S+|reject-with\s+\S+|/\*.{0,512}?\*/|(tcp|udp)\s+dpts?:\S+|"
                              r"multiport\s+dports\s+\S+", "", extra).strip()
            if extra_wo:
                limited = True  # other matches (mark, limit, recent...): not every new connection
            ports: list[tuple[int, int]] = []
            d = re.search(r"dpts?:(\d+)(?::(\d+))?", extra)
            if d:
                ports.append((int(d.group(1)), int(d.group(2) or d.group(1))))
            mp = re.search(r"multiport\s+dports\s+(\S+)", extra)
            if mp:
                for part in mp.group(1).split(","):
                    a, _, b = part.partition(":")
                    if isdigits(a):
                        ports.append((int(a), int(b or a)))
            proto = {"6": "tcp", "17": "udp", "1": "icmp", "all": None, "0": None}.get(prot, prot)
            if target not in ("ACCEPT", "DROP", "REJECT", "RETURN", "LOG"):
                if not limited and target in chains:
                    walk(target, depth + 1)
                continue
            if target in ("RETURN", "LOG"):
                continue
            rw = re.search(r"reject-with\s+(\S+)", extra)
            out.append(FilterRule("iptables", chain, f"Chain {chain} rule {pos}: {' '.join(cols[2:])}",
                                  target.lower(), rw.group(1) if rw else ("icmp-port-unreachable"
                                                                         if target == "REJECT" else ""),
                                  tuple(ports), proto, limited, lineno, source, position=pos))

    walk("INPUT", 0)
    if policy.get("INPUT") == "DROP":
        out.append(FilterRule("iptables", "INPUT", "Chain INPUT (policy DROP)", "drop", "", (), None, False, None,
                              source, is_policy=True))
    return out, docker


# Applied to one rule line at a time, without a leading `.*`: `^-A DOCKER.*--dport (\d+).*-j DNAT` over a
# 4 MB line of `--dport 1` backtracked for minutes.
_DPORT_IPT = re.compile(r"--dport (\d+)\b")
_DPORT_NFT = re.compile(r"dport (\d+) ")


def _dnat_port(line: str, dport: re.Pattern[str], verdict: str, first: bool = False) -> int | None:
    """The port of one DNAT rule line: the last (iptables) or first (nft) one before the DNAT verdict."""
    end = line.rfind(verdict)
    if end < 0:
        return None
    if first:
        m = dport.search(line, 0, end)
    else:
        found = list(dport.finditer(line, 0, end))
        m = found[-1] if found else None
    return int(m.group(1)) if m else None


def docker_dnat_ports(text: str, kind: str) -> set[int]:
    """Host ports with a DNAT rule in docker's DOCKER chain (iptables-save, nft text or nft JSON)."""
    if kind == "iptables-save":
        found = (_dnat_port(line, _DPORT_IPT, "-j DNAT") for line in text.splitlines()
                 if line.startswith("-A DOCKER") and line[9:10] in ("", " ", "\t"))
        return {p for p in found if p is not None}
    if kind == "nft-text":
        out: set[int] = set()
        in_docker = False
        for line in text.splitlines():
            s = line.strip()
            if s.startswith("chain "):
                in_docker = s.split()[1] == "DOCKER"
            elif in_docker:
                p = _dnat_port(s, _DPORT_NFT, "dnat to", first=True)
                if p is not None:
                    out.add(p)
        return out
    try:
        data = loads_json(text)
    except ValueError:
        return set()
    out = set()
    for it in data.get("nftables", []) if isinstance(data, dict) else []:
        r = it.get("rule")
        if not r or r.get("chain") != "DOCKER":
            continue
        exprs = r.get("expr") or []
        if not any("dnat" in e for e in exprs) and not any(
                isinstance(e.get("xt"), dict) and e["xt"].get("name") == "DNAT" for e in exprs):
            continue
        for e in exprs:
            m = e.get("match") if isinstance(e, dict) else None
            left = (m or {}).get("left") or {}
            if m and isinstance(left, dict) and (left.get("payload") or {}).get("field") == "dport":
                for a, b in _nft_ports(m) or ():
                    out.update(range(a, b + 1))
    return out
