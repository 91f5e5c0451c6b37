"""dockerdoctor's command line (typer).

Exit codes (also in `dockerdoctor --help` and README):
  0  nothing at or above --fail-on
  1  findings at or above --fail-on
  2  usage error or bad input (a broken snapshot, an unknown rule id, ...)
  3  internal error (a bug: rerun with --debug for the traceback)
"""

from __future__ import annotations

import enum
import os
import re
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from dockerdoctor import __version__
from dockerdoctor.errors import DoctorError, InputError
from dockerdoctor.report import FailOn
from dockerdoctor.safetext import printable

if TYPE_CHECKING:
    from dockerdoctor.fixes.apply import Choice, Prepared
    from dockerdoctor.fixes.backup import RunRecord
    from dockerdoctor.fixes.plan import Plan
    from dockerdoctor.model import Finding

# typer < 0.16 imports rich (its help formatter and traceback printer, ~140 ms) whenever rich is installed,
# and pip installs it with typer. dockerdoctor uses neither (rich_markup_mode=None,
# pretty_exceptions_enable=False), so rich is hidden while typer loads; later imports of rich work as usual.
_hide_rich = "rich" not in sys.modules
if _hide_rich:
    sys.modules["rich"] = None  # type: ignore[assignment]  # `import rich` raises ImportError
try:
    import typer
finally:
    if _hide_rich:
        del sys.modules["rich"]

EXIT_CODES_HELP = (
    "Exit codes: 0 nothing at or above --fail-on; 1 findings at or above it; "
    "2 usage or input error; 3 internal error."
)

app = typer.Typer(
    name="dockerdoctor",
    help=(
        "Find why a docker host cannot push to or pull from a private registry, show the evidence, "
        "and name the least-privilege fix.\n\n"
        "Start with `dockerdoctor check` (this host) or `dockerdoctor check --root SOSREPORT`. "
        "`dockerdoctor fix` shows the repair plan; `dockerdoctor explain DD101` or "
        "`dockerdoctor explain \"<error text>\"` tells what something means.\n\n" + EXIT_CODES_HELP
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_debug = False


class Format(str, enum.Enum):
    text = "text"
    json = "json"
    junit = "junit"
    prometheus = "prometheus"  # node_exporter textfile (report/prometheus.py)
    npd = "npd"  # node-problem-detector custom plugin (report/npd.py)


class ListFormat(str, enum.Enum):
    text = "text"
    json = "json"


def _version_cb(value: bool) -> None:
    if value:
        typer.echo(f"dockerdoctor {__version__}")
        raise typer.Exit(0)


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", "-V", callback=_version_cb, is_eager=True,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of internal errors.")] = False,
) -> None:
    global _debug
    _debug = debug or bool(os.environ.get("DOCKERDOCTOR_DEBUG"))


# --------------------------------------------------------------------------- shared options

RootOpt = Annotated[Path | None, typer.Option(
    "--root", metavar="DIR",
    help="Inspect a snapshot instead of this host: a host root, an unpacked sosreport, or a "
         "sosreport .tar.xz/.tar.gz. Never probed over the network; nothing outside DIR is read.")]
RegistryOpt = Annotated[list[str] | None, typer.Option(
    "--registry", "-r", metavar="HOST:PORT",
    help="A registry this host must be able to use (repeatable). Default: the registries the host "
         "names itself (insecure-registries, registry containers, the docker journal's errors).")]
def _complete_rule_ids(incomplete: str) -> list[str]:
    """Shell completion for rule ids and prefixes."""
    from dockerdoctor.engine import discover

    ids = list(discover()) + ["all"]
    return [i for i in ids if i.lower().startswith(incomplete.lower())]


SelectOpt = Annotated[list[str] | None, typer.Option(
    "--select", metavar="IDS", autocompletion=_complete_rule_ids,
    help="Run only these rules: ids, prefixes such as DD1, or all (comma-separated).")]
