"""The network guard itself (tests/netguard.py): it catches a stray connection from the host namespace,
lets namespaced lab traffic and DNS through, and vanishes with its session even after SIGKILL."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import lab
import netguard
import pytest

# TEST-NET-3: routed to the default gateway from the host namespace, so only the guard stops it.
STRAY = ("203.0.113.1", 9)


def _guard() -> netguard.Guard:
    if netguard.ACTIVE is None:
        if os.environ.get("CI"):
            pytest.fail("the network guard is off on CI")
        pytest.skip("the network guard is off (not root, or no nft)")
    return netguard.ACTIVE


def test_guard_catches_a_deliberate_stray_connection() -> None:
    g = _guard()
    assert g.strays() is not None, "the guard table is gone"
    with g.expect_strays() as count:
        s = socket.socket()
        s.settimeout(3)
        with pytest.raises(OSError) as exc:
            s.connect(STRAY)
        s.close()
    assert exc.value.errno == errno.EHOSTUNREACH, exc.value  # rejected on the spot, not a timeout
    assert count == [1]
    assert f"{STRAY[0]}:{STRAY[1]}" in g.destinations()


def test_guard_rules_cover_the_ranges_and_name_their_exclusions() -> None:
    g = _guard()
    text = subprocess.run(["nft", "list", "table", "inet", g.name], capture_output=True, text=True).stdout
    for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "192.0.2.0/24", "fc00::/7"):
        assert net in text, net
    assert "flags owner" in text
    for r in netguard.resolvers():
        assert any(r in e for e in g.exclusions)
    assert g.scope.startswith("processes in cgroup"), g.scope  # another session's packets are not ours


@pytest.mark.real
def test_lab_namespace_traffic_never_reaches_the_guard(labnet: lab.LabNet) -> None:
    g = _guard()
    before = g.strays()
    srv = lab.netns_socket(labnet.srv_ns)
    srv.bind((labnet.srv_ip, 0))
    srv.listen(1)
    c = lab.tcp_connect(labnet.cli_ns, labnet.srv_ip, srv.getsockname()[1])
    c.sendall(b"x" * 1000)
    srv.accept()[0].close()
    c.close()
    srv.close()
    assert g.strays() == before


GUARD_CHILD = """
import sys, time
sys.path.insert(0, sys.argv[1])
import netguard
g = netguard.Guard().start()
print(g.name, g._holder.pid, g._cgroup, flush=True)
time.sleep(120)
"""


def test_guard_vanishes_when_its_session_is_killed() -> None:
    _guard()
    p = subprocess.Popen([sys.executable, "-c", GUARD_CHILD, str(Path(__file__).parent)], stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout is not None
        name, holder, cgroup = p.stdout.readline().split()
        assert subprocess.run(["nft", "list", "table", "inet", name], capture_output=True).returncode == 0
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    gone = lab.wait_for(lambda: subprocess.run(["nft", "list", "table", "inet", name],
                                               capture_output=True).returncode != 0, 5)
    assert gone, f"table {name} survived its session"
    assert lab.wait_for(lambda: not Path(f"/proc/{holder}").exists(), 5), "the holder outlived its session"
    assert Path(cgroup).exists()  # an empty cgroup is left by SIGKILL, and the next session sweeps it
    time.sleep(0.1)
    assert cgroup in netguard.sweep_stale()
    assert not Path(cgroup).exists()
