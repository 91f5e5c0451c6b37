"""DD304, DD305 and DD306 (SELinux part) from captured text: SELinux cannot run here (lab.md §8)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from dockerdoctor.engine import run_rules
from dockerdoctor.facts import CheckOptions, Facts
from dockerdoctor.facts.selinux import AuditLog, FileLabel, SelinuxLabels, parse_avc
from dockerdoctor.model import RuleStatus
from dockerdoctor.sources.snapshot import SnapshotSource

HOSTS = Path(__file__).resolve().parents[2] / "fixtures" / "hosts"
IDS = ("DD304", "DD305", "DD306")
UNLABELED = "centos7-registry-selinux-bind-mount-unlabeled"


def check(name: str, **seed) -> dict:
    facts = Facts(SnapshotSource(HOSTS / name), CheckOptions(network=False))
    facts._values.update(seed)
    out = {}
    for r in run_rules(facts, set(IDS)):
        if r.rule_id in IDS:
            assert r.status != RuleStatus.CRASHED, r.reason
            out[r.rule_id] = (r.status, r.findings)
    return out


def test_unlabeled_bind_mount_fires_304_and_305_with_least_privilege_fixes() -> None:
    res = check(UNLABELED)
    (f304,) = res["DD304"][1]
    assert f304.params["source"] == "/srv/registry"
    run = [op for op in f304.fix.operations if "run" in op.argv][0].shell()
    assert "-v /srv/registry:/var/lib/registry:Z" in run
    alt = [op.shell() for op in f304.fix.alternatives[0].operations]
    assert alt == ["semanage fcontext -a -t container_file_t '/srv/registry(/.*)?'", "restorecon -Rv /srv/registry"]
    (f305,) = res["DD305"][1]
    assert f305.params["count"] == 3 and f305.params["tcontext_type"] == "default_t"
    every = " ".join(op.shell() for f in (f304, f305) for op in f.fix.operations)
    assert "setenforce" not in every
    assert res["DD306"][1] == []


def test_healthy_z_mount_is_silent() -> None:
    res = check("centos7-registry-host-healthy")
    assert res["DD304"][1] == [] and res["DD305"][1] == [] and res["DD306"][1] == []


def test_container_file_t_label_from_ls_z_is_enough() -> None:
    labels = SelinuxLabels({"/srv/registry": FileLabel("/srv/registry", "system_u:object_r:container_file_t:s0",
                                                       "ls -dZ")})
    res = check(UNLABELED, selinux_labels=labels, avc_denials=AuditLog("audit.log", []))
    assert res["DD304"][1] == []
    labels = SelinuxLabels({"/srv/registry": FileLabel("/srv/registry", "unconfined_u:object_r:default_t:s0",
                                                       "ls -dZ")})
    (f,) = check(UNLABELED, selinux_labels=labels, avc_denials=AuditLog("audit.log", []))["DD304"][1]
    assert f.params["label"].endswith("default_t:s0")


def test_permissive_denials_are_warnings_and_306_reports_permissive() -> None:
    text = (HOSTS / UNLABELED / "var/log/audit/audit.log").read_text().replace("permissive=0", "permissive=1")
    facts = Facts(SnapshotSource(HOSTS / UNLABELED), CheckOptions())
    st = dataclasses.replace(facts.get("selinux_status"), mode="permissive")
    res = check(UNLABELED, avc_denials=AuditLog("audit.log", parse_avc(text)), selinux_status=st)
    assert res["DD304"][0] == RuleStatus.SKIPPED
    (f305,) = res["DD305"][1]
    assert f305.severity.label == "warning" and "permissive" in f305.message
    (f306,) = res["DD306"][1]
    assert f306.severity.label == "info" and f306.params["mode"] == "permissive"


def test_docker_without_selinux_enabled_skips_304() -> None:
    facts = Facts(SnapshotSource(HOSTS / UNLABELED), CheckOptions())
    st = dataclasses.replace(facts.get("selinux_status"), docker_selinux=False)
    assert check(UNLABELED, selinux_status=st)["DD304"][0] == RuleStatus.SKIPPED
