"""Real-parts lab for the fix tests (tests/lab.py underneath): prefix ``ddfix``, ports 5400-5499,
work dirs /tmp/dd-fix-*.

* ``fixlab`` (session): a pair of network namespaces, a plain-HTTP registry (5400) and a TLS registry
  with a CA the daemon does not know (5401), both on ``fixlab.net.srv_ip``.
* ``lab_host`` (function): a factory of :class:`LabHost`: a simulated docker host with its own
  /etc/docker and /etc/systemd/system (bind-mounted in a private mount namespace), a docker.service
  unit whose ExecStart runs a lab dockerd in the client namespace, and ``labsvc.py`` as its service
  manager. ``host.dockerdoctor(...)`` runs the CLI inside that host's mount and network namespaces,
  with ``--restart-command`` pointing at labsvc.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import lab
import pytest

HERE = Path(__file__).resolve().parent
LABSVC = HERE / "labsvc.py"
DOCKERDOCTOR = [sys.executable, "-m", "dockerdoctor"]
PLAIN_PORT = 5400
TLS_PORT = 5401


@dataclass
class FixLab:
    root: Path
    net: lab.LabNet
    plain: lab.DistRegistry
    tls: lab.DistRegistry
    ca_pem: bytes
    ca_path: Path


@pytest.fixture(scope="session")
def fixlab() -> Iterator[FixLab]:
    root = Path(tempfile.mkdtemp(prefix="dd-fix-"))
    net = None
    regs: list[lab.DistRegistry] = []
    try:
        net = lab.LabNet(f"ddfix{os.getpid() % 100000}")
        ca = lab.Certs.make_ca("dockerdoctor-fix-ca")
        leaf = lab.Certs.make_leaf(ca, sans=[net.srv_ip], cn=net.srv_ip)
        ca_path, _ = lab.Certs.write(root / "certs", "ca", ca)
        crt, key = lab.Certs.write(root / "certs", "srv", leaf)
        plain = lab.DistRegistry(root / "reg", net.srv_ip, PLAIN_PORT, netns=net.srv_ns, name="plain").start()
        regs.append(plain)
        tls = lab.DistRegistry(root / "reg", net.srv_ip, TLS_PORT, netns=net.srv_ns, tls=(crt, key), name="tls").start()
        regs.append(tls)
        yield FixLab(root, net, plain, tls, ca[0], ca_path)
    finally:
        for r in regs:
            r.stop()
        if net is not None:
            net.close()
        lab.rmtree(root)


# Folders of the machine a simulated host sees as its own private copies.
PRIVATE_ETC = ("/etc/firewalld", "/etc/containers", "/etc/containerd")

UNIT = """\
[Unit]
Description=Docker Application Container Engine (dockerdoctor fix lab)

