"""The daemon is the one behind the socket: three real dockerds at once, and `check` inspects exactly the
one its socket names, with that daemon's own configuration, every time.

* A serves /var/run/docker.sock in a private mount namespace (with a private /run): the default socket
  of that namespace only. `check` run inside A's mount namespace picks A; run in ours it finds nothing on
  our /var/run/docker.sock and lists A, B and C as information.
* B serves a private socket in its work dir: `--docker-host unix://B` picks B.
* C runs in the lab's client namespace, whose plain-HTTP registry (the lab's srv_ip:5100) is reachable
  only from there: `check --docker-host unix://C --registry ...` names DD203 and DD101, probed from C's
  namespace, while a capture on the uplink and the session's guard see no packet to that address.

Each daemon has its own daemon.json with a key DD106 reports ("insecure-registry", the flag's name, which
dockerd ignores), carrying a value unique to that daemon: the report shows whose file was read.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lab
import netguard
import pytest

pytestmark = pytest.mark.real

EXE = str(Path(sys.executable).parent / "dockerdoctor")
ROUNDS = 20
MARK = {"A": "127.0.0.1:5201", "B": "127.0.0.1:5202", "C": "127.0.0.1:5203"}


@dataclass
class Daemons:
    a: lab.Dockerd
    b: lab.Dockerd
    c: lab.Dockerd
    env: dict[str, str]

    def by_name(self) -> dict[str, lab.Dockerd]:
        return {"A": self.a, "B": self.b, "C": self.c}


@pytest.fixture(scope="module")
def daemons(lab_root: Path, labnet: lab.LabNet) -> Iterator[Daemons]:
    started: list[lab.Dockerd] = []
    cfg = Path(tempfile.mkdtemp(prefix="dd-id-cfg-", dir=lab_root))  # an empty DOCKER_CONFIG: no context
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKER_CONTEXT")}
    env.update(DOCKER_CONFIG=str(cfg), NO_COLOR="1")
    try:
        spec = {
            "A": {"netns": labnet.srv_ns, "sock": "/var/run/docker.sock", "private_run": True},
            "B": {"netns": labnet.srv_ns},
            "C": {"netns": labnet.cli_ns},
        }
        out = {}
        for name, kw in spec.items():
            d = lab.Dockerd(lab_root / f"identity-{name}", daemon_json={"insecure-registry": [MARK[name]]}, **kw)
            started.append(d)
            assert d.start(), d.failure_line()
            out[name] = d
        yield Daemons(out["A"], out["B"], out["C"], env)
    finally:
        for d in started:
            d.stop()
            lab.rmtree(d.workdir)
        shutil.rmtree(cfg, ignore_errors=True)


def _check(env: dict[str, str], *args: str, mount_of: int | None = None) -> dict:
    argv = [EXE, "check", "--format", "json", *args]
    if mount_of is not None:
        argv = ["nsenter", f"--mount=/proc/{mount_of}/ns/mnt", "--", *argv]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, cwd="/")
    assert r.returncode in (0, 1), r.stderr
    return json.loads(r.stdout)


def _marks(report: dict) -> set[str]:
    """Which daemon's daemon.json the report read (DD106's evidence quotes the line)."""
    text = json.dumps([f for f in report["findings"] if f["id"] == "DD106"])
    return {name for name, mark in MARK.items() if mark in text}


def _finding(report: dict, rule: str) -> dict | None:
    return next((f for f in report["findings"] if f["id"] == rule), None)


def test_check_inspects_exactly_the_daemon_its_socket_names(daemons: Daemons) -> None:
    d = daemons
    ours_absent = not os.path.exists("/var/run/docker.sock")  # a machine with a real docker of its own
    env = {**d.env, "DOCKER_HOST": d.c.host}
    with ThreadPoolExecutor(max_workers=4) as pool:  # each round's checks run at once: 4 processes, 2 cores
        for _ in range(ROUNDS):
            fa = pool.submit(_check, d.env, "--select", "DD1,DD5", mount_of=d.a.pid)  # default socket, A's ns
            fb = pool.submit(_check, d.env, "--select", "DD1,DD5", "--docker-host", d.b.host)
            fc = pool.submit(_check, env, "--select", "DD1,DD5")
            fh = pool.submit(_check, d.env, "--select", "DD1,DD5") if ours_absent else None
            a, b, c = fa.result(), fb.result(), fc.result()
            assert a["daemon"] == {"host": "unix:///var/run/docker.sock", "chosen_by": "default", "pid": d.a.pid}
            assert _marks(a) == {"A"}, a["findings"]
            assert _finding(a, "DD501") is None

            assert b["daemon"] == {"host": d.b.host, "chosen_by": "--docker-host", "pid": d.b.pid}
            assert _marks(b) == {"B"}, b["findings"]

            assert c["daemon"] == {"host": d.c.host, "chosen_by": "DOCKER_HOST", "pid": d.c.pid}
            assert _marks(c) == {"C"}, c["findings"]

            if fh is None:
                continue
            h = fh.result()  # our own default socket: nothing there
            assert h["daemon"]["pid"] is None
            f = _finding(h, "DD501")
            assert f is not None and f["params"]["why"] == "absent", h["findings"]
            assert f["message"].startswith("Nothing answers on unix:///var/run/docker.sock (default): "
                                           "/var/run/docker.sock does not exist")
            info = " ".join(e["text"] for e in f["evidence"])
            for x in (d.a, d.b, d.c):
                assert f"dockerd pid {x.pid} serves" in info
            assert "unix:///var/run/docker.sock (in its own mount namespace, not this one's)" in info
            assert f"--docker-host unix://{d.b.listen_sock} inspects it" in info
            assert "systemctl" not in json.dumps(f["fix"])  # no systemd on this machine
            assert _marks(h) == set()  # no other daemon's daemon.json was read


def _uplink() -> str:
    """The interface of the host namespace's default route: where a stray packet would leave."""
    for line in Path("/proc/net/route").read_text().splitlines()[1:]:
        cols = line.split()
        if len(cols) > 1 and cols[1] == "00000000":
            return cols[0]
    return "any"


