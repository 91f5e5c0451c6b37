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
