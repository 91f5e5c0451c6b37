"""dockerdoctor's own serve-registry as a probe target (the issue: "serve-registry becomes a target too")."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from eplab import EpLab, ServeRegistry  # noqa: E402
from rulecheck import fired  # noqa: E402

from dockerdoctor.facts import HostPort  # noqa: E402
from dockerdoctor.probe.e2e import run_e2e  # noqa: E402
from dockerdoctor.probe.endpoint import probe_endpoint  # noqa: E402

pytestmark = pytest.mark.real("nft", "nginx")


def _certs(ep_lab: EpLab, sr: ServeRegistry) -> str:
    d = ep_lab.dir / "sr-certs" / sr.hostport
    d.mkdir(parents=True, exist_ok=True)
    (d / "ca.crt").write_bytes(sr.ca_pem)
    return str(d)


def test_serve_registry_probes_healthy_with_its_ca(ep_lab: EpLab, ep_serve_registry: ServeRegistry) -> None:
    sr = ep_serve_registry
    addr = HostPort.parse(sr.hostport)
    rep = ep_lab.in_client(probe_endpoint, addr, 2.0, _certs(ep_lab, sr))
    assert rep.layer == "ok" and rep.registry_api == "v2" and rep.api_version_header == "registry/2.0", rep.summary
    assert fired(rep) == {}
    rep = ep_lab.in_client(probe_endpoint, addr, 2.0, None)
    assert rep.tls_error == "unknown-authority"
    assert set(fired(rep)) == {"DD204"}


def test_serve_registry_e2e_limits_and_no_delete(ep_lab: EpLab, ep_serve_registry: ServeRegistry) -> None:
    sr = ep_serve_registry
    addr = HostPort.parse(sr.hostport)
    res = ep_lab.in_client(run_e2e, addr, timeout=10.0, certs_dir=_certs(ep_lab, sr))
    step = res.failed_step
    assert step is not None and step.status == 413, [(s.name, s.status, s.detail) for s in res.steps]
    assert "DD211" in fired(None, e2e={sr.hostport: res})
    res = ep_lab.in_client(run_e2e, addr, timeout=10.0, certs_dir=_certs(ep_lab, sr), big=512 * 1024)
    assert res.ok and res.delete == "unsupported", [(s.name, s.status, s.detail) for s in res.steps]
