"""`dockerdoctor fix`: the repair plan, --apply's transaction, and the backups (--list-backups, --rollback)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dockerdoctor.cli.common import (
    ContainerdConfigOpt,
    DockerHostOpt,
    ListFormat,
    RegistryOpt,
    RootOpt,
    TimeoutOpt,
    build_facts,
    resolve_daemon,
    run_check,
)
from dockerdoctor.errors import InputError
from dockerdoctor.report import SCHEMA_VERSION
from dockerdoctor.safetext import printable

if TYPE_CHECKING:
    from dockerdoctor.facts import Facts
    from dockerdoctor.fixes.apply import ApplyResult, Choice, Prepared
    from dockerdoctor.fixes.backup import BackupStore, RunRecord
    from dockerdoctor.fixes.plan import Plan
    from dockerdoctor.fixes.service import ServiceManager
    from dockerdoctor.model import Finding


FIX_EXIT_CODES_HELP = (
    "Exit codes: 0 plan shown, or applied and verified, or nothing to do; 1 not applied (validation refused "
    "it, it failed and was rolled back, or you declined); 2 usage or input error; 3 internal error."
)


def fix(
    root: RootOpt = None,
    registry: RegistryOpt = None,
    only: Annotated[list[str] | None, typer.Option("--only", metavar="IDS",
                                                   help="Limit the plan to these rules (ids or prefixes).")] = None,
    timeout: TimeoutOpt = 2.0,
    docker_host: DockerHostOpt = None,
    containerd_config: ContainerdConfigOpt = None,
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
    verify_timeout: Annotated[float, typer.Option(
        "--verify-timeout", metavar="SECONDS", min=0.0,
        help="How long --apply keeps re-checking for the fix to take effect before it rolls back.")] = 20.0,
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

    if state_dir is None:
        state_dir = _default_state_dir(root)
    store = BackupStore(state_dir)
    docker_host, chosen_by = resolve_daemon(docker_host, root)
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

    facts = build_facts(root, registry, timeout, docker_host, chosen_by, containerd_config)
    try:
        results = run_check(facts, only, None)
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
                from dockerdoctor.report.fixjson import apply_json

                typer.echo(apply_json("nothing", None, [], [], prepared, store))
            raise typer.Exit(0)
        if not yes:
            _confirm_apply()
        result = _apply(prepared, facts, store, root, registry, timeout, docker_host, restart_command, as_json,
                        _undo_args(root, state_dir), verify_timeout)
    finally:
        facts.source.close()
    if fmt == ListFormat.json:
        from dockerdoctor.report.fixjson import apply_json

        typer.echo(apply_json(result.status, result.run_id, result.log, result.problems, prepared, store))
    raise typer.Exit(0 if result.ok else 1)


def _confirm_apply() -> None:
    """A person at a terminal says yes, or nothing is changed (exit 1); without a terminal --yes is needed."""
    if not sys.stdin.isatty():
        raise InputError("refusing to change this host without confirmation: add --yes")
    if not typer.confirm("Apply these changes?", default=False):
        typer.echo("Nothing was changed.")
        raise typer.Exit(1)


def _read_ca(ca: Path) -> str:
    try:
        text = ca.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--ca {ca}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise InputError(f"--ca {ca}: not a PEM certificate (no BEGIN CERTIFICATE line)")
    return text if text.endswith("\n") else text + "\n"


def _print_plan(plan: Plan, choices: list[Choice], prepared: Prepared | None, findings: list[Finding],
                unfinished: list[RunRecord], dry_run: bool) -> None:
    from dockerdoctor.report.plan import plan_lines

    for line in plan_lines(plan, choices, prepared, findings, unfinished, dry_run):
        typer.echo(printable(line, keep_newlines=True))  # file content in a plan is untrusted


def _plan_json(plan: Plan, choices: list[Choice], prepared: Prepared | None) -> None:
    import json

    from dockerdoctor.report.plan import plan_json

    typer.echo(json.dumps(plan_json(plan, choices, prepared), indent=2))


def _service_manager(docker_host: str | None, restart_command: str | None) -> ServiceManager:
    from dockerdoctor.facts import CheckOptions, Facts
    from dockerdoctor.fixes.service import choose_manager
    from dockerdoctor.sources.live import LiveSource

    def pid_of() -> int | None:
        f = Facts(LiveSource(), CheckOptions(docker_host=docker_host, network=False))
        proc = f.optional("dockerd_process")
        return proc.pid if proc is not None else None

    return choose_manager(restart_command, pid_of)


LIVE_STATE_DIR = Path("/var/lib/dockerdoctor")


def _default_state_dir(root: Path | None) -> Path:
    """A snapshot run keeps its backups beside the snapshot (SNAP.dockerdoctor): it never writes the host's
    /var/lib."""
    return Path(str(root).rstrip("/") + ".dockerdoctor") if root is not None else LIVE_STATE_DIR


def _undo_args(root: Path | None, state_dir: Path) -> tuple[str, ...]:
    """The options the Undo hint needs to find this run again: the exact command, copy-pasteable."""
    import shlex

    out: list[str] = []
    if root is not None:
        out += ["--root", shlex.quote(str(root))]
    if state_dir != _default_state_dir(root):
        out += ["--state-dir", shlex.quote(str(state_dir))]
    return tuple(out)


def _apply(prepared: Prepared, facts: Facts, store: BackupStore, root: Path | None, registry: list[str] | None,
           timeout: float, docker_host: str | None, restart_command: str | None, quiet: bool,
           undo_args: tuple[str, ...] = (), verify_timeout: float = 20.0) -> ApplyResult:
    from dockerdoctor.fixes.apply import ApplyOptions, apply_prepared

    manager = None if root is not None else _service_manager(docker_host, restart_command)
    opts = ApplyOptions(
        store=store, manager=manager,
        facts_factory=lambda: build_facts(root, registry, timeout, docker_host,
                                          containerd_config=facts.options.containerd_config),
        echo=lambda s: typer.echo(s, err=quiet),  # with --format json, progress goes to stderr
        undo_args=undo_args,
        verify_timeout=verify_timeout,
    )
    return apply_prepared(prepared, facts, opts)


def _offer_unfinished(store: BackupStore, unfinished: list[RunRecord], yes: bool, root: Path | None,
                      docker_host: str | None, restart_command: str | None, facts: Facts) -> None:
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


def _rollback(store: BackupStore, run_id: str, root: Path | None, docker_host: str | None,
              restart_command: str | None, yes: bool) -> None:
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
        facts = build_facts(None, None, 2.0, docker_host)
        mapper = PathMapper.for_facts(facts)
    rollback_run(store, rec.run_id, manager, docker_host, echo=lambda s: typer.echo(s), mapper=mapper)
    typer.echo(f"Rolled back {rec.run_id}.")


def _list_backups(store: BackupStore, fmt: ListFormat) -> None:
    runs = store.list_runs()
    if fmt == ListFormat.json:
        import json

        typer.echo(json.dumps({"schema_version": SCHEMA_VERSION, "runs": [r.to_dict() for r in runs]}, indent=2))
        return
    if not runs:
        typer.echo(f"No backups in {store.backups}.")
        return
    for r in runs:
        files = ", ".join(f.path for f in r.files) or "no files"
        where = f"  [{r.target}]" if r.target.startswith("snapshot") else ""
        typer.echo(f"{r.run_id}  {r.status:<11} {r.created}  {files}{where}")

