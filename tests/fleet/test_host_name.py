"""Every JSON report names its host (fleet reports group by it) and when it was made."""

from __future__ import annotations

import json
import socket
import tarfile
from pathlib import Path

import jsonschema
from fleetkit import FIXTURES, REPO, dd

from dockerdoctor.report.host import clean_name

SNAP = FIXTURES / "docker-ce-http-registry-not-trusted"


def _snapshot(tmp_path: Path, hostname: bytes) -> Path:
    root = tmp_path / "snap"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_bytes(hostname)
    (root / "etc" / "os-release").write_text('ID=debian\n')
    return root


def test_snapshot_name_comes_from_etc_hostname_also_in_a_tarball(tmp_path: Path) -> None:
    root = _snapshot(tmp_path, b"build07.example.com\n")
    tar = tmp_path / "snap.tar.gz"
    with tarfile.open(tar, "w:gz") as t:
        t.add(root, arcname="snap")
    schema = json.loads((REPO / "docs" / "report-schema.json").read_text())
    for target in (root, tar):
        data = json.loads(dd("check", "--root", str(target), "--format", "json").stdout)
        assert data["host"] == {"name": "build07.example.com"}
        assert data["generated"].endswith("Z") and data["generated"][:2] == "20"
        jsonschema.validate(data, schema)


def test_hostile_name_loses_its_escapes_and_length(tmp_path: Path) -> None:
    root = _snapshot(tmp_path, b"\x1b[31mevil\x07" + b"x" * 400 + b"\nsecond line\n")
    name = json.loads(dd("check", "--root", str(root), "--format", "json").stdout)["host"]["name"]
    assert name == ("[31mevil" + "x" * 400)[:253] and name.isprintable()
    assert clean_name("# comment\n\n  web01 \n") == "web01"


def test_snapshot_without_a_name_says_so_and_live_uses_the_uts_name() -> None:
    assert json.loads(dd("check", "--root", str(SNAP), "--format", "json").stdout)["host"]["name"] == ""
    from dockerdoctor.report.host import host_name
    from dockerdoctor.sources.live import LiveSource

    assert host_name(LiveSource()) == socket.gethostname()
