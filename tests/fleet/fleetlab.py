"""A small fleet for the Ansible tests: a controller and registry namespace, and managed hosts reached over SSH.

Topology (everything inside network namespaces this lab creates; nothing is routed off the machine)::

    <p>hub   10.N.0.1/24 on a bridge: the Ansible controller runs here, and a plain-HTTP docker-registry
      |        on 10.N.0.1:5000
      +-- veth -- <p>h1  10.N.0.11   managed host: sshd on :22, its own dockerd
      +-- veth -- <p>h2  10.N.0.12
      +-- veth -- <p>h3  10.N.0.13

A managed host is an sshd started as ``nsenter --net=NS unshare -m -u ...``: its own network namespace,
its own hostname (UTS namespace), and a private mount namespace in which the host's directories are
bind-mounted over ``/etc/docker``, ``/etc/systemd/system``, ``/etc/default`` and ``/opt``. Every SSH
session, so every Ansible module and every dockerdoctor run, sees exactly that host. The host's dockerd
runs in that same view: tests/fixes/labsvc.py starts it from the host's own ``docker.service`` unit
file (ExecStart, EnvironmentFile= and ``$VAR`` expanded the systemd way), which is also the
``--restart-command`` dockerdoctor uses there. What is NOT real: systemd is not PID 1 on these
machines, so the unit files are files that labsvc reads instead of systemd; dockerdoctor reads the
same files the way it reads them on a systemd host without D-Bus.

Everything is stopped by PID (sshd, dockerd via labsvc, the registry), then the namespaces are
deleted; ``/run/sshd`` (sshd's privilege-separation directory) is removed again if this lab made it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import lab

HERE = Path(__file__).resolve().parent
LABSVC = HERE.parent / "fixes" / "labsvc.py"
SSHD = "/usr/sbin/sshd"
REGISTRY_PORT = 5000

UNIT = """\
[Unit]
Description=Docker Application Container Engine (dockerdoctor fleet lab)

