"""The docker CLI with a real dockerd against serve-registry: push, pull, pull by digest, delete."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

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


def test_docker_trusts_self_signed_ca_at_the_printed_path(ddreg_busybox_rootfs: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """dockerd verifies TLS for a non-loopback address: the CA must sit at the certs.d path we print.

    Runs in a private network namespace (`ddreg-tls-PID`) where 10.213.0.1 lives on `lo`, so
    nothing leaves the namespace and the address is not in docker's default-insecure 127.0.0.0/8.
    """
    import signal
    import time

    from ddreg_helpers import free_port

    ns = f"ddreg-tls-{os.getpid()}"
    ip = "10.213.0.1"
    port = free_port()
    fake_etc = tmp_path / "etc-docker"
    (fake_etc / "certs.d").mkdir(parents=True)
    (fake_etc / "daemon.json").write_text("{}\n")
    base = tmp_path / "d"
    base.mkdir()
    sock = f"unix://{base}/docker.sock"
    procs: list[subprocess.Popen[bytes]] = []
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", ns, "addr", "add", f"{ip}/32", "dev", "lo"], check=True)
        log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115
        procs.append(subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "dockerdoctor", "serve-registry", "--host", ip,
             "--port", str(port), "--root", str(tmp_path / "root"), "--tls-self-signed", ip],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL))  # fmt: skip
        log.close()
        inner = (
            f"mount --bind {fake_etc} /etc/docker && exec nsenter --net=/run/netns/{ns} dockerd --iptables=false "
            f"--ip6tables=false --bridge=none --storage-driver=vfs --data-root {base}/root --exec-root {base}/exec "
            f"-H {sock} --pidfile {base}/docker.pid"
        )
        dlog = open(base / "dockerd.log", "wb")  # noqa: SIM115
        procs.append(subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", inner],
                                      stdout=dlog, stderr=dlog, stdin=subprocess.DEVNULL))  # fmt: skip
        dlog.close()

        def docker(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["docker", "-H", sock, *args], capture_output=True, text=True, timeout=120)

        deadline = time.monotonic() + 60
        while docker("version").returncode != 0 or "ca.crt" not in (tmp_path / "serve.log").read_text():
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text() + (
                base / "dockerd.log"
            ).read_text()
            assert all(p.poll() is None for p in procs), (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        printed = re.search(r"(/etc/docker/certs\.d/\S+/ca\.crt)", (tmp_path / "serve.log").read_text())
        assert printed and printed.group(1) == f"/etc/docker/certs.d/{ip}:{port}/ca.crt"
        assert docker("import", ddreg_busybox_rootfs, f"{ip}:{port}/tls/bb:1").returncode == 0
        untrusted = docker("push", f"{ip}:{port}/tls/bb:1")
        assert untrusted.returncode != 0
        assert "certificate signed by unknown authority" in untrusted.stderr, untrusted.stderr
        target = fake_etc / os.path.relpath(printed.group(1), "/etc/docker")
        target.parent.mkdir(parents=True)
        target.write_bytes((tmp_path / "root.tls" / "ca.crt").read_bytes())
        pushed = docker("push", f"{ip}:{port}/tls/bb:1")  # certs.d is read per push: no restart
        assert pushed.returncode == 0, pushed.stderr
        digest = re.search(r"digest: (sha256:[0-9a-f]{64})", pushed.stdout).group(1)  # type: ignore[union-attr]
        assert docker("rmi", f"{ip}:{port}/tls/bb:1").returncode == 0
        assert docker("pull", f"{ip}:{port}/tls/bb@{digest}").returncode == 0
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for m in sorted(
            (ln.split()[1] for ln in Path("/proc/mounts").read_text().splitlines() if str(tmp_path) in ln), reverse=True
        ):
            subprocess.run(["umount", m], capture_output=True)


def test_docker_moves_between_distribution_and_us(ddreg_dockerd, ddreg_image: str, ddreg_servers, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The migration story with the real docker CLI: registry:2's directory served by us, and back."""
    import shutil as _shutil

    from ddreg_helpers import Distribution, free_port

    if _shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed (CI installs it)")
    d = ddreg_dockerd

    def digest_of_push(ref: str) -> str:
        d.docker("tag", ddreg_image, ref)
        out = d.docker("push", ref).stdout
        return re.search(r"digest: (sha256:[0-9a-f]{64})", out).group(1)  # type: ignore[union-attr]

    # 1. docker pushes to registry:2; we serve its directory; docker pulls from us
    theirs_root = str(tmp_path / "theirs")
    dist = Distribution(root=theirs_root, port=free_port(), workdir=str(tmp_path)).start()
    try:
        pushed = digest_of_push(f"{dist.hostport}/migr/bb:1")
    finally:
        dist.stop()
    ours = ddreg_servers("--read-only", "--no-access-log", root=theirs_root)
    ref = f"{ours.hostport}/migr/bb"
    d.docker("pull", f"{ref}:1")
    assert f"{ref}@{pushed}" in d.docker("image", "inspect", f"{ref}:1", "--format", "{{json .RepoDigests}}").stdout
    d.docker("rmi", f"{ref}:1")
    # 2. docker pushes to us; registry:2 serves our directory; docker pulls from it
    ours_root = str(tmp_path / "ours")
    writer = ddreg_servers("--no-access-log", root=ours_root)
    pushed = digest_of_push(f"{writer.hostport}/back/bb:1")
    dist = Distribution(root=ours_root, port=free_port(), workdir=str(tmp_path)).start()
    try:
        d.docker("pull", f"{dist.hostport}/back/bb:1")
        digests = d.docker("image", "inspect", f"{dist.hostport}/back/bb:1", "--format", "{{json .RepoDigests}}")
        assert f"{dist.hostport}/back/bb@{pushed}" in digests.stdout
        d.docker("rmi", f"{dist.hostport}/back/bb:1")
    finally:
        dist.stop()