IgnoreOpt = Annotated[list[str] | None, typer.Option(
    "--ignore", metavar="IDS", autocompletion=_complete_rule_ids,
    help="Rules whose errors are shown as warnings (still printed, like kubeadm's --ignore-preflight-errors).")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", min=0.05, max=60.0,
                                           help="Seconds allowed for each network probe.")]
DockerHostOpt = Annotated[str | None, typer.Option(
    "--docker-host", "-H", metavar="unix:///PATH",
    help="The daemon to inspect on a live host. Default, as the docker CLI: DOCKER_HOST, else the current "
         "docker context, else unix:///var/run/docker.sock. With --root: the socket whose dockerd the "
         "snapshot's process list names.")]


def _resolve_daemon(docker_host: str | None, root: Path | None) -> tuple[str | None, str | None]:
    """(URL, how it was chosen) of the daemon a live run inspects; --root takes only an explicit -H."""
    from dockerdoctor.facts.dockerhost import resolve_docker_host, validate_host

    if root is not None:
        return (validate_host(docker_host) if docker_host else None), None
    host = resolve_docker_host(docker_host)
    return host.url, host.chosen_by


def _build_facts(root: Path | None, registry: list[str] | None, timeout: float, docker_host: str | None,  # type: ignore[no-untyped-def]
                 chosen_by: str | None = None):
    from dockerdoctor.facts import CheckOptions, Facts, HostPort
    from dockerdoctor.sources.base import Source

    regs = []
    for r in registry or []:
        try:
            hp = HostPort.parse(r)
        except ValueError as exc:
            raise InputError(f"--registry {r!r}: {exc}; use HOST:PORT") from None
        if hp.port is None:
            raise InputError(f"--registry {r!r}: give the port too, e.g. {hp.host}:5000")
        regs.append(hp)
    source: Source
    if root is not None:
        from dockerdoctor.sources.snapshot import SnapshotSource

        source = SnapshotSource(root)
    else:
        from dockerdoctor.sources.live import LiveSource

        source = LiveSource()
    options = CheckOptions(registries=regs, docker_host=docker_host, docker_host_chosen_by=chosen_by,
                           timeout=timeout, network=root is None)
    return Facts(source, options)


def _run_check(facts, select: list[str] | None, ignore: list[str] | None):  # type: ignore[no-untyped-def]
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


def _daemon_summary(facts) -> tuple[dict[str, object] | None, dict[str, object] | None, list[str]]:  # type: ignore[no-untyped-def]
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


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        tmp = output.with_name(output.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, output)
    except OSError as exc:
        raise InputError(f"cannot write {output}: {exc.strerror}") from None


# --------------------------------------------------------------------------- check


@app.command(epilog=EXIT_CODES_HELP)
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
    docker_host, chosen_by = _resolve_daemon(docker_host, root)
    from dockerdoctor.runtimes.cli_support import image_registries

    facts = _build_facts(root, list(registry or []) + image_registries(image or []), timeout, docker_host, chosen_by)
    facts.options.e2e, facts.options.e2e_repo = e2e, e2e_repo
    facts.options.images = list(image or [])
    try:
        results = _run_check(facts, select, ignore)
        targets = facts.optional("target_registries") or []
        daemon, probed_from, notes = _daemon_summary(facts)
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
    if fmt == Format.json:
        from dockerdoctor.report.jsonreport import render as render_json

        text = render_json(report)
    elif fmt == Format.junit:
        from dockerdoctor.report.junit import render as render_junit

        text = render_junit(report)
    elif fmt in (Format.prometheus, Format.npd):
        from dockerdoctor.report import npd, prometheus

        text = (prometheus if fmt == Format.prometheus else npd).render(report)
    else:
        import shutil

        from dockerdoctor.report.text import render as render_text

        # On a terminal the report wraps to its width (COLUMNS wins); piped or into a file it does not.
        width = shutil.get_terminal_size().columns if output is None and sys.stdout.isatty() else None
        text = render_text(report, verbose=verbose, color=False if output else color, width=width)
    _write(text, output)
    if textfile_dir is not None:
        from dockerdoctor.report.prometheus import write_textfile

        write_textfile(report, textfile_dir)
    if _debug:
        for r in report.crashed:
            sys.stderr.write(r.traceback + "\n")
    raise typer.Exit(report.exit_code)


