"""Fix recipes: the Fix values rules attach to findings, built in one place.

A rule detects; when it has a repair to offer it calls a recipe here with the facts at hand and gets
back data (`Fix`, operations, file text) that `fixes/plan.py` shows and `fixes/apply.py` applies.
Recipes: trust a registry (TLS with its CA, or insecure-registries where the daemon reads it), a
systemd drop-in that replaces ExecStart, recreate a container with one thing changed, open a port
(firewalld, nftables, iptables, ufw), relabel a volume for SELinux.
"""

from dockerdoctor.fixes.recipes.container import docker_run_argv, recreate_ops
from dockerdoctor.fixes.recipes.daemon import (
    CIS_WARNING,
    DROPIN_DIR,
    RESTART_WARNING,
    dropin_text,
    exec_dropin,
    exec_dropin_ops,
    insecure_fix,
    tls_fix,
    trust_fix,
)
from dockerdoctor.fixes.recipes.firewall import allow_port_ops, open_port_ops
from dockerdoctor.fixes.recipes.registry import listen_fix, remote_open_port_fix, resolve_fix
from dockerdoctor.fixes.recipes.selinux import relabel_fix

__all__ = [
    "CIS_WARNING", "DROPIN_DIR", "RESTART_WARNING", "allow_port_ops", "docker_run_argv", "dropin_text", "exec_dropin",
    "exec_dropin_ops", "insecure_fix", "listen_fix", "open_port_ops", "recreate_ops", "relabel_fix",
    "remote_open_port_fix", "resolve_fix", "tls_fix", "trust_fix",
]
