"""Recipes that open a port on this host: firewalld (runtime and/or permanent), nftables, iptables, ufw.
"""

from __future__ import annotations

from dockerdoctor.facts.netfilter import FilterRule
from dockerdoctor.model import RunCommand


def open_port_ops(zone: str, port: int, runtime: bool, permanent: bool) -> tuple[RunCommand, ...]:
    ops = []
    if runtime:
        ops.append(RunCommand(("firewall-cmd", f"--zone={zone}", f"--add-port={port}/tcp"),
                              "open the one port now (runtime)"))
    if permanent:
        ops.append(RunCommand(("firewall-cmd", "--permanent", f"--zone={zone}", f"--add-port={port}/tcp"),
                              "and keep it open across reloads and reboots"))
    return tuple(ops)


def allow_port_ops(r: FilterRule, port: int) -> tuple[RunCommand, ...]:
    if r.backend == "nftables":
        if r.handle is not None and not r.is_policy:
            return (RunCommand(("nft", "insert", "rule", r.family, r.table, r.chain, "position", str(r.handle),
                                "tcp", "dport", str(port), "accept"),
                               f"accept {port}/tcp just before the rule that blocks it"),)
        return (RunCommand(("nft", "insert", "rule", r.family, r.table, r.chain, "tcp", "dport", str(port), "accept"),
                           f"accept {port}/tcp at the top of the chain"),)
    if r.backend == "iptables":
        pos = str(r.position) if r.position and not r.is_policy else "1"
        return (RunCommand(("iptables", "-I", r.chain, pos, "-p", "tcp", "--dport", str(port), "-j", "ACCEPT"),
                           f"accept {port}/tcp before the rule that blocks it"),)
    return (RunCommand(("ufw", "allow", f"{port}/tcp"), f"allow {port}/tcp"),)
