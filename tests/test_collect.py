"""`collect` writes a snapshot that `check --root` reads; private keys are never copied."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dockerdoctor import collect as collect_mod


def test_collect_then_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A fake host: point the collector at files under tmp_path.
    host = tmp_path / "host"
    (host / "etc/docker/certs.d/10.0.0.5:5000").mkdir(parents=True)
    (host / "etc/docker/certs.d/10.0.0.5:5000/ca.crt").write_text("CERT")
    (host / "etc/docker/certs.d/10.0.0.5:5000/client.key").write_text("SECRET KEY")
    (host / "etc/docker/daemon.json").write_text('{"insecure-registry": ["10.0.0.5:5000"]}')
    monkeypatch.setattr(collect_mod, "FILES", [str(host / "etc/docker/daemon.json")])
    monkeypatch.setattr(collect_mod, "DIRS", [str(host / "etc/docker/certs.d")])
    monkeypatch.setattr(collect_mod, "UNIT_DIRS", [])
    out = tmp_path / "snap"
    manifest = collect_mod.collect(out)
    copied = out / str(host).lstrip("/") / "etc/docker/certs.d/10.0.0.5:5000"
    assert (copied / "ca.crt").read_text() == "CERT"
    assert "SECRET" not in (copied / "client.key").read_text()
    assert any(m.startswith("redacted") for m in manifest)
    assert (out / "dockerdoctor-collect.txt").exists()
    from dockerdoctor.errors import InputError

    with pytest.raises(InputError, match="not empty"):
        collect_mod.collect(out)  # refuses a non-empty directory


def test_collect_live_host_is_checkable(tmp_path: Path) -> None:
    out = tmp_path / "live-snap"
    r = subprocess.run([sys.executable, "-m", "dockerdoctor", "collect", str(out), "--tar"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (out / "sos_commands/process/ps_auxwww").exists()
    tarball = tmp_path / "live-snap.tar.xz"
    assert tarball.exists()
    c = subprocess.run([sys.executable, "-m", "dockerdoctor", "check", "--root", str(tarball), "--format", "json"],
                       capture_output=True, text=True, timeout=120)
    assert c.returncode in (0, 1), c.stderr + c.stdout[-2000:]
    data = json.loads(c.stdout)
    assert data["target"]["kind"] == "snapshot"
