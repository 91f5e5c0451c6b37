"""The registry host's firewall: firewalld zones, plain packet filters, and protection that is off."""

from __future__ import annotations

from collections.abc import Iterator

from dockerdoctor.engine import finding, rule
from dockerdoctor.errors import Skip
from dockerdoctor.facts.firewalld import VIRTUAL_IFACE, FirewalldState, PortVerdict
from dockerdoctor.facts.interfaces import IfAddr
from dockerdoctor.facts.netfilter import FilterRule, PacketFilter
from dockerdoctor.facts.ports import RegistryListener
from dockerdoctor.facts.selinux import SelinuxStatus
from dockerdoctor.fixes.recipes import open_port_ops
from dockerdoctor.fixes.recipes.firewall import allow_port_fix, docker_chains_fix, start_firewalld_fix
from dockerdoctor.fixes.recipes.selinux import selinux_permissive_fix
from dockerdoctor.model import Evidence, Finding, Fix, Severity


def _zones_for(fw: FirewalldState, bind_ip: str, addrs: list[IfAddr] | None) -> list[tuple[str, str]]:
    """The zones whose rules decide whether traffic to bind_ip ("" = any address) gets in."""
    out: dict[str, str] = {}
    if addrs:
        ifaces = [a.iface for a in addrs if a.address == bind_ip] if bind_ip else []
        if not ifaces:
            ifaces = sorted({a.iface for a in addrs if not VIRTUAL_IFACE.match(a.iface)})
        for iface in ifaces:
            zone, why = fw.zone_of_interface(iface)
            if zone:
                out.setdefault(zone, why)
    if not out:
        for z in fw.zones().values():
            if (z.active or z.interfaces) and z.interfaces and not all(VIRTUAL_IFACE.match(i) for i in z.interfaces):
                out.setdefault(z.name, f"zone {z.name} holds {', '.join(z.interfaces)}")
    if not out and fw.default_zone:
        out[fw.default_zone] = f"the default zone ({fw.default_zone_source or 'firewalld'})"
    return list(out.items())


# ============================================================================ DD301


@rule("DD301", "firewalld-port-closed", category="network", severity=Severity.ERROR,
      title="firewalld does not open the registry port")
def firewalld_port_closed(firewalld: FirewalldState, registry_listeners: list[RegistryListener],
                          interface_addresses: list[IfAddr] | None = None,
                          packet_filter: PacketFilter | None = None) -> Iterator[Finding]:
    """firewalld runs, and the zone of the interface that carries registry traffic does not open
    the port of a registry that listens on the host: other hosts get `connect: no route to host`
    (the zone's default REJECT) or a timeout (target DROP). Also reported: a port opened at runtime
    only, which the next `firewall-cmd --reload` or reboot closes again.

    Why it happens: firewalld's public zone admits only its services (ssh, dhcpv6-client,
    cockpit). A registry that listens on the host (RHEL's docker-distribution `registry serve`,
    `dockerdoctor serve-registry`, a container with `--network host`) is behind that zone. A port
    that docker publishes (`-p 5000:5000`) is different: docker's DNAT and FORWARD rules take the
    packet before the zone does, so it is reachable whatever the zone says (checked on real parts;
    the finding then says the zone is not the cause, and notes that the registry is exposed on
    every interface). A firewalld start or restart after dockerd flushes docker's rules (seen on
    real parts with the nftables backend too), and dockerd puts them back only when it is
    connected to firewalld over D-Bus; the published port is then rejected. That, and the
    iptables backend, are reported with their evidence.

    How to fix: open the one port in the one zone, at runtime and permanently:
    `firewall-cmd --zone=public --add-port=5000/tcp` and the same with `--permanent`. Never stop
    or disable firewalld.

    Example:
        $ docker push 10.0.0.5:5000/app:1      (from another host)
        Get "https://10.0.0.5:5000/v2/": dial tcp 10.0.0.5:5000: connect: no route to host
        $ firewall-cmd --zone=public --query-port=5000/tcp
        no
    """
    fw = firewalld
    if not fw.running:
        raise Skip("firewalld is not running (see DD306)")
    if not registry_listeners:
        raise Skip("no registry listens on this host")
    if fw.runtime is None and fw.permanent is None:
        raise Skip("firewalld's zones are unknown (no D-Bus, no firewall-cmd output, no zone files)")
    for lst in registry_listeners:
        for zone, why in _zones_for(fw, lst.bind_ip, interface_addresses):
            rt = fw.port(zone, lst.port)
            pm = fw.port(zone, lst.port, permanent=True)
            ev = [lst.evidence(f"{lst.owner}: {lst.evidence_text}"),
                  Evidence(fw.runtime_source or fw.state_source, f"runtime: {rt.how}"),
                  Evidence(fw.permanent_source or "permanent configuration", f"permanent: {pm.how}"),
                  fw.evidence(why)]
            params = {"zone": zone, "port": lst.port, "how": lst.how, "owner": lst.owner,
                      "runtime_open": rt.open, "permanent_open": pm.open}
            if lst.how == "published":
                yield from _published(fw, lst, zone, rt, ev, params, packet_filter)
                continue
            case = ZONE_CASES.get((rt.open, pm.open))
            if case is not None:
                title, message, severity, runtime, permanent, summary = case
                fields = {"owner": lst.owner, "port": lst.port, "zone": zone, "why": why}
                yield finding("DD301", title.format(**fields), message.format(**fields), severity=severity,
                              evidence=ev, params=params,
                              fix=Fix(summary.format(**fields), open_port_ops(zone, lst.port, runtime, permanent)))


