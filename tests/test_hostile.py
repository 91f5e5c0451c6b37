"""Hostile snapshots (tests/hostile.py) through the real CLI: a correct report or one clear line, exit
0/1/2 and never 3, no CRASHED rule, no raw control byte on a real terminal, well-formed JSON and JUnit."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import xml.dom.minidom
from pathlib import Path

import hostile
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockerdoctor.facts.containers import container_from_inspect
from dockerdoctor.facts.daemon import parse_daemon_json
from dockerdoctor.facts.ports import parse_ss
from dockerdoctor.model import RuleResult, RuleStatus, Severity
from dockerdoctor.report import Report
from dockerdoctor.report.text import render
from dockerdoctor.safetext import printable

DD = [sys.executable, "-m", "dockerdoctor"]
# Not a speed target (bench/ holds those): a guard against the quadratic parsers coming back, each of
# which ran past 60 s on these inputs.
HANG = 60


def dd(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DD, *args], capture_output=True, text=True, timeout=HANG, **kw)  # type: ignore


@pytest.mark.parametrize("case", sorted(hostile.CASES))
def test_hostile_snapshot_gives_a_report_not_a_crash(tmp_path: Path, case: str) -> None:
    root = hostile.CASES[case](tmp_path / case)
    r = dd("check", "--root", str(root), "--format", "json")
    assert r.returncode in (0, 1), r.stderr
    data = json.loads(r.stdout)
    assert data["summary"]["rules_crashed"] == 0, [x for x in data["rules"] if x["status"] == "crashed"]
    text = dd("check", "--root", str(root), "--no-color")
    assert "internal error" not in text.stdout + text.stderr and "crashed" not in text.stdout
    junit = dd("check", "--root", str(root), "--format", "junit")
    xml.dom.minidom.parseString(junit.stdout.encode())


def test_unicode_digit_in_ss_is_not_a_port(tmp_path: Path) -> None:
    root = hostile.unicode_digit_ss(tmp_path / "s")
    r = dd("check", "--root", str(root), "--select", "DD302,DD306,DD402", "--format", "json")
    assert r.returncode in (0, 1), r.stderr
    assert {x["status"] for x in json.loads(r.stdout)["rules"] if x["id"] in ("DD302", "DD306", "DD402")} \
        <= {"passed", "failed", "skipped"}


def test_daemon_json_of_200000_entries_is_read_not_called_invalid(tmp_path: Path) -> None:
    root = hostile.copy_host("docker-ce-http-registry-not-trusted", tmp_path / "h")
    entries = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:5000" for i in range(200_000)]
    (root / "etc/docker/daemon.json").write_text(json.dumps({"insecure-registries": entries}))
    r = dd("check", "--root", str(root), "--format", "json")
    assert r.returncode in (0, 1), r.stderr
    data = json.loads(r.stdout)
    assert not [f for f in data["findings"] if f["id"] == "DD106"]
    assert len(r.stdout) < 200_000  # a report, not a copy of the file


def test_daemon_json_over_the_read_limit_is_too_large_not_invalid(tmp_path: Path) -> None:
    root = hostile.copy_host("docker-ce-http-registry-not-trusted", tmp_path / "h")
    (root / "etc/docker/daemon.json").write_text('{"debug": true, "x": "' + "a" * (5 * hostile.MB) + '"}')
    r = dd("check", "--root", str(root), "--select", "DD106", "--format", "json")
    rule = [x for x in json.loads(r.stdout)["rules"] if x["id"] == "DD106"][0]
    assert rule["status"] == "skipped" and "too large" in rule["reason"]


@pytest.mark.parametrize(("version", "severity"), [("20.10.24", "error"), ("24.0.7", None)])
def test_utf8_bom_is_fatal_only_before_engine_23(tmp_path: Path, version: str, severity: str | None) -> None:
    root = hostile.copy_host("docker-ce-http-registry-not-trusted", tmp_path / "h")
    info = root / "sos_commands/docker/docker_info"
    info.write_text(re.sub(r"Server Version: \S+", f"Server Version: {version}", info.read_text()))
    (root / "etc/docker/daemon.json").write_bytes(b'\xef\xbb\xbf{"insecure-registries": ["10.0.0.5:5000"]}\n')
    r = dd("check", "--root", str(root), "--select", "DD106", "--format", "json")
    got = [f["severity"] for f in json.loads(r.stdout)["findings"] if f["id"] == "DD106"]
    assert got == ([severity] if severity else [])


def test_key_lines_are_found_in_one_pass() -> None:
    dj = parse_daemon_json('{\n  "a": 1,\n\n  "b": {"a": 2},\n "c\\u0041": 3}', "/etc/docker/daemon.json")
    assert dj.key_lines == {"a": 2, "b": 4, "cA": 5}
    big = "{\n" + ",\n".join(f'"k{i}": {i}' for i in range(100_000)) + "\n}"
    assert parse_daemon_json(big, "/d").key_lines["k99999"] == 100_001


def test_a_crashed_rule_never_reads_as_a_clean_report() -> None:
    report = Report("0", "snapshot", "x", [], [RuleResult("DD302", "x", "network", RuleStatus.CRASHED,
                                                          reason="ValueError: boom")], Severity.ERROR)
    text = render(report, color=False)
    assert "No issues found" not in text
    assert "1 rule crashed (report incomplete)" in text
    assert report.exit_code == 3


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=4),
                           max_leaves=30)
INSPECT_KEYS = st.sampled_from(["Config", "HostConfig", "State", "NetworkSettings", "Mounts", "Name", "Id",
                                "Image", "RestartCount"])


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(INSPECT_KEYS, json_values | st.dictionaries(
    st.sampled_from(["Env", "Labels", "Ports", "PortBindings", "ExposedPorts", "Binds", "RestartPolicy", "Image",
                     "Cmd", "Entrypoint", "ExitCode", "Status", "Running", "Restarting"]), json_values)))
def test_docker_inspect_of_any_json_types(data: dict) -> None:
    c = container_from_inspect(data, "docker inspect")
    assert isinstance(c.name, str) and all(isinstance(p.container_port, int) for p in c.ports)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from(list("0123456789²³٣:.*[]() tcpLISTEN\"=,users")), max_size=80),
                max_size=6))
def test_parse_ss_with_any_digits(lines: list[str]) -> None:
    for s in parse_ss("\n".join(["Netid State Recv-Q Send-Q Local Address:Port Peer Address:Port", *lines]), "ss"):
        assert isinstance(s.port, int)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_printable_leaves_no_control_character(s: str) -> None:
    out = printable(s)
    assert not re.search("[\x00-\x1f\x7f-\x9f]", out)


def _read_pty(argv: list[str], env: dict[str, str]) -> bytes:
    pid, fd = pty.fork()
    if pid == 0:  # child: the CLI on a real terminal
        os.execvpe(argv[0], argv, env)
    out = b""
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], HANG)
            if not ready:
                break
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.waitpid(pid, 0)
        os.close(fd)
    return out


@pytest.mark.parametrize("color", ["--no-color", "--color"])
def test_escapes_from_a_snapshot_never_reach_the_terminal(tmp_path: Path, color: str) -> None:
    root = hostile.escapes(tmp_path / "e")
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    out = _read_pty([*DD, "check", "--root", str(root), "-v", color], env)
    assert b"DD106" in out
    assert b"\\x1b]0;PWNED" in out  # shown, escaped
    if color == "--no-color":
        assert b"\x1b" not in out
    else:  # only the report's own SGR colours
        assert re.sub(rb"\x1b\[[0-9;]*m", b"", out).find(b"\x1b") == -1
    assert not re.search(rb"[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]|\xc2[\x80-\x9f]", out)


def test_escapes_keep_json_and_junit_well_formed(tmp_path: Path) -> None:
    root = hostile.escapes(tmp_path / "e")
    data = json.loads(dd("check", "--root", str(root), "--format", "json").stdout)
    assert any("PWNED" in e["text"] for f in data["findings"] for e in f["evidence"])
    doc = xml.dom.minidom.parseString(dd("check", "--root", str(root), "--format", "junit").stdout.encode())
    assert doc.documentElement.getAttribute("timestamp")


def test_fix_plan_escapes_file_content(tmp_path: Path) -> None:
    root = hostile.escapes(tmp_path / "e")
    r = dd("fix", "--root", str(root), "--registry", "10.0.0.5:5000", "--state-dir", str(tmp_path / "st"))
    assert "\x1b" not in r.stdout + r.stderr and "\x00" not in r.stdout


# --------------------------------------------------------------------------- truth: never ✓ what was not seen


def test_snapshot_endpoint_rules_are_not_checked_for_a_registry_nobody_saw() -> None:
    root = hostile.HOSTS / "centos7-yum-docker-healthy"
    r = dd("check", "--root", str(root), "--registry", "192.0.2.1:5000", "--select", "DD2", "--format", "json")
    rules = {x["id"]: x for x in json.loads(r.stdout)["rules"] if x["status"] != "not-selected"}
    probing = {"DD201", "DD202", "DD203", "DD204", "DD205", "DD206", "DD207", "DD208", "DD210", "DD211", "DD212"}
    assert {k for k, v in rules.items() if v["status"] == "passed"} & probing == set()
    assert "192.0.2.1:5000 was not probed" in rules["DD204"]["reason"]
    text = dd("check", "--root", str(root), "--registry", "192.0.2.1:5000", "--select", "DD2", "-v", "--no-color")
    assert "✓ DD204" not in text.stdout and "- DD204 tls-unknown-authority: not checked:" in text.stdout


def test_a_passed_endpoint_rule_says_what_it_passed_on() -> None:
    root = hostile.HOSTS / "docker-ce-http-registry-not-trusted"  # its journal names 10.0.0.5:5000
    r = dd("check", "--root", str(root), "--select", "DD204", "--format", "json")
    (rule,) = [x for x in json.loads(r.stdout)["rules"] if x["id"] == "DD204"]
    assert rule["status"] == "passed"
    assert rule["basis"] == ["10.0.0.5:5000: not probed; the docker journal names it, without this error"]
    text = dd("check", "--root", str(root), "--select", "DD204", "-v", "--no-color").stdout
    assert "✓ DD204 tls-unknown-authority\n        10.0.0.5:5000: not probed; the docker journal names it" in text


# --------------------------------------------------------------------------- ordinary mistakes: exit 2, one line


def test_collect_into_a_file_or_under_a_missing_parent_is_a_usage_error(tmp_path: Path) -> None:
    f = tmp_path / "index.json"
    f.write_text("{}")
    for target in (f, f / "x", tmp_path / "nope" / "x"):
        r = dd("collect", str(target))
        assert r.returncode == 2, r.stderr
        assert r.stderr.startswith("dockerdoctor: error: ") and r.stderr.count("\n") == 1
        assert "internal error" not in r.stderr


def test_an_unreadable_state_directory_is_a_usage_error(tmp_path: Path) -> None:
    r = dd("fix", "--list-backups", "--state-dir", str(tmp_path / ("a" * 300)))  # the OS refuses the name
    assert r.returncode == 2, r.stderr
    assert "--state-dir" in r.stderr and "internal error" not in r.stderr


def test_a_finding_reported_under_another_rule_id_goes_home_or_is_dropped() -> None:
    from dockerdoctor.engine import _rehome
    from dockerdoctor.model import Finding

    def results(dd406: RuleStatus) -> list[RuleResult]:
        f = Finding("DD406", Severity.INFO, "127.0.0.1:15000: deletes are disabled", "m")
        return [RuleResult("DD213", "e2e", "endpoint", RuleStatus.FAILED, [f]),
                RuleResult("DD406", "registry-delete", "registry", dd406)]

    unselected = results(RuleStatus.NOT_SELECTED)  # --select DD2
    _rehome(unselected)
    assert unselected[0].status == RuleStatus.PASSED and not unselected[0].findings
    assert not unselected[1].findings
    selected = results(RuleStatus.SKIPPED)
    _rehome(selected)
    assert selected[1].status == RuleStatus.FAILED and selected[1].findings[0].rule_id == "DD406"
    assert selected[1].category == "registry"  # shown under its own heading


@pytest.mark.parametrize("repo", ["UPPER/Bad", "a//b", "-x", "x/", "a b"])
def test_an_invalid_e2e_repo_is_a_usage_error_before_any_probe(repo: str) -> None:
    r = dd("check", "--root", str(hostile.HOSTS / "centos7-yum-docker-healthy"), "--e2e-repo", repo)
    assert r.returncode == 2 and "not a valid repository name" in r.stderr


def test_a_valid_e2e_repo_is_accepted() -> None:
    r = dd("check", "--root", str(hostile.HOSTS / "centos7-yum-docker-healthy"), "--e2e-repo", "team/probe-1.x__y")
    assert r.returncode in (0, 1), r.stderr


def test_the_plan_says_which_commands_apply_runs() -> None:
    from dockerdoctor.fixes.plan import shown_only
    from dockerdoctor.model import RunCommand

    assert shown_only(RunCommand(("docker", "run", "registry:2"), "or run one, with its data on a named volume"))
    assert shown_only(RunCommand(("docker", "run", "registry:2"), "on the registry host, if no registry runs"))
    assert shown_only(RunCommand(("docker", "ps", "-a")))
    assert not shown_only(RunCommand(("docker", "stop", "registry"), "stop the container"))
    r = dd("fix", "--root", str(hostile.HOSTS / "docker-ce-registry2-port-not-published"))
    cmds = [ln for ln in r.stdout.splitlines() if ln.lstrip().startswith("$ docker")]
    assert cmds and all("# [--apply runs this]" in c or "# [shown only, --apply does not run it]" in c for c in cmds)


def test_recheck_after_fix_apply_on_a_snapshot_agrees_with_the_file_it_wrote(tmp_path: Path) -> None:
    root = hostile.copy_host("centos7-docker-ce-ignores-sysconfig", tmp_path / "c")
    r = dd("fix", "--apply", "--yes", "--root", str(root), "--state-dir", str(tmp_path / "st"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "10.0.0.5:5000" in json.loads((root / "etc/docker/daemon.json").read_text())["insecure-registries"]
    data = json.loads(dd("check", "--root", str(root), "--format", "json").stdout)
    (f,) = [f for f in data["findings"] if f["id"] == "DD203"]
    assert "not in insecure-registries" not in f["message"] and "DD107" in f["message"]
    assert [op["action"] for op in f["fix"]["operations"]] == ["reload"]
    plan = dd("fix", "--root", str(root), "--state-dir", str(tmp_path / "st")).stdout
    assert "Add 10.0.0.5:5000 to insecure-registries" not in plan


# --------------------------------------------------------------------------- real tarballs


def _tarball(tmp_path: Path, extra: list) -> Path:  # type: ignore[type-arg]
    import io
    import tarfile

    src = hostile.copy_host("docker-ce-http-registry-not-trusted", tmp_path / "src")
    out = tmp_path / "host.tar.gz"
    with tarfile.open(out, "w:gz") as tar:
        tar.add(src, arcname=".")
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out


def test_a_tarball_with_absolute_links_opens_and_unsafe_members_are_named(tmp_path: Path) -> None:
    import tarfile

    outside = tmp_path / "outside"
    outside.mkdir()

    def sym(name: str, target: str) -> tuple:  # type: ignore[type-arg]
        i = tarfile.TarInfo(name)
        i.type, i.linkname = tarfile.SYMTYPE, target
        return i, None

    def reg(name: str, data: bytes) -> tuple:  # type: ignore[type-arg]
        i = tarfile.TarInfo(name)
        i.size = len(data)
        return i, data

    dev = tarfile.TarInfo("./dev/evil")
    dev.type = tarfile.CHRTYPE
    ball = _tarball(tmp_path, [
        sym("./etc/systemd/system/multi-user.target.wants/docker.service", "/lib/systemd/system/docker.service"),
        sym("./etc/localtime", "/usr/share/zoneinfo/UTC"),
        reg("../../evil1", b"x"), reg("/abs/evil2", b"x"), (dev, None),
        sym("./esc", str(outside)), reg("./esc/evil3", b"x"),
    ])
    r = dd("check", "--root", str(ball), "--no-color")
    assert r.returncode in (0, 1), r.stderr
    assert "skipped 4 unsafe members" in r.stdout
    assert not list(outside.iterdir()) and not (tmp_path.parent / "evil1").exists()
    data = json.loads(dd("check", "--root", str(ball), "--format", "json").stdout)
    assert any(f["id"] == "DD101" for f in data["findings"])  # the snapshot is read as usual


def test_a_tarball_over_the_bounds_is_refused_before_anything_is_written(tmp_path: Path, monkeypatch) -> None:
    import io
    import tarfile

    from dockerdoctor.errors import InputError
    from dockerdoctor.sources import snapshot

    out = tmp_path / "many.tar"
    with tarfile.open(out, "w") as tar:
        for n in range(60):
            tar.addfile(tarfile.TarInfo(f"etc/f{n}"), io.BytesIO(b""))
        big = tarfile.TarInfo("etc/big")
        big.size = 2048
        tar.addfile(big, io.BytesIO(b"x" * 2048))
    monkeypatch.setattr(snapshot, "MAX_MEMBERS", 50)
    with pytest.raises(InputError, match="more than 50 members"):
        snapshot.SnapshotSource(out)
    monkeypatch.setattr(snapshot, "MAX_MEMBERS", 100)
    monkeypatch.setattr(snapshot, "MAX_UNPACKED_BYTES", 1024)
    with pytest.raises(InputError, match="unpacks to more than"):
        snapshot.SnapshotSource(out)
    assert snapshot.MAX_MEMBERS <= 100_000 and snapshot.MAX_UNPACKED_BYTES <= 1024**3  # the shipped bounds


# --------------------------------------------------------------------------- UX: wrapping


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 12), st.lists(st.text(alphabet="abc /:.", min_size=0, max_size=30), max_size=20),
       st.integers(20, 120))
def test_wrap_line_fits_and_keeps_words(lead: int, words: list[str], width: int) -> None:
    from dockerdoctor.report.text import wrap_line

    line = " " * lead + " ".join(words)
    parts = wrap_line(line, width)
    for i, part in enumerate(parts):
        if len(part) > width:  # only a single word longer than the width may stick out
            assert " " not in part.strip(), part
        if i:
            assert part.startswith(" " * min(lead + 2, width // 2))
    assert " ".join(p.strip() for p in parts).split() == line.split()


def test_report_wraps_to_the_terminal_width_on_a_real_terminal() -> None:
    env = {**{k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}, "COLUMNS": "72"}
    out = _read_pty([*DD, "check", "--root", str(hostile.HOSTS / "docker-ce-http-registry-not-trusted")], env)
    lines = re.sub(rb"\x1b\[[0-9;]*m", b"", out).decode().splitlines()
    assert all(len(ln) <= 72 or " " not in ln.strip() for ln in lines), [ln for ln in lines if len(ln) > 72]
    assert any(ln.startswith("        ") and not ln.startswith("         ") for ln in lines)  # continuation indent
    piped = dd("check", "--root", str(hostile.HOSTS / "docker-ce-http-registry-not-trusted"), env=env).stdout
    assert max(len(ln) for ln in piped.splitlines()) > 72  # a pipe gets whole lines


def test_debug_is_accepted_after_the_subcommand_too() -> None:
    from dockerdoctor.cli import _debug_anywhere

    assert _debug_anywhere(["collect", "--debug", "X"]) == ["--debug", "collect", "X"]
    assert _debug_anywhere(["--debug", "check"]) == ["--debug", "check"]
    assert _debug_anywhere(["explain", "--", "--debug"]) == ["explain", "--", "--debug"]
    r = dd("check", "--root", str(hostile.HOSTS / "centos7-yum-docker-healthy"), "--select", "DD101", "--debug")
    assert r.returncode == 0, r.stderr


def test_v_says_why_a_trusted_registry_passes() -> None:
    loop = dd("check", "--root", str(hostile.HOSTS / "centos7-yum-docker-healthy"), "--registry", "127.0.0.1:5000",
              "--select", "DD204", "-v", "--no-color").stdout
    assert "✓ DD204 tls-unknown-authority\n        127.0.0.1:5000: dockerd treats 127.0.0.0/8 as insecure" in loop
    flag = dd("check", "--root", str(hostile.HOSTS / "docker-ce-insecure-registry-flag-and-daemon-json"),
              "--select", "DD204", "-v", "--no-color").stdout
    assert re.search(r"10\.0\.0\.5:5000 trusted via insecure-registries \(10\.0\.0\.5:5000\) at \S+:\d+", flag)


def test_an_empty_snapshot_passes_nothing_it_could_not_look_at(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    data = json.loads(dd("check", "--root", str(tmp_path), "--registry", "10.0.0.5:5000", "--format", "json").stdout)
    passed = {r["id"] for r in data["rules"] if r["status"] == "passed"}
    assert passed == set(), passed  # every rule, table-driven: tests/rules/test_pass_on_nothing.py


def test_e2e_without_a_registry_says_it_pushed_nothing(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    r = dd("check", "--root", str(tmp_path), "--e2e", "--no-color")
    assert "--e2e ran no test push: no registry is named" in r.stdout
