"""The apply engine on temp files: atomic writes, backups, rollback, service decisions, validation,
interrupted runs. No dockerd here: a unix-socket stub answers the Engine API's /_ping."""

from __future__ import annotations

import contextlib
import errno
import http.server
import json
import os
import socketserver
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from snap import docker_ce_host

from dockerdoctor.facts import CheckOptions, Facts, HostPort
from dockerdoctor.fixes import backup as backup_mod
from dockerdoctor.fixes.apply import (
    ApplyOptions,
    Choice,
    FileChange,
    InterruptedRun,
    Prepared,
    PreparedStep,
    Transaction,
    apply_prepared,
    changed_keys,
    choose_fixes,
    decide_service,
    prepare,
    rollback_run,
)
from dockerdoctor.fixes.backup import BackupStore, atomic_write
from dockerdoctor.fixes.service import ServiceError, ServiceManager
from dockerdoctor.model import (
    Finding,
    Fix,
    JsonListAdd,
    JsonSetKey,
    ReplaceFileContent,
    ServiceAction,
    Severity,
)
from dockerdoctor.sources.snapshot import SnapshotSource

REG = "10.0.0.5:5000"
JOURNAL_PATH = "sos_commands/docker/journalctl_--no-pager_--unit_docker"


def snapshot_facts(root: Path, registry: str | None = REG) -> Facts:
    regs = [HostPort.parse(registry)] if registry else []
    return Facts(SnapshotSource(root), CheckOptions(registries=regs, network=False))


def findings_of(facts: Facts) -> list[Finding]:
    from dockerdoctor.engine import run_rules

    return [f for r in run_rules(facts) for f in r.findings]


# --------------------------------------------------------------------------- atomic write


