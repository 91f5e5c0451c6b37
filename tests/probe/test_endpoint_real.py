"""The layered probe against real servers in a private pair of namespaces (see eplab.py).

Each case asserts the layer, what the probe says, and which DD2xx rule the real rule code raises.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from eplab import PASSWORD, PORTS, USER, EpLab  # noqa: E402
from rulecheck import fired  # noqa: E402

pytestmark = pytest.mark.real("nft", "nginx")

REPO = Path(__file__).resolve().parents[2]


def _only(found: dict, rid: str) -> None:
    assert rid in found, f"{rid} did not fire; fired: {sorted(found)}"
    assert set(found) == {rid}, f"expected only {rid}, got {sorted(found)}"


def test_healthy_tls_registry_with_ca_in_certs_d(ep_lab: EpLab) -> None:
    rep = ep_lab.probe("tls", certs=True)
    assert rep.layer == "ok", rep.summary
    assert rep.scheme == "https" and rep.tls_error is None
    assert rep.registry_api == "v2" and rep.http_status == 200
    assert rep.api_version_header == "registry/2.0"
    assert rep.ca_files == ["ca.crt"]
    assert fired(rep) == {}


def test_refused_is_dd201(ep_lab: EpLab) -> None:
    rep = ep_lab.probe("closed")
    assert (rep.tcp, rep.layer) == ("refused", "tcp")
    assert rep.docker_text == f"dial tcp {ep_lab.hp('closed')}: connect: connection refused"
    _only(fired(rep), "DD201")


def test_reject_no_route_is_dd202(ep_lab: EpLab) -> None:
    rep = ep_lab.probe("reject")
    assert rep.tcp == "unreachable", rep.summary
    assert "no route to host" in rep.tcp_error
    _only(fired(rep), "DD202")


def test_drop_costs_the_timeout_and_is_dd202(ep_lab: EpLab) -> None:
    rep = ep_lab.probe("drop", timeout=0.3)
    assert rep.tcp == "timeout", rep.summary
    found = fired(rep)
    _only(found, "DD202")
    assert found["DD202"][0].params["kind"] == "dropped"


def test_plain_http_is_dd203(ep_lab: EpLab) -> None:
    rep = ep_lab.probe("plain")
    assert rep.scheme == "http" and rep.registry_api == "v2", rep.summary
    assert rep.docker_text.endswith("http: server gave HTTP response to HTTPS client")
    _only(fired(rep), "DD203")


def test_unknown_ca_is_dd204(ep_lab: EpLab) -> None:
    rep = ep_lab.probe("tls")
    assert (rep.scheme, rep.tls_error) == ("https", "unknown-authority"), rep.summary
    assert rep.tls_detail == "x509: certificate signed by unknown authority"
    assert rep.registry_api == "v2"  # the HTTP layer is still read, unverified, for the report
    _only(fired(rep), "DD204")


def test_garbage_and_misnamed_ca_files_are_ignored_like_dockerd(ep_lab: EpLab) -> None:
    cdir = ep_lab.certs_dir("tls", {"ca.pem": ep_lab.ca_pem, "junk.crt": b"not a certificate\n"})
    rep = ep_lab.probe("tls", certs=cdir)
    assert rep.tls_error == "unknown-authority"
    assert rep.certs_dir_ignored == ["ca.pem"] and rep.certs_dir_bad_ca == ["junk.crt"]
    found = fired(rep, certs_d={ep_lab.hp("tls"): _certs_entry(cdir)})
    assert set(found) == {"DD204", "DD209"}
    assert any("ca.pem" in f.title for f in found["DD209"])


def test_cn_only_is_dd205_even_with_unknown_ca(ep_lab: EpLab) -> None:
    for certs in (False, True):
        rep = ep_lab.probe("cn_only", certs=certs)
        assert rep.tls_error == "name-mismatch", rep.summary
        assert rep.tls_detail == "x509: certificate relies on legacy Common Name field, use SANs instead"
        found = fired(rep)
        _only(found, "DD205")
        assert found["DD205"][0].params["cn_only"] is True


def test_wrong_name_is_dd205(ep_lab: EpLab) -> None:
    rep = ep_lab.probe("wrong_name", certs=True)
    wrong = ".".join(ep_lab.srv.split(".")[:3] + ["9"])
    assert rep.tls_detail == f"x509: certificate is valid for {wrong}, not {ep_lab.srv}"
    _only(fired(rep), "DD205")


@pytest.mark.parametrize("name,word", [("expired", "after"), ("not_yet_valid", "before")])
def test_expired_and_not_yet_valid_are_dd206(ep_lab: EpLab, name: str, word: str) -> None:
    rep = ep_lab.probe(name, certs=True)
    assert rep.tls_error == "expired", rep.summary
    assert rep.tls_detail.startswith("x509: certificate has expired or is not yet valid: current time ")
    assert f" is {word} " in rep.tls_detail
    found = fired(rep)
    _only(found, "DD206")
    assert found["DD206"][0].params["not_yet_valid"] is (word == "before")


def test_insecure_registries_silences_tls_and_http_rules(ep_lab: EpLab) -> None:
    from dockerdoctor.facts.daemon import ConfigValue, DaemonJson, EffectiveConfig

    cidr = f"{ep_lab.srv}/24".replace(".1/24", ".0/24")
    cfg = EffectiveConfig(None, None, None, DaemonJson("x", "default", True, data={"insecure-registries": [cidr]}),
                          [], [ConfigValue(cidr, "daemon.json", "x", 1)], {})
    for name in ("plain", "expired", "tls"):
        assert fired(ep_lab.probe(name), effective_config=cfg) == {}, name


def test_v1_only_is_dd207(ep_lab: EpLab) -> None:
    rep = ep_lab.probe("v1")
    assert rep.scheme == "http" and rep.registry_api == "v1", rep.summary
    assert rep.v1 is not None and rep.v1.status == 200
    found = fired(rep)
    assert "DD207" in found and "DD210" not in found


def test_auth_without_credentials_is_dd208(ep_lab: EpLab, tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"auths": {ep_lab.srv: {"auth": "eDp5"}}}))  # host without the port
    rep = ep_lab.probe("auth", certs=True, docker_config=str(cfg))
    assert rep.http_status == 401 and rep.registry_api == "v2" and rep.auth_challenge == "Basic"
    assert rep.credentials is not None and not rep.credentials.found
    assert rep.credentials.near_misses == [ep_lab.srv]
    assert rep.layer == "auth"
    found = fired(rep)
    _only(found, "DD208")
    assert ep_lab.srv in found["DD208"][0].evidence[-1].text


def test_auth_with_good_and_bad_credentials(ep_lab: EpLab, tmp_path: Path) -> None:
    import base64

    cfg = tmp_path / "config.json"
    for pw, valid in ((PASSWORD, True), ("wrong", False)):
        token = base64.b64encode(f"{USER}:{pw}".encode()).decode()
        cfg.write_text(json.dumps({"auths": {f"https://{ep_lab.hp('auth')}": {"auth": token}}}))
        rep = ep_lab.probe("auth", certs=True, docker_config=str(cfg))
        assert rep.credentials.found and rep.credentials.source == "auths"
        assert rep.credentials_valid is valid
        dumped = json.dumps(rep.to_dict())
        assert pw not in dumped and token not in dumped  # never a secret in the report
        assert ("DD208" in fired(rep)) is (not valid)


@pytest.mark.parametrize("name,handshake,detail", [
    ("eof", "eof", "EOF"),
    ("rst", "reset", "connection reset by peer"),
    ("ssh", "not-tls", "first record does not look like a TLS handshake"),
    ("silent", "timeout", "TLS handshake timeout"),
])
def test_servers_that_speak_neither_are_dd210(ep_lab: EpLab, name: str, handshake: str, detail: str) -> None:
    rep = ep_lab.probe(name, timeout=0.5)
    assert rep.tcp == "open" and rep.scheme is None, rep.summary
    assert rep.handshake == handshake
    assert detail in rep.tls_detail
    _only(fired(rep), "DD210")


def test_html_web_server_over_http(ep_lab: EpLab) -> None:
    rep = ep_lab.probe("html")
    assert rep.scheme == "http" and rep.registry_api is None
    found = fired(rep)
    # dockerd's first complaint is the plain HTTP (DD203); the registry API is absent too (DD210)
    assert set(found) == {"DD203", "DD210"}


def test_client_cert_without_key_is_dd209_error(ep_lab: EpLab) -> None:
    cdir = ep_lab.certs_dir("tls", {"ca.crt": ep_lab.ca_pem, "client.cert": ep_lab.ca_pem})
    rep = ep_lab.probe("tls", certs=cdir)
    assert rep.certs_dir_error == ("missing key client.key for client certificate client.cert. "
                                   "Note that CA certificates should use the extension .crt")
    found = fired(rep, certs_d={ep_lab.hp("tls"): _certs_entry(cdir)})
    assert "DD209" in found
    assert found["DD209"][0].severity.label == "error"


def test_parallel_probes_through_the_fact(ep_lab: EpLab) -> None:
    """endpoint_probes probes every target in parallel with the --timeout; a DROP costs one timeout."""
    import time

    from dockerdoctor.facts import CheckOptions, Facts, HostPort
    from dockerdoctor.sources.live import LiveSource

    names = ["plain", "tls", "closed", "drop", "eof"]
    opts = CheckOptions(registries=[HostPort(ep_lab.srv, PORTS[n]) for n in names], timeout=0.4)
    facts = Facts(LiveSource(), opts)
    t = time.monotonic()
    probes = ep_lab.in_client(facts.get, "endpoint_probes")
    elapsed = time.monotonic() - t
    assert sorted(probes) == sorted(ep_lab.hp(n) for n in names)
    assert probes[ep_lab.hp("drop")].tcp == "timeout"
    assert probes[ep_lab.hp("closed")].tcp == "refused"
    print(f"5 endpoints probed in parallel in {elapsed:.3f}s (timeout 0.4s)")


def test_cli_check_json_from_the_client_namespace(ep_lab: EpLab) -> None:
    """`dockerdoctor check --registry` end to end, run inside the client namespace."""
    from eplab import run_quiet

    exe = str(REPO / ".venv" / "bin" / "dockerdoctor")
    r = run_quiet(["ip", "netns", "exec", ep_lab.net.cli_ns, exe, "check", "--select", "DD2",
                   "--registry", ep_lab.hp("closed"), "--registry", ep_lab.hp("cn_only"),
                   "--registry", ep_lab.hp("plain"), "--timeout", "1", "--format", "json"], timeout=60)
    assert r.returncode == 1, r.stderr
    data = json.loads(r.stdout)
    ids = {(f["id"], f["params"].get("registry")) for f in data["findings"]}
    assert ("DD201", ep_lab.hp("closed")) in ids
    assert ("DD205", ep_lab.hp("cn_only")) in ids
    assert ("DD203", ep_lab.hp("plain")) in ids


def _certs_entry(path: str):  # a certs_d fact entry for a folder
    from dockerdoctor.facts.host import CertsDir

    return CertsDir(os.path.basename(path), f"/etc/docker/certs.d/{os.path.basename(path)}",
                    sorted(os.listdir(path)))


@pytest.mark.parametrize("answer,ok", [(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", False),
                                       (b"HTTP/1.1 200 Connection established\r\n\r\n", True)])
def test_proxy_layer_connects_like_dockerd_would(ep_lab: EpLab, answer: bytes, ok: bool) -> None:
    """Layer 4: with the daemon's HTTPS_PROXY (and NO_PROXY without the registry), the probe asks
    the proxy for a CONNECT tunnel, as dockerd would, and says which proxy and what it answered."""
    import lab

    port = 5219 if ok else 5220
    proxy = lab.PlainServer(ep_lab.net.srv_ns, ep_lab.srv, port, mode="http", response=answer)
    try:
        env = {"HTTPS_PROXY": f"http://user:pw@{ep_lab.srv}:{port}", "NO_PROXY": "localhost,127.0.0.1"}
        rep = ep_lab.probe("tls", certs=True, proxy_env=env)
        assert rep.proxy == f"http://{ep_lab.srv}:{port}" and "pw" not in rep.proxy
        assert rep.proxy_variable == "HTTPS_PROXY" and rep.proxy_ok is ok
        assert ("refused CONNECT" in rep.proxy_result) is (not ok)
        assert proxy.accepted >= 1
        rep = ep_lab.probe("tls", certs=True, proxy_env={**env, "NO_PROXY": f"{ep_lab.srv}"})
        assert rep.proxy is None  # NO_PROXY exempts it, as Go's httpproxy does
    finally:
        proxy.stop()


def test_mutual_tls_without_client_certificate_is_dd209(ep_lab: EpLab) -> None:
    rep = ep_lab.probe("mtls", certs=True)
    assert rep.scheme == "https" and rep.tls_error == "client-certificate", rep.summary
    assert rep.tls_detail.startswith("remote error: tls: ")
    found = fired(rep, certs_d={ep_lab.hp("mtls"): _certs_entry(rep.certs_dir)})
    _only(found, "DD209")
    assert "client certificate" in found["DD209"][0].title
    # with a client.cert + client.key pair signed by the CA the registry trusts, it works
    cert, key = ep_lab.client_pair
    cdir = ep_lab.certs_dir("mtls", {"ca.crt": ep_lab.ca_pem, "client.cert": cert, "client.key": key})
    rep = ep_lab.probe("mtls", certs=cdir)
    assert rep.layer == "ok" and rep.registry_api == "v2", rep.summary
