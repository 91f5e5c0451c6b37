"""No rule passes on nothing (issue 13, "a rule that could not look is skipped with its reason, never passed").

Every rule, table-driven:
* an empty snapshot (a bare `etc/`), with and without a registry named: each rule is skipped with a reason,
  or reports a finding; none "passed";
* a fact store that holds nothing at all (`Facts.from_values()`), the same;
* a full fixture with only the facts one rule reads made unavailable: that rule is skipped, and says why.

A rule that passes here must be listed in LOOKED with what it rested on: a verdict on seen facts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dockerdoctor.engine import discover, run_rules
from dockerdoctor.errors import FactUnavailable
from dockerdoctor.facts import CheckOptions, Facts, HostPort
from dockerdoctor.model import RuleStatus
from dockerdoctor.sources.snapshot import SnapshotSource

HOSTS = Path(__file__).resolve().parents[2] / "fixtures" / "hosts"
RULES = sorted(discover())
REGISTRY = "10.0.0.5:5000"

# Rules allowed to pass on an empty source, each with the fact it looked at. (None today.)
LOOKED: dict[str, str] = {}

# Fixtures on which most rules run (docker, registry host, firewalld, SELinux, containerd, podman).
FULL = ["centos7-docker-ce-ignores-sysconfig", "centos7-registry-host-selinux-and-firewalld-off",
        "debian12-docker-registry-nftables-drops-5000"]


def _options(with_registry: bool) -> CheckOptions:
    return CheckOptions(network=False, registries=[HostPort.parse(REGISTRY)] if with_registry else [])


def _by_id(facts: Facts, select: set[str] | None = None) -> dict[str, object]:
    try:
        return {r.rule_id: r for r in run_rules(facts, select)}
    finally:
        facts.source.close()


@pytest.fixture(scope="module")
def empty_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("empty")
    (root / "etc").mkdir()
    return root


@pytest.fixture(scope="module", params=[False, True], ids=["no-registry", "registry"])
def on_empty_snapshot(request: pytest.FixtureRequest, empty_snapshot: Path) -> dict[str, object]:
    return _by_id(Facts(SnapshotSource(empty_snapshot), _options(request.param)))


@pytest.fixture(scope="module", params=[False, True], ids=["no-registry", "registry"])
def on_nothing(request: pytest.FixtureRequest) -> dict[str, object]:
    return _by_id(Facts.from_values(options=_options(request.param)))


def _verdict_on_nothing(r) -> None:  # type: ignore[no-untyped-def]
    assert r.status != RuleStatus.CRASHED, f"{r.rule_id} crashed: {r.reason}"
    if r.status == RuleStatus.PASSED:
        assert r.rule_id in LOOKED, f"{r.rule_id} passed on a source that holds nothing (basis: {r.basis})"
    if r.status == RuleStatus.SKIPPED:
        assert r.reason.strip(), f"{r.rule_id} skipped without a reason"


@pytest.mark.parametrize("rule_id", RULES)
def test_no_rule_passes_on_an_empty_snapshot(on_empty_snapshot: dict, rule_id: str) -> None:
    _verdict_on_nothing(on_empty_snapshot[rule_id])


@pytest.mark.parametrize("rule_id", RULES)
def test_no_rule_passes_on_a_store_that_holds_nothing(on_nothing: dict, rule_id: str) -> None:
    _verdict_on_nothing(on_nothing[rule_id])


@pytest.mark.parametrize("rule_id", RULES)
def test_a_finding_on_nothing_names_what_it_saw(on_empty_snapshot: dict, rule_id: str) -> None:
    """A rule that reports on an empty snapshot must rest on evidence, not on the absence of a file list."""
    r = on_empty_snapshot[rule_id]
    for f in r.findings:
        assert f.evidence, f"{rule_id}: {f.title} has no evidence"
        for e in f.evidence:
            assert "process list" not in e.text, f"{rule_id} quotes a process list the snapshot does not have"


# A minimal snapshot: an empty daemon.json and nothing else. A rule may pass only on what that file shows.
MINIMAL_LOOKED = {
    "DD105": "daemon.json lists no malformed insecure registry",
    "DD106": "daemon.json parses and has no unknown or mistyped key",
    "DD110": "daemon.json configures no proxy",
    "DD209": "/etc/docker was collected and has no certs.d to misplace",
}


@pytest.mark.parametrize("with_registry", [False, True], ids=["no-registry", "registry"])
def test_a_minimal_snapshot_passes_only_what_its_one_file_shows(tmp_path: Path, with_registry: bool) -> None:
    (tmp_path / "etc/docker").mkdir(parents=True)
    (tmp_path / "etc/docker/daemon.json").write_text("{}\n")
    results = _by_id(Facts(SnapshotSource(tmp_path), _options(with_registry)))
    passed = {rid for rid, r in results.items() if r.status == RuleStatus.PASSED}
    assert passed <= set(MINIMAL_LOOKED), passed - set(MINIMAL_LOOKED)
    for r in results.values():
        if r.rule_id not in MINIMAL_LOOKED:
            _verdict_on_nothing(r)
    assert results["DD501"].status == RuleStatus.SKIPPED and "no process list" in results["DD501"].reason
    if with_registry:
        assert results["DD101"].status == RuleStatus.SKIPPED and REGISTRY in results["DD101"].reason


@pytest.mark.parametrize("host", FULL)
@pytest.mark.parametrize("rule_id", RULES)
def test_a_rule_without_its_facts_is_skipped_with_a_reason(host: str, rule_id: str) -> None:
    spec = discover()[rule_id]
    names = spec.required + spec.optional
    facts = Facts(SnapshotSource(HOSTS / host), _options(True))
    facts._errors.update({n: FactUnavailable(f"test: no {n}") for n in names})
    r = _by_id(facts, {rule_id})[rule_id]
    assert r.status == RuleStatus.SKIPPED, f"{rule_id} on {host} without {names}: {r.status.value} {r.findings}"
    assert r.reason.strip()
