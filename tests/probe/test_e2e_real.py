"""`check --e2e` against real servers: the CNCF registry (plain, TLS + htpasswd, deletes off) and
nginx with client_max_body_size 1m in front of it (DD211)."""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from eplab import PASSWORD, PORTS, USER, EpLab, run_quiet  # noqa: E402
from rulecheck import fired  # noqa: E402

from dockerdoctor.facts import HostPort  # noqa: E402
from dockerdoctor.probe.e2e import run_e2e  # noqa: E402

pytestmark = pytest.mark.real("nft", "nginx")

REPO = Path(__file__).resolve().parents[2]


def e2e(ep_lab: EpLab, name: str, **kw):  # type: ignore[no-untyped-def]
    return ep_lab.in_client(run_e2e, HostPort(ep_lab.srv, PORTS[name]), timeout=10.0, **kw)


def test_round_trip_push_pull_verify_delete(ep_lab: EpLab) -> None:
    res = e2e(ep_lab, "plain", scheme="http", repo="ddep/probe")
    assert res.ok, [(s.name, s.status, s.detail) for s in res.steps]
    names = [s.name for s in res.steps]
    assert any("chunk 2" in n for n in names) and any("one PATCH" in n for n in names)
    assert any(n.startswith("manifest: GET") for n in names)
    assert res.delete == "deleted" and res.cleaned_up
    # the probe repository is gone again: the manifest tag no longer resolves
    from lab import http_get

    st, _, _ = http_get(ep_lab.net.cli_ns, ep_lab.srv, PORTS["plain"], f"/v2/ddep/probe/manifests/{res.tag}")
    assert st == 404


def test_deletes_disabled_is_dd406_info(ep_lab: EpLab) -> None:
    res = e2e(ep_lab, "nodelete", scheme="http")
    assert res.ok and res.delete == "unsupported"
    rep = ep_lab.probe("nodelete")
    found = fired(rep, e2e={ep_lab.hp("nodelete"): res})
    dd406 = [f for f in found.get("DD213", []) if f.rule_id == "DD406"]
    assert dd406 and dd406[0].severity.label == "info"
    # the registry works while dockerd would refuse it (plain HTTP): a client-side fault
    client = [f for f in found["DD213"] if f.rule_id == "DD213"]
    assert client and client[0].params["fault"] == "client" and client[0].severity.label == "info"


def test_nginx_body_limit_is_dd211(ep_lab: EpLab) -> None:
    if ep_lab.nginx is None:
        pytest.fail("nginx is not installed")
    res = e2e(ep_lab, "nginx", scheme="http")
    assert not res.ok
    step = res.failed_step
    assert step is not None and step.status == 413 and "one PATCH" in step.name, res.steps
    assert res.server_header and res.server_header.startswith("nginx")
    found = fired(None, e2e={ep_lab.hp("nginx"): res})
    assert set(found) == {"DD211"}
    assert "client_max_body_size 0" in found["DD211"][0].fix.summary
    # the small blobs went through: only large uploads are refused
    assert all(s.ok for s in res.steps[: res.steps.index(step)])


def test_auth_with_credentials_from_docker_config(ep_lab: EpLab, tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"auths": {ep_lab.hp("auth"): {
        "auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}}}))
    res = e2e(ep_lab, "auth", certs_dir=ep_lab.certs_dir("auth"), docker_config=str(cfg))
    assert res.ok and res.verified_tls, [(s.name, s.status, s.detail) for s in res.steps]
    assert PASSWORD not in json.dumps(res.to_dict())
    res = e2e(ep_lab, "auth", certs_dir=ep_lab.certs_dir("auth"), docker_config=str(tmp_path / "none.json"))
    assert not res.ok and res.failed_step.status == 401
    assert "DD213" not in fired(None, e2e={ep_lab.hp("auth"): res})  # DD208's to report


def test_cli_check_e2e_from_the_client_namespace(ep_lab: EpLab) -> None:
    exe = str(REPO / ".venv" / "bin" / "dockerdoctor")
    r = run_quiet(["ip", "netns", "exec", ep_lab.net.cli_ns, exe, "check", "--select", "DD21",
                   "--registry", ep_lab.hp("nginx"), "--e2e", "--e2e-repo", "ddep/cli", "--format", "json"],
                  timeout=120)
    assert r.returncode == 1, r.stderr
    ids = [f["id"] for f in json.loads(r.stdout)["findings"]]
    assert "DD211" in ids
