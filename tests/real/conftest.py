"""Fixtures for tests/real: a capture lab on the fixed subnet 10.203.0.0/24 (see dockerd_capture.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import dockerd_capture as cap
import lab
import pytest


@pytest.fixture(scope="session")
def bnet(lab_root: Path) -> Iterator[lab.LabNet]:
    """Namespaces ``<p>srv`` = 10.203.0.1 and ``<p>cli`` = 10.203.0.2."""
    net = lab.LabNet(f"ddb{os.getpid()}x", n=cap.SUBNET_N)
    net.record_in(lab_root)
    yield net
    net.close()


@pytest.fixture(scope="session")
def breg(lab_root: Path, bnet: lab.LabNet) -> Iterator[lab.DistRegistry]:
    """Plain-HTTP docker-registry on 10.203.0.1:5100."""
    reg = lab.DistRegistry(lab_root / "capture", cap.SRV, cap.PORT, netns=bnet.srv_ns, name="capture-plain")
    reg.start()
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def bcerts(lab_root: Path):
    return lab.make_lab_certs(lab_root / "capture-certs", cap.SRV)


@pytest.fixture(scope="session")
def bregs(lab_root: Path, bnet: lab.LabNet, bcerts, breg) -> Iterator[dict[str, lab.DistRegistry]]:
    """The TLS and htpasswd registries on 10.203.0.1 (ports in dockerd_capture.PORTS), plus ``plain``."""
    htp = lab.write_htpasswd(lab_root / "capture-htpasswd", {"labuser": "labpass"})
    tls_of = {
        "tls": bcerts.good,
        "tls_cn_only": bcerts.cn_only,
        "tls_wrong_name": bcerts.wrong_name,
        "tls_expired": bcerts.expired,
        "tls_not_yet_valid": bcerts.not_yet_valid,
    }
    regs: dict[str, lab.DistRegistry] = {"plain": breg}
    try:
        for name in (*tls_of, "htpasswd"):
            regs[name] = lab.DistRegistry(
                lab_root / "capture",
                cap.SRV,
                cap.PORTS[name],
                netns=bnet.srv_ns,
                tls=tls_of.get(name),
                htpasswd=htp if name == "htpasswd" else None,
                name=f"capture-{name}",
            ).start()
        yield regs
    finally:
        for n, r in regs.items():
            if n != "plain":
                r.stop()


@pytest.fixture
def start(client_dockerd, bnet: lab.LabNet, breg: lab.DistRegistry):
    """start(daemon_json=None, extra_args=(), must_start=False, busybox=False) -> Dockerd on 10.203.0.2."""

    def _start(daemon_json=None, extra_args=(), must_start=False, busybox=False):
        return client_dockerd(
            daemon_json, list(extra_args), labnet=bnet, must_start=must_start, busybox=busybox, cli=cap.CLI_BIN
        )

    return _start


@pytest.fixture(scope="module", autouse=True)
def _write_capture_index() -> Iterator[None]:
    yield
    cap.write_index()
