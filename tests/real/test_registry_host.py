"""Registry-host rules (DD3xx, DD4xx) against real parts: a dockerd with its bridge in a private
network namespace, real (imported) images, a real firewalld on a private system bus, real nft
and iptables rules, and a process that really holds a port.

Everything lives in namespaces named ``ddrh<pid>srv``/``ddrh<pid>cli`` and in ``/tmp/dd-rh-*``;
ports are 5300-5399. The servers start once per session (module scope) and are stopped by PID.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
import tempfile
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
        self.crash_sh.write_text(lab.LOCK_CRASH_SH)

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
    assert findings_for(res, "DD403", right) == []
    assert findings_for(res, "DD404", wrong) == [] and findings_for(res, "DD402", wrong) == []
    # the fix, applied as printed: the images move to the host directory, now mounted where v2 writes
    cmds = [op.argv for op in f.fix.operations]
    assert cmds[0] == ("docker", "cp", f"{wrong}:/var/lib/registry/.", str(host_dir))
    run = [c for c in cmds if "run" in c][0]
    assert f"{host_dir}:/var/lib/registry" in run and "/tmp/registry" not in " ".join(run)
    for c in cmds[:4]:
        rh.docker(*c[1:])
    rh.wait_state(wrong, lambda s: s["State"]["Status"] == "running")
    assert (host_dir / "docker" / "registry" / "v2" / "repositories" / "ddrh" / "x").is_dir()
    assert findings_for(results(rh.facts(), "DD403"), "DD403", wrong) == []
    rh.docker("rm", "-f", "-v", wrong, right, f"{wrong}-before-dockerdoctor")


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


# --------------------------------------------------------------------------------------------------
# DD301 / DD306: a real firewalld in the registry host's namespace, on a private system bus


@pytest.fixture(scope="module")
def fw(rh: RH) -> Iterator[lab.Firewalld]:
    require = lab.missing_binaries("firewalld", "firewall-cmd", "dbus-daemon", "nft")
    if require:
        pytest.skip(f"missing binaries: {require}")
    f = lab.Firewalld(rh.net, rh.dir / "firewalld")
    old = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = f.bus_address
    try:
        yield f
    finally:
        if old is None:
            os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        else:
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = old
        f.stop()


def in_srv(rh: RH, select: str, facts: Facts | None = None) -> tuple[dict, Facts]:
    """Run the rules inside the registry host's namespace (psutil sees its interfaces there)."""
    facts = facts or rh.facts()
    f = facts
    return lab.in_netns(rh.net.srv_ns, lambda: (results(f, select), f))


def connect_errno(ns: str, host: str, port: int) -> int:
    try:
        lab.tcp_connect(ns, host, port, timeout=3).close()
        return 0
    except OSError as e:
        return e.errno or -1


def f301(res: dict, port: int) -> list:
    return [f for f in res["DD301"].findings if f.params.get("port") == port]


