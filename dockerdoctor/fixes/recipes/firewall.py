"""Recipes that open a port on this host: firewalld (runtime and/or permanent), nftables, iptables, ufw.
"""

from __future__ import annotations

from dockerdoctor.facts.netfilter import FilterRule
from dockerdoctor.fixes.recipes.daemon import RESTART_WARNING
from dockerdoctor.model import Fix, RunCommand, ServiceAction


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


def docker_chains_fix(zone: str, port: int) -> Fix:
    """firewalld flushed docker's chains: a docker restart puts them back; opening the port is the alternative."""
    return Fix("Restart docker, which re-creates its chains and port rules",
               (ServiceAction("restart"),),
               warnings=(RESTART_WARNING,
                         "Start firewalld before docker (docker.service After=firewalld.service) "
                         "so that the next reload does not flush them again."),
               alternatives=(Fix(f"Or open {port}/tcp in zone {zone}", open_port_ops(zone, port, True, True)),))


def start_firewalld_fix(zone: str, ports: list[int]) -> Fix:
    """firewalld is installed and stopped: open the registry's ports offline (permanent), then start it."""
    if not ports:
        return Fix("Open the ports this host serves with firewall-offline-cmd, then start firewalld (where systemd "
                   "runs: `systemctl enable --now firewalld`)")
    ops = tuple(RunCommand(("firewall-offline-cmd", f"--zone={zone}", f"--add-port={p}/tcp"),
                           "open the registry port in the permanent configuration first") for p in ports)
    return Fix("Open the registry port permanently, then start firewalld",
               (*ops, ServiceAction("start", "firewalld.service")))


def allow_port_fix(r: FilterRule, port: int, where: str) -> Fix:
    """Accept the port before the rule (or policy) `r` that blocks it; saving the ruleset is the user's step."""
    return Fix(f"Accept {port}/tcp in {where}", allow_port_ops(r, port),
               warnings=("Save the ruleset where it is loaded at boot (/etc/nftables.conf, "
                         "/etc/sysconfig/iptables or netfilter-persistent), or it is gone after a reboot.",))
