"""`registry gc` refuses while a real CNCF docker-registry writes to the same storage (newcomer report B9: it
noticed only serve-registry). The registry runs in a network namespace of its own (it listens on nothing
reachable) and is stopped by its PID."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ddreg_helpers import stop_process  # tests/registry/conftest.py puts it on sys.path

pytestmark = pytest.mark.real("docker-registry", "unshare")


def dd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dockerdoctor", *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def _config(tmp: Path, root: Path, readonly: bool) -> Path:
    cfg = tmp / f"config-{readonly}.yml"
    text = (f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {root}\n"
            "  delete:\n    enabled: true\n")
    if readonly:
        text += "  maintenance:\n    readonly:\n      enabled: true\n"
    cfg.write_text(text + "http:\n  addr: 127.0.0.1:5000\n")
    return cfg


@pytest.fixture
def serving(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    procs: list[subprocess.Popen[bytes]] = []

    def start(root: Path, readonly: bool = False) -> subprocess.Popen[bytes]:
        cfg = _config(tmp_path, root, readonly)
        p = subprocess.Popen(["unshare", "-n", "sh", "-c", f"exec docker-registry serve {cfg}"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)
        for _ in range(100):  # sh has exec'd docker-registry in place: same PID
            try:
                if Path(f"/proc/{p.pid}/exe").resolve().name == "docker-registry":
                    break
            except OSError:
                pass
            time.sleep(0.05)
        else:
            pytest.fail("docker-registry did not start")
        assert p.poll() is None
        return p

    yield start
    for p in procs:  # each one is stopped (SIGKILL after a timeout), whatever the others did
        stop_process(p)


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "storage"
    for d in ("repositories", "blobs"):
        (root / "docker/registry/v2" / d).mkdir(parents=True)
    return root


def test_gc_refuses_while_a_distribution_registry_writes_there(tmp_path: Path, serving) -> None:  # type: ignore[no-untyped-def]
    root = _root(tmp_path)
    p = serving(root)
    r = dd("registry", "gc", "--root", str(root))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert f"docker-registry (pid {p.pid}) serves {root}" in r.stderr and "--force" in r.stderr
    assert dd("registry", "gc", "--root", str(root), "--dry-run").returncode == 0  # a dry run deletes nothing
    other = _root(tmp_path / "other")
    assert dd("registry", "gc", "--root", str(other)).returncode == 0  # another storage is not its


def test_a_read_only_registry_does_not_count_and_another_name_does(tmp_path: Path, serving) -> None:  # type: ignore[no-untyped-def]
    root = _root(tmp_path)
    serving(root, readonly=True)
    assert dd("registry", "gc", "--root", str(root)).returncode == 0
    link = tmp_path / "same"
    os.symlink(root, link)
    serving(root)
    r = dd("registry", "gc", "--root", str(link))  # the same directory by another name
    assert r.returncode == 2 and "docker-registry (pid" in r.stderr, r.stderr