@pytest.mark.real("firewalld", "firewall-cmd", "dbus-daemon", "nft")
def test_dd301_host_registry_closed_runtime_only_and_permanent(rh: RH, fw: lab.Firewalld) -> None:
    port = 5310
    reg = lab.DistRegistry(rh.dir / "regs", rh.srv, port, netns=rh.net.srv_ns, name="ddrh-host").start()
    try:
        # closed: the public zone rejects -> 'no route to host' for the client
        assert connect_errno(rh.net.cli_ns, rh.srv, port) == errno.EHOSTUNREACH
        res, facts = in_srv(rh, "DD30")
        st = facts.get("firewalld")
        assert st.via == "D-Bus" and st.running and st.default_zone == "public"
        (lst,) = [x for x in facts.get("registry_listeners") if x.port == port]
        assert lst.how == "host" and lst.pid == reg.pid  # found through /proc/PID/net/tcp + fds
        (f,) = f301(res, port)
        assert f.severity.label == "error" and f.params["zone"] == "public"
        assert (f.params["runtime_open"], f.params["permanent_open"]) == (False, False)
        cmds = [op.argv for op in f.fix.operations]
        assert cmds == [("firewall-cmd", "--zone=public", f"--add-port={port}/tcp"),
                        ("firewall-cmd", "--permanent", "--zone=public", f"--add-port={port}/tcp")]
        assert not any("stop" in " ".join(c) or "disable" in " ".join(c) for c in cmds)
        assert res["DD306"].findings == []  # firewalld runs
        client = client_endpoint_findings(rh.net.cli_ns, rh.srv, port)
        assert len(client["DD202"]) == 1 and client["DD201"] == []  # the client side of the same zone

        # open at runtime only: reachable now, but the finding says the next reload closes it
        assert fw.cmd(*cmds[0][1:]).returncode == 0
        assert connect_errno(rh.net.cli_ns, rh.srv, port) == 0
        res, _ = in_srv(rh, "DD301")
        (f,) = f301(res, port)
        assert f.severity.label == "warning" and "runtime only" in f.title
        assert [op.argv for op in f.fix.operations] == [cmds[1]]
        # the same verdict from the firewall-cmd text a snapshot holds, and from the zone XML
        from dockerdoctor.facts.firewall import parse_list_all_zones, parse_zone_xml, zone_allows

        rt = parse_list_all_zones(fw.cmd("--list-all-zones").stdout, "x")
        pm = parse_list_all_zones(fw.cmd("--permanent", "--list-all-zones").stdout, "x")
        assert zone_allows(rt["public"], port, "tcp", st.services).open is True
        assert zone_allows(pm["public"], port, "tcp", st.services).open is False
        assert fw.cmd("--reload").returncode == 0  # ... and the reload does close it
        assert connect_errno(rh.net.cli_ns, rh.srv, port) == errno.EHOSTUNREACH
        res, _ = in_srv(rh, "DD301")
        assert f301(res, port)[0].severity.label == "error"

        # the full fix, applied as printed: open now and permanently; silent; survives a reload
        for c in cmds:
            assert fw.cmd(*c[1:]).returncode == 0
        assert fw.cmd("--reload").returncode == 0
        assert connect_errno(rh.net.cli_ns, rh.srv, port) == 0
        res, _ = in_srv(rh, "DD301")
        assert f301(res, port) == []
        xml = (fw.etc / "zones" / "public.xml").read_text()
        z = parse_zone_xml(xml, "public", "x")
        assert z is not None and zone_allows(z, port, "tcp", st.services).open is True
    finally:
        reg.stop()
        fw.cmd("--permanent", "--zone=public", f"--remove-port={port}/tcp")
        fw.cmd("--reload")


def restart_dockerd(rh: RH, env: dict[str, str] | None) -> None:
    rh.d.stop()
    rh.d.env = env
    assert rh.d.start(timeout=30), rh.d.failure_line()