# --------------------------------------------------------------------------- fix


FIX_EXIT_CODES_HELP = (
    "Exit codes: 0 plan shown, or applied and verified, or nothing to do; 1 not applied (validation refused "
    "it, it failed and was rolled back, or you declined); 2 usage or input error; 3 internal error."
)


@app.command(epilog=FIX_EXIT_CODES_HELP)
def fix(
    root: RootOpt = None,
    registry: RegistryOpt = None,
    only: Annotated[list[str] | None, typer.Option("--only", metavar="IDS",
                                                   help="Limit the plan to these rules (ids or prefixes).")] = None,
    timeout: TimeoutOpt = 2.0,
    docker_host: DockerHostOpt = None,
    fmt: Annotated[ListFormat, typer.Option("--format", "-f", help="Plan format.")] = ListFormat.text,
    apply: Annotated[bool, typer.Option(
        "--apply", help="Carry the plan out: back up, write atomically, validate, reload or restart the fewest "
                        "services, verify, and roll back by itself when anything fails.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (needed without a terminal).")
                   ] = False,
    ca: Annotated[Path | None, typer.Option(
        "--ca", metavar="FILE", help="The registry's CA certificate (PEM): trust it in "
                                     "/etc/docker/certs.d/HOST:PORT/ca.crt (the TLS fix; no restart).")] = None,
    insecure: Annotated[bool, typer.Option(
        "--insecure", help="Choose the insecure-registries alternative for untrusted registries "
                           "(weakens the host, CIS Docker Benchmark 2.4).")] = False,
    rollback: Annotated[str | None, typer.Option(
        "--rollback", metavar="[RUN-ID]", help="Restore the files an earlier run changed (RUN-ID, or `last`, the "
                                               "default), then reload/restart as that run did.")] = None,
    list_backups: Annotated[bool, typer.Option("--list-backups", help="List earlier runs and their backups.")
                            ] = False,
    state_dir: Annotated[Path | None, typer.Option(
        "--state-dir", metavar="DIR", help="Where backups and manifests live (default /var/lib/dockerdoctor; "
                                            "with --root, SNAP.dockerdoctor beside the snapshot).")] = None,
    restart_command: Annotated[str | None, typer.Option(
        "--restart-command", metavar="CMD",
        help="How to restart dockerd on a host without systemd (run with sh -c); reload is then SIGHUP "
             "to the dockerd PID.")] = None,
) -> None:
    """Show the repair plan for every finding that has a fix: unified diffs for file edits and the exact
    commands for everything else. Changes nothing unless --apply is given.

    With --apply the plan runs as a transaction: every changed file is backed up (with a manifest)
    under --state-dir, written atomically, validated before any restart, dockerd is reloaded
    (SIGHUP) when every changed daemon.json key allows it and restarted otherwise, and the result is
    verified by rerunning the rules and asking dockerd to reach the registry. Any failure restores
    the files byte-identical and reloads/restarts again.

    Examples:

      dockerdoctor fix --registry 10.0.0.5:5000

      dockerdoctor fix --registry 10.0.0.5:5000 --apply --insecure

      dockerdoctor fix --registry 10.0.0.5:5443 --ca ca.crt --apply --yes

      dockerdoctor fix --root ./sosreport --only DD102,DD104

      dockerdoctor fix --list-backups ;  dockerdoctor fix --rollback last
    """
    from dockerdoctor.fixes.backup import BackupStore

    # A snapshot run keeps its backups beside the snapshot: it never writes the host's /var/lib.
    if state_dir is None:
        state_dir = Path(str(root).rstrip("/") + ".dockerdoctor") if root is not None else LIVE_STATE_DIR
    store = BackupStore(state_dir)
    docker_host, chosen_by = _resolve_daemon(docker_host, root)
    if list_backups:
        _list_backups(store, fmt)
        raise typer.Exit(0)
    if rollback is not None:
        _rollback(store, rollback, root, docker_host, restart_command, yes)
        raise typer.Exit(0)
    ca_pem = _read_ca(ca) if ca is not None else None
    if apply and root is not None and root.is_file():
        raise InputError("--apply with --root needs a directory (an unpacked copy), not a tarball")

    from dockerdoctor.fixes.apply import choose_fixes, prepare
    from dockerdoctor.fixes.plan import plan_of

    facts = _build_facts(root, registry, timeout, docker_host, chosen_by)
    try:
        results = _run_check(facts, only, None)
        findings = [f for r in results for f in r.findings]
        unit = facts.optional("docker_unit")
        choices = choose_fixes(findings, ca_pem, insecure, dropins=unit.dropins if unit is not None else [])
        prepared = prepare(choices, facts)
        plan = plan_of(prepared)  # the diffs of the very changes --apply writes
        unfinished = store.unfinished() if store.backups.is_dir() else []
        if fmt == ListFormat.json and not apply:
            _plan_json(plan, choices, prepared)
            raise typer.Exit(0)
        if not apply or prepared is None:
            _print_plan(plan, choices, prepared, findings, unfinished, dry_run=True)
            raise typer.Exit(0)
        as_json = fmt == ListFormat.json
        if not as_json:
            _print_plan(plan, choices, prepared, findings, unfinished, dry_run=False)
        if unfinished:
            _offer_unfinished(store, unfinished, yes, root, docker_host, restart_command, facts)
        if prepared.empty:
            typer.echo("Nothing to apply.", err=as_json)
            if as_json:
                import json

                from dockerdoctor.report.fixjson import backup_fields, plan_fields

                typer.echo(json.dumps({"schema_version": 1, "status": "nothing", "run_id": None, "log": [],
                                       "problems": [], **plan_fields(prepared), **backup_fields(store, None)},
                                      indent=2))
            raise typer.Exit(0)
        if not yes:
            if not sys.stdin.isatty():
                raise InputError("refusing to change this host without confirmation: add --yes")
            if not typer.confirm("Apply these changes?", default=False):
                typer.echo("Nothing was changed.")
                raise typer.Exit(1)
        result = _apply(prepared, facts, store, root, registry, timeout, docker_host, restart_command, as_json,
                        _undo_args(root, state_dir))
    finally:
        facts.source.close()
    if fmt == ListFormat.json:
        import json

        from dockerdoctor.report.fixjson import backup_fields, plan_fields

        typer.echo(json.dumps({"schema_version": 1, "status": result.status, "run_id": result.run_id,
                               "log": result.log, "problems": result.problems, **plan_fields(prepared),
                               **backup_fields(store, result.run_id)}, indent=2))
    raise typer.Exit(0 if result.ok else 1)


