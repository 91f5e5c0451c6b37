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


def v2_registry_fix(addr: HostPort) -> Fix:
    """A v1-only registry: replace it with registry:2 on the same port."""
    return Fix("Replace it with a v2 registry (registry:2) and move the images over",
               (RunCommand(("docker", "run", "-d", "--restart=always", "--name", "registry2",
                            "-p", f"{addr.port}:5000", "-v", "/var/lib/registry:/var/lib/registry", "registry:2"),
                           "on the registry host, after stopping the old registry"),))


def login_fix(addr: HostPort) -> Fix:
    return Fix(f"Log in as the user who pushes: docker login {addr}",
               (RunCommand(("docker", "login", str(addr)), "stores the credentials under exactly this key"),))


def port_owner_fix(addr: HostPort) -> Fix:
    """Something that is not a registry answers on addr's port."""
    return Fix("Find what owns the port on the registry host, and use the registry's real port",
               (RunCommand(("ss", "-ltnp", f"sport = :{addr.port}"), "on the registry host"),))


def upload_limit_fix() -> Fix:
    """A proxy in front of the registry rejects large uploads (413)."""
    return Fix("Lift the proxy's body size limit for the registry (nginx: client_max_body_size 0;)",
               (RunCommand(("nginx", "-s", "reload"),
                           "after setting client_max_body_size 0; chunked_transfer_encoding on; "
                           "proxy_request_buffering off; in the registry's server block"),))


def start_registry_fix(port: int) -> Fix:
    """No registry runs on this host's port: a stopped container, or a new registry:2."""
    return Fix("Start the registry", (
        RunCommand(("docker", "ps", "-a", "--filter", f"publish={port}"), "a stopped registry container?"),
        RunCommand(("docker", "run", "-d", "--name", "registry", "--restart", "always", "-p", f"{port}:5000",
                    "-v", "registry-data:/var/lib/registry", "registry:2"),
                   "or run one, with its data on a named volume")))