@pytest.mark.real("firewalld", "firewall-cmd", "dbus-daemon", "nft")
def test_dd301_published_port_bypasses_the_zone_and_flushed_docker_rules(rh: RH, fw: lab.Firewalld) -> None:
    name, port = "ddrh-fwpub", 5311
    # dockerd started before firewalld and is not on firewalld's bus: restart it so it has its chains
    restart_dockerd(rh, None)
    rh.docker("run", "-d", "--name", name, "--restart", "always", "-p", f"{port}:5000",
              "-v", "ddrh-fwpub:/var/lib/registry", "lab/registry:2.8.2")
    try:
        rh.wait_state(name, lambda s: s["State"]["Status"] == "running")
        # lab.md §10: docker's DNAT/FORWARD rules admit it although the zone does not open it
        assert lab.wait_for(lambda: connect_errno(rh.net.cli_ns, rh.srv, port) == 0, 10)
        st, _, _ = lab.http_get(rh.net.cli_ns, rh.srv, port, "/v2/")
        assert st == 200
        res, facts = in_srv(rh, "DD30")
        assert port in facts.get("packet_filter").docker_dnat_ports
        (f,) = f301(res, port)
        assert f.severity.label == "info" and f.params["how"] == "published"
        assert "not the cause" in f.message and "every interface" in f.message
        assert res["DD302"].findings == []  # published ports take the FORWARD path

        # a firewalld restart after dockerd flushes docker's rules (what the fw fixture's start did too)
        fw.stop()
        fw.start()
        assert lab.wait_for(lambda: connect_errno(rh.net.cli_ns, rh.srv, port) == errno.EHOSTUNREACH, 10)
        res, facts = in_srv(rh, "DD301")
        (f,) = f301(res, port)
        assert f.severity.label == "error" and "rules are gone" in f.title
        assert port not in (facts.get("packet_filter").docker_dnat_ports or set())
        assert f.fix.operations[0].shell() == "systemctl restart docker.service"
        # the alternative (open the port in the zone) works too: docker-proxy listens on the host port
        alt = f.fix.alternatives[0]
        for op in alt.operations:
            assert fw.cmd(*op.argv[1:]).returncode == 0
        assert connect_errno(rh.net.cli_ns, rh.srv, port) == 0
        fw.cmd("--permanent", "--zone=public", f"--remove-port={port}/tcp")
        fw.cmd("--reload")

        # the fix: restart dockerd; the rules come back, and stay across a firewalld reload
        restart_dockerd(rh, {"DBUS_SYSTEM_BUS_ADDRESS": fw.bus_address})
        rh.wait_state(name, lambda s: s["State"]["Status"] == "running")
        assert lab.wait_for(lambda: connect_errno(rh.net.cli_ns, rh.srv, port) == 0, 10)
        assert fw.cmd("--reload").returncode == 0
        assert lab.wait_for(lambda: connect_errno(rh.net.cli_ns, rh.srv, port) == 0, 10)
        res, _ = in_srv(rh, "DD301")
        assert [x.severity.label for x in f301(res, port)] == ["info"]
    finally:
        rh.docker("rm", "-f", "-v", name, check=False)


