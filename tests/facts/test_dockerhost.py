"""Which daemon a run inspects: the docker CLI's resolution order, SO_PEERCRED on a real unix socket,
the snapshot's choice among several dockerds, and DD501's wording without systemd or for a remote daemon."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from pathlib import Path

import pytest
from snap import PS_HEADER, make_snapshot, ps_line

from dockerdoctor.engine import run_rules
from dockerdoctor.errors import FactUnavailable, InputError
from dockerdoctor.facts import CheckOptions, Facts
from dockerdoctor.facts.dockerhost import (
    DockerHost,
    ask_unix_socket,
    path_in_root,
    resolve_docker_host,
    validate_host,
)
from dockerdoctor.sources.live import LiveSource
from dockerdoctor.sources.snapshot import SnapshotSource


def _context(cfg: Path, name: str, host: str, current: bool = True) -> Path:
    meta = cfg / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest() / "meta.json"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"Name": name, "Metadata": {}, "Endpoints": {"docker": {"Host": host,
                                                                                       "SkipTLSVerify": False}}}))
    if current:
        (cfg / "config.json").write_text(json.dumps({"auths": {}, "currentContext": name}))
    return meta


def test_resolution_order_is_the_docker_clis(tmp_path: Path) -> None:
    cfg = tmp_path / "dc"
    meta = _context(cfg, "lab", "unix:///tmp/ctx.sock")
    env = {"DOCKER_CONFIG": str(cfg)}
    ctx = resolve_docker_host(None, env)
    assert ctx.url == "unix:///tmp/ctx.sock"
    assert ctx.chosen_by.startswith("docker context lab (currentContext in ") and str(meta) in ctx.chosen_by
    assert resolve_docker_host(None, {**env, "DOCKER_HOST": "tcp://h:2375"}) == DockerHost("tcp://h:2375",
                                                                                          "DOCKER_HOST")
    assert resolve_docker_host("unix:///x.sock", {**env, "DOCKER_HOST": "tcp://h:2375"}).chosen_by == "--docker-host"
    _context(cfg, "other", "ssh://u@h", current=False)
    assert resolve_docker_host(None, {**env, "DOCKER_CONTEXT": "other"}).url == "ssh://u@h"
    assert resolve_docker_host(None, {**env, "DOCKER_CONTEXT": "default"}) == DockerHost(
        "unix:///var/run/docker.sock", "default")
    assert resolve_docker_host(None, {"DOCKER_CONFIG": str(tmp_path / "none")}).chosen_by == "default"


def test_a_missing_context_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"currentContext": "gone"}')
    with pytest.raises(InputError, match="docker context 'gone' does not exist"):
        resolve_docker_host(None, {"DOCKER_CONFIG": str(tmp_path)})


@pytest.mark.parametrize("value", ["bogus", "/var/run/docker.sock", "unix://relative.sock", "tcp://", "tcp://h:x",
                                   "tcp://h:99999", "ssh://"])
def test_bogus_hosts_are_usage_errors(value: str) -> None:
    with pytest.raises(InputError):
        validate_host(value)


def test_valid_hosts() -> None:
    assert validate_host("unix:///run/docker.sock") == "unix:///run/docker.sock"
    assert validate_host("TCP://10.0.0.5:2376") == "tcp://10.0.0.5:2376"
    assert validate_host("ssh://user@host") == "ssh://user@host"
    assert DockerHost("unix:///run/docker.sock", "x").is_default
    assert DockerHost("tcp://h:1", "x").remote


def test_paths_under_proc_root_follow_links_inside_that_root(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "var").mkdir()
    os.symlink("/run", tmp_path / "var" / "run")
    os.symlink("../run/x", tmp_path / "rel")
    assert path_in_root(str(tmp_path), "/var/run/docker.sock") == f"{tmp_path}/run/docker.sock"
    assert path_in_root(str(tmp_path), "/rel") == f"{tmp_path}/run/x"
    assert path_in_root(str(tmp_path), "/etc/docker/daemon.json") == f"{tmp_path}/etc/docker/daemon.json"


def _serve(path: Path, reply: bytes) -> socket.socket:
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    srv.listen(4)

    def run() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            c.recv(4096)
            c.sendall(reply)
            c.close()

    threading.Thread(target=run, daemon=True).start()
    return srv


def _stop(srv: socket.socket) -> None:
    srv.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the serving thread
    srv.close()


def test_the_socket_names_its_listener(tmp_path: Path) -> None:
    sock = tmp_path / "d.sock"
    srv = _serve(sock, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
    try:
        ans = ask_unix_socket(DockerHost(f"unix://{sock}", "--docker-host"))
        assert ans.answered and ans.peer_pid == os.getpid() and ans.peer_uid == os.getuid()
    finally:
        _stop(srv)
    ans = ask_unix_socket(DockerHost(f"unix://{sock}", "--docker-host"))  # the file is left, nobody listens
    assert (ans.answered, ans.why) == (False, "refused")
    ans = ask_unix_socket(DockerHost(f"unix://{tmp_path}/none.sock", "--docker-host"))
    assert (ans.answered, ans.why) == (False, "absent")
    other = tmp_path / "web.sock"
    srv = _serve(other, b"SSH-2.0-OpenSSH_9.2\r\n")
    try:
        ans = ask_unix_socket(DockerHost(f"unix://{other}", "--docker-host"))
        assert (ans.answered, ans.why) == (False, "no Engine API")
    finally:
        _stop(srv)


def test_a_listener_that_is_not_dockerd_is_not_taken_for_one(tmp_path: Path) -> None:
    sock = tmp_path / "d.sock"
    srv = _serve(sock, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")  # this pytest process answers
    try:
        facts = Facts(LiveSource(), CheckOptions(docker_host=f"unix://{sock}", network=False))
        with pytest.raises(FactUnavailable, match="is not a dockerd"):
            facts.get("dockerd_process")
        results = {r.rule_id: r for r in run_rules(facts, select={"DD501"})}
        assert results["DD501"].findings == []  # the socket answers: the engine is up, whoever it is
    finally:
        _stop(srv)


def test_live_dd501_on_a_missing_socket_names_it_and_never_advises_systemctl(tmp_path: Path) -> None:
    facts = Facts(LiveSource(), CheckOptions(docker_host=f"unix://{tmp_path}/gone.sock", network=False))
    (f,) = next(r for r in run_rules(facts, select={"DD501"}) if r.rule_id == "DD501").findings
    assert f.params["why"] == "absent" and f.params["socket"] == f"unix://{tmp_path}/gone.sock"
    assert f"{tmp_path}/gone.sock does not exist" in f.message
    assert f.fix is not None and f.fix.operations == () and "journal" not in f.fix.summary
    assert "systemctl" not in json.dumps(f.to_dict())


def test_a_remote_daemon_is_judged_by_its_api_only(tmp_path: Path) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    facts = Facts(LiveSource(), CheckOptions(docker_host=f"tcp://127.0.0.1:{port}", network=False))
    for name in ("docker_unit", "daemon_json", "docker_journal", "certs_d", "dockerd_process", "probe_origin"):
        with pytest.raises(FactUnavailable, match=f"tcp://127.0.0.1:{port}"):
            facts.get(name)
    (f,) = next(r for r in run_rules(facts, select={"DD501"}) if r.rule_id == "DD501").findings
    assert "connection refused" in f.message and "systemctl" not in json.dumps(f.to_dict())


PS_TWO = (PS_HEADER + ps_line("/usr/bin/dockerd -H unix:///tmp/lab/docker.sock --data-root /tmp/lab/root", 700)
          + ps_line("/usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock", 800))


@pytest.mark.parametrize("ps,want", [
    (PS_TWO, 800),  # fd:// serves the default socket (docker.socket); the other one's -H does not
    (PS_HEADER + ps_line("/usr/bin/dockerd -H unix:///tmp/lab/docker.sock", 700), None),  # never "the only one"
    (PS_HEADER + ps_line("/usr/bin/dockerd -H unix:///tmp/a.sock", 700) + ps_line("/usr/bin/dockerd", 900), 900),
    (PS_HEADER + ps_line("/usr/bin/dockerd", 700) + ps_line("/usr/bin/dockerd --data-root /x", 900), None),
])
def test_snapshot_picks_the_dockerd_of_the_default_socket(tmp_path: Path, ps: str, want: int | None) -> None:
    root = make_snapshot(tmp_path / "h", {"sos_commands/process/ps_auxwww": ps})
    src = SnapshotSource(root)
    try:
        proc = Facts(src, CheckOptions(network=False)).get("dockerd_process")
    finally:
        src.close()
    assert (proc.pid if proc else None) == want


def test_snapshot_breaks_a_tie_with_the_units_main_pid(tmp_path: Path) -> None:
    ps = PS_HEADER + ps_line("/usr/bin/dockerd", 700) + ps_line("/usr/bin/dockerd --data-root /x", 900)
    root = make_snapshot(tmp_path / "h", {
        "sos_commands/process/ps_auxwww": ps,
        "usr/lib/systemd/system/docker.service": "[Service]\nExecStart=/usr/bin/dockerd\n",
        "sos_commands/systemd/systemctl_show_service_--all": "Id=docker.service\nActiveState=active\nMainPID=900\n"})
    src = SnapshotSource(root)
    try:
        facts = Facts(src, CheckOptions(network=False))
        assert facts.get("dockerd_process").pid == 900
        assert [o.pid for o in facts.get("other_dockerds")] == [700]
    finally:
        src.close()


def test_snapshot_dd501_lists_the_dockerds_that_serve_other_sockets(tmp_path: Path) -> None:
    root = make_snapshot(tmp_path / "h", {
        "sos_commands/process/ps_auxwww": PS_HEADER + ps_line("/usr/bin/dockerd -H unix:///tmp/lab/docker.sock", 700),
        "usr/lib/systemd/system/docker.service": "[Service]\nExecStart=/usr/bin/dockerd -H fd://\n",
        "sos_commands/systemd/systemctl_show_service_--all": "Id=docker.service\nActiveState=inactive\n"})
    src = SnapshotSource(root)
    try:
        (r,) = [r for r in run_rules(Facts(src, CheckOptions(network=False)), select={"DD501"}) if r.rule_id == "DD501"]
    finally:
        src.close()
    (f,) = r.findings
    assert "no dockerd in the process list serves unix:///var/run/docker.sock" in f.message
    assert any("dockerd pid 700 serves unix:///tmp/lab/docker.sock" in e.text for e in f.evidence)
    assert f.fix is not None and f.fix.summary == "Start docker"  # the journal names no cause


def test_a_rootless_dockerd_is_listed_with_its_own_socket(tmp_path: Path) -> None:
    """Under RootlessKit, dockerd's default socket is $XDG_RUNTIME_DIR/docker.sock, not /var/run/docker.sock."""
    import subprocess

    env = {"PATH": "/usr/bin:/bin", "ROOTLESSKIT_STATE_DIR": str(tmp_path / "rk"), "XDG_RUNTIME_DIR": "/run/user/1000"}
    p = subprocess.Popen(["bash", "-c", "exec -a dockerd sleep 30"], env=env)  # a process that looks like dockerd
    try:
        import time

        for _ in range(100):
            if Path(f"/proc/{p.pid}/cmdline").read_bytes().startswith(b"dockerd"):
                break
            time.sleep(0.01)
        facts = Facts(LiveSource(), CheckOptions(docker_host=f"unix://{tmp_path}/gone.sock", network=False))
        (o,) = [o for o in facts.get("other_dockerds") if o.pid == p.pid]
        assert o.sockets == ["unix:///run/user/1000/docker.sock"]
    finally:
        p.kill()
        p.wait()


@pytest.mark.real
def test_probe_threads_stand_in_the_daemons_namespace_and_the_caller_stays(labnet) -> None:  # type: ignore[no-untyped-def]
    from dockerdoctor.probe.netns import ProbeOrigin, probe_pool

    path = f"/run/netns/{labnet.cli_ns}"
    want, mine = f"net:[{os.stat(path).st_ino}]", os.readlink("/proc/thread-self/ns/net")
    assert want != mine

    def where() -> tuple[str, str]:  # the worker's namespace, and that of a thread it starts (a DNS lookup)
        out: list[str] = []
        t = threading.Thread(target=lambda: out.append(os.readlink("/proc/thread-self/ns/net")))
        t.start()
        t.join()
        return os.readlink("/proc/thread-self/ns/net"), out[0]

    with probe_pool(ProbeOrigin(path, want, 1), 2) as pool:
        assert {pool.submit(where).result() for _ in range(4)} == {(want, want)}
    assert os.readlink("/proc/thread-self/ns/net") == mine
    with probe_pool(None, 2) as pool:
        assert pool.submit(where).result() == (mine, mine)