def test_atomic_write_keeps_mode_and_leaves_no_temp(tmp_path: Path) -> None:
    p = tmp_path / "daemon.json"
    p.write_text("{}\n")
    os.chmod(p, 0o600)
    atomic_write(str(p), b'{"debug": true}\n')
    assert p.read_bytes() == b'{"debug": true}\n'
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert [x.name for x in tmp_path.iterdir()] == ["daemon.json"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "daemon.json"
    p.write_bytes(b"old\n")

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(backup_mod.os, "write", full)
    with pytest.raises(OSError):
        atomic_write(str(p), b"new content\n")
    monkeypatch.undo()
    assert p.read_bytes() == b"old\n"
    assert [x.name for x in tmp_path.iterdir()] == ["daemon.json"]


@pytest.mark.real  # mounting a tmpfs needs root; on CI a skip here is a failure
def test_full_disk_leaves_no_partial_file(tmp_path: Path) -> None:
    """A real full disk: a 64k tmpfs holding daemon.json, and a new content that does not fit."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "dd-fix-full", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        p = mnt / "daemon.json"
        original = b'{\n  "insecure-registries": ["10.0.0.5:5000"]\n}\n'
        p.write_bytes(original)
        big = b'{"labels": ["' + b"x" * 200_000 + b'"]}\n'
        with pytest.raises(OSError) as exc:
            atomic_write(str(p), big)
        assert exc.value.errno == errno.ENOSPC
        assert p.read_bytes() == original
        assert sorted(x.name for x in mnt.iterdir()) == ["daemon.json"]
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


# --------------------------------------------------------------------------- backups


def test_backup_and_restore_are_byte_identical(tmp_path: Path) -> None:
    store = BackupStore(tmp_path / "state")
    existing = tmp_path / "etc" / "daemon.json"
    existing.parent.mkdir()
    existing.write_bytes(b'{ "debug" : true }   \n')  # odd spacing: must come back exactly
    os.chmod(existing, 0o640)
    new_dir = tmp_path / "etc" / "certs.d" / "h:1"
    new_file = new_dir / "ca.crt"
    rec = store.new_run()
    store.backup_file(rec, "/etc/docker/daemon.json", str(existing))
    fr = store.backup_file(rec, "/etc/docker/certs.d/h:1/ca.crt", str(new_file))
    atomic_write(str(existing), b"{}\n", mode=0o644)
    new_dir.parent.mkdir()
    new_dir.mkdir()
    fr.created_dirs = [str(new_dir.parent), str(new_dir)]
    new_file.write_text("pem")
    restored = store.restore_files(rec)
    assert sorted(restored) == ["/etc/docker/certs.d/h:1/ca.crt", "/etc/docker/daemon.json"]
    assert existing.read_bytes() == b'{ "debug" : true }   \n'
    assert stat.S_IMODE(existing.stat().st_mode) == 0o640
    assert not new_file.exists() and not new_dir.parent.exists()


def test_damaged_backup_is_refused(tmp_path: Path) -> None:
    store = BackupStore(tmp_path / "state")
    f = tmp_path / "a.json"
    f.write_text("{}")
    rec = store.new_run()
    store.backup_file(rec, "/a.json", str(f))
    (rec.dir / "files" / "0").write_text("tampered")
    with pytest.raises(backup_mod.BackupError, match="damaged"):
        store.restore_files(rec)


# --------------------------------------------------------------------------- decisions


def _change(path: str, before: object, after: object) -> FileChange:
    b = json.dumps(before).encode() if before is not None else None
    return FileChange(path, path, b, json.dumps(after).encode(), None)


@pytest.mark.parametrize(
    "changes, want",
    [
        ([_change("/etc/docker/daemon.json", {}, {"insecure-registries": [REG]})], ("reload", False)),
        ([_change("/etc/docker/daemon.json", {"debug": True}, {"debug": False, "labels": ["a"]})], ("reload", False)),
        ([_change("/etc/docker/daemon.json", {}, {"data-root": "/srv/docker"})], ("restart", False)),
        (
            [FileChange("/etc/docker/daemon.json", "/x", b'{"a": 1,}', b'{"a": 1}', None)],
            ("restart", False),
        ),
        (
            [FileChange("/etc/systemd/system/docker.service.d/10.conf", "/x", None, b"[Service]\n", 0o644)],
            ("restart", True),
        ),
        ([FileChange("/etc/sysconfig/docker", "/x", b"OPTIONS=\n", b"OPTIONS=-D\n", None)], ("restart", False)),
        ([FileChange(f"/etc/docker/certs.d/{REG}/ca.crt", "/x", None, b"pem", 0o644)], (None, False)),
    ],
)
def test_fewest_service_actions(tmp_path: Path, changes: list[FileChange], want: tuple) -> None:
    facts = snapshot_facts(docker_ce_host(tmp_path / "h"))
    action, daemon_reload, reasons = decide_service({c.path: c for c in changes}, [], facts)
    assert (action, daemon_reload) == want
    assert reasons


def test_changed_keys_ignores_formatting_and_order() -> None:
    assert changed_keys(b'{"a": 1, "b": [1]}', b'{\n  "b": [1],\n  "a": 1\n}\n') == set()
    assert changed_keys(b'{"a": 1}', b'{"a": 2}') == {"a"}
    assert changed_keys(b"{,}", b"{}") is None


def _dd101(plain: bool) -> Finding:
    from dockerdoctor.fixes.recipes import trust_fix

    return Finding(
        "DD101",
        Severity.ERROR,
        f"{REG} is not trusted by the daemon",
        "",
        fix=trust_fix(HostPort.parse(REG), None, plain),
        params={"registry": REG, "plain_http": plain},
    )


def test_plain_http_without_ca_picks_insecure_with_the_cis_warning() -> None:
    [c] = choose_fixes([_dd101(plain=True)])
    assert c.fix is not None and isinstance(c.fix.operations[0], JsonListAdd)
    assert any("CIS Docker Benchmark 2.4" in w for w in c.fix.warnings)
    assert c.notes and "insecure-registries alternative" in c.notes[0]


def test_ca_goes_to_certs_d_and_is_refused_for_plain_http() -> None:
    [tls] = choose_fixes([_dd101(plain=False)], ca_pem="-----BEGIN CERTIFICATE-----\n")
    assert tls.fix is not None
    [op] = tls.fix.operations
    assert isinstance(op, ReplaceFileContent) and op.path == f"/etc/docker/certs.d/{REG}/ca.crt"
    [plain] = choose_fixes([_dd101(plain=True)], ca_pem="-----BEGIN CERTIFICATE-----\n")
    assert plain.fix is None and "plain HTTP" in plain.notes[0]


def test_unknown_ca_without_options_is_not_automatic_and_insecure_is_explicit() -> None:
    [c] = choose_fixes([_dd101(plain=False)])
    assert c.fix is None and "--ca FILE" in c.notes[0]
    [c] = choose_fixes([_dd101(plain=False)], insecure=True)
    assert c.fix is not None and isinstance(c.fix.operations[0], JsonListAdd) and not c.notes


def test_one_trust_step_per_registry() -> None:
    dd203 = Finding(
        "DD203", Severity.ERROR, f"{REG} speaks plain HTTP", "", fix=_dd101(True).fix, params={"registry": REG}
    )
    a, b = choose_fixes([dd203, _dd101(plain=True)])
    assert a.finding.rule_id == "DD101" and a.fix is not None
    assert b.fix is None and "[DD101]" in b.notes[0]


# --------------------------------------------------------------------------- offline transactions


def test_apply_on_a_snapshot_copy_then_idempotent_then_rollback(tmp_path: Path) -> None:
    root = docker_ce_host(
        tmp_path / "h",
        daemon_json='{\n  "debug": true\n}\n',
        insecure_running=(),
        extra={
            JOURNAL_PATH: f'level=info msg="Attempting next endpoint for push after error: Get '
            f'\\"https://{REG}/v2/\\": http: server gave HTTP response to HTTPS client"\n'
        },
    )
    dj = root / "etc/docker/daemon.json"
    original = dj.read_bytes()
    store = BackupStore(tmp_path / "state")
    facts = snapshot_facts(root)
    prepared = prepare(choose_fixes(findings_of(facts)), facts)
    assert set(prepared.changes) == {"/etc/docker/daemon.json"} and prepared.action == "reload"
    result = apply_prepared(prepared, facts, ApplyOptions(store, facts_factory=lambda: snapshot_facts(root)))
    assert result.status == "applied", result.log
    assert json.loads(dj.read_text()) == {"debug": True, "insecure-registries": [REG]}
    # a second run has nothing to do
    facts2 = snapshot_facts(root)
    again = prepare(choose_fixes(findings_of(facts2)), facts2)
    assert again.empty
    assert apply_prepared(again, facts2, ApplyOptions(store)).status == "nothing"
    rollback_run(store, "last")
    assert dj.read_bytes() == original
    assert store.load(result.run_id or "").status == "rolled-back"


def test_unparsable_daemon_json_is_never_overwritten_by_a_json_edit(tmp_path: Path) -> None:
    broken = '{\n  "debug": true,\n}\n'
    root = docker_ce_host(tmp_path / "h", daemon_json=broken)
    facts = snapshot_facts(root)
    fix = Fix("add", (JsonListAdd("/etc/docker/daemon.json", "insecure-registries", REG), ServiceAction("reload")))
    prepared = prepare([Choice(Finding("DD101", Severity.ERROR, "t", "m", fix=fix), fix)], facts)
    assert prepared.empty and "does not parse" in prepared.steps[0].errors[0]
    assert (root / "etc/docker/daemon.json").read_text() == broken


def test_validation_refuses_a_change_that_brings_a_new_dd104(tmp_path: Path) -> None:
    root = docker_ce_host(tmp_path / "h")  # the unit passes -H fd://
    facts = snapshot_facts(root)
    fix = Fix("hosts in the file", (JsonSetKey("/etc/docker/daemon.json", "hosts", ["unix:///x.sock"]),))
    prepared = prepare([Choice(Finding("X", Severity.ERROR, "t", "m", fix=fix), fix)], facts)
    store = BackupStore(tmp_path / "state")
    before = (root / "etc/docker/daemon.json").read_bytes()
    result = apply_prepared(prepared, facts, ApplyOptions(store))
    assert result.status == "invalid" and "DD104" in result.problems[0]
    assert (root / "etc/docker/daemon.json").read_bytes() == before
    assert store.list_runs() == []


def test_crash_between_backup_and_write_is_detected_next_run(tmp_path: Path) -> None:
    root = docker_ce_host(tmp_path / "h", daemon_json='{"debug": true}\n')
    state = tmp_path / "state"
    code = f"""
import sys
from dockerdoctor.facts import CheckOptions, Facts
from dockerdoctor.fixes.apply import ApplyOptions, Choice, apply_prepared, prepare
from dockerdoctor.fixes.backup import BackupStore
from dockerdoctor.model import Finding, Fix, JsonSetKey, Severity
from dockerdoctor.sources.snapshot import SnapshotSource
facts = Facts(SnapshotSource({str(root)!r}), CheckOptions(network=False))
fix = Fix("x", (JsonSetKey("/etc/docker/daemon.json", "debug", False),))
p = prepare([Choice(Finding("DD106", Severity.ERROR, "t", "m", fix=fix), fix)], facts)
apply_prepared(p, facts, ApplyOptions(BackupStore({str(state)!r})))
"""
    r = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "DOCKERDOCTOR_FAULT": "after-backup"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 86, r.stderr
    store = BackupStore(state)
    [run] = store.unfinished()
    assert run.status == "writing"
    facts = snapshot_facts(root)
    fix = Fix("y", (JsonSetKey("/etc/docker/daemon.json", "debug", False),))
    prepared = prepare([Choice(Finding("DD106", Severity.ERROR, "t", "m", fix=fix), fix)], facts)
    with pytest.raises(InterruptedRun, match=run.run_id):
        apply_prepared(prepared, facts, ApplyOptions(store))
    rollback_run(store, run.run_id)
    assert store.unfinished() == []
    assert (root / "etc/docker/daemon.json").read_text() == '{"debug": true}\n'


# --------------------------------------------------------------------------- live-like: services and rollback


class _PingHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200 if self.server.up else 500)  # type: ignore[attr-defined]
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *a: object) -> None:
        pass


class _UnixHTTP(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    up = True

    def get_request(self):  # type: ignore[no-untyped-def]
        req, _ = super().get_request()
        return req, ("local", 0)


@contextlib.contextmanager
def engine_stub(path: Path):
    srv = _UnixHTTP(str(path), _PingHandler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


class FakeManager(ServiceManager):
    def __init__(self, stub: _UnixHTTP, fail_first_restart: bool = False) -> None:
        self.calls: list[str] = []
        self.stub = stub
        self.fail_first = fail_first_restart

    def daemon_reload(self) -> str:
        self.calls.append("daemon-reload")
        return "daemon-reload"

    def reload(self, unit: str = "docker.service") -> str:
        self.calls.append("reload")
        return "reload"

    def restart(self, unit: str = "docker.service") -> str:
        self.calls.append("restart")
        if self.fail_first:
            self.fail_first = False
            self.stub.up = False
            raise ServiceError("dockerd exited: unable to configure the Docker daemon")
        self.stub.up = True
        return "restart"


def _live_prepared(tmp_path: Path, action: str) -> tuple[Prepared, Facts, Path]:
    root = docker_ce_host(tmp_path / "h", daemon_json='{"debug": true}\n')
    dj = root / "etc/docker/daemon.json"
    facts = Facts(SnapshotSource(root), CheckOptions(network=False, docker_host=f"unix://{tmp_path}/d.sock"))
    fix = Fix("x", (JsonSetKey("/etc/docker/daemon.json", "data-root", "/nonexistent"),))
    ch = FileChange(
        "/etc/docker/daemon.json", str(dj), dj.read_bytes(), b'{"debug": true, "data-root": "/x"}\n', None, ["DD106"]
    )
    step = PreparedStep(Choice(Finding("DD106", Severity.ERROR, "t", "m", fix=fix), fix), changes=1)
    p = Prepared([step], {ch.path: ch}, [], action, False, [], [], True, offline=False)
    return p, facts, dj


def test_failed_restart_rolls_back_and_restarts_again(tmp_path: Path) -> None:
    p, facts, dj = _live_prepared(tmp_path, "restart")
    before = dj.read_bytes()
    with engine_stub(tmp_path / "d.sock") as stub:
        mgr = FakeManager(stub, fail_first_restart=True)
        store = BackupStore(tmp_path / "state")
        result = Transaction(p, facts, ApplyOptions(store, manager=mgr, ready_timeout=5)).run()
    assert result.status == "rolled-back"
    assert "unable to configure" in result.problems[0]
    assert dj.read_bytes() == before
    assert mgr.calls == ["restart", "restart"]
    assert store.load("last").status == "rolled-back"


def test_failed_verification_rolls_back(tmp_path: Path) -> None:
    p, facts, dj = _live_prepared(tmp_path, "reload")
    before = dj.read_bytes()

    class StillBroken(Facts):
        pass

    def factory() -> Facts:
        # the "rules" still see the problem: a finding with the same id and title keeps firing
        return facts

    with engine_stub(tmp_path / "d.sock") as stub:
        mgr = FakeManager(stub)
        store = BackupStore(tmp_path / "state")
        opts = ApplyOptions(store, manager=mgr, facts_factory=factory, verify_timeout=0, ready_timeout=5)
        import dockerdoctor.engine as engine

        real_run = engine.run_rules

        def fake_run(f: Facts, select: set[str] | None = None, ignore: set[str] | None = None):  # type: ignore[no-untyped-def]
            from dockerdoctor.model import RuleResult, RuleStatus

            if select is not None and "DD106" in select:  # the live re-check adds DD107
                return [
                    RuleResult("DD106", "x", "daemon", RuleStatus.FAILED, [Finding("DD106", Severity.ERROR, "t", "m")])
                ]
            return real_run(f, select, ignore)

        engine.run_rules = fake_run
        try:
            result = Transaction(p, facts, opts).run()
        finally:
            engine.run_rules = real_run
    assert result.status == "rolled-back" and "DD106 still reports" in result.problems[0]
    assert dj.read_bytes() == before
    assert mgr.calls == ["reload", "reload"]


@pytest.mark.real  # mounting a tmpfs needs root; on CI a skip here is a failure
def test_full_state_dir_stops_before_any_host_file_changes(tmp_path: Path) -> None:
    from dockerdoctor.fixes.apply import ApplyError

    big = '{\n  "labels": ["' + "x" * 100_000 + '"]\n}\n'
    root = docker_ce_host(tmp_path / "h", daemon_json=big)
    state = tmp_path / "state"
    state.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "dd-fix-state", str(state)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        facts = snapshot_facts(root)
        fix = Fix("debug", (JsonSetKey("/etc/docker/daemon.json", "debug", True),))
        prepared = prepare([Choice(Finding("DD106", Severity.ERROR, "t", "m", fix=fix), fix)], facts)
        with pytest.raises(ApplyError, match="backup failed, nothing was changed"):
            apply_prepared(prepared, facts, ApplyOptions(BackupStore(state)))
        assert (root / "etc/docker/daemon.json").read_text() == big
        leftovers = [p.name for p in state.rglob("*") if ".dd-tmp-" in p.name]
        assert leftovers == []
    finally:
        subprocess.run(["umount", str(state)], capture_output=True)


def test_failing_command_rolls_the_files_back(tmp_path: Path) -> None:
    from dockerdoctor.model import RunCommand

    p, facts, dj = _live_prepared(tmp_path, None)  # type: ignore[arg-type]
    before = dj.read_bytes()
    p.commands = [("DD301", RunCommand(("sh", "-c", "echo nope >&2; exit 4"), "open the port"))]
    with engine_stub(tmp_path / "d.sock") as stub:
        result = Transaction(p, facts, ApplyOptions(BackupStore(tmp_path / "state"), manager=FakeManager(stub))).run()
    assert result.status == "rolled-back"
    assert "command failed" in result.problems[0] and "exit 4): nope" in result.problems[0]
    assert dj.read_bytes() == before


def test_new_dropin_is_named_to_come_last() -> None:
    from dockerdoctor.fixes.choose import _last_dropin

    d = "/etc/systemd/system/docker.service.d"
    fix = Fix("x", (ReplaceFileContent(f"{d}/10-exec.conf", "[Service]\n"), ServiceAction("restart")))
    assert _last_dropin(fix, []).operations[0].path == f"{d}/10-exec.conf"  # type: ignore[union-attr]
    assert _last_dropin(fix, [f"{d}/05-a.conf"]).operations[0].path == f"{d}/10-exec.conf"  # type: ignore[union-attr]
    got = _last_dropin(fix, ["/usr/lib/systemd/system/docker.service.d/override.conf"]).operations[0]
    assert got.path == f"{d}/zz-10-exec.conf"  # type: ignore[union-attr]
    got = _last_dropin(fix, [f"{d}/zz-site.conf"]).operations[0]
    assert got.path == f"{d}/zz-zz-10-exec.conf"  # type: ignore[union-attr]
    # an existing drop-in the fix rewrites keeps its name
    assert _last_dropin(fix, [f"{d}/10-exec.conf", f"{d}/override.conf"]).operations[0].path == f"{d}/10-exec.conf"  # type: ignore[union-attr]  # noqa: E501


def test_env_set_in_a_systemd_dropin_edits_the_environment_line() -> None:
    from dockerdoctor.fixes.edits import apply_edit
    from dockerdoctor.model import EnvFileSet

    path = "/etc/systemd/system/docker.service.d/http-proxy.conf"
    text = '[Service]\nEnvironment="HTTP_PROXY=http://p:3128" "NO_PROXY=localhost"\n# keep me\n'
    got = apply_edit(EnvFileSet(path, "NO_PROXY", "localhost,10.0.0.5"), text)
    assert got == '[Service]\nEnvironment="HTTP_PROXY=http://p:3128" "NO_PROXY=localhost,10.0.0.5"\n# keep me\n'
    assert apply_edit(EnvFileSet(path, "NO_PROXY", "a"), "[Service]\nExecStart=\n") == (
        '[Service]\nEnvironment="NO_PROXY=a"\nExecStart=\n'
    )
    same = "[Service]\nEnvironment=NO_PROXY=a\n"
    assert apply_edit(EnvFileSet(path, "NO_PROXY", "a"), same) == same
    # plain environment files keep their shell syntax
    assert apply_edit(EnvFileSet("/etc/sysconfig/docker", "NO_PROXY", "a"), "X=1\n") == "X=1\nNO_PROXY='a'\n"


def test_atomic_write_keeps_extended_attributes(tmp_path: Path) -> None:
    """The SELinux label is an xattr (security.selinux, not settable without SELinux here); a user.*
    attribute shows that the old file's attributes move to the new one."""
    p = tmp_path / "daemon.json"
    p.write_text("{}\n")
    try:
        os.setxattr(p, "user.dockerdoctor", b"kept")
    except OSError as exc:
        pytest.skip(f"this filesystem has no user xattrs: {exc.strerror}")
    atomic_write(str(p), b'{"debug": true}\n')
    assert os.getxattr(p, "user.dockerdoctor") == b"kept"


def test_info_findings_are_advice_only() -> None:
    from dockerdoctor.model import RunCommand

    fix = Fix("Start firewalld", (RunCommand(("systemctl", "start", "firewalld")),))
    [c] = choose_fixes([Finding("DD306", Severity.INFO, "firewalld is off", "", fix=fix)])
    assert c.fix is None and c.notes[0].startswith("advice only (info)")
