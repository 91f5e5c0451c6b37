"""Registry-host rules (DD3xx, DD4xx) against real parts: a dockerd with its bridge in a private
network namespace, real (imported) images, a real firewalld on a private system bus, real nft
and iptables rules, and a process that really holds a port.

Everything lives in namespaces named ``ddrh<pid>srv``/``ddrh<pid>cli`` and in ``/tmp/dd-rh-*``;
ports are 5300-5399. The servers start once per session (module scope) and are stopped by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import lab
import pytest

from dockerdoctor.engine import run_rules
from dockerdoctor.facts import CheckOptions, Facts, HostPort
from dockerdoctor.model import RuleStatus
from dockerdoctor.sources.live import LiveSource

pytestmark = pytest.mark.real

REPO = Path(__file__).resolve().parents[2]

CRASH_SH = """\
echo "Starting docker-registry (attempt at $(date -u +%H:%M:%S))"
case "$GUNICORN_OPTS" in *--preload*)
  echo "[INFO] Listening at: http://0.0.0.0:5000 (1)"; exec sleep 3600;;
esac
cat >&2 <<'TB'
Traceback (most recent call last):
  File "/usr/local/bin/docker-registry", line 9, in <module>
    load_entry_point('docker-registry==0.9.1', 'console_scripts', 'docker-registry')()
  File "/usr/local/lib/python2.7/dist-packages/docker_registry/run.py", line 94, in run_gunicorn
    registry._setup_database()
  File "/usr/local/lib/python2.7/dist-packages/docker_registry/lib/mirroring.py", line 28, in _setup_database
    with open('./registry._setup_database.lock', 'w+') as f:
