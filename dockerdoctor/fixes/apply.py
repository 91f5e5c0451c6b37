"""`fix --apply`: carry out the plan as a transaction that never leaves the host worse off.

1. choose: pick one Fix per finding (TLS with --ca, insecure-registries with its CIS 2.4 warning).
2. prepare: compute every file's new bytes with the same pure edits the dry run uses
   (fixes/edits.py), where the running daemon really reads them (its mount namespace when it has
   its own), and decide the fewest service actions: SIGHUP when every changed daemon.json key is
   reloadable, daemon-reload + restart when unit files change, restart otherwise.
3. validate the candidate before anything is written: the project's own daemon.json and unit
   rules (DD102-DD106, DD109) on an overlay of the new contents, plus `dockerd --validate` where
   the engine has it (23.0+).
4. back up every file with a manifest, then write each one atomically (fixes/backup.py).
5. run the commands, then reload/restart through a ServiceManager (fixes/service.py).
6. verify: dockerd answers, the rules that produced the findings no longer do, and dockerd itself
   can reach each registry (a pull of an absent tag must fail with "not found", not with TLS).
7. on any failure: restore the files byte-identical, reload/restart again, report what happened.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dockerdoctor.errors import DoctorError
from dockerdoctor.facts import CheckOptions, Facts
from dockerdoctor.fixes.backup import BackupError, BackupStore, RunRecord, atomic_write, sha256
from dockerdoctor.fixes.edits import FILE_OPS, UneditableFile, apply_edit
from dockerdoctor.fixes.plan import shown_only
from dockerdoctor.fixes.service import ServiceError, ServiceManager
from dockerdoctor.model import (
    Finding,
    Fix,
    Operation,
    ReplaceFileContent,
    RunCommand,
    ServiceAction,
    Severity,
)
from dockerdoctor.sources.base import DEFAULT_READ_LIMIT, FileStat, Source

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
# Rules that judge a candidate configuration before anything is written.
VALIDATION_RULES = ("DD102", "DD103", "DD104", "DD105", "DD106", "DD109")
# Repairs of the configuration files themselves go first, so later edits apply to a parsable file.
REPAIR_ORDER = ("DD106", "DD105", "DD104", "DD103", "DD102", "DD109")
# Findings that a TLS CA in certs.d or an insecure-registries entry repairs (one step per registry).
TRUST_RULES = ("DD101", "DD203", "DD204")
# Commands a fix shows for information; running them repairs nothing.
UNIT_DIR_MARKERS = ("/systemd/system/",)
ENV_FILE_PATHS = ("/etc/sysconfig/", "/etc/default/")
ACTION_LEVEL = {None: 0, "reload": 1, "restart": 2, "start": 2}
DOCKER_UNIT = "docker.service"
FAULT_ENV = "DOCKERDOCTOR_FAULT"  # test hook: "after-backup" or "after-write" kills the run there


class ApplyError(DoctorError):
    """The plan cannot be applied as asked (for example a previous run was interrupted)."""


class InterruptedRun(ApplyError):
    def __init__(self, runs: list[RunRecord]) -> None:
        self.runs = runs
        ids = ", ".join(r.run_id for r in runs)
        super().__init__(
            f"a previous `fix --apply` ({ids}) stopped after backing up and may have changed files; "
            f"roll it back with `dockerdoctor fix --rollback {runs[-1].run_id}` first"
        )


# --------------------------------------------------------------------------- 1. choose


@dataclass
class Choice:
    finding: Finding
    fix: Fix | None  # None: nothing this run can apply for the finding
    notes: list[str] = field(default_factory=list)  # why an alternative was chosen, what is missing


def choose_fixes(
    findings: list[Finding],
    ca_pem: str | None = None,
    insecure: bool = False,
    min_severity: Severity = Severity.WARNING,
    dropins: list[str] | None = None,
) -> list[Choice]:
    """One Fix per finding, repair rules first.

    DD101 (registry not trusted): with --ca, the CA goes into certs.d (no restart). With --insecure,
    or for a plain-HTTP registry when no CA was given, the insecure-registries alternative is
    chosen and its CIS 2.4 warning kept. A TLS registry with an unknown CA and neither option
    cannot be fixed without the CA, so the step says so.
    """
    out: list[Choice] = []
    trusted: dict[str, str] = {}  # registry -> the rule whose step makes the daemon trust it
    for f in sorted(findings, key=_order_key):
        fix = f.fix
        if fix is None:
            continue
        if f.severity < min_severity:  # info findings carry advice, never an automatic change
            out.append(
                Choice(f, None, [f"advice only ({f.severity.label}), never applied automatically: {fix.summary}"])
            )
            continue
        if f.rule_id in TRUST_RULES and f.params.get("registry"):
            reg = str(f.params["registry"])
            if reg in trusted:
                out.append(Choice(f, None, [f"the [{trusted[reg]}] step for {reg} repairs this too"]))
                continue
            trusted[reg] = f.rule_id
            out.append(_choose_trust(f, fix, ca_pem, insecure))
            continue
        if not fix.operations:
            out.append(Choice(f, None, [f"no automatic fix: {fix.summary}"]))
            continue
        out.append(Choice(f, _last_dropin(fix, dropins or [])))
    return out


_DROPIN = re.compile(r"^(?P<dir>/etc/systemd/system/docker\.service\.d)/(?P<name>[^/]+\.conf)$")


def _last_dropin(fix: Fix, existing: list[str]) -> Fix:
    """A new docker.service drop-in must sort after the host's own drop-ins to take effect.

    systemd applies drop-ins in file-name order, so a fix's `10-exec.conf` next to the host's
    `override.conf` would be overridden by it. Rename such a new drop-in (it is a new file: the
    name is the fix's choice, not the host's) so that it comes last; the plan shows the new name.
    """
    names = sorted(os.path.basename(p) for p in existing)
    ops: list[Operation] = []
    for op in fix.operations:
        if isinstance(op, ReplaceFileContent):
            m = _DROPIN.match(op.path)
            if m and os.path.basename(op.path) not in names and any(n > m.group("name") for n in names):
                name = m.group("name")
                while any(n >= name for n in names):
                    name = "zz-" + name
                op = dataclasses.replace(op, path=f"{m.group('dir')}/{name}")
        ops.append(op)
    return dataclasses.replace(fix, operations=tuple(ops))


def _order_key(f: Finding) -> tuple[int, int, str]:
    pos = REPAIR_ORDER.index(f.rule_id) if f.rule_id in REPAIR_ORDER else len(REPAIR_ORDER)
    return (pos, -int(f.severity), f.rule_id)


def _choose_trust(f: Finding, fix: Fix, ca_pem: str | None, insecure: bool) -> Choice:
    name = str(f.params.get("registry", ""))
    plain = bool(f.params.get("plain_http", f.rule_id == "DD203"))
    alt = fix.alternatives[0] if fix.alternatives else None
    if ca_pem is not None and not insecure:
        if plain:
            return Choice(
                f,
                None,
                [
                    f"--ca was given, but {name} speaks plain HTTP: a CA cannot help until the "
                    "registry serves TLS (dockerdoctor serve-registry --tls-self-signed), "
                    "or use --insecure"
                ],
            )
        path = f"/etc/docker/certs.d/{name}/ca.crt"
        return Choice(
            f,
            Fix(
                f"Trust the given CA for {name} in {path} (read on every push, no restart)",
                (ReplaceFileContent(path, ca_pem, 0o644),),
            ),
        )
    if alt is not None and (insecure or plain):
        notes = (
            []
            if insecure
            else [
                f"{name} speaks plain HTTP and no --ca was given, so the plan uses the "
                "insecure-registries alternative; " + fix.summary + " is the safer choice"
            ]
        )
        return Choice(f, alt, notes)
    return Choice(f, None, [f"{fix.summary}: give the registry's CA with --ca FILE, or choose --insecure"])


# --------------------------------------------------------------------------- paths


class PathMapper:
    """Where a path of the plan is really written.

    Offline (a snapshot copy) every path lives under the snapshot root. Live, the daemon's own
    files (/etc/docker/**, and its --config-file) are reached through /proc/PID/root when dockerd
    runs in a mount namespace of its own, so the file it reads is the file that changes.
    """

    def __init__(self, root: str | None = None, proc_root: str | None = None, daemon_json_path: str | None = None):
        self.root = root
        self.proc_root = proc_root
        self.daemon_json_path = daemon_json_path
        # /proc/PID/root/DIR -> /proc/self/fd/N: a directory fd pinned while dockerd still runs keeps
        # its mount namespace's files reachable after dockerd exits (a failed restart, then rollback).
        self._pinned: dict[str, str] = {}

    @classmethod
    def for_facts(cls, facts: Facts) -> PathMapper:
        root = getattr(facts.source, "root", None) if not facts.live else None
        proc = facts.optional("dockerd_process") if facts.live else None
        dj = facts.optional("daemon_json")
        return cls(
            str(root) if root else None,
            proc.root_prefix if proc is not None else None,
            dj.path if dj is not None else None,
        )

    def real(self, path: str) -> str:
        if self.root:
            return os.path.join(self.root, path.lstrip("/"))
        if self.proc_root and (path.startswith("/etc/docker/") or path == self.daemon_json_path):
            base = "/etc/docker" if path.startswith("/etc/docker/") else os.path.dirname(path)
            mapped = self.proc_root + base
            if mapped in self._pinned or (os.path.isdir(mapped) and not _same_dir(mapped, base)):
                self._pin(mapped)
                return self.proc_root + path
        return path

    def _pin(self, mapped: str) -> None:
        if mapped in self._pinned:
            return
        try:
            fd = os.open(mapped, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return
        self._pinned[mapped] = f"/proc/self/fd/{fd}"

    def to_io(self, real: str) -> str:
        """The path to open for `real` now (through a pinned directory when there is one)."""
        for mapped, pinned in self._pinned.items():
            if real == mapped or real.startswith(mapped + "/"):
                return pinned + real[len(mapped) :]
        return real


def _same_dir(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


# --------------------------------------------------------------------------- overlay source


class OverlaySource(Source):
    """The base source, with some files replaced by candidate contents (for validation)."""

    def __init__(self, base: Source, files: dict[str, bytes]) -> None:
        self.base = base
        self.files = files
        self.live = base.live
        self.description = base.description + " (candidate)"

    def read_bytes(self, path: str, limit: int = DEFAULT_READ_LIMIT, tail: bool = False) -> bytes | None:
        if path in self.files:
            data = self.files[path]
            return data[-limit:] if tail else data[:limit]
        return self.base.read_bytes(path, limit, tail)

    def stat(self, path: str) -> FileStat | None:
        if path in self.files:
            old = self.base.stat(path)
            return FileStat(time.time(), old.mode if old else 0o100644, len(self.files[path]))
        return self.base.stat(path)

    def listdir(self, path: str) -> list[str]:
        names = set(self.base.listdir(path))
        prefix = path.rstrip("/") + "/"
        names.update(p[len(prefix) :] for p in self.files if p.startswith(prefix) and "/" not in p[len(prefix) :])
        return sorted(names)

    def is_symlink_to(self, path: str) -> str | None:
        return None if path in self.files else self.base.is_symlink_to(path)

    def command(self, key: str, limit: int = DEFAULT_READ_LIMIT) -> str | None:
        return self.base.command(key, limit)

    def command_source(self, key: str) -> str:
        return self.base.command_source(key)


# --------------------------------------------------------------------------- 2. prepare


@dataclass
class FileChange:
    path: str
    real: str
    before: bytes | None
    after: bytes
    mode: int | None  # for a new file
    rules: list[str] = field(default_factory=list)


@dataclass
class PreparedStep:
    choice: Choice
    errors: list[str] = field(default_factory=list)
    changes: int = 0  # how many file edits of this step change something

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
                if path not in originals:
                    originals[path] = _read(mapper.to_io(mapper.real(path)))
                    scratch.setdefault(path, originals[path])
                before = scratch.get(path, originals[path])
                try:
                    after = apply_edit(op, before.decode("utf-8") if before is not None else None).encode("utf-8")
                except UneditableFile as exc:
                    step.errors.append(str(exc))
                    break
                except UnicodeDecodeError:
                    step.errors.append(f"{path} is not UTF-8 text; dockerdoctor does not edit it")
                    break
                if after != before:
                    touched += 1
                scratch[path] = after
                if isinstance(op, ReplaceFileContent):
                    modes[path] = op.mode
                rules_of.setdefault(path, [])
                if choice.finding.rule_id not in rules_of[path]:
                    rules_of[path].append(choice.finding.rule_id)
            elif isinstance(op, RunCommand):
                if shown_only(op):
                    continue  # advice for another machine, an alternative, or a diagnostic: shown, never run
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
        p: FileChange(p, mapper.real(p), originals[p], after, modes.get(p), rules_of.get(p, []))
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


def _is_daemon_json(path: str, facts: Facts) -> bool:
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
        elif _is_daemon_json(p, facts):
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


# --------------------------------------------------------------------------- 3. validate


def validate(prepared: Prepared, facts: Facts, state_dir: str | None = None) -> list[str]:
    """Problems the candidate would bring that the current files do not have. [] = good."""
    problems: list[str] = []
    if not prepared.changes:
        return problems
    from dockerdoctor.engine import run_rules

    overlay: dict[str, bytes] = {}
    for ch in prepared.changes.values():
        overlay[ch.path] = ch.after
        overlay[ch.real] = ch.after
    for ch in prepared.changes.values():
        if _is_daemon_json(ch.path, facts):
            try:
                data = json.loads(ch.after)
                if not isinstance(data, dict):
                    problems.append(f"{ch.path}: the new content is not a JSON object")
            except ValueError as exc:
                problems.append(f"{ch.path}: the new content does not parse: {exc}")
    if problems:
        return problems
    options = dataclasses.replace(facts.options, network=False)
    select = set(VALIDATION_RULES)

    def keys(src: Source) -> set[tuple[str, str]]:
        results = run_rules(Facts(src, options), select)
        return {(f.rule_id, f.title) for r in results for f in r.findings if int(f.severity) >= 3}

    before = keys(facts.source)
    after = keys(OverlaySource(facts.source, overlay))
    for rid, title in sorted(after - before):
        problems.append(f"the change would bring a new {rid} error: {title}")
    if facts.live:
        problems += _dockerd_validate(prepared, facts, state_dir)
    return problems


_validate_supported: bool | None = None


def _dockerd_validate(prepared: Prepared, facts: Facts, state_dir: str | None) -> list[str]:
    """`dockerd --validate --config-file CANDIDATE` (engine 23.0+); skipped where the flag is unknown."""
    global _validate_supported
    dockerd = shutil.which("dockerd")
    if dockerd is None or _validate_supported is False:
        return []
    problems: list[str] = []
    for ch in prepared.changes.values():
        if not _is_daemon_json(ch.path, facts):
            continue
        with tempfile.NamedTemporaryFile(
            "wb", suffix=".json", prefix="dd-validate-", dir=state_dir, delete=False
        ) as tmp:
            tmp.write(ch.after)
        try:
            proc = subprocess.run(
                [dockerd, "--validate", "--config-file", tmp.name],
                capture_output=True,
                text=True,
                timeout=20,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.SubprocessError):
            return problems
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp.name)
        out = (proc.stdout + proc.stderr).strip()
        if "unknown flag: --validate" in out:
            _validate_supported = False
            return problems
        _validate_supported = True
        if proc.returncode != 0:
            lines = out.splitlines()
            problems.append(f"dockerd --validate rejects the new {ch.path}: {lines[-1] if lines else proc.returncode}")
    return problems


# --------------------------------------------------------------------------- engine probes


def engine_ping(docker_host: str | None, timeout: float = 2.0) -> bool:
    host = docker_host or "unix:///var/run/docker.sock"
    try:
        if host.startswith("unix://"):
            conn: http.client.HTTPConnection = _UnixConn(host[len("unix://") :], timeout)
        elif host.startswith("tcp://"):
            h, _, p = host[len("tcp://") :].partition(":")
            conn = http.client.HTTPConnection(h, int(p or 2375), timeout=timeout)
        else:
            return False
        try:
            conn.request("GET", "/_ping")
            return conn.getresponse().status == 200
        finally:
            conn.close()
    except (OSError, http.client.HTTPException, ValueError):
        return False


class _UnixConn(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


_REACHED = re.compile(
    r"manifest unknown|not found|does not exist|unauthorized|authentication required|"
    r"denied|no basic auth credentials",
    re.I,
)


def daemon_reaches_registry(docker_host: str | None, registry: str, timeout: float = 15.0) -> tuple[bool, str]:
    """Ask dockerd itself to pull an absent tag from `registry`.

    "not found" / "unauthorized" mean dockerd talked to the registry with its current trust
    settings; TLS or connection errors mean it still cannot.
    """
    import docker

    try:
        client = docker.APIClient(
            base_url=docker_host or "unix:///var/run/docker.sock", version="auto", timeout=timeout
        )
    except Exception as exc:  # the SDK raises many kinds
        return False, f"cannot reach the Engine API: {exc}"
    try:
        out = client.pull(f"{registry}/dockerdoctor-probe", tag="absent-tag", stream=False)
        text = str(out)
        if '"error"' in text and not _REACHED.search(text):
            return False, text[-300:]
        return True, "reached (pull answered)"
    except docker.errors.APIError as exc:
        msg = str(exc.explanation or exc)
        return bool(_REACHED.search(msg)), msg
    except Exception as exc:
        return False, f"{exc.__class__.__name__}: {exc}"
    finally:
        client.close()


# --------------------------------------------------------------------------- 4-7. apply


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


class Transaction:
    def __init__(self, prepared: Prepared, facts: Facts, options: ApplyOptions) -> None:
        self.p = prepared
        self.facts = facts
        self.o = options
        self.result = ApplyResult("nothing")
        self.rec: RunRecord | None = None
        self._ran: list[str] = []

    def say(self, text: str) -> None:
        self.result.log.append(text)
        if self.rec is not None:
            self.rec.note(text)
        self.o.echo(text)

    # ---- main
    def run(self) -> ApplyResult:
        store = self.o.store
        with store.lock():
            unfinished = store.unfinished()
            if unfinished:
                raise InterruptedRun(unfinished)
            if self.p.empty:
                self.say("Nothing to do: the files already say what the fixes want.")
                return self.result
            problems = validate(self.p, self.facts, str(store.state_dir))
            if problems:
                self.result.status = "invalid"
                self.result.problems = problems
                for pr in problems:
                    self.say(f"not applied: {pr}")
                return self.result
            how = "the DD1xx rules"
            if self.facts.live:
                how += ", dockerd --validate" if _validate_supported else "; this dockerd has no --validate"
            self.say(f"Validated the candidate configuration ({how})")
            return self._apply()

    def _apply(self) -> ApplyResult:
        store = self.o.store
        rec = self.rec = store.new_run(self.facts.source.description)
        self.result.run_id = rec.run_id
        rec.findings = [f"{s.finding.rule_id}: {s.finding.title}" for s in self.p.applicable]
        rec.service = {
            "action": self.p.action,
            "daemon_reload": self.p.daemon_reload,
            "was_running": self.p.daemon_running,
        }
        rec.commands = [c.shell() for _, c in self.p.commands]
        try:
            for ch in self.p.changes.values():
                fr = store.backup_file(rec, ch.path, ch.real, self.p.mapper.to_io(ch.real))
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
        self.say(f"Backed up {len(self.p.changes)} file(s) to {rec.dir}")
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
        self.say(f"Done: verified. Undo with `dockerdoctor fix --rollback {rec.run_id}`")
        return self.result

    def _write_files(self) -> None:
        assert self.rec is not None
        for fr, ch in zip(self.rec.files, self.p.changes.values(), strict=True):
            io = self.p.mapper.to_io
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
        for rid, cmd in self.p.commands:
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
        action = self.p.action if action is None else action
        daemon_reload = self.p.daemon_reload if daemon_reload is None else daemon_reload
        if self.p.offline:
            if action or daemon_reload:
                self.say(f"not run (snapshot): {'daemon-reload, ' if daemon_reload else ''}{action}")
            return
        mgr = self.o.manager
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
        if self.p.offline or self.o.manager is None:
            return
        for action, unit in self.p.other_services:
            self.say(f"{action} {unit}: {self.o.manager.perform(action, unit)}")

    def _wait_ready(self) -> bool:
        host = self.facts.options.docker_host
        end = time.monotonic() + self.o.ready_timeout
        while time.monotonic() < end:
            if engine_ping(host):
                return True
            time.sleep(0.2)
        return False

    # ---- verify
    def _verify(self) -> str | None:
        if self.o.facts_factory is None:
            return None
        from dockerdoctor.engine import run_rules

        # Offline, a fix that is only a reload/restart cannot show on the snapshot: verify the file edits.
        steps = [s for s in self.p.applicable if s.changes or not self.p.offline]
        wanted = {(s.finding.rule_id, s.finding.title) for s in steps}
        if not wanted:
            return None
        rule_ids = {rid for rid, _ in wanted}
        registries = [
            str(s.finding.params["registry"])
            for s in steps
            if s.finding.rule_id == "DD101" and s.finding.params.get("registry")
        ]
        end = time.monotonic() + self.o.verify_timeout
        last = ""
        while True:
            facts = self.o.facts_factory()
            try:
                results = run_rules(facts, rule_ids)
            finally:
                facts.source.close()
            remaining = [f for r in results for f in r.findings if (f.rule_id, f.title) in wanted]
            problems = [f"{f.rule_id} still reports: {f.title}" for f in remaining]
            if not problems and registries and self.o.probe_registries and not self.p.offline:
                for reg in registries:
                    ok, msg = daemon_reaches_registry(self.facts.options.docker_host, reg)
                    if not ok:
                        problems.append(f"dockerd still cannot use {reg}: {msg}")
            if not problems:
                self.say(
                    "Verified: "
                    + ", ".join(sorted(rule_ids))
                    + " pass"
                    + (f"; dockerd reaches {', '.join(registries)}" if registries and not self.p.offline else "")
                )
                return None
            last = "; ".join(problems)
            if self.p.offline or time.monotonic() >= end:
                return f"verification failed: {last}"
            time.sleep(0.5)

    # ---- rollback
    def _rollback(self, why: str, *, restart: bool) -> ApplyResult:
        assert self.rec is not None
        rec = self.rec
        self.result.problems.append(why)
        self.say(f"FAILED: {why}; rolling back")
        try:
            restored = self.o.store.restore_files(rec, to_io=self.p.mapper.to_io)
        except (OSError, BackupError) as exc:
            rec.status = "failed"
            rec.save()
            self.result.status = "failed"
            self.say(f"ROLLBACK FAILED: {exc}; the backups are in {rec.dir}")
            return self.result
        self.say("restored " + (", ".join(restored) if restored else "nothing (no file had changed)"))
        if restart and not self.p.offline:
            action = self.p.action
            if action == "start":
                action = None  # it was not running before: leave it as it was
                self.say("dockerd was not running before; left stopped")
            try:
                self._services(action, self.p.daemon_reload)
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
        restored = store.restore_files(rec, check_current=rec.status == "applied", to_io=_remapper(mapper))
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


_PROC_ROOT = re.compile(r"^/proc/\d+/root(?=/)")


def _remapper(mapper: PathMapper | None) -> Callable[[str], str] | None:
    """A run recorded /proc/OLDPID/root/...: when that dockerd is gone, reach the file through the
    dockerd that runs now (same mount namespace layout)."""
    if mapper is None:
        return None

    def to_io(real: str) -> str:
        m = _PROC_ROOT.match(real)
        if m and not os.path.exists(m.group(0)):
            return mapper.to_io(mapper.real(real[m.end() :]))
        return real

    return to_io


def make_facts(source: Source, options: CheckOptions) -> Facts:
    return Facts(source, options)


__all__ = [
    "ApplyError",
    "ApplyOptions",
    "ApplyResult",
    "Choice",
    "FileChange",
    "InterruptedRun",
    "OverlaySource",
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