def _capture(host: str) -> tuple[subprocess.Popen[bytes], Path]:
    pcap = Path(tempfile.mkstemp(prefix="dd-id-", suffix=".pcap")[1])
    iface = _uplink()
    p = subprocess.Popen(["tcpdump", "-i", iface, "-n", "-U", "-w", str(pcap), f"host {host}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert p.stderr is not None
    line = p.stderr.readline().decode()  # "listening on eth0 ..." once the capture runs
    assert "listening on" in line, line
    return p, pcap


@pytest.mark.real("tcpdump")
def test_probes_run_from_the_daemons_network_namespace(daemons: Daemons, labnet: lab.LabNet,
                                                       dist_registries: Any) -> None:
    c = daemons.c
    reg = dist_registries.plain.hostport
    # From this (the host's) namespace the address leads off the machine; only C's namespace reaches it.
    assert os.readlink(f"/proc/{c.pid}/ns/net") != os.readlink("/proc/self/ns/net")
    seen_before = netguard.ACTIVE.destinations() if netguard.ACTIVE else []
    cap, pcap = _capture(labnet.srv_ip)
    try:
        r = _check(daemons.env, "--docker-host", c.host, "--registry", reg, "--select", "DD1,DD2")
    finally:
        time.sleep(0.2)
        cap.send_signal(signal.SIGINT)
        cap.wait(10)
    try:
        packets = subprocess.run(["tcpdump", "-n", "-r", str(pcap)], capture_output=True, text=True).stdout
    finally:
        pcap.unlink()
    assert packets == "", packets
    if netguard.ACTIVE is not None:
        assert netguard.ACTIVE.destinations() == seen_before
    assert r["probed_from"] == {"netns": os.readlink(f"/proc/{c.pid}/ns/net"), "pid": c.pid,
                                "description": f"the network namespace of dockerd pid {c.pid} "
                                               f"({os.readlink(f'/proc/{c.pid}/ns/net')})"}
    ids = {f["id"] for f in r["findings"]}
    assert {"DD101", "DD203"} <= ids, r["findings"]
    dd203 = _finding(r, "DD203")
    assert dd203 is not None and reg in dd203["title"] + dd203["message"]
