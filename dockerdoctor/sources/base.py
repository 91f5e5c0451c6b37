"""What a host says: files at their real paths, and the output of diagnostic commands.

A Source is either the live host or a snapshot. Facts read through this interface only, so
one parser serves both. Command output is addressed by a stable key (see COMMANDS), which the
live source runs and a snapshot looks up where sos stores it.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

# Bound on any single read: enough for any config file, small enough to never exhaust memory.
DEFAULT_READ_LIMIT = 4 * 1024 * 1024


@dataclass(frozen=True)
class CommandSpec:
    live: tuple[str, ...]
    sos: tuple[str, ...]  # glob patterns relative to the snapshot root, in preference order
    tail: bool = False  # keep the end, not the beginning, of long output (journals)


COMMANDS: dict[str, CommandSpec] = {
    "docker_info": CommandSpec(("docker", "info"), ("sos_commands/docker/docker_info",)),
    "docker_version": CommandSpec(("docker", "version"), ("sos_commands/docker/docker_version",)),
    "docker_ps": CommandSpec(("docker", "ps", "-a", "--no-trunc"), (
        "sos_commands/docker/docker_ps_-a", "sos_commands/docker/docker_ps_-a_--no-trunc",
        "sos_commands/docker/docker_ps",
    )),
    "ps": CommandSpec(("ps", "auxwww"), ("sos_commands/process/ps_auxwww", "sos_commands/process/ps_auxwwwm")),
    "systemctl_show_docker": CommandSpec(
        ("systemctl", "show", "docker.service", "--no-pager"),
        (
            "sos_commands/systemd/systemctl_show_service_--all",
            "sos_commands/docker/systemctl_show_docker*",
        ),
    ),
    "systemctl_list_units": CommandSpec(
        ("systemctl", "list-units", "--all", "--no-pager"),
        ("sos_commands/systemd/systemctl_list-units_--all", "sos_commands/systemd/systemctl_list-units"),
    ),
    "journal_docker": CommandSpec(
        ("journalctl", "--no-pager", "--unit", "docker", "-n", "5000"),
        (
            "sos_commands/docker/journalctl_--no-pager_--unit_docker",
            "sos_commands/docker/journalctl_--no-pager*_--unit_docker*",
            "sos_commands/logs/journalctl_--no-pager_--unit_docker*",
        ),
        tail=True,
    ),
    "ss": CommandSpec(("ss", "-peaonmi"), ("sos_commands/networking/ss_-peaonmi", "sos_commands/networking/ss_*")),
    "sestatus": CommandSpec(("sestatus", "-b"), ("sos_commands/selinux/sestatus_-b", "sos_commands/selinux/sestatus*")),
    "firewall_state": CommandSpec(("firewall-cmd", "--state"), ("sos_commands/firewalld/firewall-cmd_--state",)),
    "firewall_zones": CommandSpec(
        ("firewall-cmd", "--list-all-zones"), ("sos_commands/firewalld/firewall-cmd_--list-all-zones",)
    ),
    "firewall_zones_permanent": CommandSpec(
        ("firewall-cmd", "--permanent", "--list-all-zones"),
        ("sos_commands/firewalld/firewall-cmd_--permanent_--list-all-zones",),
    ),
    "nft_ruleset": CommandSpec(
        ("nft", "-j", "list", "ruleset"),
        ("sos_commands/nftables/nft_-j_list_ruleset", "sos_commands/firewall_tables/nft_-j_list_ruleset"),
    ),
    "nft_ruleset_text": CommandSpec(
        ("nft", "list", "ruleset"),
        ("sos_commands/nftables/nft_list_ruleset", "sos_commands/firewall_tables/nft_list_ruleset"),
    ),
    "iptables_save": CommandSpec(
        ("iptables-save",),
        ("sos_commands/firewall_tables/iptables-save", "sos_commands/networking/iptables-save"),
    ),
    "ufw_status": CommandSpec(("ufw", "status", "numbered"), ("sos_commands/ufw/ufw_status_numbered",)),
    # registry host (DD3xx): interface addresses, to find the firewalld zone that carries registry traffic
    "ip_addr": CommandSpec(
        ("ip", "-o", "addr"),
        ("sos_commands/networking/ip_-o_addr", "sos_commands/networking/ip_addr",
         "sos_commands/networking/ip_-d_address"),
    ),
    "iptables_list": CommandSpec(
        ("iptables", "-vnxL"),
        ("sos_commands/firewall_tables/iptables_-vnxL", "sos_commands/firewall_tables/iptables_-t_filter_-nvL",
         "sos_commands/networking/iptables_-vnxL"),
    ),
    "nft_ruleset_firewalld": CommandSpec(("nft", "list", "ruleset"), ("sos_commands/firewalld/nft_list_ruleset",)),
    # issue 15: containers/image clients and CRI-O, where sos's podman and crio plugins put them
    "podman_version": CommandSpec(("podman", "version"), ("sos_commands/podman/podman_version",)),
    "crio_config": CommandSpec(("crio", "config"), ("sos_commands/crio/crio_config",)),
}


MAX_SYMLINKS = 40


def resolve_in_root(root: str, path: str, follow_last: bool = True) -> list[str] | None:
    """The components of `path` resolved chroot-style under directory `root`: symbolic links are followed
    inside `root` (an absolute target starts again at `root`), ``..`` never climbs above it. None after
    more than MAX_SYMLINKS links (a loop)."""
    import os

    parts = [p for p in path.split("/") if p not in ("", ".")]
    stack: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if stack:
                stack.pop()
            continue
        if follow_last or parts:
            try:
                target = os.readlink(os.path.join(root, *stack, part))
            except (OSError, ValueError):  # not a link, or absent
                target = None
            if target is not None:
                links += 1
                if links > MAX_SYMLINKS:
                    return None
                if target.startswith("/"):
                    stack = []
                parts = [p for p in target.split("/") if p not in ("", ".")] + parts
                continue
        stack.append(part)
    return stack


@dataclass(frozen=True)
class FileStat:
    mtime: float
    mode: int
    size: int


class Source(abc.ABC):
    """Read-only access to one host."""

    live: bool = False
    description: str = ""

    @abc.abstractmethod
    def read_bytes(self, path: str, limit: int = DEFAULT_READ_LIMIT, tail: bool = False) -> bytes | None:
        """Up to `limit` bytes of the file at absolute host `path`; None when absent or unreadable."""

    def read_text(self, path: str, limit: int = DEFAULT_READ_LIMIT, tail: bool = False) -> str | None:
        data = self.read_bytes(path, limit, tail)
        if data is None:
            return None
        return data.decode("utf-8", errors="replace")

    @abc.abstractmethod
    def stat(self, path: str) -> FileStat | None: ...

    def exists(self, path: str) -> bool:
        return self.stat(path) is not None

    @abc.abstractmethod
    def listdir(self, path: str) -> list[str]:
        """Names in a directory, sorted; [] when absent."""

    @abc.abstractmethod
    def is_symlink_to(self, path: str) -> str | None:
        """The link target when `path` is a symbolic link, else None."""

    @abc.abstractmethod
    def command(self, key: str, limit: int = DEFAULT_READ_LIMIT) -> str | None:
        """Output of the diagnostic command `key` (see COMMANDS); None when unknown."""

    def command_source(self, key: str) -> str:
        """How to cite a command's output as evidence."""
        spec = COMMANDS.get(key)
        return " ".join(spec.live) if spec else key