@pytest.mark.real("firewalld", "firewall-cmd", "dbus-daemon", "nft")
def test_dd306_firewalld_stopped_is_info(rh: RH, fw: lab.Firewalld) -> None:
    from dockerdoctor.facts.firewall import firewalld_over_dbus

    st = firewalld_over_dbus()
    assert st is not None and st.running
    # the same bus with nobody owning FirewallD1 = "not running" (firewall-cmd says the same, rc 252)
    bus = subprocess.Popen(["dbus-daemon", "--config-file", str(rh.dir / "firewalld" / "bus.conf"),
                            "--nofork", "--nopidfile", "--address", f"unix:path={rh.dir}/idle-bus.sock"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert lab.wait_for(lambda: (rh.dir / "idle-bus.sock").exists(), 10)
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = f"unix:path={rh.dir}/idle-bus.sock"
        idle = firewalld_over_dbus()
        assert idle is not None and idle.running is False
        res, _ = in_srv(rh, "DD306")
        (f,) = [x for x in res["DD306"].findings if x.params.get("what") == "firewalld"]
        assert f.severity.label == "info"
        # no registry listens on this host here, so no port is guessed: the fix is advice only
        assert f.fix.operations == ()
        assert "firewall-offline-cmd" in f.fix.summary and "enable --now firewalld" in f.fix.summary
        assert "every port this host must serve" in f.message
    finally:
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = fw.bus_address
        bus.terminate()
        bus.wait(10)


# --------------------------------------------------------------------------------------------------
# DD303: a port taken by another process (the §7 netns caveat: read from /proc/PID/net/tcp + fds)

HOLDER = "import socket,sys,time;s=socket.socket();s.bind((sys.argv[1],int(sys.argv[2])));s.listen();time.sleep(600)"


def test_dd303_port_taken_by_another_process(rh: RH) -> None:
    port = 5320
    holder = rh.net.popen(rh.net.srv_ns, [sys.executable, "-c", HOLDER, rh.srv, str(port)])
    name, pub = "ddrh-taken", "ddrh-taken-pub"
    try:
        assert lab.wait_for(lambda: lab.port_open(rh.net.srv_ns, rh.srv, port), 10)
        rh.docker("run", "-d", "--name", name, "--network", "host", "--restart", "on-failure:1",
                  "-e", f"REGISTRY_HTTP_ADDR={rh.srv}:{port}", "-v", "ddrh-taken:/var/lib/registry",
                  "lab/registry:2.8.2")
        rh.wait_state(name, lambda s: s["State"]["Status"] == "exited" and s["RestartCount"] == 1)
        r = rh.d.docker("run", "-d", "--name", pub, "-p", f"{rh.srv}:{port}:5000", "lab/registry:2.8.2")
        assert r.returncode != 0 and "address already in use" in r.stderr

        # from the host namespace, psutil sees no socket of the lab namespace (lab.md §7) ...
        import psutil

        assert not any(c.laddr and c.laddr.port == port for c in psutil.net_connections("tcp")
                       if c.status == "LISTEN" and c.laddr.ip == rh.srv)
        # ... but the facts read dockerd's namespace through /proc/PID/net/tcp and /proc/*/fd
        facts = rh.facts()
        socks = [s for s in facts.get("listening_sockets") if s.port == port]
        assert [(s.ip, s.pid) for s in socks] == [(rh.srv, holder.pid)]
        res = results(facts, "DD30")
        res.update(results(facts, "DD40"))
        mine = {f.params["container"]: f for f in res["DD303"].findings}
        assert set(mine) == {name, pub}
        for f in mine.values():
            assert f.params["holder_pid"] == holder.pid and f.params["holder"].startswith("python")
            assert f"pid {holder.pid}" in f.title
        assert "address already in use" in " ".join(e.text for e in mine[name].evidence)
        (down,) = findings_for(res, "DD402", name)
        assert "bind: address already in use" in down.message
        (never,) = findings_for(res, "DD402", pub)
        assert "created but never started" in never.title
    finally:
        holder.kill()
        holder.wait()
        rh.docker("rm", "-f", "-v", name, pub, check=False)
    # with the holder gone, and the registry started, DD303 is silent
    rh.docker("run", "-d", "--name", name, "--network", "host", "-e", f"REGISTRY_HTTP_ADDR={rh.srv}:{port}",
              "-v", "ddrh-taken:/var/lib/registry", "lab/registry:2.8.2")
    try:
        rh.wait_state(name, lambda s: s["State"]["Status"] == "running")
        assert lab.wait_for(lambda: lab.port_open(rh.net.srv_ns, rh.srv, port), 10)
        res = results(rh.facts(), "DD303")
        assert [f for f in res["DD303"].findings if f.params.get("port") == port] == []
    finally:
        rh.docker("rm", "-f", "-v", name, check=False)


# --------------------------------------------------------------------------------------------------
# DD302: nftables and iptables REJECT vs DROP, in a namespace of their own (no firewalld, no dockerd)


@pytest.fixture(scope="module")
def pf() -> Iterator[tuple[lab.LabNet, lab.DistRegistry]]:
    if lab.missing_binaries("nft", "iptables"):
        pytest.skip("nft or iptables missing")
    d = Path(tempfile.mkdtemp(prefix="dd-rh-pf-", dir="/tmp"))
    net = lab.LabNet(f"ddrhp{os.getpid() % 100000}")
    reg = lab.DistRegistry(d, net.srv_ip, 5330, netns=net.srv_ns, name="ddrh-pf")
    try:
        reg.start()
        yield net, reg
    finally:
        reg.stop()
        net.close()
        lab.rmtree(d)


def client_endpoint_findings(ns: str, host: str, port: int) -> dict[str, list]:
    """DD201/DD202 as the client host sees the registry (a real probe from the client namespace)."""
    facts = Facts(LiveSource(), CheckOptions(registries=[HostPort(host, port)], docker_host="unix:///nonexistent/x.sock",
                                             timeout=2.0, network=True))

    def run() -> dict[str, list]:
        return {r.rule_id: r.findings for r in run_rules(facts, {"DD201", "DD202"}) if r.rule_id in ("DD201", "DD202")}

    return lab.in_netns(ns, run)


def pf_results(net: lab.LabNet) -> dict:
    facts = Facts(LiveSource(), CheckOptions(docker_host="unix:///nonexistent/ddrh.sock", network=False))
    return lab.in_netns(net.srv_ns, lambda: results(facts, "DD302"))


def nft(net: lab.LabNet, *args: str) -> None:
    r = net.run(net.srv_ns, ["nft", *args])
    assert r.returncode == 0, r.stderr


@pytest.mark.real("nft", "iptables")
@pytest.mark.parametrize("rule,expect_errno,verdict", [
    ("reject with icmpx admin-prohibited", errno.EHOSTUNREACH, "reject"),
    ("reject with tcp reset", errno.ECONNREFUSED, "reject"),
    ("drop", None, "drop"),
])
def test_dd302_nftables_reject_and_drop(pf, rule: str, expect_errno: int | None, verdict: str) -> None:
    net, reg = pf
    nft(net, "add", "table", "inet", "ddrh")
    try:
        nft(net, "add", "chain", "inet", "ddrh", "input", "{ type filter hook input priority 0; policy accept; }")
        nft(net, "add", "rule", "inet", "ddrh", "input", "tcp", "dport", "22", "accept")
        nft(net, "add", "rule", "inet", "ddrh", "input", "tcp", "dport", "5330", *rule.split())
        e = connect_errno(net.cli_ns, net.srv_ip, 5330)
        if expect_errno is None:
            assert e in (errno.ETIMEDOUT, errno.EAGAIN, -1), e  # no answer at all: the client times out
        else:
            assert e == expect_errno
        res = pf_results(net)
        (f,) = res["DD302"].findings
        assert f.params["backend"] == "nftables" and f.params["verdict"] == verdict and f.params["port"] == 5330
        msg = {errno.EHOSTUNREACH: "no route to host", errno.ECONNREFUSED: "connection refused",
               None: "time out"}[expect_errno]
        assert msg in f.message
        # the client host names the same problem from its side: DD202 (filtered) or DD201 (refused, tcp reset)
        client = client_endpoint_findings(net.cli_ns, net.srv_ip, 5330)
        pair = "DD201" if expect_errno == errno.ECONNREFUSED else "DD202"
        assert [x.rule_id for x in client[pair]] == [pair], client
        # the fix, applied as printed, lets the client in; the rule is then silent
        (op,) = f.fix.operations
        assert op.argv[:2] == ("nft", "insert")
        r = net.run(net.srv_ns, list(op.argv))
        assert r.returncode == 0, r.stderr
        assert connect_errno(net.cli_ns, net.srv_ip, 5330) == 0
        assert pf_results(net)["DD302"].findings == []
    finally:
        nft(net, "delete", "table", "inet", "ddrh")


@pytest.mark.real("nft", "iptables")
def test_dd302_iptables_reject_and_silent_when_open(pf) -> None:
    net, reg = pf
    ipt = ["iptables", "-A", "INPUT", "-p", "tcp", "--dport", "5330", "-j", "REJECT",
           "--reject-with", "icmp-host-prohibited"]
    assert net.run(net.srv_ns, ipt).returncode == 0
    try:
        assert connect_errno(net.cli_ns, net.srv_ip, 5330) == errno.EHOSTUNREACH
        (f,) = pf_results(net)["DD302"].findings
        assert f.params["verdict"] == "reject" and "no route to host" in f.message
        (op,) = f.fix.operations
        assert op.argv[:3] == ("iptables", "-I", "INPUT")
        assert net.run(net.srv_ns, list(op.argv)).returncode == 0
        assert connect_errno(net.cli_ns, net.srv_ip, 5330) == 0
        assert pf_results(net)["DD302"].findings == []
    finally:
        net.run(net.srv_ns, ["iptables", "-F", "INPUT"])


# --------------------------------------------------------------------------------------------------
# the command line, live, inside the registry host's namespace


@pytest.mark.real("firewalld", "firewall-cmd", "dbus-daemon", "nft")
def test_cli_check_live_in_the_registry_host_namespace(rh: RH, fw: lab.Firewalld) -> None:
    port = 5312
    reg = lab.DistRegistry(rh.dir / "regs", rh.srv, port, netns=rh.net.srv_ns, name="ddrh-cli").start()
    try:
        env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": fw.bus_address}
        env.pop("DOCKER_HOST", None)
        exe = str(Path(sys.executable).with_name("dockerdoctor"))
        r = rh.net.run(rh.net.srv_ns, [exe, "check", "-H", rh.d.host, "--select", "DD3,DD4", "--format", "json"],
                       timeout=120, env=env)
        assert r.returncode == 1, r.stderr  # an error-level finding
        rep = json.loads(r.stdout)
        mine = [f for f in rep["findings"] if f["id"] == "DD301" and f["params"].get("port") == port]
        assert len(mine) == 1 and mine[0]["severity"] == "error"
        assert mine[0]["fix"]["operations"][0]["argv"] == ["firewall-cmd", "--zone=public", f"--add-port={port}/tcp"]
        statuses = {x["id"]: x["status"] for x in rep["rules"]}
        assert statuses["DD304"] == "skipped"  # no SELinux on this kernel (lab.md §8)
        assert not [x for x in rep["rules"] if x["status"] == "crashed"]
        ex = subprocess.run([exe, "explain", "DD401"], capture_output=True, text=True, timeout=60)
        assert ex.returncode == 0 and "GUNICORN_OPTS=[--preload]" in ex.stdout and "How to fix:" in ex.stdout
    finally:
        reg.stop()


# --------------------------------------------------------------------------------------------------
# DD405 / DD406 / DD407: storage denied, deletes disabled, replicas without a shared secret


def http(ns: str, host: str, port: int, method: str, path: str, body: bytes = b"",
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    s = lab.tcp_connect(ns, host, port, 5)
    try:
        h = {"Host": f"{host}:{port}", "Connection": "close", "Content-Length": str(len(body)), **(headers or {})}
        s.sendall(f"{method} {path} HTTP/1.1\r\n".encode() + "".join(f"{k}: {v}\r\n" for k, v in h.items()).encode()
                  + b"\r\n" + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    finally:
        s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return int(lines[0].split()[1]), hdrs, rest


def test_dd405_storage_permission_denied_and_the_chown_fix(rh: RH) -> None:
    name, port = "ddrh-denied", 5340
    data = rh.dir / "denied-data"
    data.mkdir(mode=0o755)
    rh.docker("run", "-d", "--name", name, "--network", "host", "--user", "65534:65534",
              "-e", f"REGISTRY_HTTP_ADDR={rh.srv}:{port}", "-v", f"{data}:/var/lib/registry", "lab/registry:2.8.2")
    try:
        rh.wait_state(name, lambda s: s["State"]["Status"] == "running")
        assert lab.wait_for(lambda: lab.port_open(rh.net.srv_ns, rh.srv, port), 10)
        st, _, _ = http(rh.net.srv_ns, rh.srv, port, "POST", "/v2/ddrh/x/blobs/uploads/")
        assert st == 500
        assert lab.wait_for(lambda: "permission denied" in rh.docker("logs", name, check=False)
                            + rh.d.docker("logs", name).stderr, 10)
        res = results(rh.facts(), "DD40")
        (f,) = findings_for(res, "DD405", name)
        assert "permission denied" in f.message
        (op,) = f.fix.operations
        assert op.argv == ("chown", "-R", "65534", str(data))
        subprocess.run(list(op.argv), check=True)
        st, _, _ = http(rh.net.srv_ns, rh.srv, port, "POST", "/v2/ddrh/x/blobs/uploads/")
        assert st == 202
    finally:
        rh.docker("rm", "-f", name, check=False)


def test_dd406_delete_disabled_and_by_tag(rh: RH) -> None:
    name, port = "ddrh-nodelete", 5341
    rh.docker("run", "-d", "--name", name, "--network", "host", "-e", f"REGISTRY_HTTP_ADDR={rh.srv}:{port}",
              "-v", "ddrh-nodelete:/var/lib/registry", "lab/registry:2.8.2")
    try:
        rh.wait_state(name, lambda s: s["State"]["Status"] == "running")
        assert lab.wait_for(lambda: lab.port_open(rh.net.srv_ns, rh.srv, port), 10)
        digest = "sha256:" + "1" * 64
        st, _, body = http(rh.net.srv_ns, rh.srv, port, "DELETE", f"/v2/ddrh/x/manifests/{digest}")
        assert st == 405 and b"UNSUPPORTED" in body
        http(rh.net.srv_ns, rh.srv, port, "DELETE", "/v2/ddrh/x/manifests/latest")
        assert lab.wait_for(lambda: "DELETE" in rh.d.docker("logs", name).stderr, 10)
        res = results(rh.facts(), "DD406")
        problems = {f.params["problem"]: f for f in findings_for(res, "DD406", name)}
        assert set(problems) == {"delete-disabled", "delete-by-tag"}
        assert problems["delete-by-tag"].params["tag"] == "latest"
        run = [op for op in problems["delete-disabled"].fix.operations if "run" in op.argv][0].argv
        assert "REGISTRY_STORAGE_DELETE_ENABLED=true" in run
        # applied as printed, the recreated registry accepts deletes (404: unknown manifest, not 405)
        for op in problems["delete-disabled"].fix.operations[:3]:
            rh.docker(*op.argv[1:])
        rh.wait_state(name, lambda s: s["State"]["Status"] == "running")
        assert lab.wait_for(lambda: lab.port_open(rh.net.srv_ns, rh.srv, port), 10)
        st, _, _ = http(rh.net.srv_ns, rh.srv, port, "DELETE", f"/v2/ddrh/x/manifests/{digest}")
        assert st == 404
    finally:
        rh.docker("rm", "-f", "-v", name, f"{name}-before-dockerdoctor", check=False)


def test_dd407_replicas_without_shared_secret_break_uploads(rh: RH) -> None:
    names, ports = ("ddrh-rep1", "ddrh-rep2"), (5342, 5343)

    def start(secret: str | None) -> None:
        for n, p in zip(names, ports, strict=True):
            env = ["-e", f"REGISTRY_HTTP_ADDR={rh.srv}:{p}"] + (["-e", f"REGISTRY_HTTP_SECRET={secret}"] if secret
                                                                 else [])
            rh.docker("run", "-d", "--name", n, "--network", "host", *env, "-v", "ddrh-shared:/var/lib/registry",
                      "lab/registry:2.8.2")
        for n, p in zip(names, ports, strict=True):
            rh.wait_state(n, lambda s: s["State"]["Status"] == "running")
            assert lab.wait_for(lambda p=p: lab.port_open(rh.net.srv_ns, rh.srv, p), 10)

    def upload_across() -> int:
        """Start an upload on replica 1, finish it on replica 2 (what a load balancer does)."""
        st, hdrs, _ = http(rh.net.srv_ns, rh.srv, ports[0], "POST", "/v2/ddrh/y/blobs/uploads/")
        assert st == 202
        loc = hdrs["location"].split(f":{ports[0]}", 1)[-1]
        blob = b"ddrh"
        import hashlib

        sep = "&" if "?" in loc else "?"
        st, _, _ = http(rh.net.srv_ns, rh.srv, ports[1], "PUT",
                        f"{loc}{sep}digest=sha256:{hashlib.sha256(blob).hexdigest()}", blob,
                        {"Content-Type": "application/octet-stream"})
        return st

    start(None)
    try:
        assert upload_across() >= 400  # the second replica cannot read the first one's upload state
        res = results(rh.facts(), "DD407")
        (f,) = res["DD407"].findings
        assert set(f.params["containers"]) == set(names)
        assert any("No HTTP secret provided" in e.text for e in f.evidence)
        rh.docker("rm", "-f", *names)
        start("ddrh-shared-secret")
        assert upload_across() == 201
        assert results(rh.facts(), "DD407")["DD407"].findings == []
    finally:
        rh.docker("rm", "-f", *names, check=False)
        rh.docker("volume", "rm", "ddrh-shared", check=False)


def test_dd402_registry_absent_on_this_host(rh: RH) -> None:
    port = 5350
    facts = rh.facts(registries=[HostPort(rh.srv, port)])
    res, _ = in_srv(rh, "DD402", facts)
    (f,) = [x for x in res["DD402"].findings if x.params.get("status") == "absent"]
    assert f.params["registry"] == f"{rh.srv}:{port}"
    reg = lab.DistRegistry(rh.dir / "regs", rh.srv, port, netns=rh.net.srv_ns, name="ddrh-absent").start()
    try:
        res, _ = in_srv(rh, "DD402", rh.facts(registries=[HostPort(rh.srv, port)]))
        assert [x for x in res["DD402"].findings if x.params.get("status") == "absent"] == []
    finally:
        reg.stop()
    # another host's address is never "absent" here
    res, _ = in_srv(rh, "DD402", rh.facts(registries=[HostPort("10.99.0.1", port)]))
    assert [x for x in res["DD402"].findings if x.params.get("status") == "absent"] == []


def test_dd304_fix_line_with_z_is_accepted_by_a_real_dockerd(rh: RH) -> None:
    """SELinux cannot run here (lab.md §8), but the :Z recreation the DD304 fix prints must be a docker run
    line dockerd accepts, keeping everything else; rebuilt from the Engine API like the rule does."""
    from dockerdoctor.rules.selinux import selinux_volume_label

    from dockerdoctor.facts.selinux import FileLabel, SelinuxLabels, SelinuxStatus

    name = "ddrh-label"
    data = rh.dir / "label-data"
    data.mkdir()
    rh.docker("run", "-d", "--name", name, "--restart", "unless-stopped", "-p", "5360:5000", "--label", "app=reg",
              "-e", "REGISTRY_LOG_LEVEL=warn", "-v", f"{data}:/var/lib/registry", "lab/registry:2.8.2")
    try:
        rh.wait_state(name, lambda s: s["State"]["Status"] == "running")
        (rc,) = [r for r in rh.facts().get("registry_containers") if r.name == name]
        enforcing = SelinuxStatus("enforcing", "enforcing", source="sestatus", docker_selinux=True)
        labels = SelinuxLabels({str(data): FileLabel(str(data), "unconfined_u:object_r:default_t:s0", "ls -dZ")})
        (f,) = list(selinux_volume_label(enforcing, [rc], labels, None))
        for op in f.fix.operations[:3]:
            rh.docker(*op.argv[1:])
        st = rh.wait_state(name, lambda s: s["State"]["Status"] == "running")
        assert f"{data}:/var/lib/registry:Z" in st["HostConfig"]["Binds"]
        assert st["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
        assert st["HostConfig"]["PortBindings"]["5000/tcp"][0]["HostPort"] == "5360"
        assert st["Config"]["Labels"]["app"] == "reg" and "REGISTRY_LOG_LEVEL=warn" in st["Config"]["Env"]
        assert not any("setenforce" in " ".join(op.argv) for op in f.fix.operations)
    finally:
        rh.docker("rm", "-f", name, f"{name}-before-dockerdoctor", check=False)