# (runtime open, permanent open) -> title, message, severity, open at runtime, open permanently, fix summary
ZONE_CASES: dict[tuple[bool | None, bool | None], tuple[str, str, Severity, bool, bool, str]] = {
    **{(False, pm): ("firewalld zone {zone} blocks registry port {port}",
                     "{owner} listens on port {port} on the host, and zone {zone} ({why}) does not open it, at "
                     "runtime or permanently: other hosts get 'no route to host' (or a timeout).",
                     Severity.ERROR, True, True, "Open {port}/tcp in zone {zone} (runtime and permanent)")
       for pm in (False, None)},
    (True, False): ("Port {port} is open in zone {zone} at runtime only",
                    "{owner} is reachable now, but port {port} is not in zone {zone}'s permanent configuration: the "
                    "next `firewall-cmd --reload`, firewalld restart or reboot closes it.",
                    Severity.WARNING, False, True, "Make {port}/tcp permanent in zone {zone}"),
    (None, False): ("Zone {zone}'s permanent configuration does not open registry port {port}",
                    "{owner} listens on port {port} on the host; zone {zone}'s permanent configuration does not "
                    "open it (what firewalld applies at runtime is not known here).",
                    Severity.ERROR, True, True, "Open {port}/tcp in zone {zone} (runtime and permanent)"),
    (False, True): ("Port {port} is in zone {zone}'s permanent config but not applied",
                    "{owner} listens on port {port}; zone {zone} opens it permanently but not at runtime (added "
                    "with --permanent and never reloaded, or removed at runtime).",
                    Severity.ERROR, True, False, "Open {port}/tcp in zone {zone} at runtime"),
}


def _published(fw: FirewalldState, lst: RegistryListener, zone: str, rt: PortVerdict, ev: list[Evidence],
               params: dict[str, object], packet_filter: PacketFilter | None) -> Iterator[Finding]:
    """A port docker publishes: docker's own rules admit it before the zone does, unless they are gone."""
    if rt.open is not False:
        return
    if fw.backend == "iptables":
        ev.append(fw.backend_evidence())
        yield finding(
            "DD301", f"firewalld's iptables backend can drop docker's rule for port {lst.port}",
            f"{lst.owner} publishes port {lst.port}, which zone {zone} does not open. Docker's own "
            "rules let it in today, but with FirewallBackend=iptables a `firewall-cmd --reload` or a "
            "firewalld restart flushes docker's chains until dockerd restarts.",
            severity=Severity.WARNING, evidence=ev,
            fix=Fix(f"Open {lst.port}/tcp in zone {zone} as well", open_port_ops(zone, lst.port, True, True)),
            params=params)
    elif packet_filter is not None and lst.running and (
            not packet_filter.docker_chains or (packet_filter.docker_dnat_ports is not None
                                                and lst.port not in packet_filter.docker_dnat_ports)):
        what = ("no DOCKER chain" if not packet_filter.docker_chains
                else f"no DNAT rule for port {lst.port} in docker's DOCKER chain")
        ev.append(packet_filter.evidence(what))
        yield finding(
            "DD301", f"Docker's rules are gone, so zone {zone} blocks published port {lst.port}",
            f"{lst.owner} publishes port {lst.port}, but the ruleset has {what}: firewalld flushed "
            "docker's rules when it started or reloaded, and dockerd did not put them back (it does so "
            f"only when it is connected to firewalld over D-Bus). Zone {zone} does not open the port, "
            "so clients are rejected.",
            evidence=ev,
            fix=docker_chains_fix(zone, lst.port),
            params=params)
    else:
        yield finding(
            "DD301", f"Zone {zone} does not open {lst.port}, but docker publishes it anyway",
            f"{lst.owner} publishes port {lst.port}. The zone is not the cause of a failure here: "
            f"docker's DNAT and FORWARD rules admit the packet before zone {zone} sees it. Note that "
            "the registry is therefore reachable on every interface, whatever the zone says; bind it "
            "to one address (-p ADDR:PORT:5000) or filter in the DOCKER-USER chain to limit it.",
            severity=Severity.INFO, evidence=ev, params=params)


