"""What the commands share: option types, the --debug switch, building facts, running the rules, the
error boundary (DoctorError exit 2, any other exception exit 3)."""

from __future__ import annotations

import enum
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer  # loaded first by the package's __init__, without rich

from dockerdoctor.errors import DoctorError, InputError
from dockerdoctor.safetext import printable

if TYPE_CHECKING:
    from dockerdoctor.facts import Facts
    from dockerdoctor.model import RuleResult

EXIT_CODES_HELP = (
    "Exit codes: 0 nothing at or above --fail-on; 1 findings at or above it; "
    "2 usage or input error; 3 internal error."
)


@dataclass
class Debug:
    """--debug (or DOCKERDOCTOR_DEBUG): internal errors and crashed rules show their tracebacks. The app's
    callback sets it; the commands and the error boundary read it."""

    on: bool = False


DEBUG = Debug()


class Format(str, enum.Enum):
    text = "text"
    json = "json"
    junit = "junit"
    prometheus = "prometheus"  # node_exporter textfile (report/prometheus.py)
    npd = "npd"  # node-problem-detector custom plugin (report/npd.py)


class ListFormat(str, enum.Enum):
    text = "text"
    json = "json"


# --------------------------------------------------------------------------- shared options

RootOpt = Annotated[Path | None, typer.Option(
    "--root", metavar="DIR",
    help="Inspect a snapshot instead of this host: a host root, an unpacked sosreport, or a "
         "sosreport .tar.xz/.tar.gz. Never probed over the network; nothing outside DIR is read.")]
RegistryOpt = Annotated[list[str] | None, typer.Option(
    "--registry", "-r", metavar="HOST:PORT",
    help="A registry this host must be able to use (repeatable). Default: the registries the host "
         "names itself (insecure-registries, registry containers, the docker journal's errors).")]


def complete_rule_ids(incomplete: str) -> list[str]:
    """Shell completion for rule ids and prefixes."""
    from dockerdoctor.engine import discover

    ids = list(discover()) + ["all"]
    return [i for i in ids if i.lower().startswith(incomplete.lower())]


SelectOpt = Annotated[list[str] | None, typer.Option(
    "--select", metavar="IDS", autocompletion=complete_rule_ids,
    help="Run only these rules: ids, prefixes such as DD1, or all (comma-separated).")]
IgnoreOpt = Annotated[list[str] | None, typer.Option(
    "--ignore", metavar="IDS", autocompletion=complete_rule_ids,
    help="Rules whose errors are shown as warnings (still printed, like kubeadm's --ignore-preflight-errors).")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", min=0.05, max=60.0,
                                           help="Seconds allowed for each network probe.")]
DockerHostOpt = Annotated[str | None, typer.Option(
    "--docker-host", "-H", metavar="unix:///PATH",
    help="The daemon to inspect on a live host. Default, as the docker CLI: DOCKER_HOST, else the current "
         "docker context, else unix:///var/run/docker.sock. With --root: the socket whose dockerd the "
         "snapshot's process list names.")]
ContainerdConfigOpt = Annotated[str | None, typer.Option(
    "--containerd-config", metavar="FILE",
    help="The containerd the DD6xx rules judge, by its config.toml (when several run, or to name one that is "
         "not running). Default: the containerd behind kubelet's socket (or k3s's), else "
         "/etc/containerd/config.toml. With --root: a path inside the snapshot.")]


# --------------------------------------------------------------------------- facts and rules


def resolve_daemon(docker_host: str | None, root: Path | None) -> tuple[str | None, str | None]:
    """(URL, how it was chosen) of the daemon a live run inspects; --root takes only an explicit -H."""
    from dockerdoctor.facts.dockerhost import resolve_docker_host, validate_host

    if root is not None:
        return (validate_host(docker_host) if docker_host else None), None
    host = resolve_docker_host(docker_host)
    return host.url, host.chosen_by


def build_facts(root: Path | None, registry: list[str] | None, timeout: float, docker_host: str | None,
                chosen_by: str | None = None, containerd_config: str | None = None) -> Facts:
    from dockerdoctor.facts import CheckOptions, Facts
    from dockerdoctor.net import parse_registry_arg
    from dockerdoctor.sources.base import Source

    regs = []
    for r in registry or []:
        try:
            regs.append(parse_registry_arg(r))  # HOST:PORT, or one line saying what is wrong
        except ValueError as exc:
            raise InputError(f"--registry {exc}") from None
    source: Source
    if root is not None:
        from dockerdoctor.sources.snapshot import SnapshotSource

        source = SnapshotSource(root)
    else:
        from dockerdoctor.sources.live import LiveSource

        source = LiveSource()
    options = CheckOptions(registries=regs, docker_host=docker_host, docker_host_chosen_by=chosen_by,
                           timeout=timeout, network=root is None, containerd_config=containerd_config)
    return Facts(source, options)


def run_check(facts: Facts, select: list[str] | None, ignore: list[str] | None) -> list[RuleResult]:
    from dockerdoctor.engine import discover, resolve_selection, run_rules

    rules = discover()
    sel = resolve_selection(select, rules) if select else None
    ign = resolve_selection(ignore, rules) if ignore else set()
    if facts.live:
        facts.prefetch(["dockerd_process", "docker_info", "systemd_state", "docker_journal", "certs_d",
                        "docker_unit", "env_files"])
        if sys.stderr.isatty():
            # progress on the one step that can take seconds: network probes, bounded by --timeout
            targets = facts.optional("target_registries") or []
            if targets:
                sys.stderr.write(f"probing {len(targets)} registr{'y' if len(targets) == 1 else 'ies'} "
                                 f"(timeout {facts.options.timeout:g}s each, in parallel)…\r")
                sys.stderr.flush()
        facts.prefetch(["endpoint_probes"])
        if sys.stderr.isatty():
            sys.stderr.write("\033[K")
            sys.stderr.flush()
    return run_rules(facts, sel, ign)


# --------------------------------------------------------------------------- the error boundary


def invoke(app: typer.Typer) -> None:
    """Run the app in standalone mode (usage errors exit 2 with click's message); a DoctorError is one line
    and its exit code, anything else an internal error, exit 3 (the traceback with --debug)."""
    try:
        app()  # standalone mode: usage errors exit 2 with click's message
    except DoctorError as exc:
        sys.stderr.write(f"dockerdoctor: error: {printable(' '.join(str(exc).split()))}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("dockerdoctor: interrupted\n")
        sys.exit(130)
    except Exception as exc:
        if DEBUG.on:
            traceback.print_exc()
        sys.stderr.write(f"dockerdoctor: internal error: {exc.__class__.__name__}: {printable(str(exc))} "
                         "(rerun with --debug, e.g. `dockerdoctor --debug check ...`, for the traceback)\n")
        sys.exit(3)
