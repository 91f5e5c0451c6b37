"""Fuzzing every parser: random text, truncated real files, binary garbage and a huge journal.
The result is a finding or a skip reason, never a traceback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from dockerdoctor.rules.daemon_json import repair_json
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockerdoctor.engine import run_rules
from dockerdoctor.facts import CheckOptions, Facts, HostPort
from dockerdoctor.facts.daemon import check_insecure_entry, parse_daemon_json, parse_docker_info_text
from dockerdoctor.facts.dockerd_cli import parse_dockerd_argv
from dockerdoctor.facts.systemd import expand_exec, merge_unit, parse_env_file, parse_systemctl_show
from dockerdoctor.model import RuleStatus
from dockerdoctor.net import no_proxy_match
from dockerdoctor.sources.snapshot import SnapshotSource

HOSTS = Path(__file__).resolve().parent.parent / "fixtures" / "hosts"
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=2000)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(text)
def test_env_file_parser(s: str) -> None:
    env = parse_env_file(s, "/etc/sysconfig/docker")
    for a in env.assignments:
        assert a.line >= 1


@FUZZ
@given(text, text)
def test_unit_merge_and_expansion(a: str, b: str) -> None:
    unit = merge_unit("docker.service", [("/u", a), ("/d.conf", b)])
    env = parse_env_file(b, "/e").as_dict()
    for line in unit.exec_start:
        expand_exec(line, env)


@FUZZ
@given(text)
def test_daemon_json_and_repair(s: str) -> None:
    dj = parse_daemon_json(s, "/etc/docker/daemon.json")
    assert (dj.data is None) == (dj.error is not None)
    repaired = repair_json(s)
    if repaired is not None:
        assert isinstance(json.loads(repaired), dict)


@FUZZ
@given(text)
def test_command_outputs(s: str) -> None:
    parse_docker_info_text(s, "docker info")
    parse_systemctl_show(s)


@FUZZ
@given(st.lists(text, max_size=12))
def test_dockerd_argv(argv: list[str]) -> None:
    parsed = parse_dockerd_argv(["dockerd", *argv])
    for v in parsed.values("insecure-registry"):
        if v.value is not None:
            check_insecure_entry(v.value)


@FUZZ
@given(text, text, st.integers(min_value=0, max_value=70000))
def test_addresses(a: str, b: str, port: int) -> None:
    try:
        HostPort.parse(a)
    except ValueError:
        pass
    no_proxy_match(a, b, port)
    check_insecure_entry(a)


def _run(root: Path) -> list:
    src = SnapshotSource(root)
    try:
        results = run_rules(Facts(src, CheckOptions(registries=[HostPort("10.0.0.5", 5000)], network=False)))
    finally:
        src.close()
    crashed = [(r.rule_id, r.reason) for r in results if r.status == RuleStatus.CRASHED]
    assert not crashed, crashed
    return results


FILES = ["etc/docker/daemon.json", "etc/sysconfig/docker", "etc/default/docker",
         "usr/lib/systemd/system/docker.service", "etc/systemd/system/docker.service.d/10.conf",
         "sos_commands/process/ps_auxwww", "sos_commands/docker/docker_info",
         "sos_commands/systemd/systemctl_show_service_--all", "sos_commands/docker/journalctl_--no-pager_--unit_docker",
         "etc/containers/registries.conf"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(FILES), st.binary(max_size=3000), min_size=1))
def test_random_bytes_snapshot(tmp_path_factory, files: dict[str, bytes]) -> None:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "etc").mkdir(exist_ok=True)
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    _run(root)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(sorted(p.name for p in HOSTS.iterdir() if (p / "expected.json").exists()) or ["none"]),
       st.floats(min_value=0.0, max_value=1.0))
def test_truncated_real_files(tmp_path_factory, scenario: str, frac: float) -> None:
    src = HOSTS / scenario
    if not src.exists():
        return
    root = tmp_path_factory.mktemp("trunc") / scenario
    shutil.copytree(src, root, symlinks=True)
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink() and p.name != "expected.json":
            data = p.read_bytes()
            p.write_bytes(data[: int(len(data) * frac)])
    _run(root)


def test_huge_journal_is_read_in_bounded_memory(tmp_path: Path) -> None:
    root = tmp_path / "big"
    journal = root / "sos_commands/docker/journalctl_--no-pager_--unit_docker"
    journal.parent.mkdir(parents=True)
    (root / "etc").mkdir()
    line = (b"Mar 04 09:12:01 host dockerd[812]: time=\"2024-03-04T09:12:01Z\" level=info "
            b"msg=\"Attempting next endpoint for push after error: Get \\\"https://10.0.0.5:5000/v2/\\\": "
            b"http: server gave HTTP response to HTTPS client\"\n")
    block = line * (1024 * 1024 // len(line) + 1)
    with open(journal, "wb") as fh:
        for _ in range(200):
            fh.write(block)
    assert journal.stat().st_size > 200 * 1024 * 1024
    # Run the CLI in a fresh interpreter that reports its own peak RSS.
    code = (
        "import sys\n"
        "from dockerdoctor.__main__ import main\n"
        "sys.argv = ['dockerdoctor', 'check', '--root', sys.argv[1], '--format', 'json', '-o', sys.argv[2]]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    rc = e.code\n"
        # VmHWM is this process's own peak; ru_maxrss would include the forked pytest parent's pages
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]\n"
        "print(rc, hwm)\n"
    )
    report = tmp_path / "r.json"
    out = subprocess.run([sys.executable, "-c", code, str(root), str(report)], capture_output=True, text=True,
                         timeout=120)
    rc, peak_kib = (int(x) for x in out.stdout.split())
    assert rc in (0, 1), out.stderr
    data = json.loads(report.read_text())
    assert "10.0.0.5:5000" in data["registries"]  # found from the journal's tail
    # 200 MB on disk; the process stays far below it (the tail read is 8 MiB).
    assert peak_kib < 150 * 1024, f"peak RSS {peak_kib} KiB"


# --------------------------------------------------------------------------- whole engine, every format

MUTATIONS = st.sampled_from(["truncate", "garbage", "controls", "deep", "digits", "repeat", "bom"])
FIXTURE_HOSTS = sorted(p.name for p in HOSTS.iterdir() if p.is_dir())


def _mutate(data: bytes, how: str, frac: float, junk: bytes) -> bytes:
    cut = int(len(data) * frac)
    if how == "truncate":
        return data[:cut]
    if how == "garbage":
        return data[:cut] + junk + data[cut:]
    if how == "controls":
        return data[:cut] + b"\x1b]0;T\x07\x1b[2K\x00\x01\xc2\x9b" + data[cut:]
    if how == "deep":
        return data[:cut] + b"[" * 5000 + b"{" * 5000 + data[cut:]
    if how == "digits":
        return data.replace(b"5000", "\u00b2\u0663".encode())
    if how == "repeat":
        line = data[:cut].rsplit(b"\n", 1)[-1][:200] or b"x"
        return data + line * (200_000 // len(line))
    return b"\xef\xbb\xbf" + data


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(st.sampled_from(FIXTURE_HOSTS), st.lists(st.tuples(st.integers(0, 10_000), MUTATIONS,
                                                          st.floats(0, 1), st.binary(max_size=64)),
                                                min_size=1, max_size=4))
def test_mutated_fixture_snapshots_through_every_format(tmp_path_factory, host: str, muts: list) -> None:
    """The whole engine over a fixture with a few files mutated: no exit 3, no CRASHED rule, no raw
    control byte in the text report, JSON and JUnit that parse, and a bounded time per snapshot."""
    import time
    import xml.dom.minidom

    from dockerdoctor.model import Severity
    from dockerdoctor.report import Report, jsonreport, junit
    from dockerdoctor.report import text as textreport

    root = tmp_path_factory.mktemp("mut") / host
    shutil.copytree(HOSTS / host, root, symlinks=True)
    (root / "expected.json").unlink(missing_ok=True)
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    for pick, how, frac, junk in muts:
        if files:
            f = files[pick % len(files)]
            f.write_bytes(_mutate(f.read_bytes(), how, frac, junk))
    start = time.perf_counter()
    src = SnapshotSource(root)
    try:
        results = run_rules(Facts(src, CheckOptions(network=False)))
    finally:
        src.close()
    seconds = time.perf_counter() - start
    crashed = [(r.rule_id, r.reason) for r in results if r.status == RuleStatus.CRASHED]
    assert not crashed, crashed
    report = Report("0", "snapshot", str(root), [], results, Severity.ERROR, generated="2026-12-02T00:00:00Z")
    assert report.exit_code in (0, 1)
    out = textreport.render(report, verbose=True, color=False)
    assert not [c for c in out if (ord(c) < 32 and c != "\n") or 0x7f <= ord(c) <= 0x9f], out[:2000]
    json.loads(jsonreport.render(report))
    xml.dom.minidom.parseString(junit.render(report).encode())
    # a hang guard, not a speed target (bench/ holds those): the quadratic parsers took minutes
    assert seconds < 30, f"{host}: {seconds:.1f} s"