# ============================================================================ DD302


def _effective_verdict(rules: list[FilterRule], port: int) -> FilterRule | None:
    """First rule that decides a new TCP connection to `port`; the policy when none does."""
    policy = None
    for r in rules:
        if r.is_policy:
            policy = r
            continue
        if not r.matches(port):
            continue
        if r.source_limited:
            continue
        return r
    return policy


def _reject_effect(r: FilterRule) -> str:
    if r.verdict == "drop":
        return "the packets are dropped: clients wait and time out (i/o timeout, Client.Timeout exceeded)"
    w = r.reject_with.lower()
    if "reset" in w:
        return "the connection is reset: clients see 'connection refused'"
    if "no-route" in w or "net-unreachable" in w:
        return "rejected with net-unreachable: clients see 'network is unreachable'"
    if w in ("", "icmp-port-unreachable", "icmpx port-unreachable", "port-unreachable"):
        return "rejected with port-unreachable: clients see 'connection refused'"
    return "rejected with an ICMP prohibited message: clients see 'connect: no route to host'"


def _rulesets(packet_filter: PacketFilter, fw_running: bool) -> dict[tuple[str, str, str], list[FilterRule]]:
    """The input rules by ruleset (nftables table, or iptables / ufw as a whole), firewalld's own left out while
    it runs (DD301 reads those)."""
    groups: dict[tuple[str, str, str], list[FilterRule]] = {}
    for r in packet_filter.rules:
        if fw_running and (r.table == "firewalld" or r.chain.startswith(("IN_", "INPUT_direct", "INPUT_ZONES",
                                                                         "filter_IN", "filter_INPUT"))):
            continue  # firewalld's own rules: DD301
        key = (r.backend, r.family, r.table) if r.backend == "nftables" else (r.backend, "", "")
        groups.setdefault(key, []).append(r)
    return groups


@rule("DD302", "packet-filter-blocks-port", category="network", severity=Severity.ERROR,
      title="A packet filter rule blocks the registry port")
def packet_filter_blocks_port(packet_filter: PacketFilter, registry_listeners: list[RegistryListener],
                              firewalld: FirewalldState | None = None) -> Iterator[Finding]:
    """An nftables, iptables or ufw rule (not firewalld's own) drops or rejects new connections to
    the port of a registry that listens on the host.

    Why it happens: a hand-written ruleset (/etc/nftables.conf, /etc/sysconfig/iptables,
    iptables-persistent), ufw's default `deny (incoming)`, or a cloud image's hardening. What the
    client sees tells the two apart: REJECT with an ICMP prohibited message shows as `connect: no
    route to host`, REJECT with tcp-reset as `connection refused`, DROP as a timeout after 15 s
    (`Client.Timeout exceeded while awaiting headers`). DD202 on the client pairs with this rule.

    How to fix: accept the one port just before the rule that blocks it (`nft insert rule ...
    position H tcp dport 5000 accept`, `iptables -I CHAIN N -p tcp --dport 5000 -j ACCEPT`, `ufw
    allow 5000/tcp`), then save the ruleset where it is loaded at boot. Never flush the ruleset.

    Example:
        nft: table inet filter chain input: tcp dport 5000 drop
        client: dial tcp 10.0.0.5:5000: i/o timeout
    """
    if not registry_listeners:
        raise Skip("no registry listens on this host")
    groups = _rulesets(packet_filter, firewalld is not None and firewalld.running)
    for lst in registry_listeners:
        if lst.how != "host":
            continue  # published ports take docker's FORWARD path, not INPUT
        for rules in groups.values():
            hit = _effective_verdict(rules, lst.port)
            if hit is None or hit.verdict == "accept":
                continue
            r = hit
            effect = _reject_effect(r)
            where = " ".join(x for x in (r.backend, r.family, r.table, "chain", r.chain) if x)
            yield finding(
                "DD302", f"{r.backend} {r.verdict}s registry port {lst.port}",
                f"{lst.owner} listens on port {lst.port}, but {where} {r.verdict}s new connections to it "
                f"({'the chain policy' if r.is_policy else 'a rule'}): {effect}.",
                evidence=[r.evidence(), lst.evidence(lst.evidence_text)],
                fix=allow_port_fix(r, lst.port, where),
                params={"port": lst.port, "backend": r.backend, "verdict": r.verdict, "reject_with": r.reject_with,
                        "chain": r.chain, "table": r.table},
            )