def _read_ca(ca: Path) -> str:
    try:
        text = ca.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--ca {ca}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise InputError(f"--ca {ca}: not a PEM certificate (no BEGIN CERTIFICATE line)")
    return text if text.endswith("\n") else text + "\n"


# The distribution spec's repository name: lowercase path components joined by "/".
_REPO_NAME = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*")


def _check_repo_name(repo: str) -> None:
    """--e2e-repo must be a valid repository name, or the registry's NAME_INVALID would be blamed on it."""
    if not _REPO_NAME.fullmatch(repo) or len(repo) > 255:
        raise InputError(f"--e2e-repo {repo!r} is not a valid repository name: use lowercase letters, digits and "
                         "separators (. _ -) in path components joined by /, e.g. dockerdoctor-probe")



def _print_plan(plan: Plan, choices: list[Choice], prepared: Prepared | None, findings: list[Finding],
                unfinished: list[RunRecord], dry_run: bool) -> None:
    from dockerdoctor.report.plan import plan_lines

    for line in plan_lines(plan, choices, prepared, findings, unfinished, dry_run):
        typer.echo(printable(line, keep_newlines=True))  # file content in a plan is untrusted


def _plan_json(plan: Plan, choices: list[Choice], prepared: Prepared | None) -> None:
    import json

    from dockerdoctor.report.plan import plan_json

    typer.echo(json.dumps(plan_json(plan, choices, prepared), indent=2))


