"""DD401 through `fix --apply`: a registry container crash-looping on the gunicorn
_setup_database.lock traceback is recreated with GUNICORN_OPTS=[--preload]; it runs, and everything
else in its configuration (restart policy, mounts, labels, network, command) is unchanged."""

from __future__ import annotations

import json

import lab
import pytest

pytestmark = pytest.mark.real("nsenter", "unshare")


def _inspect(h, name: str) -> dict | None:  # type: ignore[no-untyped-def]
    r = h.d.docker("inspect", name)
    return json.loads(r.stdout)[0] if r.returncode == 0 else None


def test_lock_crash_container_is_recreated_with_preload(lab_host) -> None:
    h = lab_host(daemon_json={})
    assert h.start().returncode == 0
    lab.import_busybox(h.d)
    data = h.dir / "data"
    data.mkdir()
    crash = h.dir / "crash.sh"
    crash.write_text(lab.LOCK_CRASH_SH)
    name = "ddfix-registry"
    h.d.docker(
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "none",
        "--restart=on-failure:3",
        "-e",
        "SETTINGS_FLAVOR=local",
        "-e",
        "STORAGE_PATH=/registry",
        "--label",
        "owner=ddfix",
        "-v",
        f"{data}:/registry",
        "-v",
        f"{crash}:/crash.sh:ro",
        "lab/busybox:1",
        "sh",
        "/crash.sh",
        check=True,
    )
    assert lab.wait_for(
        lambda: (s := _inspect(h, name)) and s["State"]["Status"] == "exited" and s["RestartCount"] == 3, 60
    )
    before = _inspect(h, name)
    assert before is not None
    r = h.dockerdoctor("fix", "--apply", "--yes", "--only", "DD401")
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    assert "ran docker run -d --name ddfix-registry" in r.stdout and "Verified: DD401 pass" in r.stdout
    st = _inspect(h, name)
    assert st is not None and st["State"]["Status"] == "running"
    assert st["Id"] != before["Id"]
    assert "GUNICORN_OPTS=[--preload]" in st["Config"]["Env"]
    assert sorted(e for e in st["Config"]["Env"] if not e.startswith("GUNICORN_OPTS=")) == sorted(
        before["Config"]["Env"]
    )
    for key in ("Image", "Cmd", "Labels"):
        assert st["Config"][key] == before["Config"][key], key
    for key in ("RestartPolicy", "NetworkMode"):
        assert st["HostConfig"][key] == before["HostConfig"][key], key
    assert sorted(st["HostConfig"]["Binds"]) == sorted(before["HostConfig"]["Binds"])  # docker keeps no order
    assert _inspect(h, f"{name}-before-dockerdoctor") is None  # the old one is removed once the new one runs
    again = h.dockerdoctor("fix", "--apply", "--yes", "--only", "DD401")
    assert again.returncode == 0 and "ran docker" not in again.stdout, again.stdout
    h.d.docker("rm", "-f", name)
