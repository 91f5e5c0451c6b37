"""Session fixtures for the serve-registry tests: our servers, one dockerd, a busybox image.

Everything listens on 127.0.0.1 ports 15000-15999 and lives under /tmp/dd-reg-*; every
process is stopped by its own PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import lab
import pytest

if os.path.dirname(__file__) not in sys.path:  # for `import ddreg_helpers` (a unique name)
    sys.path.append(os.path.dirname(__file__))

import ddreg_helpers  # noqa: E402
from ddreg_helpers import Client, Server, free_port, tmpdir  # noqa: E402
from s3lab import Moto, s3_missing  # noqa: E402


@pytest.fixture(autouse=True)
def _ddreg_stop_leftovers() -> Iterator[None]:
    """Stop servers a test started and did not stop (say, after a failed assertion)."""
    yield
    for srv in list(ddreg_helpers.LIVE):
        if getattr(srv, "session", False):
            continue
        if srv.proc is not None and srv.proc.poll() is None:
            srv.stop()
        ddreg_helpers.LIVE.remove(srv)


@pytest.fixture(scope="session")
def ddreg_servers() -> Iterator[Callable[..., Server]]:
    """Factory: start (once per session and argument list) a serve-registry subprocess."""
    started: dict[tuple[str, ...], Server] = {}
    dirs: list[str] = []

    def start(
        *args: str, scheme: str = "http", verify: object = True, root: str | None = None,
        env: dict[str, str] | None = None,
    ) -> Server:  # fmt: skip
        key = (*args, scheme, str(root))
        if key in started and started[key].proc and started[key].proc.poll() is None:
            return started[key]
        if root is None:
            d = tmpdir("srv")
            dirs.append(d)
            root = os.path.join(d, "root")
        srv = Server(root=root, port=free_port(), args=list(args), scheme=scheme, verify=verify, session=True, env=env)
        srv.start()
        started[key] = srv
        return srv

    yield start
    for srv in started.values():
        srv.stop()
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def ddreg_moto() -> Iterator[Moto]:
    """moto's S3 server on 127.0.0.1 (once per session); skips when the s3 extra or moto is missing."""
    why = s3_missing()
    if why:
        lab.cannot_run(why)
    d = tmpdir("moto")
    moto = Moto(workdir=d)
    try:  # a start that fails (moto never answers) still stops its process and removes the folder
        moto.start()
        yield moto
    finally:
        moto.stop()
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def ddreg_server(ddreg_servers: Callable[..., Server]) -> Server:
    return ddreg_servers()


@pytest.fixture()
def ddreg_client(ddreg_server: Server) -> Client:
    return Client(ddreg_server.url)


# ---------------------------------------------------------------- dockerd (real)
class Dockerd:
    def __init__(self, base: str) -> None:
        self.base = base
        self.sock = os.path.join(base, "docker.sock")
        self.host = f"unix://{self.sock}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = os.path.join(base, "dockerd.log")

    def docker(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            ["docker", "-H", self.host, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
        return r


def _need(binary: str) -> None:
    if shutil.which(binary) is None:
        pytest.skip(f"{binary} is not installed (apt-get install it; CI installs it)")


@pytest.fixture(scope="session")
def ddreg_dockerd() -> Iterator[Dockerd]:
    _need("dockerd")
    _need("docker")
    if os.geteuid() != 0:
        pytest.skip("dockerd needs root")
    base = tmpdir("dockerd")
    etc = os.path.join(base, "etc-docker")
    os.makedirs(os.path.join(etc, "certs.d"))
    with open(os.path.join(etc, "daemon.json"), "w") as f:
        f.write("{}\n")
    d = Dockerd(base)
    inner = (
        f"mount --bind {etc} /etc/docker && exec dockerd --iptables=false --ip6tables=false --bridge=none "
        f"--storage-driver=vfs --data-root {base}/root --exec-root {base}/exec -H {d.host} "
        f"--pidfile {base}/docker.pid"
    )
    with open(d.log, "wb") as out:
        d.proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", inner],
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if d.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited: {open(d.log).read()[-1500:]}")
            if d.docker("version", check=False, timeout=10).returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start: {open(d.log).read()[-1500:]}")
            time.sleep(0.2)
        yield d
    finally:
        if d.proc.poll() is None:
            d.proc.send_signal(signal.SIGTERM)
            try:
                d.proc.wait(30)
            except subprocess.TimeoutExpired:
                d.proc.kill()
                d.proc.wait()
        with open("/proc/mounts") as f:
            leftovers = sorted((line.split()[1] for line in f if f" {base}" in f" {line.split()[1]}"), reverse=True)
        for m in leftovers:
            subprocess.run(["umount", m], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def ddreg_busybox_rootfs() -> Iterator[str]:
    busybox = shutil.which("busybox") or "/bin/busybox"
    if not os.path.exists(busybox):
        pytest.skip("busybox-static is not installed")
    base = tmpdir("rootfs")
    root = os.path.join(base, "rootfs")
    os.makedirs(os.path.join(root, "bin"))
    shutil.copy(busybox, os.path.join(root, "bin", "busybox"))
    os.symlink("busybox", os.path.join(root, "bin", "sh"))
    os.symlink("busybox", os.path.join(root, "bin", "echo"))
    tar = os.path.join(base, "rootfs.tar")
    subprocess.run(["tar", "-C", root, "-cf", tar, "."], check=True)
    yield tar
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def ddreg_image(ddreg_dockerd: Dockerd, ddreg_busybox_rootfs: str) -> str:
    """A tiny busybox image `ddreg/bb:1` in the test dockerd."""
    ddreg_dockerd.docker("import", ddreg_busybox_rootfs, "ddreg/bb:1")
    return "ddreg/bb:1"
