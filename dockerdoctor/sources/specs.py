"""The spec table: everything dockerdoctor reads from a host, by key, in ONE place.

Facts never name a host path or a command line; they name a key of this table and ask a `Source`
for it. `dockerdoctor collect` (and the `collect --script` shell collector) write exactly what this
table names, so a snapshot holds every file a fact reads (tests/test_specs.py proves it).

Six kinds of rows:

- `FILES[key] = FileSpec(paths, ...)`: one file. `paths` are the places it may be, in order: a reader
  takes the first that exists (`read_first`). `tail=True` keeps the end of a long file (logs);
  `live_only=True` marks kernel state a snapshot never holds (it is not collected).
- `DIRS[key] = DirSpec(paths)`: folders; every file below each of them is collected, and facts list
  them through `dir_paths(key)` (in order: a later folder overrides an earlier one, as firewalld's do).
- `UNITS[key] = "name.service"`: a systemd unit, looked up in `UNIT_DIRS` with its `NAME.d/` drop-ins.
- `COMMANDS[key] = CommandSpec(live argv, sos paths, tail)`: a diagnostic command. The live source runs
  `live`; a snapshot reads the first of the `sos` globs that exists; `collect` writes `sos[0]`.
- `USER_FILES[key] = UserSpec(rel, tree)`: a file (or, `tree=True`, a folder) in each user's configuration
  directory: `HOME_BASE/NAME/USER_CONFIG/rel` for every NAME (bounded by the `MAX_USER_*` limits below; a
  symbolic link is followed only while it stays inside that home directory). Read with `user_path(key, dir)`.
- `CONTAINER_COMMANDS[key] = ContainerCommandSpec(argv, sos)`: run once per container that
  `docker ps -a` lists (`{id}`, `{name}`, `{image}` and `{image_file}` are filled in), for the sos layout of
  `sos_commands/docker/containers/` and `.../images/`.

Adding a row: pick a key, add it here (or call `add_file`/`add_dir`/`add_command` from your module at
import time; a key used twice is an error), read it with `read_first(source, key)`,
`dir_paths(key)` or `source.command(key)`. `collect` and the shell collector pick it up by themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dockerdoctor.sources.base import Source


@dataclass(frozen=True)
class FileSpec:
    paths: tuple[str, ...]  # where the file may be, in preference order
    tail: bool = False  # keep the end, not the beginning, of a long file
    limit: int | None = None  # read at most this many bytes (None: the source's default)
    live_only: bool = False  # kernel state (/sys, /proc): read live, never collected

    @property
    def path(self) -> str:
        return self.paths[0]


@dataclass(frozen=True)
class DirSpec:
    paths: tuple[str, ...]  # folders, in order (a later one overrides an earlier one)


@dataclass(frozen=True)
class CommandSpec:
    live: tuple[str, ...]
    sos: tuple[str, ...]  # glob patterns relative to the snapshot root, in preference order
    tail: bool = False  # keep the end, not the beginning, of long output (journals)


@dataclass(frozen=True)
class ContainerCommandSpec:
    argv: tuple[str, ...]  # {id}, {name}, {image} are filled in per container
    sos: str  # where its output goes, relative to the snapshot root; {image_file} is {image} with / as _
    tail: bool = False
    stderr: bool = False  # keep stderr too (a container's log goes to both)


UNIT_DIRS = (
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
)

FILES: dict[str, FileSpec] = {
    "daemon_json": FileSpec(("/etc/docker/daemon.json",)),
    "sysconfig_docker": FileSpec(("/etc/sysconfig/docker",)),
    "sysconfig_docker_storage": FileSpec(("/etc/sysconfig/docker-storage",)),
    "sysconfig_docker_network": FileSpec(("/etc/sysconfig/docker-network",)),
    "default_docker": FileSpec(("/etc/default/docker",)),
    "registries_conf": FileSpec(("/etc/containers/registries.conf",)),
    "run_registries_conf": FileSpec(("/run/containers/registries.conf",)),
    "selinux_config": FileSpec(("/etc/selinux/config",)),
    "selinux_enforce": FileSpec(("/sys/fs/selinux/enforce",), limit=16, live_only=True),
    "file_contexts_local": FileSpec(("/etc/selinux/targeted/contexts/files/file_contexts.local",)),
    "audit_log": FileSpec(("/var/log/audit/audit.log",), tail=True, limit=8 * 1024 * 1024),
    "firewalld_conf": FileSpec(("/etc/firewalld/firewalld.conf",)),
    "os_release": FileSpec(("/etc/os-release", "/usr/lib/os-release")),
    "hostname": FileSpec(("/etc/hostname",)),  # names the host in fleet reports
    # containerd family (issue 14, dockerdoctor/runtimes/containerd.py)
    "containerd_config": FileSpec(("/etc/containerd/config.toml",)),
    "k3s_containerd_config": FileSpec(("/var/lib/rancher/k3s/agent/etc/containerd/config.toml",)),
    "nerdctl_toml": FileSpec(("/etc/nerdctl/nerdctl.toml",)),
    "k3s_registries_yaml": FileSpec(("/etc/rancher/k3s/registries.yaml", "/etc/rancher/rke2/registries.yaml")),
    # issue 15: containers/image clients (podman, buildah, skopeo) and CRI-O. registries_conf above is the
    # system file; root's ~/.config/containers/registries.conf replaces it when it exists. auth files are read
    # live only (never collected: they hold credentials; only their registry names are ever used).
    "containers_user_registries_conf": FileSpec(("/root/.config/containers/registries.conf",)),
    "containers_auth": FileSpec(("/run/containers/0/auth.json", "/root/.config/containers/auth.json",
                                 "/root/.docker/config.json", "/root/.dockercfg"), live_only=True),
    "crio_conf": FileSpec(("/etc/crio/crio.conf",)),
}

DIRS: dict[str, DirSpec] = {
    "certs_d": DirSpec(("/etc/docker/certs.d",)),
    # issue 15 (see FILES): drop-ins in name order; certs.d in containers/image's lookup order, then certs_d
    "containers_registries_d": DirSpec(("/etc/containers/registries.conf.d",)),
    "containers_user_registries_d": DirSpec(("/root/.config/containers/registries.conf.d",)),
    "containers_certs_d": DirSpec(("/root/.config/containers/certs.d", "/etc/containers/certs.d")),
    "crio_conf_d": DirSpec(("/etc/crio/crio.conf.d",)),
    "firewalld_zones": DirSpec(("/usr/lib/firewalld/zones", "/etc/firewalld/zones")),
    "firewalld_services": DirSpec(("/usr/lib/firewalld/services", "/etc/firewalld/services")),
    # containerd family (issue 14): hosts.toml trees (/etc/docker/certs.d is certs_d above). sos copies
    # /etc/containerd/ whole; it has no k3s plugin, so k3s's tree is in a snapshot only through `collect`.
    "containerd_certs_d": DirSpec(("/etc/containerd/certs.d",)),
    "containerd_conf_d": DirSpec(("/etc/containerd/conf.d",)),  # the usual target of config.toml's `imports`
    "k3s_certs_d": DirSpec(("/var/lib/rancher/k3s/agent/etc/containerd/certs.d",)),
}


@dataclass(frozen=True)
class UserSpec:
    rel: str  # relative to a user's configuration directory ($XDG_CONFIG_HOME, by default ~/.config)
    tree: bool = False  # a folder: every file below it


# Per-user files (issue 14: rootless nerdctl, containerd and dockerd, dockerdoctor/runtimes/rootless.py), under
# every HOME_BASE/NAME/USER_CONFIG. Not /root: root's nerdctl and containerd are the rootful ones (/etc/nerdctl,
# /etc/containerd), and nerdctl reads the per-user paths only when it does not run as root.
HOME_BASE = "/home"
USER_CONFIG = ".config"  # $XDG_CONFIG_HOME's default, relative to the home directory
MAX_USER_HOMES = 200  # home directories looked into, in name order
MAX_USER_TREE_FILES = 500  # files per folder row and home
MAX_USER_FILE = 1024 * 1024  # a larger per-user file is not collected (hosts.toml and certificates are small)
USER_FILES: dict[str, UserSpec] = {
    "nerdctl_rootless_toml": UserSpec("nerdctl/nerdctl.toml"),
    "containerd_rootless_config": UserSpec("containerd/config.toml"),
    # rootless containerd's /etc/containerd/certs.d, and nerdctl's default hosts_dir (pkg/defaults): both
    "containerd_rootless_certs_d": UserSpec("containerd/certs.d", tree=True),
    "docker_rootless_certs_d": UserSpec("docker/certs.d", tree=True),
    # rootless dockerd's daemon.json (dockerd-rootless-setuptool.sh; $XDG_CONFIG_HOME/docker/daemon.json)
    "docker_rootless_daemon_json": UserSpec("docker/daemon.json"),
    "docker_rootless_unit": UserSpec("systemd/user/docker.service"),  # the setuptool's unit: dockerd is set up
}

UNITS: dict[str, str] = {
    "docker_service": "docker.service",
    "docker_socket": "docker.socket",
}

# The environment files docker.service may load (EnvironmentFile=), read whether or not it does.
ENV_FILE_KEYS = ("sysconfig_docker", "default_docker", "sysconfig_docker_network", "sysconfig_docker_storage",
                 "run_registries_conf")

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
    # containerd family (issue 14, dockerdoctor/runtimes/containerd.py). sos's containerd plugin runs
    # `containerd config dump` and keeps the containerd journal (sosreport/sos:sos/report/plugins/containerd.py);
    # `--version` is dockerdoctor's own.
    "containerd_version": CommandSpec(("containerd", "--version"), ("sos_commands/containerd/containerd_--version",)),
    "containerd_config_dump": CommandSpec(("containerd", "config", "dump"),
                                          ("sos_commands/containerd/containerd_config_dump",)),
    "journal_containerd": CommandSpec(
        ("journalctl", "--no-pager", "--unit", "containerd", "-n", "5000"),
        ("sos_commands/containerd/journalctl_--no-pager_--unit_containerd",
         "sos_commands/logs/journalctl_--no-pager_--unit_containerd*"),
        tail=True,
    ),
    # issue 15: which containers/image clients and CRI-O are installed (sos's podman and crio plugins)
    "podman_version": CommandSpec(("podman", "version"), ("sos_commands/podman/podman_version",)),
    "buildah_version": CommandSpec(("buildah", "version"), ("sos_commands/buildah/buildah_version",)),
    "skopeo_version": CommandSpec(("skopeo", "--version"), ("sos_commands/skopeo/skopeo_--version",)),
    "crio_config": CommandSpec(("crio", "config"), ("sos_commands/crio/crio_config",)),
}

SOS_CONTAINERS_DIR = "/sos_commands/docker/containers"
SOS_IMAGES_DIR = "/sos_commands/docker/images"

# What `docker ps -a` lists, one container a line, for the per-container commands below.
CONTAINER_LIST = ("docker", "ps", "-a", "--no-trunc", "--format", "{{.ID}}\t{{.Names}}\t{{.Image}}")
CONTAINER_COMMANDS: dict[str, ContainerCommandSpec] = {
    "docker_inspect": ContainerCommandSpec(("docker", "inspect", "{id}"),
                                           SOS_CONTAINERS_DIR.lstrip("/") + "/docker_inspect_{name}"),
    "docker_logs": ContainerCommandSpec(("docker", "logs", "-t", "--tail", "300", "{id}"),
                                        SOS_CONTAINERS_DIR.lstrip("/") + "/docker_logs_-t_{name}",
                                        tail=True, stderr=True),
    "docker_image_inspect": ContainerCommandSpec(("docker", "image", "inspect", "{image}"),
                                                 SOS_IMAGES_DIR.lstrip("/") + "/docker_inspect_{image_file}"),
}


def _add(table: dict[str, object], key: str, spec: object) -> None:
    if key in table:
        raise ValueError(f"spec key {key!r} is defined twice")
    table[key] = spec


def add_file(key: str, spec: FileSpec) -> None:
    _add(FILES, key, spec)  # type: ignore[arg-type]


def add_dir(key: str, spec: DirSpec) -> None:
    _add(DIRS, key, spec)  # type: ignore[arg-type]


def add_command(key: str, spec: CommandSpec) -> None:
    _add(COMMANDS, key, spec)  # type: ignore[arg-type]


def file_path(key: str) -> str:
    """The first place of file `key` (for messages, and for facts that need one path)."""
    return FILES[key].path


def dir_paths(key: str) -> tuple[str, ...]:
    return DIRS[key].paths


def read_first(source: Source, key: str, limit: int | None = None) -> tuple[str, str] | None:
    """(path, text) of the first place of file `key` that `source` can read; None when none can."""
    spec = FILES[key]
    if spec.live_only and not source.live:
        return None
    cap = limit or spec.limit
    for path in spec.paths:
        text = source.read_text(path, cap, tail=spec.tail) if cap else source.read_text(path, tail=spec.tail)
        if text is not None:
            return path, text
    return None


def collected_files() -> list[str]:
    """Every file path `collect` copies, in table order (not the live-only ones)."""
    return [p for s in FILES.values() if not s.live_only for p in s.paths]


def collected_dirs() -> list[str]:
    return [p for s in DIRS.values() for p in s.paths]


def user_path(key: str, config_home: str) -> str:
    """Where per-user row `key` is for the user whose configuration directory is `config_home`."""
    return f"{config_home.rstrip('/')}/{USER_FILES[key].rel}"


def home_config(name: str) -> str:
    """The configuration directory of the user whose home is HOME_BASE/name."""
    return f"{HOME_BASE}/{name}/{USER_CONFIG}"


def collected_user_patterns() -> list[tuple[str, bool]]:
    """(HOME_BASE/*/USER_CONFIG/rel, is a folder) of every per-user row, in table order."""
    return [(home_config("*") + "/" + s.rel, s.tree) for s in USER_FILES.values()]


def unit_paths() -> list[str]:
    return [f"{d}/{name}" for d in UNIT_DIRS for name in UNITS.values()]