def _service_manager(docker_host: str | None, restart_command: str | None):  # type: ignore[no-untyped-def]
    from dockerdoctor.facts import CheckOptions, Facts
    from dockerdoctor.fixes.service import choose_manager
    from dockerdoctor.sources.live import LiveSource

    def pid_of() -> int | None:
        f = Facts(LiveSource(), CheckOptions(docker_host=docker_host, network=False))
        proc = f.optional("dockerd_process")
        return proc.pid if proc is not None else None

    return choose_manager(restart_command, pid_of)


LIVE_STATE_DIR = Path("/var/lib/dockerdoctor")


def _undo_args(root: Path | None, state_dir: Path) -> tuple[str, ...]:
    """The options the Undo hint needs to find this run again: the exact command, copy-pasteable."""
    import shlex

    out: list[str] = []
    if root is not None:
        out += ["--root", shlex.quote(str(root))]
    default = Path(str(root).rstrip("/") + ".dockerdoctor") if root is not None else LIVE_STATE_DIR
    if state_dir != default:
        out += ["--state-dir", shlex.quote(str(state_dir))]
    return tuple(out)


def _apply(prepared, facts, store, root, registry, timeout, docker_host, restart_command, quiet,  # type: ignore[no-untyped-def]
           undo_args=()):
    from dockerdoctor.fixes.apply import ApplyOptions, apply_prepared

    manager = None if root is not None else _service_manager(docker_host, restart_command)
    opts = ApplyOptions(
        store=store, manager=manager,
        facts_factory=lambda: _build_facts(root, registry, timeout, docker_host),
        echo=lambda s: typer.echo(s, err=quiet),  # with --format json, progress goes to stderr
        undo_args=undo_args,
    )
    return apply_prepared(prepared, facts, opts)


def _offer_unfinished(store, unfinished, yes, root, docker_host, restart_command, facts) -> None:  # type: ignore[no-untyped-def]
    from dockerdoctor.fixes.apply import InterruptedRun

    last = unfinished[-1]
    if yes or not sys.stdin.isatty():
        raise InterruptedRun(unfinished)
    if not typer.confirm(f"Run {last.run_id} was interrupted after its backups. Roll it back now?", default=True):
        raise InterruptedRun(unfinished)
    from dockerdoctor.fixes.apply import PathMapper, rollback_run

    manager = None if root is not None else _service_manager(docker_host, restart_command)
    rollback_run(store, last.run_id, manager, docker_host, echo=lambda s: typer.echo(s),
                 mapper=PathMapper.for_facts(facts))
    raise typer.Exit(0)


def _rollback(store, run_id: str, root, docker_host, restart_command, yes: bool) -> None:  # type: ignore[no-untyped-def]
    from dockerdoctor.fixes.apply import rollback_run

    rec = store.load(run_id)
    typer.echo(f"Rolling back {rec.run_id} ({rec.status}, {rec.created}): " + ", ".join(f.path for f in rec.files))
    if not yes:
        if not sys.stdin.isatty():
            raise InputError("refusing to roll back without confirmation: add --yes")
        if not typer.confirm("Restore these files?", default=False):
            raise typer.Exit(1)
    from dockerdoctor.fixes.apply import PathMapper

    snapshot_run = rec.target.startswith("snapshot")
    if snapshot_run:
        # A --root run changed files in a snapshot: its rollback restores them there and touches no daemon,
        # whatever -H or --restart-command says.
        typer.echo(f"{rec.run_id} was a {rec.target} run: restoring its files there; no daemon is reloaded.")
    manager = None if root is not None or snapshot_run else _service_manager(docker_host, restart_command)
    mapper = None
    if root is None and not snapshot_run:
        facts = _build_facts(None, None, 2.0, docker_host)
        mapper = PathMapper.for_facts(facts)
    rollback_run(store, rec.run_id, manager, docker_host, echo=lambda s: typer.echo(s), mapper=mapper)
    typer.echo(f"Rolled back {rec.run_id}.")