[Service]
Type=notify
ExecStart={exec_start}
ExecReload=/bin/kill -s HUP $MAINPID
TimeoutStartSec=0
"""


class LabHost:
    def __init__(
        self,
        lab_: FixLab,
        name: str,
        *,
        daemon_json: dict | str | None = None,
        extra_args: tuple[str, ...] = (),
        config_file: bool = False,
    ) -> None:
        self.lab = lab_
        self.dir = lab_.root / name
        self.etc_docker = self.dir / "etc-docker"
        self.unit_dir = self.dir / "etc-systemd-system"
        self.state = self.dir / "state"
        self.unit_dir.mkdir(parents=True)
        self.config_path = self.dir / "dockerd-config.json" if config_file else None
        self.d = lab.Dockerd(
            self.dir / "d",
            netns=lab_.net.cli_ns,
            etc_docker=self.etc_docker,
            extra_args=extra_args,
            config_file=self.config_path,
        )
        if daemon_json is not None:
            text = daemon_json if isinstance(daemon_json, str) else json.dumps(daemon_json, indent=2) + "\n"
            (self.config_path or self.d.daemon_json_path).write_text(text)
        (self.unit_dir / "docker.service").write_text(UNIT.format(exec_start=shlex.join(self.d.argv())))
        self.spec = self.dir / "svc.json"
        self.spec.write_text(
            json.dumps(
                {
                    "workdir": str(self.d.workdir),
                    "netns": lab_.net.cli_ns,
                    "etc_docker": str(self.etc_docker),
                    "unit_dir": str(self.unit_dir),
                }
            )
        )
        self.restart_command = f"{shlex.quote(sys.executable)} {shlex.quote(str(LABSVC))} restart {self.spec}"

    @property
    def config(self) -> Path:
        return self.config_path or self.d.daemon_json_path

    def start(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", "-c", self.restart_command], capture_output=True, text=True, timeout=60)

    def stop(self) -> None:
        subprocess.run([sys.executable, str(LABSVC), "stop", str(self.spec)], capture_output=True, timeout=60)

    def pid(self) -> int | None:
        try:
            pid = int((self.d.workdir / "svc.pid").read_text())
        except (OSError, ValueError):
            return None
        return pid if Path(f"/proc/{pid}").exists() else None

    def in_host(self, argv: list[str], *, mount_ns: bool = True) -> list[str]:
        """argv run as on this simulated host: its /etc/docker and /etc/systemd/system, its network."""
        inner = shlex.join(["nsenter", f"--net=/run/netns/{self.lab.net.cli_ns}", *argv])
        if not mount_ns:
            return ["sh", "-c", f"exec {inner}"]
        # The other clients' configuration gets a private copy too (firewalld, podman/skopeo/buildah,
        # containerd): `fix --apply` edits every client that does not trust the registry, and no fix may
        # ever touch the machine's own files.
        binds = [f"mount -n --bind {shlex.quote(str(self.etc_docker))} /etc/docker",
                 f"mount -n --bind {shlex.quote(str(self.unit_dir))} /etc/systemd/system"]
        for etc in PRIVATE_ETC:
            copy = self.dir / ("etc-" + etc.rsplit("/", 1)[1])
            if not copy.exists() and Path(etc).is_dir():
                shutil.copytree(etc, copy, symlinks=True)
            if copy.exists():
                binds.append(f"mount -n --bind {shlex.quote(str(copy))} {etc}")
        shell = " && ".join(binds) + f" && exec {inner}"
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", shell]

    def dockerdoctor(
        self, *args: str, registry: str | None = None, mount_ns: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = [*DOCKERDOCTOR, *args, "--docker-host", self.d.host, "--state-dir", str(self.state)]
        if args and args[0] == "fix":
            argv += ["--restart-command", self.restart_command]
        if registry:
            argv += ["--registry", registry]
        full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
        full_env.pop("DOCKER_HOST", None)
        return subprocess.run(
            self.in_host(argv, mount_ns=mount_ns),
            capture_output=True,
            text=True,
            timeout=180,
            env=full_env,
            cwd=str(HERE.parent.parent),
        )

    def push(self, registry: str, tag: str = "fixtest:1") -> subprocess.CompletedProcess[str]:
        img = f"{registry}/{tag}"
        if self.d.docker("image", "inspect", "lab/busybox:1").returncode != 0:
            lab.import_busybox(self.d)
        self.d.docker("tag", "lab/busybox:1", img, check=True)
        return self.d.docker("push", img, timeout=60)


@pytest.fixture
def lab_host(fixlab: FixLab) -> Iterator:
    hosts: list[LabHost] = []
    counter = iter(range(1000))

    def make(**kw: object) -> LabHost:
        h = LabHost(fixlab, f"host{len(hosts)}-{next(counter)}", **kw)  # type: ignore[arg-type]
        hosts.append(h)
        return h

    yield make
    for h in hosts:
        h.stop()
        lab.umount_under(h.dir)
        lab.rmtree(h.dir)