[Service]
Type=notify
{env}ExecStart={exec_start}
ExecReload=/bin/kill -s HUP $MAINPID
TimeoutStartSec=0
"""


def _ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")


# The other registry clients' configuration folders a lab host gets private copies of, and the machine's
# containers/image clients a lab docker host does not have.
PRIVATE_ETC = ("/etc/containers", "/etc/containerd")
HIDDEN_CLIENTS = ("/usr/bin/podman", "/usr/bin/buildah", "/usr/bin/skopeo")


@dataclass
class ManagedHost:
    name: str
    ns: str
    ip: str
    dir: Path
    python: str
    sshd: subprocess.Popen | None = None
    dockerd: lab.Dockerd | None = None
    spec: Path | None = None
    env_file_text: str | None = None  # /etc/default/docker, or None for the distribution's own
    daemon_json: dict | None = field(default_factory=dict)
    use_env_file: bool = False  # whether the unit loads EnvironmentFile=-/etc/default/docker
    pid_ns: bool = False  # its own PID namespace too: `ps` shows only this host's processes
    ns_pid: int | None = None  # a PID inside its namespaces (sshd's, as the machine numbers it)

    @property
    def etc_docker(self) -> Path:
        return self.dir / "etc-docker"

    @property
    def unit_dir(self) -> Path:
        return self.dir / "etc-systemd-system"

    @property
    def etc_default(self) -> Path:
        return self.dir / "etc-default"

    @property
    def opt(self) -> Path:
        return self.dir / "opt"

    @property
    def docker_host(self) -> str:
        assert self.dockerd is not None
        return self.dockerd.host

    @property
    def restart_command(self) -> str:
        return f"{shlex.quote(self.python)} {shlex.quote(str(LABSVC))} restart {shlex.quote(str(self.spec))}"

    def binds(self) -> list[tuple[Path, str]]:
        # Docker hosts: the machine's podman, buildah and skopeo are hidden (a non-executable /dev/null over
        # each), and the other clients' configuration is a private copy, so no fix can reach the machine's.
        return [(self.etc_docker, "/etc/docker"), (self.unit_dir, "/etc/systemd/system"),
                (self.etc_default, "/etc/default"), (self.opt, "/opt"),
                *([(self.dir / "hostname", "/etc/hostname")] if Path("/etc/hostname").is_file() else []),
                *[(self.dir / ("etc-" + etc.rsplit("/", 1)[1]), etc) for etc in PRIVATE_ETC if Path(etc).is_dir()],
                *[(Path("/dev/null"), exe) for exe in HIDDEN_CLIENTS if Path(exe).exists()]]

    def path(self, inside: str) -> Path:
        """Where a path of this host (/opt/..., /etc/docker/...) is on the machine."""
        for src, dst in self.binds():
            if inside == dst or inside.startswith(dst + "/"):
                return Path(str(src) + inside[len(dst):])
        return Path(inside)

    def inside(self, argv: list[str]) -> list[str]:
        """argv run inside this host: its network, hostname and mounts (those of its sshd)."""
        assert self.ns_pid is not None
        return [shutil.which("nsenter") or "nsenter", "-t", str(self.ns_pid), "-n", "-m", "-u",
                *(["-p"] if self.pid_ns else []), *argv]

    def run(self, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.inside(argv), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)


class Fleet:
    def __init__(self, root: Path, prefix: str, python: str = "/usr/bin/python3") -> None:
        self.root = root
        self.prefix = prefix
        self.python = python
        self.hub = f"{prefix}hub"
        n = 190 + os.getpid() % 10
        self.subnet = f"10.{n}.0"
        self.hub_ip = f"{self.subnet}.1"
        self.hosts: dict[str, ManagedHost] = {}
        self.registry: lab.DistRegistry | None = None
        self._namespaces: list[str] = []
        self._made_run_sshd = False
        self.key = root / "id_ed25519"
        self.known_hosts = root / "known_hosts"
        for ns in (self.hub,):
            if Path(f"/run/netns/{ns}").exists():
                raise RuntimeError(f"network namespace {ns} exists already")
        _ip("netns", "add", self.hub)
        self._namespaces.append(self.hub)
        lab._state_update(root, netns=[self.hub])
        _ip("-n", self.hub, "link", "set", "lo", "up")
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "addr", "add", f"{self.hub_ip}/24", "dev", "br0")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dockerdoctor-fleet-lab",
                        "-f", str(self.key)], check=True, capture_output=True)
        (root / "authorized_keys").write_text(self.key.with_suffix(".pub").read_text())
        if not Path("/run/sshd").is_dir():
            os.mkdir("/run/sshd", 0o755)
            self._made_run_sshd = True

    # ---- the registry every host pushes to
    def start_registry(self) -> lab.DistRegistry:
        self.registry = lab.DistRegistry(self.root / "registry", self.hub_ip, REGISTRY_PORT, netns=self.hub,
                                         name="fleet").start()
        return self.registry

    # ---- managed hosts
    def add_host(self, name: str, *, daemon_json: dict | None = None, env_file_text: str | None = None,
                 use_env_file: bool = False, pid_ns: bool = False) -> ManagedHost:
        i = len(self.hosts) + 1
        ns = f"{self.prefix}h{i}"
        h = ManagedHost(name, ns, f"{self.subnet}.{10 + i}", self.root / name, self.python,
                        env_file_text=env_file_text, daemon_json=daemon_json, use_env_file=use_env_file,
                        pid_ns=pid_ns)
        _ip("netns", "add", ns)
        self._namespaces.append(ns)
        lab._state_update(self.root, netns=[ns])
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", self.hub, "link", "add", f"v{i}", "type", "veth", "peer", "name", "eth0")
        _ip("-n", self.hub, "link", "set", "eth0", "netns", ns)
        _ip("-n", self.hub, "link", "set", f"v{i}", "master", "br0")
        _ip("-n", self.hub, "link", "set", f"v{i}", "up")
        _ip("-n", ns, "addr", "add", f"{h.ip}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        self._lay_out(h)
        self._start_sshd(h)
        self._start_dockerd(h)
        self.hosts[name] = h
        return h

    def _lay_out(self, h: ManagedHost) -> None:
        for d in (h.etc_docker, h.unit_dir, h.opt):
            d.mkdir(parents=True, exist_ok=True)
        shutil.copytree("/etc/default", h.etc_default, symlinks=True)  # the distribution's own defaults
        for etc in PRIVATE_ETC:
            if Path(etc).is_dir():
                shutil.copytree(etc, h.dir / ("etc-" + etc.rsplit("/", 1)[1]), symlinks=True)
        (h.dir / "hostname").write_text(h.name + "\n")
        if h.env_file_text is not None:
            (h.etc_default / "docker").write_text(h.env_file_text)
        if h.daemon_json is not None:
            (h.etc_docker / "daemon.json").write_text(json.dumps(h.daemon_json, indent=2) + "\n")
        h.dockerd = lab.Dockerd(h.dir / "d", netns=h.ns, etc_docker=h.etc_docker)
        argv = h.dockerd.argv()
        env = "EnvironmentFile=-/etc/default/docker\n" if h.use_env_file else ""
        exec_start = shlex.join(argv) + (" $DOCKER_OPTS" if h.use_env_file else "")
        (h.unit_dir / "docker.service").write_text(UNIT.format(env=env, exec_start=exec_start))
        h.spec = h.dir / "svc.json"
        h.spec.write_text(json.dumps({"workdir": str(h.dockerd.workdir), "netns": h.ns,
                                      "etc_docker": str(h.etc_docker), "unit_dir": str(h.unit_dir)}))
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(h.dir / "ssh_host_ed25519_key")],
                       check=True, capture_output=True)
        (h.dir / "sshd_config").write_text("\n".join([
            f"ListenAddress {h.ip}:22",
            f"HostKey {h.dir / 'ssh_host_ed25519_key'}",
            f"PidFile {h.dir / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PrintMotd no",
            "UseDNS no",
            "MaxStartups 30:50:60",
            "MaxSessions 30",
            "Subsystem sftp /usr/lib/openssh/sftp-server",
            "",
        ]))

    def _start_sshd(self, h: ManagedHost) -> None:
        mounts = " && ".join(f"mount -n --bind {shlex.quote(str(src))} {dst}" for src, dst in h.binds())
        shell = f"hostname {shlex.quote(h.name)} && {mounts} && exec {SSHD} -D -e -f {h.dir / 'sshd_config'}"
        # with a PID namespace, unshare forks: sshd is PID 1 there, and when unshare is stopped its child is
        # killed, which ends every process of that namespace (dockerd too)
        pid_args = ["-p", "--fork", "--kill-child", "--mount-proc"] if h.pid_ns else []
        log = open(h.dir / "sshd.log", "ab")
        try:
            h.sshd = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{h.ns}", "unshare", "-m", "-u", *pid_args, "--propagation", "private",
                 "sh", "-c", shell], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        lab._record(self.root, pid=h.sshd.pid)
        h.ns_pid = h.sshd.pid
        if h.pid_ns:
            children = Path(f"/proc/{h.sshd.pid}/task/{h.sshd.pid}/children")
            h.ns_pid = lab.wait_for(lambda: int(children.read_text().split()[0]) if children.read_text().strip()
                                    else None, 10)
            if not h.ns_pid:
                raise RuntimeError(f"{h.name}: no process in its PID namespace")

        def up() -> bool:
            if h.sshd is not None and h.sshd.poll() is not None:
                raise RuntimeError(f"sshd of {h.name} exited: {(h.dir / 'sshd.log').read_text()[-2000:]}")
            return lab.port_open(self.hub, h.ip, 22, timeout=0.3)

        if not lab.wait_for(up, 15):
            raise RuntimeError(f"sshd of {h.name} does not answer on {h.ip}:22")

    def _start_dockerd(self, h: ManagedHost) -> None:
        r = h.run([self.python, str(LABSVC), "restart", str(h.spec)], timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"dockerd of {h.name} did not start: {r.stderr}\n{h.dockerd.log_text()[-2000:]}")
        lab._record(self.root, pid=self.dockerd_pid(h))
        lab.import_busybox(h.dockerd)

    @staticmethod
    def dockerd_pid(h: ManagedHost) -> int | None:
        try:
            return int((h.dir / "d" / "svc.pid").read_text())
        except (OSError, ValueError):
            return None

    # ---- Ansible on the controller (in the hub namespace)
    def inventory(self, path: Path, extra_vars: dict | None = None) -> Path:
        hosts = {}
        for h in self.hosts.values():
            hosts[h.name] = {
                "ansible_host": h.ip,
                "dockerdoctor_docker_host": h.docker_host,
                "dockerdoctor_restart_command": h.restart_command,
            }
        inv = {"all": {"hosts": hosts, "vars": {
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.key),
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=accept-new "
                                       "-o IdentitiesOnly=yes -o ConnectTimeout=10",
            "ansible_python_interpreter": self.python,
            # in the lab dir, not /root/.ansible: tasks delegated to the controller use it too
            "ansible_remote_tmp": str(self.root / "ansible-remote-tmp"),
            "dockerdoctor_registries": [self.registry.hostport] if self.registry else [],
            "dockerdoctor_state_dir": "/opt/dockerdoctor-state",
            **(extra_vars or {}),
        }}}
        path.write_text(json.dumps(inv, indent=2))  # JSON is YAML
        return path

    def ansible_env(self, collections: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "DOCKER_"))}
        home = self.root / "ansible-home"
        home.mkdir(exist_ok=True)
        env.update({
            "ANSIBLE_HOME": str(home),
            "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.root / "cp"),
            "ANSIBLE_COLLECTIONS_PATH": str(collections),
            "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
            "ANSIBLE_PIPELINING": "true",
            # no ControlPersist: no ssh master may outlive a playbook
            "ANSIBLE_SSH_ARGS": "-o ControlMaster=no -o ControlPersist=no",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_RETRY_FILES_ENABLED": "false",
            "ANSIBLE_HOST_KEY_CHECKING": "true",
            "ANSIBLE_FORKS": "5",
            "ANSIBLE_CONFIG": str(self.root / "ansible.cfg"),
        })
        (self.root / "ansible.cfg").write_text("[defaults]\ninterpreter_python = auto_silent\n")
        return env

    def controller(self, argv: list[str], env: dict[str, str], timeout: float = 300,
                   cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run an Ansible command (or anything) in the hub namespace, where the controller lives."""
        return subprocess.run(["ip", "netns", "exec", self.hub, *argv], capture_output=True, text=True,
                              timeout=timeout, env=env, cwd=str(cwd or self.root), stdin=subprocess.DEVNULL)

    # ---- teardown
    def close(self) -> None:
        for h in self.hosts.values():
            if h.pid_ns and h.sshd is not None:
                # unshare --fork ignores SIGTERM; SIGKILL makes it kill its child (--kill-child), the PID
                # namespace's init, and with it every process of that namespace, dockerd too
                with contextlib.suppress(ProcessLookupError):
                    h.sshd.kill()
                h.sshd.wait(30)
                continue
            if h.spec is not None and h.sshd is not None and h.sshd.poll() is None:
                with contextlib.suppress(Exception):
                    h.run([self.python, str(LABSVC), "stop", str(h.spec)], timeout=60)
            pid = self.dockerd_pid(h)
            if pid and lab._pid_alive(pid) and str(h.dir) in lab._pid_cmdline(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
            lab._stop_proc(h.sshd)
        if self.registry is not None:
            self.registry.stop()
        for ns in self._namespaces:
            if Path(f"/run/netns/{ns}").exists():
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        lab.umount_under(self.root)
        if self._made_run_sshd:
            with contextlib.suppress(OSError):
                os.rmdir("/run/sshd")

    def wait_gone(self, timeout: float = 10) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not any(h.sshd and h.sshd.poll() is None for h in self.hosts.values()):
                return
            time.sleep(0.05)


def python_for_hosts() -> str:
    """The managed hosts' Python: the distribution's (modules, the role's venv), as on a real host."""
    return "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
