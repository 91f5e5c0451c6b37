"""`fix --apply`: carry out the plan as a transaction that never leaves the host worse off.

1. choose (fixes/choose.py): pick one Fix per finding (TLS with --ca, insecure-registries with its CIS 2.4
   warning).
2. prepare (fixes/prepare.py, paths in fixes/paths.py): compute every file's new bytes with the same pure
   edits the dry run shows
   (fixes/edits.py), where the running daemon really reads them (its mount namespace when it has
   its own), and decide the fewest service actions: SIGHUP when every changed daemon.json key is
   reloadable, daemon-reload + restart when unit files change, restart otherwise.
3. validate (fixes/validate.py) the candidate before anything is written: the rules marked
   `validates_config` on an overlay of the new contents (sources/overlay.py), plus `dockerd --validate`
   where the engine has it (23.0+).
Phases 4-7 are this module's Transaction:
4. back up every file with a manifest, then write each one atomically (fixes/backup.py).
5. run the commands, then reload/restart through a ServiceManager (fixes/service.py).
6. verify: dockerd answers, the rules that produced the findings no longer do, and dockerd itself
   can reach each registry (a pull of an absent tag must fail with "not found", not with TLS).
7. on any failure: restore the files byte-identical, reload/restart again, report what happened.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dockerdoctor import engine
from dockerdoctor.errors import ApplyError
from dockerdoctor.facts import Facts
from dockerdoctor.fixes.backup import BackupError, BackupStore, RunRecord, atomic_write, sha256
from dockerdoctor.fixes.choose import Choice, choose_fixes
from dockerdoctor.fixes.paths import PathMapper, io_remapper
from dockerdoctor.fixes.prepare import (
    RELOADABLE_KEYS,
    FileChange,
    Prepared,
    PreparedStep,
    changed_keys,
    decide_service,
    prepare,
)
from dockerdoctor.fixes.service import ServiceError, ServiceManager
from dockerdoctor.fixes.validate import dockerd_validate_supported, validate
from dockerdoctor.probe.engine import daemon_reaches_registry, engine_ping
from dockerdoctor.sources.overlay import OverlaySource

# Verifying a live fix also asks this rule: does the running daemon use what the files configure?
LIVE_CONFIG_RULE = "DD107"
FAULT_ENV = "DOCKERDOCTOR_FAULT"  # test hook: "after-backup" or "after-write" kills the run there


class InterruptedRun(ApplyError):
    def __init__(self, runs: list[RunRecord]) -> None:
        self.runs = runs
        ids = ", ".join(r.run_id for r in runs)
        super().__init__(
            f"a previous `fix --apply` ({ids}) stopped after backing up and may have changed files; "
            f"roll it back with `dockerdoctor fix --rollback {runs[-1].run_id}` first"
        )


@dataclass
class ApplyResult:
    status: str  # nothing | applied | invalid | rolled-back | failed
    run_id: str | None = None
    log: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in ("nothing", "applied")


@dataclass
class ApplyOptions:
    store: BackupStore
    manager: ServiceManager | None = None
    facts_factory: Callable[[], Facts] | None = None  # fresh facts for verification
    verify_timeout: float = 20.0
    ready_timeout: float = 60.0
    probe_registries: bool = True
    echo: Callable[[str], None] = lambda s: None
    undo_args: tuple[str, ...] = ()  # what the Undo hint adds after the run id (--root SNAP --state-dir DIR)


class Transaction:
    def __init__(self, prepared: Prepared, facts: Facts, options: ApplyOptions) -> None:
        self.prepared = prepared
        self.facts = facts
        self.options = options
        self.result = ApplyResult("nothing")
        self.rec: RunRecord | None = None
        self._ran: list[str] = []

    def say(self, text: str) -> None:
        self.result.log.append(text)
        if self.rec is not None:
            self.rec.note(text)
        self.options.echo(text)

    # ---- main
    def run(self) -> ApplyResult:
        store = self.options.store
        with store.lock():
            unfinished = store.unfinished()
            if unfinished:
                raise InterruptedRun(unfinished)
            if self.prepared.empty:
                self.say("Nothing to do: the files already say what the fixes want.")
                return self.result
            problems = validate(self.prepared, self.facts, str(store.state_dir))
            if problems:
                self.result.status = "invalid"
                self.result.problems = problems
                for pr in problems:
                    self.say(f"not applied: {pr}")
                return self.result
            how = "the DD1xx rules"
            if self.facts.live:
                how += ", dockerd --validate" if dockerd_validate_supported() else "; this dockerd has no --validate"
            self.say(f"Validated the candidate configuration ({how})")
            return self._apply()

    def _apply(self) -> ApplyResult:
        store = self.options.store
        rec = self.rec = store.new_run(self.facts.source.description)
        self.result.run_id = rec.run_id
        rec.findings = [f"{s.finding.rule_id}: {s.finding.title}" for s in self.prepared.applicable]
        rec.service = {
            "action": self.prepared.action,
            "daemon_reload": self.prepared.daemon_reload,
            "was_running": self.prepared.daemon_running,
        }
        rec.commands = [c.shell() for _, c in self.prepared.commands]
        try:
            for ch in self.prepared.changes.values():
                fr = store.backup_file(rec, ch.path, ch.real, self.prepared.mapper.to_io(ch.real))
                if fr.sha_before != sha256(ch.before):
                    raise ApplyError(f"{ch.path} changed while the plan was being made; run fix again")
            rec.status = "writing"
            rec.save()
        except (OSError, ApplyError, BackupError) as exc:
            rec.status = "failed"
            with contextlib.suppress(OSError):
                rec.save()
            msg = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise ApplyError(f"backup failed, nothing was changed: {msg}") from None
        self.say(f"Backed up {len(self.prepared.changes)} file(s) to {rec.dir}")
        _fault("after-backup")
        try:
            self._write_files()
        except OSError as exc:
            msg = f"{exc.filename}: {exc.strerror}" if exc.filename else (exc.strerror or str(exc))
            return self._rollback(f"write failed: {msg}", restart=False)
        _fault("after-write")
        try:
            self._run_commands()
        except ApplyError as exc:
            if self._ran:
                self.say("not undone (commands have no backup): " + "; ".join(self._ran))
            return self._rollback(f"command failed: {exc}", restart=False)
        rec.save()
        try:
            self._services()
            self._other_services()
        except ServiceError as exc:
            return self._rollback(str(exc), restart=True)
        failure = self._verify()
        if failure:
            return self._rollback(failure, restart=True)
        rec.status = "applied"
        rec.save()
        self.result.status = "applied"
        undo = " ".join(["dockerdoctor", "fix", "--rollback", rec.run_id, *self.options.undo_args])
        self.say(f"Done: verified. Undo with `{undo}`")
        return self.result

    def _write_files(self) -> None:
        assert self.rec is not None
        for fr, ch in zip(self.rec.files, self.prepared.changes.values(), strict=True):
            io = self.prepared.mapper.to_io
            parent = os.path.dirname(ch.real)
            missing: list[str] = []
            d = parent
            while d and not os.path.isdir(io(d)):
                missing.append(d)
                d = os.path.dirname(d)
            for m in reversed(missing):
                os.mkdir(io(m), 0o755)
                fr.created_dirs.append(m)
            self.rec.save()
            atomic_write(io(ch.real), ch.after, mode=ch.mode if ch.before is None else None)
            fr.sha_after = sha256(ch.after)
            self.say(f"wrote {ch.path}" + (f" (as {ch.real})" if ch.real != ch.path else ""))
        self.rec.save()

    def _run_commands(self) -> None:
        env = dict(os.environ)
        if self.facts.options.docker_host:  # `docker ...` commands act on the daemon this run works on
            env["DOCKER_HOST"] = self.facts.options.docker_host
        self._ran = []
        for rid, cmd in self.prepared.commands:
            try:
                proc = subprocess.run(
                    list(cmd.argv), capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, env=env
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise ApplyError(f"[{rid}] {cmd.shell()}: {exc}") from None
            if proc.returncode != 0:
                last = (proc.stderr or proc.stdout).strip().splitlines()
                raise ApplyError(
                    f"[{rid}] {cmd.shell()} failed (exit {proc.returncode})" + (f": {last[-1]}" if last else "")
                )
            self._ran.append(cmd.shell())
            self.say(f"ran {cmd.shell()}")

    def _services(self, action: str | None = None, daemon_reload: bool | None = None) -> None:
        action = self.prepared.action if action is None else action
        daemon_reload = self.prepared.daemon_reload if daemon_reload is None else daemon_reload
        if self.prepared.offline:
            if action or daemon_reload:
                self.say(f"not run (snapshot): {'daemon-reload, ' if daemon_reload else ''}{action}")
            return
        mgr = self.options.manager
        if mgr is None or (action is None and not daemon_reload):
            return
        if daemon_reload:
            self.say(mgr.daemon_reload())
        if action is None:
            return
        self.say(f"{action} dockerd: {mgr.perform(action)}")
        if not self._wait_ready():
            extra = getattr(mgr, "last_output", "")
            raise ServiceError(
                "dockerd did not come back after the " + action + (f": {extra.splitlines()[-1]}" if extra else "")
            )

    def _other_services(self) -> None:
        if self.prepared.offline:
            for action, unit in self.prepared.other_services:
                self.say(f"not run (snapshot): {action} {unit}")
            return
        if self.options.manager is None:
            return
        for action, unit in self.prepared.other_services:
            self.say(f"{action} {unit}: {self.options.manager.perform(action, unit)}")

    def _wait_ready(self) -> bool:
        host = self.facts.options.docker_host
        end = time.monotonic() + self.options.ready_timeout
        while time.monotonic() < end:
            if engine_ping(host):
                return True
            time.sleep(0.2)
        return False

    # ---- verify
    def _verify(self) -> str | None:
        if self.options.facts_factory is None:
            return None
            # Offline, a fix that is only a reload/restart cannot show on the snapshot: verify the file edits.
        steps = [s for s in self.prepared.applicable if s.changes or not self.prepared.offline]
        wanted = {(s.finding.rule_id, s.finding.title) for s in steps}
        if not wanted:
            return None
        rule_ids = {rid for rid, _ in wanted}
        # Live, after a reload/restart/start, the daemon itself must run with what the files now say: a file
        # that is right on disk but not in effect (a restart that did not happen) is a failed fix.
        live_check = not self.prepared.offline and self.prepared.action in ("reload", "restart", "start")
        old_pid = self._pid_before()
        registries = [
            s.finding.fix.trust.registry
            for s in steps
            if s.finding.fix is not None and s.finding.fix.trust is not None and s.finding.fix.trust.verify_by_probe
        ]
        end = time.monotonic() + self.options.verify_timeout
        last = ""
        while True:
            facts = self.options.facts_factory()
            try:
                results = engine.run_rules(facts, rule_ids | ({LIVE_CONFIG_RULE} if live_check else set()))
                new_pid = self._pid_now(facts) if live_check and self.prepared.action == "restart" else None
            finally:
                facts.source.close()
            remaining = [f for r in results for f in r.findings if (f.rule_id, f.title) in wanted]
            problems = [f"{f.rule_id} still reports: {f.title}" for f in remaining]
            if live_check:
                problems += [f"the running dockerd does not use the new configuration ({LIVE_CONFIG_RULE}): "
                             f"{f.message}" for r in results if r.rule_id == LIVE_CONFIG_RULE for f in r.findings
                             if (f.rule_id, f.title) not in wanted]
                if old_pid is not None and new_pid == old_pid:
                    problems.append(f"dockerd was not restarted (still pid {old_pid})")
            if not problems and registries and self.options.probe_registries and not self.prepared.offline:
                for reg in registries:
                    ok, msg = daemon_reaches_registry(self.facts.options.docker_host, reg)
                    if not ok:
                        problems.append(f"dockerd still cannot use {reg}: {msg}")
            if not problems:
                self.say(
                    "Verified: "
                    + ", ".join(sorted(rule_ids))
                    + " pass"
                    + (f"; dockerd reaches {', '.join(registries)}" if registries and not self.prepared.offline else "")
                )
                return None
            last = "; ".join(problems)
            if self.prepared.offline or time.monotonic() >= end:
                return f"verification failed: {last}"
            time.sleep(0.5)

    def _pid_before(self) -> int | None:
        proc = self.facts.optional("dockerd_process") if self.facts.live else None
        return proc.pid if proc is not None else None

    @staticmethod
    def _pid_now(facts: Facts) -> int | None:
        proc = facts.optional("dockerd_process")
        return proc.pid if proc is not None else None

    # ---- rollback
    def _rollback(self, why: str, *, restart: bool) -> ApplyResult:
        assert self.rec is not None
        rec = self.rec
        self.result.problems.append(why)
        self.say(f"FAILED: {why}; rolling back")
        try:
            restored = self.options.store.restore_files(rec, to_io=self.prepared.mapper.to_io)
        except (OSError, BackupError) as exc:
            rec.status = "failed"
            rec.save()
            self.result.status = "failed"
            self.say(f"ROLLBACK FAILED: {exc}; the backups are in {rec.dir}")
            return self.result
        self.say("restored " + (", ".join(restored) if restored else "nothing (no file had changed)"))
        if restart and not self.prepared.offline:
            action = self.prepared.action
            if action == "start":
                action = None  # it was not running before: leave it as it was
                self.say("dockerd was not running before; left stopped")
            try:
                self._services(action, self.prepared.daemon_reload)
                if action:
                    self.say("dockerd is back with the previous configuration")
            except ServiceError as exc:
                self.say(f"after the rollback: {exc}")
        rec.status = "rolled-back"
        rec.save()
        self.result.status = "rolled-back"
        return self.result


def _fault(point: str) -> None:
    if os.environ.get(FAULT_ENV) == point:
        os._exit(86)


def apply_prepared(prepared: Prepared, facts: Facts, options: ApplyOptions) -> ApplyResult:
    return Transaction(prepared, facts, options).run()


# --------------------------------------------------------------------------- rollback of an earlier run


def rollback_run(
    store: BackupStore,
    run_id: str,
    manager: ServiceManager | None = None,
    docker_host: str | None = None,
    echo: Callable[[str], None] = lambda s: None,
    ready_timeout: float = 60.0,
    mapper: PathMapper | None = None,
) -> RunRecord:
    """Restore what run `run_id` changed, then repeat its service action so dockerd uses it."""
    with store.lock():
        rec = store.load(run_id)
        if rec.status == "rolled-back":
            raise BackupError(f"run {rec.run_id} was already rolled back")
        restored = store.restore_files(rec, check_current=rec.status == "applied", to_io=io_remapper(mapper))
        echo(f"restored {', '.join(restored) if restored else 'nothing (the files were already as before)'}")
        svc = rec.service or {}
        action = svc.get("action")
        if manager is not None and (action or svc.get("daemon_reload")):
            if svc.get("daemon_reload"):
                echo(manager.daemon_reload())
            if action == "start":
                action = None
            if action:
                echo(f"{action} dockerd: {manager.perform(action)}")
                end = time.monotonic() + ready_timeout
                while not engine_ping(docker_host) and time.monotonic() < end:
                    time.sleep(0.2)
        rec.status = "rolled-back"
        rec.note("rolled back by `fix --rollback`")
        rec.save()
        return rec


__all__ = [
    "ApplyError",
    "ApplyOptions",
    "ApplyResult",
    "Choice",
    "FileChange",
    "InterruptedRun",
    "OverlaySource",
    "PreparedStep",
    "PathMapper",
    "Prepared",
    "RELOADABLE_KEYS",
    "apply_prepared",
    "changed_keys",
    "choose_fixes",
    "daemon_reaches_registry",
    "decide_service",
    "engine_ping",
    "prepare",
    "rollback_run",
    "validate",
]
