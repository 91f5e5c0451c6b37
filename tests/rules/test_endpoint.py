"""DD201-DD212 on probe reports and journals given as data (no network). The same rules run on
real servers in tests/probe/test_endpoint_real.py; here the edge cases and the offline path."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "probe"))

from rulecheck import fired  # noqa: E402

from dockerdoctor.facts import HostPort  # noqa: E402
from dockerdoctor.facts.daemon import ConfigValue, DaemonJson, EffectiveConfig  # noqa: E402
from dockerdoctor.facts.host import CertsDir, Journal  # noqa: E402
from dockerdoctor.probe.auth import CredentialInfo  # noqa: E402
from dockerdoctor.probe.endpoint import EndpointReport, HttpAnswer  # noqa: E402

A = HostPort("10.0.0.5", 5000)


def rep(**kw) -> EndpointReport:  # type: ignore[no-untyped-def]
    r = EndpointReport(A, tcp="open", seconds=0.004)
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def v2(status: int = 200, **headers: str) -> HttpAnswer:
    h = {"docker-distribution-api-version": "registry/2.0", **{k.lower().replace("_", "-"): v
                                                                 for k, v in headers.items()}}
    return HttpAnswer("/v2/", status, h, "{}")


def Cfg(*insecure: str) -> EffectiveConfig:  # noqa: N802 - reads like the value it builds
    """The effective configuration of a daemon running with these insecure registries (from daemon.json)."""
    dj = DaemonJson("/etc/docker/daemon.json", "default", True, data={"insecure-registries": list(insecure)})
    return EffectiveConfig(None, None, None, dj, [], [ConfigValue(v, "daemon.json", dj.path, 2) for v in insecure], {})


HEALTHY = rep(scheme="https", v2=v2(), http_status=200, registry_api="v2")


def test_healthy_fires_nothing() -> None:
    assert fired(HEALTHY) == {}


@pytest.mark.parametrize("tcp,rule", [("refused", "DD201"), ("timeout", "DD202"), ("unreachable", "DD202"),
                                      ("dns", "DD212")])
def test_tcp_layer(tcp: str, rule: str) -> None:
    found = fired(rep(tcp=tcp, tcp_error="x", layer="tcp"))
    assert set(found) == {rule}
    f = found[rule][0]
    assert f.params["registry"] == "10.0.0.5:5000" if rule != "DD212" else f.params["host"] == "10.0.0.5"
    assert f.fix is not None and f.fix.operations


def test_dd202_fix_opens_the_port_and_never_disables_the_firewall() -> None:
    f = fired(rep(tcp="unreachable", tcp_error="connect: no route to host"))["DD202"][0]
    cmds = [" ".join(op.argv) for op in f.fix.operations]
    assert "firewall-cmd --add-port=5000/tcp" in cmds
    assert "firewall-cmd --permanent --add-port=5000/tcp" in cmds
    assert not any("stop" in c or "disable" in c for c in cmds)


def test_plain_http_respects_insecure_registries_and_loopback() -> None:
    plain = rep(scheme="http", v2=v2(), http_status=200, registry_api="v2")
    assert set(fired(plain)) == {"DD203"}
    assert fired(plain, effective_config=Cfg("10.0.0.5:5000")) == {}
    assert fired(plain, effective_config=Cfg("10.0.0.0/24")) == {}
    assert set(fired(plain, effective_config=Cfg("10.0.0.5"))) == {"DD203"}  # no port: a silent no-op in dockerd
    lo = EndpointReport(HostPort("127.0.0.1", 5000), tcp="open", scheme="http", v2=v2(), registry_api="v2")
    assert fired(lo) == {}  # 127.0.0.0/8 is always insecure


def test_dd203_fix_prefers_tls_and_names_insecure_as_alternative() -> None:
    f = fired(rep(scheme="http", v2=v2(), registry_api="v2"))["DD203"][0]
    assert "TLS" in f.fix.summary
    assert f.fix.alternatives and "insecure-registries" in f.fix.alternatives[0].summary
    assert f.fix.alternatives[0].warnings  # the CIS cost is spelled out


@pytest.mark.parametrize("kind,rule", [("unknown-authority", "DD204"), ("name-mismatch", "DD205"),
                                       ("expired", "DD206")])
def test_tls_layer(kind: str, rule: str) -> None:
    r = rep(scheme="https", tls_error=kind, tls_detail="x509: ...", layer="tls", v2=v2(), registry_api="v2",
            leaf={"subject_cn": "10.0.0.5", "dns_names": [], "ip_addresses": ["10.0.0.9"], "not_before": "a",
                  "not_after": "b", "issuer": "CN=ca", "self_signed": False})
    found = fired(r)
    assert set(found) == {rule}
    assert any("SANs: 10.0.0.9" in e.text for e in found[rule][0].evidence)
    assert fired(r, effective_config=Cfg("10.0.0.5:5000")) == {}  # insecure turns verification off


def test_dd205_cn_only_says_so() -> None:
    r = rep(scheme="https", tls_error="name-mismatch", layer="tls", registry_api="v2",
            tls_detail="x509: certificate relies on legacy Common Name field, use SANs instead",
            leaf={"subject_cn": "10.0.0.5", "dns_names": [], "ip_addresses": [], "not_before": "a", "not_after": "b",
                  "issuer": "CN=ca", "self_signed": False})
    f = fired(r)["DD205"][0]
    assert f.params["cn_only"] is True and "CN only" in f.message
    assert any("subjectAltName=IP:10.0.0.5" in " ".join(op.argv) for op in f.fix.operations)


def test_dd207_v1_only() -> None:
    r = rep(scheme="http", registry_api="v1", v2=HttpAnswer("/v2/", 404, {"x-docker-registry-version": "0.9.1"}),
            v1=HttpAnswer("/v1/_ping", 200, {"x-docker-registry-version": "0.9.1"}, "true"), layer="http")
    found = fired(r, effective_config=Cfg("10.0.0.5:5000"))
    assert set(found) == {"DD207"}
    assert "0.9.1" in found["DD207"][0].evidence[0].text


@pytest.mark.parametrize("creds,valid,fires", [
    (CredentialInfo("/root/.docker/config.json"), None, True),
    (CredentialInfo("/root/.docker/config.json", True, True, "auths", username="u"), None, False),
    (CredentialInfo("/root/.docker/config.json", True, True, "auths", username="u"), False, True),
    (CredentialInfo("/root/.docker/config.json", True, False, "credsStore", "docker-credential-pass",
                    helper_missing=True), None, True),
])
def test_dd208(creds: CredentialInfo, valid: bool | None, fires: bool) -> None:
    r = rep(scheme="https", v2=v2(401, www_authenticate='Basic realm="r"'), http_status=401, registry_api="v2",
            auth_challenge="Basic", credentials=creds, credentials_valid=valid)
    found = fired(r)
    assert ("DD208" in found) is fires
    if fires:
        f = found["DD208"][0]
        assert f.fix.operations[0].argv == ("docker", "login", "10.0.0.5:5000")
        text = " ".join(e.text for e in f.evidence)
        if creds.helper_missing:
            assert "docker-credential-pass" in text


def test_dd209_near_miss_folders_and_files() -> None:
    certs = {
        "10.0.0.5": CertsDir("10.0.0.5", "/etc/docker/certs.d/10.0.0.5", ["ca.crt"]),
        "10.0.0.5:5001": CertsDir("10.0.0.5:5001", "/etc/docker/certs.d/10.0.0.5:5001", ["ca.crt"]),
        "https:": CertsDir("https:", "/etc/docker/certs.d/https:", ["10.0.0.5:5000"]),
        "10.0.0.5:5000": CertsDir("10.0.0.5:5000", "/etc/docker/certs.d/10.0.0.5:5000", ["ca.pem"]),
        "other:5000": CertsDir("other:5000", "/etc/docker/certs.d/other:5000", ["ca.crt"]),
    }
    found = fired(HEALTHY, certs_d=certs)["DD209"]
    titles = " | ".join(f.title for f in found)
    assert "certs.d/10.0.0.5 is not read" in titles
    assert "certs.d/10.0.0.5:5001 is not read" in titles
    assert "certs.d/https: is not read" in titles
    assert "ca.pem is never read" in titles
    assert "other:5000" not in titles
    mv = next(f for f in found if f.title.startswith("certs.d/10.0.0.5 is")).fix.operations[0].argv
    assert mv == ("mv", "-T", "/etc/docker/certs.d/10.0.0.5", "/etc/docker/certs.d/10.0.0.5:5000")


def test_dd209_client_pair_error_offline() -> None:
    certs = {"10.0.0.5:5000": CertsDir("10.0.0.5:5000", "/etc/docker/certs.d/10.0.0.5:5000",
                                       ["ca.crt", "client.cert"])}
    found = fired(None, certs_d=certs, journal=Journal("journal", []),
                  e2e={"10.0.0.5:5000": _E2E()})["DD209"]
    assert found[0].severity.label == "error"
    assert "missing key client.key" in found[0].message


@pytest.mark.parametrize("r", [
    rep(scheme=None, tls_error="handshake", tls_detail="EOF", handshake="eof", layer="tls"),
    rep(scheme="https", v2=HttpAnswer("/v2/", 404, {"content-type": "text/html", "server": "nginx"}, "<html>"),
        http_status=404, v1=HttpAnswer("/v1/_ping", 404), layer="http"),
])
def test_dd210(r: EndpointReport) -> None:
    assert set(fired(r)) == {"DD210"}


def test_dd210_not_for_tls_with_bad_certificate() -> None:
    r = rep(scheme="https", tls_error="expired", tls_detail="x", layer="tls")
    assert "DD210" not in fired(r)


def _E2E(status: int | None = None, address: HostPort = A):  # type: ignore[no-untyped-def]  # noqa: N802
    """An e2e result: ok, or failing with `status` at the 2 MiB PATCH."""
    from dockerdoctor.probe.e2e import E2EResult, Step

    res = E2EResult(address, "dockerdoctor-probe", tag="probe-1", scheme="https", server_header="nginx/1.22.1")
    res.steps = [Step("GET /v2/", True, 200, "200 OK"),
                 Step("layer 2048 KiB (one PATCH): PATCH 2097997 bytes", status is None, status or 202,
                      "413 Request Entity Too Large" if status else "202 Accepted")]
    res.ok = status is None
    res.delete = "deleted" if res.ok else "not tried"
    return res


def test_dd211_from_e2e() -> None:
    found = fired(None, e2e={"10.0.0.5:5000": _E2E(413)})
    assert set(found) == {"DD211"}
    assert "nginx" in " ".join(e.text for e in found["DD211"][0].evidence)
    assert fired(None, e2e={"10.0.0.5:5000": _E2E()}) == {}


# ---------------------------------------------------------------------------------------- offline (journal)

JOURNAL = [
    'Nov 27 10:00:00 host dockerd[812]: time="2026-11-27T10:00:00Z" level=info msg="Attempting next endpoint for '
    'push after error: Get \\"https://10.0.0.5:5000/v2/\\": x509: certificate relies on legacy Common Name field, '
    'use SANs instead"',
    'Nov 27 10:01:00 host dockerd[812]: time="2026-11-27T10:01:00Z" level=info msg="Attempting next endpoint for '
    'push after error: Get \\"https://10.0.0.7:5000/v2/\\": dial tcp 10.0.0.7:5000: connect: no route to host"',
    'Nov 27 10:02:00 host dockerd[812]: time="2026-11-27T10:02:00Z" level=error msg="Upload failed: error parsing '
    'HTTP 413 response body: invalid character \'<\'" registry=10.0.0.5:5000',
]


def test_offline_rules_read_the_journal_through_the_knowledge_base() -> None:
    j = Journal("sos_commands/docker/journalctl_--no-pager_--unit_docker", JOURNAL)
    found = fired(None, journal=j, e2e={"10.0.0.5:5000": _E2E()})  # e2e only to name the target
    assert "DD205" in found and found["DD205"][0].params["cn_only"] is True
    assert found["DD205"][0].evidence[0].line == 1
    assert "DD202" not in found  # that line is about another registry
    other = fired(None, journal=j, e2e={"10.0.0.7:5000": _E2E(address=HostPort("10.0.0.7", 5000))})
    assert "DD202" in other


def test_rules_skip_without_probe_or_journal() -> None:
    from dockerdoctor.engine import discover
    from dockerdoctor.errors import Skip
    from dockerdoctor.facts.host import TargetRegistry

    spec = discover()["DD201"]
    with pytest.raises(Skip):
        list(spec.func(target_registries=[TargetRegistry(A, "t", True)], endpoint_probes=None, docker_journal=None))
    with pytest.raises(Skip):
        list(spec.func(target_registries=[], endpoint_probes={}, docker_journal=None))


def test_rule_docstrings_follow_the_explain_layout() -> None:
    from dockerdoctor.engine import discover

    for rid, spec in discover().items():
        if rid.startswith("DD2"):
            for part in ("Why it happens:", "How to fix:", "Example:"):
                assert part in spec.doc, (rid, part)
    assert os.path.exists(Path(__file__).resolve().parents[2] / "rules" / "endpoint.py")


def test_dd213_server_fault_and_client_fault() -> None:
    bad = _E2E(500)
    found = fired(None, e2e={"10.0.0.5:5000": bad})
    assert set(found) == {"DD213"} and found["DD213"][0].params["fault"] == "server"
    assert found["DD213"][0].severity.label == "error"
    ok = _E2E()
    plain = rep(scheme="http", v2=v2(), registry_api="v2")
    found = fired(plain, e2e={"10.0.0.5:5000": ok})
    assert found["DD213"][0].params["fault"] == "client" and found["DD213"][0].severity.label == "info"
    assert "DD213" not in fired(HEALTHY, e2e={"10.0.0.5:5000": ok})


def test_registry_container_log_shows_clients_rejecting_the_certificate() -> None:
    from types import SimpleNamespace

    from dockerdoctor.facts.registry_containers import RegistryContainer

    log = ["2026/11/27 23:34:31 http: TLS handshake error from 10.0.0.2:47948: remote error: tls: bad certificate"]
    container = SimpleNamespace(name="registry", logs=log, host_network=True, env={"REGISTRY_HTTP_ADDR": ":5000"},
                                ports=[], status="running")
    rc = RegistryContainer.__new__(RegistryContainer)
    rc.container, rc.port, rc.config = container, 5000, None  # type: ignore[assignment]
    found = fired(None, containers=[rc], e2e={"10.0.0.5:5000": _E2E()})
    assert "DD204" in found
    f = found["DD204"][0]
    assert f.severity.label == "warning" and f.evidence[0].source == "docker logs registry"
    assert "DD205" not in found and "DD206" not in found


def test_snapshot_offline_end_to_end(tmp_path: Path) -> None:
    """A sosreport-layout snapshot: the journal names the registries and the rules find DD2xx offline."""
    import json
    import subprocess

    sos = tmp_path / "sos_commands" / "docker"
    sos.mkdir(parents=True)
    (tmp_path / "etc/docker/certs.d/10.0.0.5").mkdir(parents=True)
    (tmp_path / "etc/docker/certs.d/10.0.0.5/ca.crt").write_text("x")
    (sos / "journalctl_--no-pager_--unit_docker").write_text("\n".join(JOURNAL[:2]) + "\n")
    exe = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "dockerdoctor")
    r = subprocess.run([exe, "check", "--root", str(tmp_path), "--select", "DD2", "--format", "json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    got = {(f["id"], f["params"].get("registry")) for f in json.loads(r.stdout)["findings"]}
    assert got == {("DD205", "10.0.0.5:5000"), ("DD202", "10.0.0.7:5000"), ("DD209", "10.0.0.5:5000")}
