"""DD502 as a user who cannot open the docker socket (setpriv to `nobody`), on a real unix socket."""

from __future__ import annotations

import grp
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.real("setpriv")

EXE = str(Path(sys.executable).parent / "dockerdoctor")


def _as_nobody(sock: Path) -> dict:
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", EXE, "check", "--select",
                        "DD502", "--docker-host", f"unix://{sock}", "--format", "json"],
                       capture_output=True, text=True, timeout=60, cwd="/")
    assert r.returncode in (0, 1), r.stderr
    return json.loads(r.stdout)


@pytest.fixture
def sock():  # type: ignore[no-untyped-def]
    # a directory nobody can reach (pytest's own tmp dirs are private to root)
    d = Path(tempfile.mkdtemp(prefix="dd-sock-", dir="/tmp"))
    d.chmod(0o755)
    path = d / "docker.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    yield path
    s.close()
    shutil.rmtree(d, ignore_errors=True)


def test_root_only_socket_offers_sudo_and_no_group(sock: Path) -> None:
    os.chmod(sock, 0o660)
    (f,) = _as_nobody(sock)["findings"]
    assert f["id"] == "DD502" and f["params"]["user"] == "nobody"
    assert f["fix"]["summary"] == "Use sudo for docker commands"
    assert f["fix"]["alternatives"] == []  # never "add nobody to the root group"


def test_group_socket_offers_the_group_with_its_cost(sock: Path) -> None:
    gid = grp.getgrnam("daemon").gr_gid  # nobody runs with gid nogroup, so use another group
    os.chown(sock, 0, gid)
    os.chmod(sock, 0o660)
    (f,) = _as_nobody(sock)["findings"]
    (alt,) = f["fix"]["alternatives"]
    assert alt["operations"][0]["argv"] == ["usermod", "-aG", "daemon", "nobody"]
    assert "root" in alt["warnings"][0]


def test_open_socket_passes(sock: Path) -> None:
    os.chmod(sock, 0o666)
    data = _as_nobody(sock)
    assert data["findings"] == []
    assert [r["status"] for r in data["rules"] if r["id"] == "DD502"] == ["passed"]
