"""DD301 through the apply engine: firewalld (real, in the registry namespace, on a private bus)
rejects the registry port; `fix --apply` opens it in the zone, at runtime and permanently; the
push from the client namespace then works."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.real("firewalld", "firewall-cmd", "dbus-daemon", "nft")
def test_firewalld_port_opened_in_the_right_zone(firewalld, client_dockerd, tmp_path: Path) -> None:
    if getattr(firewalld, "proc", None) is None:
        firewalld.start()
    reg = firewalld.registry
    port = reg.port
    d = client_dockerd({"insecure-registries": [reg.hostport]}, labnet=firewalld.labnet, busybox=True)
    d.docker("tag", "lab/busybox:1", f"{reg.hostport}/fw:1", check=True)
    before = d.docker("push", f"{reg.hostport}/fw:1", timeout=60)
    assert before.returncode != 0 and "no route to host" in before.stderr
    env = {**firewalld.env(), "NO_COLOR": "1"}
    env.pop("DOCKER_HOST", None)
    try:
        r = subprocess.run(
            firewalld.labnet.argv(
                firewalld.ns,
                [
                    sys.executable,
                    "-m",
                    "dockerdoctor",
                    "fix",
                    "--apply",
                    "--yes",
                    "--only",
                    "DD301",
                    "--state-dir",
                    str(tmp_path / "state"),
                    "--docker-host",
                    "unix:///nonexistent.sock",
                ],
            ),
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=str(Path(__file__).parents[2]),
        )
        assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
        assert "[DD301]" in r.stdout and "Verified: DD301 pass" in r.stdout
        zone = firewalld.cmd("--get-default-zone").stdout.strip()
        assert firewalld.cmd(f"--zone={zone}", f"--query-port={port}/tcp").stdout.strip() == "yes"
        assert firewalld.cmd("--permanent", f"--zone={zone}", f"--query-port={port}/tcp").stdout.strip() == "yes"
        assert f'port="{port}"' in (firewalld.etc / "zones" / f"{zone}.xml").read_text()
        after = d.docker("push", f"{reg.hostport}/fw:1", timeout=60)
        assert after.returncode == 0, after.stderr
        # idempotent
        again = subprocess.run(
            firewalld.labnet.argv(
                firewalld.ns,
                [
                    sys.executable,
                    "-m",
                    "dockerdoctor",
                    "fix",
                    "--apply",
                    "--yes",
                    "--only",
                    "DD301",
                    "--state-dir",
                    str(tmp_path / "state"),
                    "--docker-host",
                    "unix:///nonexistent.sock",
                ],
            ),
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=str(Path(__file__).parents[2]),
        )
        assert again.returncode == 0 and "ran firewall-cmd" not in again.stdout, again.stdout
    finally:
        firewalld.reset()
