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


def test_collect_never_writes_through_a_link_and_stores_what_links_point_to(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import tarfile

    from dockerdoctor.sources.base import resolve_in_root

    host = tmp_path / "host"
    (host / "etc").mkdir(parents=True)
    (host / "usr/lib").mkdir(parents=True)
    (host / "usr/lib/os-release").write_text('ID=debian\n')
    (host / "etc/os-release").symlink_to("../usr/lib/os-release")  # relative, as on Debian
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    (host / "etc/evil").symlink_to(victim)  # absolute, out of the host tree
    specs = [collect_mod.CollectSpec("file", str(host / "etc/os-release")),
             collect_mod.CollectSpec("file", str(host / "etc/evil")),
             # a later step whose output lands where the copied link is
             collect_mod.CollectSpec("command", str(host / "etc/evil").lstrip("/"), ("echo", "OVERWRITTEN"))]
    monkeypatch.setattr(collect_mod, "collect_specs", lambda: specs)
    out = tmp_path / "snap"
    manifest = collect_mod.collect(out)
    assert victim.read_text() == "untouched\n"
    assert any(m.startswith("error echo") for m in manifest)
    assert (out / str(host / "usr/lib/os-release").lstrip("/")).read_text() == "ID=debian\n"
    with tarfile.open(collect_mod.pack(out)) as t:
        names = t.getnames()
    assert any(n.endswith("usr/lib/os-release") for n in names)
    stack = resolve_in_root(str(out), str(host / "etc/os-release"))  # as the snapshot reader resolves it
    assert stack is not None and Path(out, *stack).read_text() == "ID=debian\n"
