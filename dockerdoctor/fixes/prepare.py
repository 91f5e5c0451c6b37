"""`fix`, phase 2: compute every file's new bytes with the pure edits of fixes/edits.py, where the
running daemon really reads them, and decide the fewest service actions (SIGHUP when every changed
daemon.json key is reloadable, daemon-reload + restart when unit files change, restart otherwise).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from dockerdoctor.errors import ApplyError
from dockerdoctor.facts import Facts
from dockerdoctor.fixes.choose import Choice
from dockerdoctor.fixes.edits import FILE_OPS, UneditableFile, apply_edit
from dockerdoctor.fixes.paths import PathMapper, outside_home
from dockerdoctor.fixes.plan import shown_only, unified_diff
from dockerdoctor.model import (
    Finding,
    ReplaceFileContent,
    RunCommand,
    ServiceAction,
)

# daemon.json keys dockerd re-reads on SIGHUP (moby daemon/reload.go, 20.10 and later).
RELOADABLE_KEYS = frozenset(
    {
        "insecure-registries",
        "registry-mirrors",
        "allow-nondistributable-artifacts",
        "labels",
        "debug",
        "log-level",
        "live-restore",
        "max-concurrent-downloads",
        "max-concurrent-uploads",
        "max-download-attempts",
        "default-runtime",
        "runtimes",
        "shutdown-timeout",
        "cluster-store",
        "cluster-store-opts",
        "cluster-advertise",
        "features",
        "builder",
    }
)
# Flag names written as daemon.json keys: dockerd 20.10 accepts and ignores them, so removing or
# renaming one needs no more than what the key it becomes needs.
IGNORED_BY_DOCKERD = frozenset({"insecure-registry", "registry-mirror", "label"})
UNIT_DIR_MARKERS = ("/systemd/system/",)
ENV_FILE_PATHS = ("/etc/sysconfig/", "/etc/default/")
ACTION_LEVEL = {None: 0, "reload": 1, "restart": 2, "start": 2}
DOCKER_UNIT = "docker.service"



@dataclass
class FileChange:
    path: str
    real: str
    before: bytes | None
    after: bytes
    mode: int | None  # for a new file
    rules: list[str] = field(default_factory=list)
    owner: tuple[str, str] | None = None  # (user, home): written inside that home only, then given to user


@dataclass
class PreparedStep:
    choice: Choice
    errors: list[str] = field(default_factory=list)  # why the step cannot run here (it is left out)
    changes: int = 0  # how many file edits of this step change something
    diffs: list[str] = field(default_factory=list)  # its file edits, as the plan shows them
    edit_errors: list[str] = field(default_factory=list)  # the edits among `errors`

    @property
    def finding(self) -> Finding:
        return self.choice.finding


@dataclass
class Prepared:
    steps: list[PreparedStep]
    changes: dict[str, FileChange]
    commands: list[tuple[str, RunCommand]]
    action: str | None  # None | "reload" | "restart" | "start"
    daemon_reload: bool
    reasons: list[str]  # why that action
    warnings: list[str]
    daemon_running: bool | None
    offline: bool
    other_services: list[tuple[str, str]] = field(default_factory=list)  # (action, unit) besides docker
    mapper: PathMapper = field(default_factory=PathMapper)

    @property
    def applicable(self) -> list[PreparedStep]:
        return [s for s in self.steps if s.choice.fix is not None and not s.errors]

    @property
    def empty(self) -> bool:
        if self.offline:  # a snapshot can only take file edits
            return not self.changes
        return (
            not self.changes
            and not self.commands
            and self.action is None
            and not self.daemon_reload
            and not self.other_services
        )


def prepare(choices: list[Choice], facts: Facts, mapper: PathMapper | None = None) -> Prepared:
    mapper = mapper or PathMapper.for_facts(facts)
    originals: dict[str, bytes | None] = {}
    current: dict[str, bytes | None] = {}
    modes: dict[str, int | None] = {}
    owners: dict[str, tuple[str, str]] = {}
    rules_of: dict[str, list[str]] = {}
    commands: list[tuple[str, RunCommand]] = []
    requested: list[str] = []
    other: list[tuple[str, str]] = []
    steps: list[PreparedStep] = []
    for choice in choices:
        step = PreparedStep(choice)
        steps.append(step)
        fix = choice.fix
        if fix is None:
            continue
        # Edit on a scratch copy: a step that cannot be planned must not leave half its edits.
        scratch = dict(current)
        step_cmds: list[tuple[str, RunCommand]] = []
        step_actions: list[str] = []
        step_other: list[tuple[str, str]] = []
        touched = 0
        for op in fix.operations:
            if isinstance(op, FILE_OPS):
                path = op.path
                if fix.owner is not None:
                    out = outside_home(mapper.to_io(mapper.real(path)), mapper.to_io(mapper.real(fix.owner[1])))
                    if out is not None:
                        step.errors.append(f"refused: {path} leads to {out}, outside {fix.owner[0]}'s home "
                                           f"{fix.owner[1]} (a symbolic link?); dockerdoctor writes there as root")
                        step.edit_errors.append(step.errors[-1])
                        break
                    owners[path] = fix.owner
                if path not in originals:
                    originals[path] = _read(mapper.to_io(mapper.real(path)))
                    scratch.setdefault(path, originals[path])
                before = scratch.get(path, originals[path])
                try:
                    before_text = before.decode("utf-8") if before is not None else None
                    after_text = apply_edit(op, before_text)
                except UneditableFile as exc:
                    step.errors.append(str(exc))
                    step.edit_errors.append(str(exc))
                    break
                except UnicodeDecodeError:
                    step.errors.append(f"{path} is not UTF-8 text; dockerdoctor does not edit it")
                    step.edit_errors.append(step.errors[-1])
                    break
                after = after_text.encode("utf-8")
                if after != before:
                    touched += 1
                    step.diffs.append(unified_diff(path, before_text, after_text))
                scratch[path] = after
                if isinstance(op, ReplaceFileContent):
                    modes[path] = op.mode
                rules_of.setdefault(path, [])
                if choice.finding.rule_id not in rules_of[path]:
                    rules_of[path].append(choice.finding.rule_id)
            elif isinstance(op, RunCommand):
                if shown_only(op):
                    continue  # advice for another machine, or a diagnostic: shown by the plan, never run
                if not facts.live:
                    step.errors.append(f"`{op.shell()}` acts on a live host, not on a snapshot")
                    break
                step_cmds.append((choice.finding.rule_id, op))
            elif isinstance(op, ServiceAction):
                if op.unit != DOCKER_UNIT:
                    step_other.append((op.action, op.unit))
                else:
                    step_actions.append(op.action)
        if step.errors:
            continue
        current = scratch
        step.changes = touched + len(step_cmds)
        commands += step_cmds
        other += [o for o in step_other if o not in other]
        if touched == 0:
            # no file edit to judge by: honour what the fix asks (DD107/DD108 reload or restart, DD302
            # "open the port, then restart docker to restore its chains", DD501 start)
            requested += step_actions
    changes = {
        p: FileChange(p, mapper.real(p), originals[p], after, modes.get(p), rules_of.get(p, []), owners.get(p))
        for p, after in current.items()
        if after is not None and after != originals.get(p)
    }
    offline = not facts.live
    proc = facts.optional("dockerd_process") if facts.live else None
    running = (proc is not None) if facts.live else None
    action, daemon_reload, reasons = decide_service(changes, requested, facts)
    if running is False and action == "reload":
        action, reasons = "start", reasons + ["dockerd is not running, so it is started instead of reloaded"]
    elif running is False and action == "restart":
        action = "start"
    warnings: list[str] = []
    if action in ("restart",) and running:
        info = facts.optional("docker_info")
        if info is not None and info.live_restore is not True:
            warnings.append(
                "dockerd will be restarted and live-restore is off: running containers stop "
                "(and restart only if their restart policy says so)"
            )
    return Prepared(steps, changes, commands, action, daemon_reload, reasons, warnings, running, offline, other, mapper)


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None
    except OSError as exc:
        raise ApplyError(f"cannot read {path}: {exc.strerror}") from None


def is_daemon_json(path: str, facts: Facts) -> bool:
    dj = facts.optional("daemon_json")
    return path.endswith("/daemon.json") or (dj is not None and path == dj.path)


def changed_keys(before: bytes | None, after: bytes) -> set[str] | None:
    """Top-level keys whose values differ; None when either side does not parse."""
    try:
        old = json.loads(before) if before and before.strip() else {}
        new = json.loads(after) if after.strip() else {}
    except ValueError:
        return None
    if not isinstance(old, dict) or not isinstance(new, dict):
        return None
    return {k for k in set(old) | set(new) if old.get(k, _MISSING) != new.get(k, _MISSING)}


_MISSING = object()


def decide_service(
    changes: dict[str, FileChange], requested: list[str], facts: Facts
) -> tuple[str | None, bool, list[str]]:
    """The fewest service actions the file changes need, and why."""
    level = 0
    daemon_reload = False
    reasons: list[str] = []
    for ch in changes.values():
        p = ch.path
        if any(m in p for m in UNIT_DIR_MARKERS):
            daemon_reload = True
            level = max(level, 2)
            reasons.append(f"{p} is part of docker.service: daemon-reload, then restart")
        elif is_daemon_json(p, facts):
            keys = changed_keys(ch.before, ch.after)
            if keys is None:
                level = max(level, 2)
                reasons.append(f"{p} did not parse before: dockerd must be restarted to read it")
            elif keys and keys <= RELOADABLE_KEYS | IGNORED_BY_DOCKERD:
                level = max(level, 1)
                reasons.append(f"{p}: {', '.join(sorted(keys))} reloadable with SIGHUP")
            elif keys:
                level = max(level, 2)
                slow = sorted(keys - RELOADABLE_KEYS - IGNORED_BY_DOCKERD)
                reasons.append(f"{p}: {', '.join(slow)} {'needs' if len(slow) == 1 else 'need'} a restart")
        elif p.startswith(ENV_FILE_PATHS):
            env_files = facts.optional("env_files") or {}
            info = env_files.get(p)
            if info is not None and not info.loaded:
                reasons.append(f"{p} is not loaded by docker.service: no restart for it")
                continue
            level = max(level, 2)
            reasons.append(f"{p} is read only when dockerd starts: restart")
        elif "/certs.d/" in p:
            reasons.append(f"{p}: certs.d is read on every push and pull, no restart")
    for action in requested:
        if action == "daemon-reload":
            daemon_reload = True
        elif ACTION_LEVEL.get(action, 0) > level:
            level = ACTION_LEVEL[action]
            reasons.append(f"the fix asks for {action}")
    chosen: str | None = {0: None, 1: "reload", 2: "restart"}[level]
    return chosen, daemon_reload, reasons
