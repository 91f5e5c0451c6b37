"""The docker CLI with a real dockerd against serve-registry: push, pull, pull by digest, delete."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from ddreg_helpers import Client, Server

pytestmark = pytest.mark.real


def dd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dockerdoctor", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_docker_push_pull_digest_delete(ddreg_dockerd, ddreg_image: str, ddreg_server: Server) -> None:  # type: ignore[no-untyped-def]
    d = ddreg_dockerd
    ref = f"{ddreg_server.hostport}/docker/bb"
    d.docker("tag", ddreg_image, f"{ref}:1")
    out = d.docker("push", f"{ref}:1").stdout
    m = re.search(r"digest: (sha256:[0-9a-f]{64})", out)
    assert m, out
    digest = m.group(1)
    c = Client(ddreg_server.url)
    r = c.req(
        "GET", "/v2/docker/bb/manifests/1", headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
    )
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.headers["Content-Type"] == "application/vnd.docker.distribution.manifest.v2+json"
    # a second push of the same image only HEADs the blobs
    assert "Layer already exists" in d.docker("push", f"{ref}:1").stdout
    # pull by tag, after removing the local copy
    d.docker("rmi", f"{ref}:1")
    d.docker("pull", f"{ref}:1")
    assert d.docker("image", "inspect", f"{ref}:1", "--format", "{{index .RepoDigests 0}}").stdout.strip() == (
        f"{ref}@{digest}"
    )
    # pull by digest
    d.docker("rmi", f"{ref}:1")
    out = d.docker("pull", f"{ref}@{digest}").stdout
    assert digest in out
    assert digest in d.docker("images", "--digests", "--format", "{{.Digest}}").stdout.split()
    # delete with `dockerdoctor registry rm` (resolves the digest with the right Accept headers)
    rm = dd("registry", "rm", f"{ref}:1")
    assert rm.returncode == 0, rm.stderr
    assert digest in rm.stdout and "garbage" in rm.stdout
    d.docker("rmi", f"{ref}@{digest}")
    failed = d.docker("pull", f"{ref}:1", check=False)
    assert failed.returncode != 0
    assert "manifest unknown" in failed.stderr or "not found" in failed.stderr


def test_docker_login_and_push_with_htpasswd(ddreg_dockerd, ddreg_image: str, ddreg_servers, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from dockerdoctor.registry.auth import make_entry

    ht = tmp_path / "htpasswd"
    ht.write_text(make_entry("ddreg", "pa55", rounds=4) + "\n")
    srv = ddreg_servers("--htpasswd", str(ht), "--no-access-log")
    d = ddreg_dockerd
    ref = f"{srv.hostport}/auth/bb:1"
    d.docker("tag", ddreg_image, ref)
    env = {**os.environ, "DOCKER_CONFIG": str(tmp_path / "docker-config")}

    def docker(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", "-H", d.host, *args], capture_output=True, text=True, timeout=120, env=env)

    denied = docker("push", ref)
    assert denied.returncode != 0 and ("no basic auth credentials" in denied.stderr or "unauthorized" in denied.stderr)
    bad = docker("login", "-u", "ddreg", "-p", "wrong", srv.hostport)
    assert bad.returncode != 0
    assert "401" in bad.stderr or "unauthorized" in bad.stderr.lower(), bad.stderr
    ok = docker("login", "-u", "ddreg", "-p", "pa55", srv.hostport)
    assert ok.returncode == 0, ok.stderr
    pushed = docker("push", ref)
    assert pushed.returncode == 0, pushed.stderr
    # `registry ls` reads the same credentials from DOCKER_CONFIG
    ls = subprocess.run([sys.executable, "-m", "dockerdoctor", "registry", "ls", srv.hostport],
                        capture_output=True, text=True, timeout=60, env=env)  # fmt: skip
    assert ls.returncode == 0, ls.stderr
    assert f"{srv.hostport}/auth/bb: 1" in ls.stdout
