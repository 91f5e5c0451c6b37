"""`dockerdoctor report`: real `check --format json` reports of fixture hosts merged into a fleet view."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import pytest
from fleetkit import FIXTURES, REPO, dd

SCHEMA = json.loads((REPO / "docs" / "fleet-report-schema.json").read_text())
UNTRUSTED = "docker-ce-http-registry-not-trusted"  # DD101 + DD203 for 10.0.0.5:5000
SYSCONFIG = "centos7-docker-ce-ignores-sysconfig"  # DD101, DD102 (error + warning), DD203
HEALTHY = "debian12-docker.io-default-docker-opts-healthy"


def check_json(fixture: str, dest: Path, host: str | None = None, generated: str | None = None) -> dict:
    args = json.loads((FIXTURES / fixture / "expected.json").read_text()).get("args", [])
    r = dd("check", "--root", str(FIXTURES / fixture), "--format", "json", *args)
    assert r.returncode in (0, 1), r.stderr
    data = json.loads(r.stdout)
    if host is not None:
        data["host"]["name"] = host
    if generated is not None:
        data["generated"] = generated
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(data))
    return data


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("fleet")
    check_json(UNTRUSTED, d / "web1.json", host="web1")
    check_json(UNTRUSTED, d / "sub" / "web2.json", host="web2")
    check_json(SYSCONFIG, d / "build1.json", host="build1")
    check_json(HEALTHY, d / "db1.json", host="db1")
    # an Ansible tree file (`ansible -t`): the module's result, named by inventory host
    report = check_json(HEALTHY, d / "tmp.json", host="ignored-name")
    (d / "tmp.json").unlink()
    (d / "ansible").mkdir()
    (d / "ansible" / "app7.json").write_text(json.dumps({"changed": False, "ansible_facts": {"dockerdoctor": report}}))
    (d / "ansible" / "app8.json").write_text(json.dumps(
        {"unreachable": True, "changed": False, "msg": "Failed to connect to the host via ssh: Connection timed out"}))
    (d / "notes.json").write_text(json.dumps({"some": "other json"}))
    return d


def fleet_json(*paths: Path, fail_on: str = "never") -> dict:
    r = dd("report", *map(str, paths), "--format", "json", "--fail-on", fail_on)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    jsonschema.validate(data, SCHEMA)
    return data


def test_merge_per_finding_per_cause_per_registry_and_unchecked(fleet_dir: Path) -> None:
    data = fleet_json(fleet_dir)
    s = data["summary"]
    assert s == {"hosts": 6, "hosts_ok": 2, "hosts_with_errors": 3, "hosts_with_warnings": 0, "hosts_with_info": 0,
                 "hosts_unchecked": 1, "findings": s["findings"], "root_causes": 3}
    hosts = {h["name"]: h for h in data["hosts"]}
    assert set(hosts) == {"web1", "web2", "build1", "db1", "app7", "app8"}
    assert hosts["app7"]["via"] == "ansible" and hosts["app7"]["status"] == "ok"
    assert hosts["app8"]["status"] == "unchecked" and "Connection timed out" in hosts["app8"]["reason"]
    assert hosts["build1"]["findings"] == ["DD101", "DD102", "DD203"]
    by_key = {(f["id"], f["severity"]): f for f in data["findings"]}
    assert by_key[("DD101", "error")]["hosts"] == ["build1", "web1", "web2"]
    assert by_key[("DD101", "error")]["registry"] == "10.0.0.5:5000"
    assert by_key[("DD102", "warning")]["hosts"] == ["build1"]
    causes = {c["id"]: c for c in data["root_causes"]}
    assert causes["DD101"]["hosts"] == 3 and causes["DD101"]["title"] == "The daemon does not trust the registry"
    assert causes["DD102"] == {**causes["DD102"], "hosts": 1, "findings": 2, "severity": "error"}
    assert [c["id"] for c in data["root_causes"]][:2] == ["DD101", "DD203"]  # worst, then most hosts
    reg = {r["registry"]: r for r in data["registries"]}["10.0.0.5:5000"]
    assert reg["hosts_with_errors"] == ["build1", "web1", "web2"]
    assert {h["name"]: h["status"] for h in reg["hosts"]}["web1"] == "error"
    assert data["unchecked"] == [{"name": "app8", "source": str(fleet_dir / "ansible" / "app8.json"),
                                  "reason": hosts["app8"]["reason"]}]
    assert data["ignored_inputs"] == [{"source": str(fleet_dir / "notes.json"), "reason": "not a dockerdoctor report"}]


def test_exit_codes(fleet_dir: Path, tmp_path: Path) -> None:
    assert dd("report", str(fleet_dir)).returncode == 1  # errors and an unchecked host
    assert dd("report", str(fleet_dir), "--fail-on", "never").returncode == 0
    assert dd("report", str(fleet_dir / "db1.json"), str(fleet_dir / "ansible" / "app7.json")).returncode == 0
    missing = dd("report", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "no such file or directory" in missing.stderr
    (tmp_path / "x.json").write_text("{}")
    none = dd("report", str(tmp_path))
    assert none.returncode == 2 and none.stderr.count("\n") == 1 and "no host report" in none.stderr


def test_same_host_twice_the_newer_report_wins(tmp_path: Path) -> None:
    check_json(UNTRUSTED, tmp_path / "a" / "old.json", host="web1", generated="2026-01-01T00:00:00Z")
    check_json(HEALTHY, tmp_path / "b" / "new.json", host="web1", generated="2026-02-01T00:00:00Z")
    data = fleet_json(tmp_path)
    assert [(h["name"], h["status"]) for h in data["hosts"]] == [("web1", "ok")]
    assert data["ignored_inputs"][0]["reason"].startswith(f"superseded by {tmp_path / 'b' / 'new.json'}")


def test_a_host_whose_rules_all_skipped_could_not_be_checked(tmp_path: Path) -> None:
    data = check_json(HEALTHY, tmp_path / "h.json", host="blind")
    for r in data["rules"]:
        r["status"], r["reason"] = "skipped", "docker info is not available"
    data["findings"] = []
    (tmp_path / "h.json").write_text(json.dumps(data))
    fleet = fleet_json(tmp_path)
    assert fleet["unchecked"][0]["reason"] == "every rule was skipped (docker info is not available)"


def test_hostile_inputs_one_clean_line_each_in_bounded_time(tmp_path: Path) -> None:
    data = check_json(UNTRUSTED, tmp_path / "evil.json", host="\x1b[2J\x1b]0;pwned\x07<img src=x onerror=alert(1)>")
    data["findings"][0]["title"] = "\x1b[31mred</td><script>alert(1)</script>"
    (tmp_path / "evil.json").write_text(json.dumps(data))
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with open(tmp_path / "huge.json", "wb") as fh:
        fh.truncate(33 * 1024 * 1024)  # sparse: over the 32 MiB bound without writing it
    (tmp_path / "wrongtypes.json").write_text(json.dumps({**data, "findings": [1, "x", {"severity": 7}]}))
    r = dd("report", str(tmp_path), "--fail-on", "never", timeout=30)
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout
    assert "deep: not JSON" in r.stdout and "huge" in r.stdout and "larger than 32 MiB" in r.stdout
    html = dd("report", str(tmp_path), "--format", "html", "--fail-on", "never").stdout
    assert "<script>alert(1)</script>" not in html and "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.csp = ""
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        a = dict(attrs)
        for k in ("src", "href", "action", "srcset", "data"):
            if a.get(k):
                self.refs.append((tag, k, a[k] or ""))
        if tag == "meta" and (a.get("http-equiv") or "").lower() == "content-security-policy":
            self.csp = a.get("content") or ""


def test_html_is_self_contained(fleet_dir: Path) -> None:
    out = dd("report", str(fleet_dir), "--format", "html", "--fail-on", "never").stdout
    p = _Refs()
    p.feed(out)
    assert p.refs == [], "the page must not load anything"
    assert "default-src 'none'" in p.csp
    assert {"table", "script", "style"} <= p.tags and "link" not in p.tags
    assert "@import" not in out and "url(" not in out


def test_text_wraps_to_the_terminal(fleet_dir: Path) -> None:
    import os

    env_cols = {"COLUMNS": "60"}
    r = dd("report", str(fleet_dir), "--fail-on", "never", env={**os.environ, **env_cols, "NO_COLOR": "1"})
    long = [ln for ln in r.stdout.splitlines() if len(ln) > 60 and " " in ln.strip()]
    assert not long, long
    assert "Root causes" in r.stdout and "Could not be checked" in r.stdout
    assert "  ? app8: unreachable: Failed to connect" in r.stdout
