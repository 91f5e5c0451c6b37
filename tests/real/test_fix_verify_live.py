"""`fix --apply` verifies against the live daemon, not against the file it just wrote.

One dockerd 20.10 of the session's own (own data-root, exec-root, socket, pidfile, a private /etc/docker,
and the lab's client network namespace) and one plain-HTTP docker-registry in the lab's server namespace,
reachable only from the client namespace. dockerdoctor itself runs in the machine's own mount and network
namespaces and names the daemon by its socket (issue 13, newcomer report A1): it edits the daemon.json
that daemon reads (through /proc/PID/root), and its re-check asks that daemon.

* The daemon takes the change (SIGHUP): "Verified" says the daemon itself reaches the registry, and a
  real push works.
* The daemon does not take it (the repair needs a restart, and the restart command does nothing): the
  file is right, but the daemon still runs with its old configuration. The re-check must see that, fail,
  and restore the file byte for byte.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import lab
import pytest

pytestmark = pytest.mark.real("nsenter", "unshare", "docker-registry")

EXE = str(Path(sys.executable).parent / "dockerdoctor")


@dataclass
class LiveLab:
    d: lab.Dockerd
    reg: lab.DistRegistry
    env: dict[str, str]


@pytest.fixture(scope="session")
def live(lab_root: Path, labnet: lab.LabNet) -> Iterator[LiveLab]:
    port = lab.free_port(labnet.srv_ns, labnet.srv_ip)
    reg = lab.DistRegistry(lab_root / "verify-live-reg", labnet.srv_ip, port, netns=labnet.srv_ns,
                           name="verify-live-plain")
    d = lab.Dockerd(lab_root / "verify-live-dockerd", netns=labnet.cli_ns, daemon_json={"debug": False})
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKER_CONTEXT")}
    env.update(NO_COLOR="1", DOCKER_CONFIG=str(d.docker_config))
    try:
        reg.start()
        assert d.start(), d.failure_line()
        lab.import_busybox(d)
        yield LiveLab(d, reg, env)
    finally:
        d.stop()  # by its PID
        reg.stop()
        lab.rmtree(d.workdir)


def _reset(live: LiveLab, text: str) -> None:
    """The daemon runs with no insecure registry (SIGHUP), and its file then says `text`. (dockerd 20.10 keeps
    its insecure registries on a reload of a file without the key: the empty list resets them.)"""
    live.d.write_daemon_json({"debug": False, "insecure-registries": []})
    os.kill(live.d.pid, signal.SIGHUP)
    assert lab.wait_for(lambda: _insecure(live) == [], 10), _insecure(live)
    live.d.daemon_json_path.write_text(text)


def _insecure(live: LiveLab) -> list[str]:
    st, info = lab.engine_api(live.d.sock, "GET", "/info")
    assert st == 200
    return [k for k, v in info["RegistryConfig"]["IndexConfigs"].items() if not v["Secure"]
            and k != "docker.io"] + [c for c in info["RegistryConfig"]["InsecureRegistryCIDRs"]
                                     if not c.startswith("127.")]


# The other clients' configuration (the docker CLI's and dockerd's /etc/docker, podman's registries.conf,
# containerd, firewalld) gets a private copy: `fix --apply` fixes every client that does not trust the
# registry, and no test may touch the machine's own. A folder missing on the machine cannot be shadowed
# without creating it there, so the test is skipped rather than let a fix create it on the host.
PRIVATE_ETC = ("/etc/docker", "/etc/firewalld", "/etc/containers", "/etc/containerd")


def _fix(live: LiveLab, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`fix --apply` in a private mount namespace (private copies of PRIVATE_ETC) and a private, empty network
    namespace: the daemon is named by its unix socket only, and with no daemon answering, a probe of the lab's
    registry address can never leave the machine (the probe through dockerd's own namespace still works)."""
    argv = [EXE, "fix", "--apply", "--yes", "--docker-host", live.d.host, "--registry", live.reg.hostport,
            "--state-dir", str(tmp_path / "state"), *extra]
    binds = []
    for etc in PRIVATE_ETC:
        if not Path(etc).is_dir():
            lab.cannot_run(f"{etc} is not on this machine: no private copy can shadow it, and a fix would create it")
        copy = tmp_path / ("etc-" + etc.rsplit("/", 1)[1])
        shutil.copytree(etc, copy, symlinks=True)
        binds.append(f"mount -n --bind {shlex.quote(str(copy))} {etc}")
    shell = " && ".join([*binds, "exec " + shlex.join(argv)])
    return subprocess.run(["unshare", "-m", "-n", "--propagation", "private", "sh", "-c", shell],
                          capture_output=True, text=True, timeout=180, env=live.env, cwd="/")


def _push(live: LiveLab, tag: str) -> subprocess.CompletedProcess:
    img = f"{live.reg.hostport}/verify-live:{tag}"
    live.d.docker("tag", "lab/busybox:1", img, check=True)
    return live.d.docker("push", img, timeout=60)


def _out(r: subprocess.CompletedProcess[str]) -> str:
    return f"rc={r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"


def test_the_daemon_takes_the_change_and_verify_asks_the_daemon(live: LiveLab, tmp_path: Path) -> None:
    reg = live.reg.hostport
    _reset(live, '{"debug": false}\n')
    assert os.readlink(f"/proc/{live.d.pid}/ns/net") != os.readlink("/proc/self/ns/net")
    push = _push(live, "before")
    assert push.returncode != 0 and "server gave HTTP response to HTTPS client" in push.stderr, push.stderr
    r = _fix(live, tmp_path, "--only", "DD101")
    assert r.returncode == 0, _out(r)
    assert f"(as /proc/{live.d.pid}/root/etc/docker/daemon.json)" in r.stdout, _out(r)
    assert f"kill -HUP {live.d.pid}" in r.stdout
    verified = [ln for ln in r.stdout.splitlines() if ln.startswith("Verified:")]
    assert verified and f"dockerd reaches {reg}" in verified[0], _out(r)
    assert json.loads(live.d.daemon_json_path.read_text())["insecure-registries"] == [reg]
    assert reg in _insecure(live)  # the daemon itself runs with it
    assert _push(live, "after").returncode == 0


def test_a_file_the_daemon_did_not_take_fails_verification_and_is_restored(live: LiveLab, tmp_path: Path) -> None:
    """daemon.json repaired on disk (DD106: a trailing comma), but the restart it needs does nothing: the daemon
    runs on with its old configuration, so the registry is still untrusted. That is a failed fix."""
    reg = live.reg.hostport
    broken = f'{{\n  "insecure-registries": ["{reg}"],\n}}\n'
    _reset(live, broken)
    # the verification waits --verify-timeout for a change that cannot come (20 s by default)
    r = _fix(live, tmp_path, "--only", "DD106", "--restart-command", "true", "--verify-timeout", "3")
    assert r.returncode == 1, _out(r)
    assert "[DD106]" in r.stdout, _out(r)
    assert not any(ln.startswith("Verified:") for ln in r.stdout.splitlines()), _out(r)
    failed = r.stdout.split("verification failed", 1)[-1]
    assert "the running dockerd does not use the new configuration (DD107)" in failed and reg in failed, _out(r)
    assert f"dockerd was not restarted (still pid {live.d.pid})" in failed, _out(r)
    assert "rolling back" in r.stdout
    assert live.d.daemon_json_path.read_text() == broken  # restored byte for byte
    assert _insecure(live) == []
    assert live.d.running()
