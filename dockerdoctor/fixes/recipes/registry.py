"""Recipes on the registry host: make a registry listen, open its port on the way, resolve its name.
"""

from __future__ import annotations

from dockerdoctor.model import Fix, RunCommand
from dockerdoctor.net import HostPort


def listen_fix(addr: HostPort) -> Fix:
    """Nothing listens on addr's port: find out on the registry host, or start a registry there."""
    return Fix(f"On the registry host, make a registry listen on port {addr.port} on an address this host "
               "reaches",
               (RunCommand(("ss", "-ltnp", f"sport = :{addr.port}"),
                           "on the registry host: what listens on the port (nothing, or only 127.0.0.1)"),
                RunCommand(("docker", "run", "-d", "--restart=always", "--name", "registry",
                            "-p", f"{addr.port}:5000", "-v", "/var/lib/registry:/var/lib/registry",
                            "registry:2"),
                           "on the registry host, if no registry runs: start one with its port published")))


def remote_open_port_fix(port: int | None) -> Fix:
    """A firewall on the way filters the port: open it on the registry host (firewalld, else nftables)."""
    return Fix(f"Open {port}/tcp on the registry host's firewall",
               (RunCommand(("firewall-cmd", f"--add-port={port}/tcp"), "on the registry host: open it now"),
                RunCommand(("firewall-cmd", "--permanent", f"--add-port={port}/tcp"),
                           "on the registry host: keep it open after a reload or reboot")),
               alternatives=(Fix("Without firewalld: accept the port in nftables",
                                 (RunCommand(("nft", "insert", "rule", "inet", "filter", "input", "tcp",
                                              "dport", str(port), "accept"),
                                             "on the registry host; adjust table/chain to your ruleset"),)),))


def resolve_fix(host: str) -> Fix:
    return Fix(f"Make {host} resolvable on this host (DNS or /etc/hosts)",
               (RunCommand(("getent", "hosts", host), "what this host's resolver says"),))