def _list_backups(store, fmt: ListFormat) -> None:  # type: ignore[no-untyped-def]
    runs = store.list_runs()
    if fmt == ListFormat.json:
        import json

        typer.echo(json.dumps({"schema_version": 1, "runs": [r.to_dict() for r in runs]}, indent=2))
        return
    if not runs:
        typer.echo(f"No backups in {store.backups}.")
        return
    for r in runs:
        files = ", ".join(f.path for f in r.files) or "no files"
        where = f"  [{r.target}]" if r.target.startswith("snapshot") else ""
        typer.echo(f"{r.run_id}  {r.status:<11} {r.created}  {files}{where}")


# --------------------------------------------------------------------------- collect


@app.command()
def collect(
    out: Annotated[Path | None, typer.Argument(metavar="DIR", help="Directory to write (must be new or empty).")
                   ] = None,
    tar: Annotated[bool, typer.Option("--tar", help="Also pack DIR as DIR.tar.xz.")] = False,
    script: Annotated[bool, typer.Option(
        "--script", help="Print a POSIX sh script that gathers the same evidence without Python or a network, "
                         "for hosts that cannot run dockerdoctor; its tarball is for `check --root`.")] = False,
) -> None:
    """Write this host's docker evidence as a snapshot (sosreport layout) for `check --root` elsewhere.

    Copies the unit files, drop-ins, environment files, daemon.json, registries.conf, firewalld zones
    and certs.d (never private keys), and saves the diagnostic commands' output where sos puts it.

    Example:

      sudo dockerdoctor collect /tmp/host-snap --tar && dockerdoctor check --root /tmp/host-snap.tar.xz

      dockerdoctor collect --script > collect.sh   (then, on the old host: sh collect.sh /tmp/snap)
    """
    if script:
        from dockerdoctor.collect_script import collect_specs, render_script

        sys.stdout.write(render_script(collect_specs()))  # the spec table, as a POSIX sh collector
        return
    if out is None:
        raise InputError("collect needs DIR, the directory to write (or --script)")
    from dockerdoctor.collect import collect as do_collect
    from dockerdoctor.collect import pack

    # Ordinary mistakes are one line and exit 2, not an internal error.
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a directory: give a new or empty directory")
    parent = out.absolute().parent
    if not parent.is_dir():
        raise InputError(f"cannot create {out}: its parent {parent} does not exist or is not a directory")
    try:
        manifest = do_collect(out)
        typer.echo(f"collected {sum(1 for m in manifest if not m.startswith('error'))} items into {out}")
        if tar:
            typer.echo(f"packed {pack(out)}")
    except OSError as exc:
        raise InputError(f"cannot write the snapshot to {out}: {exc.strerror or exc}") from None


# --------------------------------------------------------------------------- rules / explain


@app.command("rules")
def rules_cmd(fmt: Annotated[ListFormat, typer.Option("--format", "-f")] = ListFormat.text) -> None:
    """List the rule catalog: id, name, default severity and title.

    Examples:

      dockerdoctor rules

      dockerdoctor rules --format json | jq -r '.rules[] | select(.category == "endpoint") | .id'

      dockerdoctor explain DD203   (what one rule checks, why it happens, how to fix it)
    """
    from dockerdoctor.engine import CATEGORIES, discover

    rules = discover()
    if fmt == ListFormat.json:
        import json

        typer.echo(json.dumps({"schema_version": 1, "rules": [r.summary() for r in rules.values()]}, indent=2))
        return
    for cat, title in CATEGORIES.items():
        members = [r for r in rules.values() if r.category == cat]
        if not members:
            continue
        typer.echo(title)
        for r in members:
            typer.echo(f"  {r.id}  {r.name:<30} {r.severity.label:<8} {r.title}")


