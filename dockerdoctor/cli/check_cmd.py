"""`dockerdoctor check`: run the rules over this host or a snapshot and write the report."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dockerdoctor import __version__
from dockerdoctor.cli.common import (
    DEBUG,
    ContainerdConfigOpt,
    DockerHostOpt,
    Format,
    IgnoreOpt,
    RegistryOpt,
    RootOpt,
    SelectOpt,
    TimeoutOpt,
    build_facts,
    resolve_daemon,
    run_check,
)
from dockerdoctor.errors import InputError
from dockerdoctor.report import FailOn, write_output

if TYPE_CHECKING:
    from dockerdoctor.facts import Facts


def _daemon_summary(facts: Facts) -> tuple[dict[str, object] | None, dict[str, object] | None, list[str]]:
    """Live: the daemon inspected, where the probes ran when that was not this process's namespace, and
    why registries were not probed when they could not be."""
    from dockerdoctor.errors import FactUnavailable

    if not facts.live:
        from dockerdoctor.sources.snapshot import SnapshotSource

        return None, None, list(facts.source.notes) if isinstance(facts.source, SnapshotSource) else []
    host = facts.get("docker_host")
    proc = facts.optional("dockerd_process")
    daemon = {"host": host.url, "chosen_by": host.chosen_by, "pid": proc.pid if proc is not None else None}
    notes: list[str] = []
    probed = None
    if facts.optional("target_registries") and facts.options.network:
        try:
            probed = facts.get("endpoint_probes")
        except FactUnavailable as exc:
            notes.append(f"registries not probed: {exc.reason}")
    origin = facts.optional("probe_origin") if probed else None
    return daemon, (origin.to_dict() if origin is not None and origin.foreign else None), notes


def check(
    root: RootOpt = None,
    registry: RegistryOpt = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Report format.")] = Format.text,
    output: Annotated[Path | None, typer.Option("--output", "-o", metavar="FILE",
                                                help="Write the report to FILE instead of stdout.")] = None,
    select: SelectOpt = None,
    ignore: IgnoreOpt = None,
    fail_on: Annotated[FailOn, typer.Option("--fail-on", help="Lowest severity that makes the exit code 1.")
                       ] = FailOn.error,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also list passed and skipped rules.")] = False,
    timeout: TimeoutOpt = 2.0,
    docker_host: DockerHostOpt = None,
    containerd_config: ContainerdConfigOpt = None,
    color: Annotated[bool | None, typer.Option("--color/--no-color", help="Colour the text report.")] = None,
    e2e: Annotated[bool, typer.Option("--e2e", help="Also push, pull back and delete a tiny probe image "
                                      "(live; writes only under --e2e-repo).")] = False,
    e2e_repo: Annotated[str, typer.Option("--e2e-repo", metavar="REPO",
                                          help="Repository the --e2e probe writes to.")] = "dockerdoctor-probe",
    textfile_dir: Annotated[Path | None, typer.Option(
        "--textfile-dir", metavar="DIR",
        help="Also write the metrics to DIR/dockerdoctor.prom atomically, for node_exporter's textfile "
             "collector (--collector.textfile.directory).")] = None,
    image: Annotated[list[str] | None, typer.Option(
        "--image", metavar="REF", help="Run the rules of every runtime on this host (dockerd, podman, buildah, "
                                       "skopeo, CRI-O, ...) for this image reference; its registry becomes a "
                                       "target.")] = None,
) -> None:
    """Diagnose this host (or a snapshot) and report findings with evidence and fixes.

    Examples:

      dockerdoctor check --registry 10.0.0.5:5000

      dockerdoctor check --root sosreport-host-2024.tar.xz --format json -o report.json

      dockerdoctor check --select DD1 --ignore DD107 --fail-on warning

      dockerdoctor check --fail-on never --textfile-dir /var/lib/prometheus/node-exporter

      dockerdoctor check --format npd   (a node-problem-detector custom plugin)

      dockerdoctor check --image 10.0.0.5:5000/team/app:1.2   (every runtime, for that image)
    """
    from dockerdoctor.model import Severity
    from dockerdoctor.report import Report
    from dockerdoctor.report.host import host_name

    start = time.perf_counter()
    _check_repo_name(e2e_repo)
    docker_host, chosen_by = resolve_daemon(docker_host, root)
    from dockerdoctor.runtimes.cli_support import image_registries

    facts = build_facts(root, list(registry or []) + image_registries(image or []), timeout, docker_host, chosen_by,
                        containerd_config)
    facts.options.e2e, facts.options.e2e_repo = e2e, e2e_repo
    facts.options.images = list(image or [])
    try:
        results = run_check(facts, select, ignore)
        targets = facts.optional("target_registries") or []
        daemon, probed_from, notes = _daemon_summary(facts)
        if e2e and not targets:
            notes.append("--e2e ran no test push: no registry is named (give --registry HOST:PORT)")
        host = host_name(facts.source)  # before close(): a tarball's files go with it
    finally:
        facts.source.close()
    report = Report(
        version=__version__,
        target_kind="snapshot" if root else "live",
        target=f"snapshot {root}" if root else "live host",
        registries=[str(t.address) for t in targets],
        results=results,
        fail_on=None if fail_on == FailOn.never else Severity.parse(fail_on.value),
        seconds=time.perf_counter() - start,
        daemon=daemon,
        probed_from=probed_from,
        notes=notes,
        host=host,
        generated=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    from dockerdoctor.report.render import render

    width = None
    if fmt == Format.text and output is None and sys.stdout.isatty():
        import shutil

        width = shutil.get_terminal_size().columns  # a terminal wraps the report to its width (COLUMNS wins)
    text = render(report, fmt.value, verbose=verbose, color=False if output else color, width=width)
    write_output(text, output)
    if textfile_dir is not None:
        from dockerdoctor.report.prometheus import write_textfile

        write_textfile(report, textfile_dir)
    if DEBUG.on:
        for r in report.crashed:
            sys.stderr.write(r.traceback + "\n")
    raise typer.Exit(report.exit_code)


# The distribution spec's repository name: lowercase path components joined by "/".
_REPO_NAME = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*")


def _check_repo_name(repo: str) -> None:
    """--e2e-repo must be a valid repository name, or the registry's NAME_INVALID would be blamed on it."""
    if not _REPO_NAME.fullmatch(repo) or len(repo) > 255:
        raise InputError(f"--e2e-repo {repo!r} is not a valid repository name: use lowercase letters, digits and "
                         "separators (. _ -) in path components joined by /, e.g. dockerdoctor-probe")