OSError: [Errno 2] No such file or directory: './registry._setup_database.lock'
TB
exit 3
"""


# --------------------------------------------------------------------------------------------------
# session parts


class RH:
    """The registry host: namespaces, a dockerd with its bridge, images, a work dir."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="dd-rh-", dir="/tmp"))
        self.net = lab.LabNet(f"ddrh{os.getpid() % 100000}")
        self.srv = self.net.srv_ip
        # docker's bridge and iptables on (lab.md §10): published ports work inside the namespace
        self.d = lab.Dockerd(self.dir / "dockerd", netns=self.net.srv_ns, defaults=["--storage-driver=vfs"])
        if not self.d.start(timeout=30):
            raise RuntimeError(f"dockerd failed: {self.d.failure_line()}")
        lab.import_busybox(self.d)
        lab.import_registry_image(self.d)
        self.crash_sh = self.dir / "crash.sh"
        self.crash_sh.write_text(CRASH_SH)

    def docker(self, *args: str, check: bool = True) -> str:
        r = self.d.docker(*args, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {r.stderr}")
        return r.stdout

    def inspect(self, name: str) -> dict:
        return json.loads(self.docker("inspect", name))[0]

    def wait_state(self, name: str, pred, timeout: float = 30.0) -> dict:
        st = lab.wait_for(lambda: (lambda s: s if pred(s) else None)(self.inspect(name)), timeout, 0.1)
        assert st, f"{name} never reached the expected state: {self.inspect(name)['State']}"
        return st

    def facts(self, **opts) -> Facts:
        return Facts(LiveSource(), CheckOptions(docker_host=self.d.host, network=False, **opts))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.d.stop()
        self.net.close()
        lab.umount_under(self.dir)
        lab.rmtree(self.dir)


@pytest.fixture(scope="module")
def rh() -> Iterator[RH]:
    h = RH()
    try:
        yield h
    finally:
        h.close()


def results(facts: Facts, select: str) -> dict:
    out = {}
    for r in run_rules(
        facts,
        {
            i
            for i in (
                "DD301",
                "DD302",
                "DD303",
                "DD304",
                "DD305",
                "DD306",
                "DD401",
                "DD402",
                "DD403",
                "DD404",
                "DD405",
                "DD406",
                "DD407",
            )
            if i.startswith(select)
        },
    ):
        if r.status != RuleStatus.NOT_SELECTED:
            assert r.status != RuleStatus.CRASHED, f"{r.rule_id} crashed: {r.reason}\n{getattr(r, 'traceback', '')}"
            out[r.rule_id] = r
    return out


def findings_for(res: dict, rid: str, container: str | None = None) -> list:
    fs = res[rid].findings
    if container is not None:
        fs = [f for f in fs if f.params.get("container") == container]
    return fs


# --------------------------------------------------------------------------------------------------
# DD401 / DD402: the gunicorn lock crash, restart-looping, then fixed by the plan's docker run line


def test_lock_crash_restart_loop_then_fixed_by_the_plans_docker_run(rh: RH) -> None:
    name = "ddrh-crash"
    data = rh.dir / "crash-data"
    data.mkdir()
    rh.docker(
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
        "owner=ddrh",
        "-v",
        f"{data}:/registry",
        "-v",
        f"{rh.crash_sh}:/crash.sh:ro",
        "lab/busybox:1",
        "sh",
        "/crash.sh",
    )
    rh.wait_state(name, lambda s: s["State"]["Status"] == "exited" and s["RestartCount"] == 3)

    facts = rh.facts()
    regs = {rc.name: rc for rc in facts.get("registry_containers")}
    assert name in regs, "a container is recognised as the python registry from its real log lines"
    rc = regs[name]
    assert rc.kind == "python" and rc.version == "v0"
    assert rc.data_dir == "/registry"  # STORAGE_PATH honoured
    assert any("_setup_database.lock" in ln for ln in rc.container.logs)
    assert len(rc.container.logs) <= 300  # a bounded tail

    res = results(facts, "DD4")
    (f401,) = findings_for(res, "DD401", name)
    assert "exited after 3 restarts" in f401.message
    run = f401.params["docker_run"]
    assert "GUNICORN_OPTS=[--preload]" in run and "--restart on-failure:3" in run
    assert f"{data}:/registry" in run and "/crash.sh:ro" in run and "owner=ddrh" in run
    (f402,) = findings_for(res, "DD402", name)
    assert "exited (code 3) after 3 restarts" in f402.title
    assert "OSError: [Errno 2] No such file or directory: './registry._setup_database.lock'" in f402.message
    assert findings_for(res, "DD403", name) == []  # /registry is a bind mount: persisted

    # apply the fix exactly as the plan prints it, against the real daemon
    for op in f401.fix.operations[:3]:
        argv = list(op.argv)
        assert argv[0] == "docker"
        rh.docker(*argv[1:])
    st = rh.wait_state(name, lambda s: s["State"]["Status"] == "running")
    assert "GUNICORN_OPTS=[--preload]" in st["Config"]["Env"]
    assert st["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert st["Config"]["Labels"].get("owner") == "ddrh"
    assert sorted((m["Source"], m["Destination"], m["RW"]) for m in st["Mounts"]) == sorted(
        [(str(data), "/registry", True), (str(rh.crash_sh), "/crash.sh", False)]
    )
    assert st["HostConfig"]["NetworkMode"] == "none"
    lab.wait_for(lambda: "Listening at" in rh.docker("logs", name, check=False), 10)

    res = results(rh.facts(), "DD4")
    assert findings_for(res, "DD401", name) == [] and findings_for(res, "DD402", name) == []
    rh.docker("rm", "-f", name, f"{name}-before-dockerdoctor")


# --------------------------------------------------------------------------------------------------
# DD403: a registry:2-like container with its volume at the v0 path


def test_registry2_with_volume_at_tmp_registry(rh: RH) -> None:
    wrong, right = "ddrh-wrongvol", "ddrh-rightvol"
    host_dir = rh.dir / "wrongvol-data"
    host_dir.mkdir()
    rh.docker(
        "run",
        "-d",
        "--name",
        wrong,
        "--network",
        "host",
        "-e",
        f"REGISTRY_HTTP_ADDR={rh.srv}:5302",
        "-v",
        f"{host_dir}:/tmp/registry",
        "lab/registry:2.8.2",
    )
    rh.docker(
        "run",
        "-d",
        "--name",
        right,
        "--network",
        "host",
        "-e",
        f"REGISTRY_HTTP_ADDR={rh.srv}:5303",
        "-v",
        "ddrh-regdata:/var/lib/registry",
        "lab/registry:2.8.2",
    )
    for n in (wrong, right):
        rh.wait_state(n, lambda s: s["State"]["Status"] == "running")
    # the real registry writes its data to /var/lib/registry, not to the volume at /tmp/registry
    assert lab.wait_for(lambda: lab.port_open(rh.net.srv_ns, rh.srv, 5302), 10)
    st, hdrs, _ = lab.http_get(rh.net.srv_ns, rh.srv, 5302, "/v2/")
    assert st == 200
    s = lab.tcp_connect(rh.net.srv_ns, rh.srv, 5302)
    s.sendall(
        f"POST /v2/ddrh/x/blobs/uploads/ HTTP/1.1\r\nHost: {rh.srv}:5302\r\nContent-Length: 0\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    assert b"202 Accepted" in s.recv(4096)
    s.close()
    assert list(host_dir.iterdir()) == []
    vols = [m for m in rh.inspect(wrong)["Mounts"] if m["Destination"] == "/var/lib/registry"]
    assert vols and vols[0]["Type"] == "volume"  # the image's VOLUME: an anonymous volume
    assert (Path(vols[0]["Source"]) / "docker" / "registry" / "v2" / "repositories").exists()

    facts = rh.facts()
    regs = {rc.name: rc for rc in facts.get("registry_containers")}
    assert regs[wrong].version == "v2" and regs[wrong].port == 5302
    eps = dict(facts.get("registry_endpoints_from_containers"))
    assert HostPort(rh.srv, 5302) in eps and HostPort(rh.srv, 5303) in eps
    res = results(facts, "DD40")
    (f,) = findings_for(res, "DD403", wrong)
    assert f.params["wrong_mount"] == "/tmp/registry" and f.params["data_dir"] == "/var/lib/registry"
    assert "python v0.x registry" in f.message
    run = [op for op in f.fix.operations if "run" in op.argv][0].argv
    assert f"{vols[0]['Name']}:/var/lib/registry" in run or f"{host_dir}:/var/lib/registry" in run
    assert findings_for(res, "DD403", right) == []
    assert findings_for(res, "DD404", wrong) == [] and findings_for(res, "DD402", wrong) == []
    rh.docker("rm", "-f", "-v", wrong, right)


# --------------------------------------------------------------------------------------------------
# DD404: no published port; the published control is reachable through docker-proxy


def test_registry_without_published_port(rh: RH) -> None:
    nopub, pub, local = "ddrh-nopub", "ddrh-pub", "ddrh-local"
    rh.docker("run", "-d", "--name", nopub, "-v", "ddrh-nopub:/var/lib/registry", "lab/registry:2.8.2")
    rh.docker("run", "-d", "--name", pub, "-p", "5304:5000", "-v", "ddrh-pub:/var/lib/registry", "lab/registry:2.8.2")
    rh.docker(
        "run",
        "-d",
        "--name",
        local,
        "-p",
        "127.0.0.1:5305:5000",
        "-v",
        "ddrh-local:/var/lib/registry",
        "lab/registry:2.8.2",
    )
    for n in (nopub, pub, local):
        rh.wait_state(n, lambda s: s["State"]["Status"] == "running")
    assert lab.wait_for(lambda: lab.port_open(rh.net.cli_ns, rh.srv, 5304), 10), "published port answers"
    st, _, _ = lab.http_get(rh.net.cli_ns, rh.srv, 5304, "/v2/")
    assert st == 200

    facts = rh.facts()
    res = results(facts, "DD40")
    (f,) = findings_for(res, "DD404", nopub)
    assert f.severity.label == "error" and "5000" in f.title
    run = [op for op in f.fix.operations if "run" in op.argv][0].argv
    assert run[run.index("-p") + 1] == "5000:5000"
    assert findings_for(res, "DD404", pub) == []
    (fl,) = findings_for(res, "DD404", local)
    assert fl.severity.label == "warning" and "loopback" in fl.title
    eps = dict(facts.get("registry_endpoints_from_containers"))
    assert HostPort("localhost", 5304) in eps
    assert not any(hp.port == 5000 for hp in eps)

    # the fix's docker run line, applied, publishes the port
    for op in f.fix.operations[:3]:
        rh.docker(*op.argv[1:])
    rh.wait_state(nopub, lambda s: s["State"]["Status"] == "running")
    assert lab.wait_for(lambda: lab.port_open(rh.net.cli_ns, rh.srv, 5000), 10)
    assert findings_for(results(rh.facts(), "DD404"), "DD404", nopub) == []
    rh.docker("rm", "-f", "-v", nopub, f"{nopub}-before-dockerdoctor", pub, local)