@app.command()
def explain(
    what: Annotated[str, typer.Argument(metavar="RULE|TEXT|-", autocompletion=_complete_rule_ids,
                                        help="A rule id (DD104) or name, an error message, or - to read stdin.")],
    fmt: Annotated[ListFormat, typer.Option("--format", "-f")] = ListFormat.text,
) -> None:
    """Explain a rule, or what an error message means and what to do about it.

    Examples:

      dockerdoctor explain DD104

      docker push 10.0.0.5:5000/app 2>&1 | dockerdoctor explain -

      journalctl -u docker --no-pager | dockerdoctor explain --format json -

    The answer is a verdict (cause, possible, no known cause), the rules that fit with the lines
    they rest on, and the fix; stdin is read up to its last 1 MiB. Exit 0 a cause fits, 1 none
    does, 2 empty input or an unknown rule id.
    """
    from dockerdoctor.engine import discover

    rules = discover()
    key = what.strip()
    spec = rules.get(key.upper()) or next((r for r in rules.values() if r.name == key.lower()), None)
    if spec is not None:
        if fmt == ListFormat.json:
            import json

            typer.echo(json.dumps({**spec.summary(), "doc": spec.doc}, indent=2))
            return
        typer.echo(f"{spec.id} {spec.name} ({spec.severity.label}): {spec.title}\n")
        typer.echo(spec.doc)
        return
    if re.fullmatch(r"(?i)DD\d{3}", key):
        raise InputError(f"{key.upper()} is no rule id (see `dockerdoctor rules`)")
    from dockerdoctor import explain as kb  # the error-text knowledge base

    code = kb.explain_stdin(fmt.value) if key == "-" else kb.explain_text(what, fmt.value)
    raise typer.Exit(code)


# --------------------------------------------------------------------------- entry


def _register_subcommands() -> None:
    from dockerdoctor.report import fleet_cli

    fleet_cli.register(app)  # `report` (the fleet report)
    from dockerdoctor.registry import cli as registry_cli

    registry_cli.register(app)  # `serve-registry`
    from dockerdoctor import resolve_cmd

    resolve_cmd.register(app)  # `resolve IMAGE` (issue 15)


def _optional_rollback_value(argv: list[str]) -> list[str]:
    """`fix --rollback` without a RUN-ID means the last run (click options cannot have optional values)."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--rollback" and (i + 1 == len(out) or out[i + 1].startswith("-")):
            out.insert(i + 1, "last")
            break
    return out


def _core_command(argv: list[str]) -> bool:
    """True when argv names one of this module's commands: the registry ones need not load (~5 ms)."""
    first = next((a for a in argv if not a.startswith("-")), None)
    core = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    return first is not None and first.replace("_", "-") in {n.replace("_", "-") for n in core}


def _debug_anywhere(args: list[str]) -> list[str]:
    """`--debug` is a top-level option; the internal-error hint says "rerun with --debug", and people put it
    after the subcommand (`dockerdoctor collect --debug X`). Move it to the front (never past a `--`)."""
    head = args[: args.index("--")] if "--" in args else args
    if "--debug" not in head[1:]:
        return args
    rest = args[len(head):]
    return ["--debug", *[a for a in head if a != "--debug"], *rest]


def run() -> None:
    sys.argv[1:] = _debug_anywhere(_optional_rollback_value(sys.argv[1:]))
    if not _core_command(sys.argv[1:]) or os.environ.get("_DOCKERDOCTOR_COMPLETE"):
        _register_subcommands()
    try:
        app()  # standalone mode: usage errors exit 2 with click's message
    except DoctorError as exc:
        sys.stderr.write(f"dockerdoctor: error: {printable(' '.join(str(exc).split()))}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("dockerdoctor: interrupted\n")
        sys.exit(130)
    except Exception as exc:
        if _debug:
            traceback.print_exc()
        sys.stderr.write(f"dockerdoctor: internal error: {exc.__class__.__name__}: {printable(str(exc))} "
                         "(rerun with --debug, e.g. `dockerdoctor --debug check ...`, for the traceback)\n")
        sys.exit(3)