# ============================================================================ DD306


def _loopback(ip: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(ip.strip("[]")).is_loopback
    except ValueError:
        return ip == "localhost"


@rule("DD306", "protection-disabled", category="network", severity=Severity.INFO,
      title="SELinux or the firewall is turned off")
def protection_disabled(firewalld: FirewalldState | None = None,
                        selinux_status: SelinuxStatus | None = None,
                        registry_listeners: list[RegistryListener] | None = None,
                        packet_filter: PacketFilter | None = None) -> Iterator[Finding]:
    """SELinux is disabled or permissive, or firewalld is installed but not running, as the old
    registry guides advised ("turn off the firewall and SELinux"). Information only: nothing is
    broken, but the host has lost a layer of protection.

    How to fix (without breaking the registry): for firewalld, open the registry port in the
    permanent configuration first (`firewall-offline-cmd --zone=public --add-port=5000/tcp`), then
    `systemctl enable --now firewalld`. For SELinux, label the registry's directory first
    (`semanage fcontext -a -t container_file_t '/srv/registry(/.*)?'`, or `:Z` on the volume), set
    SELINUX=permissive in /etc/selinux/config, reboot (from disabled, `touch /.autorelabel`),
    check the audit log for registry denials (DD305), then set SELINUX=enforcing.

    Example:
        SELinux status: disabled      firewall-cmd --state: not running
    """
    if firewalld is None and selinux_status is None:
        raise Skip("neither firewalld nor SELinux is known here")
    # Only ports other hosts can reach: a registry on 127.0.0.1 (or one that is not running) needs nothing
    # opened in a zone, and advising so would open a port nobody serves.
    ports = sorted({lst.port for lst in registry_listeners or []
                    if lst.how == "host" and lst.running and not _loopback(lst.bind_ip)})
    other_filter = packet_filter is not None and any(
        r.verdict in ("drop", "reject") and r.table != "firewalld" for r in packet_filter.rules)
    if firewalld is not None and not firewalld.running and not other_filter:
        zone = firewalld.default_zone or "public"
        plural = "s" if len(ports) > 1 else ""
        where = (f"after opening the registry's port{plural} ({', '.join(map(str, ports))}/tcp) in zone {zone}"
                 if ports else "after opening, in its zone, every port this host must serve (no registry listens "
                 "here on an address other hosts reach)")
        yield finding(
            "DD306", "firewalld is installed but not running",
            f"firewalld is not running, so every port on this host is open to everyone. Start it {where}.",
            evidence=[Evidence(firewalld.state_source.split(":", 1)[0], "firewalld is not running")],
            fix=start_firewalld_fix(zone, ports),
            params={"what": "firewalld"},
        )
    if selinux_status is not None and selinux_status.mode in ("disabled", "permissive"):
        yield from _selinux_off(selinux_status)


def _selinux_off(s: SelinuxStatus) -> Iterator[Finding]:
    if s.mode == "disabled" and s.config_mode is None:
        return  # no /etc/selinux/config: a distribution without SELinux (Debian, Ubuntu); nothing was turned off
    ev = [s.evidence()]
    if s.config_mode:
        ev.append(s.config_evidence())
    steps = ("label the registry's data directory for containers first (container_file_t, or :Z)",
             "set SELINUX=permissive, reboot" + (" after `touch /.autorelabel`" if s.mode == "disabled" else ""),
             "check the audit log for registry denials (DD305), then set SELINUX=enforcing")
    yield finding(
        "DD306", f"SELinux is {s.mode}",
        f"SELinux is {s.mode}; containers are not confined. To turn it back on without breaking the "
        "registry: " + "; ".join(steps) + ".",
        evidence=ev,
        fix=selinux_permissive_fix(s.config_path if s.config_mode and s.config_line else None),
        params={"what": "selinux", "mode": s.mode},
    )
