"""Unit tests of the probe's pieces: Go's certificate texts, certs.d rules, credentials, proxies."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lab  # noqa: E402

from dockerdoctor.facts import HostPort  # noqa: E402
from dockerdoctor.probe.auth import find_credentials  # noqa: E402
from dockerdoctor.probe.proxy import proxy_for  # noqa: E402
from dockerdoctor.probe.tls import (  # noqa: E402
    LeafInfo,
    check_hostname,
    check_validity,
    parse_leaf,
    read_certs_dir,
)

NOW = dt.datetime(2026, 11, 27, 22, 23, 43, tzinfo=dt.timezone.utc)


def leaf(cn: str | None = "r", dns: list[str] | None = None, ips: list[str] | None = None,
         nb: dt.datetime | None = None, na: dt.datetime | None = None) -> LeafInfo:
    return LeafInfo(cn, dns or [], ips or [], nb or NOW - dt.timedelta(days=1), na or NOW + dt.timedelta(days=1),
                    "CN=ca", False)


@pytest.mark.parametrize("info,host,text", [
    (leaf(ips=["10.0.0.5"]), "10.0.0.5", None),
    (leaf(dns=["*.example.com"]), "reg.example.com", None),
    (leaf(dns=["*.example.com"]), "a.b.example.com",
     "x509: certificate is valid for *.example.com, not a.b.example.com"),
    (leaf(cn="10.0.0.5"), "10.0.0.5", "x509: certificate relies on legacy Common Name field, use SANs instead"),
    (leaf(cn="reg.lab"), "reg.lab", "x509: certificate relies on legacy Common Name field, use SANs instead"),
    (leaf(ips=["10.0.0.9"]), "10.0.0.5", "x509: certificate is valid for 10.0.0.9, not 10.0.0.5"),
    (leaf(dns=["reg.lab"]), "10.0.0.5",
     "x509: cannot validate certificate for 10.0.0.5 because it doesn't contain any IP SANs"),
    (leaf(dns=["reg.lab"]), "other.lab", "x509: certificate is valid for reg.lab, not other.lab"),
    (leaf(cn=None), "reg.lab", "x509: certificate is not valid for any names, but wanted to match reg.lab"),
    (leaf(dns=["REG.Lab"]), "reg.lab", None),
])
def test_hostname_texts_are_go_s(info: LeafInfo, host: str, text: str | None) -> None:
    assert check_hostname(info, host) == text


def test_validity_texts_are_go_s() -> None:
    assert check_validity(leaf(), NOW) is None
    old = leaf(na=dt.datetime(2026, 11, 26, 22, 23, 38, tzinfo=dt.timezone.utc))
    assert check_validity(old, NOW) == ("x509: certificate has expired or is not yet valid: current time "
                                        "2026-11-27T22:23:43Z is after 2026-11-26T22:23:38Z")
    future = leaf(nb=NOW + dt.timedelta(hours=1))
    assert " is before 2026-11-27T23:23:43Z" in check_validity(future, NOW)


def test_parse_leaf_reads_sans_and_dates() -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ca = lab.Certs.make_ca("t")
    pem, _ = lab.Certs.make_leaf(ca, sans=["10.0.0.5", "reg.lab"], cn="reg.lab")
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    info = parse_leaf(der)
    assert info.ip_addresses == ["10.0.0.5"] and info.dns_names == ["reg.lab"] and info.subject_cn == "reg.lab"
    assert not info.self_signed and check_hostname(info, "10.0.0.5") is None


def test_certs_dir_rules_match_dockerd(tmp_path: Path) -> None:
    ca = lab.Certs.make_ca("t")[0]
    d = tmp_path / "10.0.0.5:5000"
    d.mkdir()
    (d / "ca.crt").write_bytes(ca)
    (d / "junk.crt").write_text("garbage")
    (d / "ca.pem").write_bytes(ca)
    (d / "client.cert").write_bytes(ca)
    (d / "client.key").write_text("k")
    c = read_certs_dir(str(d))
    assert c.exists and c.ca_files == ["ca.crt"] and c.bad_ca_files == ["junk.crt"]
    assert c.ignored == ["ca.pem"] and c.client_pairs == [("client.cert", "client.key")] and c.error is None
    (d / "client.key").unlink()
    assert read_certs_dir(str(d)).error == ("missing key client.key for client certificate client.cert. "
                                            "Note that CA certificates should use the extension .crt")
    (d / "client.cert").unlink()
    (d / "other.key").write_text("k")
    assert read_certs_dir(str(d)).error == "Missing client certificate other.cert for key other.key"
    assert not read_certs_dir(str(tmp_path / "absent")).exists


# ------------------------------------------------------------------------------------------ credentials


def _cfg(tmp_path: Path, data: dict) -> str:
    p = tmp_path / "config.json"
    p.write_text(json.dumps(data))
    return str(p)


def test_credentials_exact_key_and_scheme_forms(tmp_path: Path) -> None:
    a = HostPort("10.0.0.5", 5000)
    tok = base64.b64encode(b"alice:s3cret").decode()
    for key in ("10.0.0.5:5000", "https://10.0.0.5:5000", "http://10.0.0.5:5000/v1/"):
        info = find_credentials(a, _cfg(tmp_path, {"auths": {key: {"auth": tok}}}))
        assert info.found and info.source == "auths" and info.username == "alice", key
        assert "s3cret" not in json.dumps(info.to_dict()) and tok not in json.dumps(info.to_dict())
        assert "s3cret" not in repr(info)


def test_credentials_near_misses_do_not_count(tmp_path: Path) -> None:
    a = HostPort("10.0.0.5", 5000)
    info = find_credentials(a, _cfg(tmp_path, {"auths": {"10.0.0.5": {"auth": "eDp5"},
                                                         "https://10.0.0.5:5001": {"auth": "eDp5"},
                                                         "other:5000": {"auth": "eDp5"}}}))
    assert not info.found
    assert sorted(info.near_misses) == ["10.0.0.5", "https://10.0.0.5:5001"]


def test_credential_helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = HostPort("10.0.0.5", 5000)
    info = find_credentials(a, _cfg(tmp_path, {"credHelpers": {"10.0.0.5:5000": "nonexistent-ddep"}}))
    assert info.source == "credHelpers" and info.helper == "docker-credential-nonexistent-ddep"
    assert info.helper_missing and not info.found
    # a helper that holds an entry: `list` answers with server -> user name only
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-ddeptest"
    helper.write_text('#!/bin/sh\n[ "$1" = list ] && echo \'{"https://10.0.0.5:5000":"bob"}\'\n')
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    info = find_credentials(a, _cfg(tmp_path, {"credsStore": "ddeptest"}))
    assert info.found and info.source == "credsStore" and info.username == "bob"
    info = find_credentials(HostPort("10.0.0.6", 5000), _cfg(tmp_path, {"credsStore": "ddeptest"}))
    assert not info.found


def test_credentials_missing_or_broken_config(tmp_path: Path) -> None:
    a = HostPort("10.0.0.5", 5000)
    assert not find_credentials(a, str(tmp_path / "nope.json")).config_exists
    p = tmp_path / "bad.json"
    p.write_text("{")
    info = find_credentials(a, str(p))
    assert info.config_exists and info.error and not info.found


# ------------------------------------------------------------------------------------------ proxies


@pytest.mark.parametrize("env,host,port,proxied", [
    ({"HTTPS_PROXY": "http://proxy:3128"}, "10.0.0.5", 5000, True),
    ({"HTTPS_PROXY": "proxy:3128"}, "10.0.0.5", 5000, True),
    ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "10.0.0.0/8"}, "10.0.0.5", 5000, False),
    ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "10.0.0.5:5001"}, "10.0.0.5", 5000, True),
    ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "10.0.0.5:5000"}, "10.0.0.5", 5000, False),
    ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": ".example.com"}, "reg.example.com", 443, False),
    ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "example.com"}, "reg.example.com", 443, False),
    ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "*"}, "reg.example.com", 443, False),
    ({"HTTPS_PROXY": "http://proxy:3128"}, "127.0.0.1", 5000, False),
    ({"HTTPS_PROXY": "http://proxy:3128"}, "localhost", 5000, False),
    ({"https_proxy": "http://proxy:3128"}, "10.0.0.5", 5000, True),
    ({"HTTP_PROXY": "http://proxy:3128"}, "10.0.0.5", 5000, False),  # https:// goes by HTTPS_PROXY only
])
def test_proxy_selection_is_go_s(env: dict, host: str, port: int, proxied: bool) -> None:
    choice = proxy_for(HostPort(host, port), env)
    assert (choice is not None) is proxied
    if choice:
        assert choice.port == 3128 and choice.variable == "HTTPS_PROXY"


def test_proxy_credentials_are_not_displayed() -> None:
    choice = proxy_for(HostPort("10.0.0.5", 5000), {"HTTPS_PROXY": "http://u:pw@proxy:3128"})
    assert choice is not None and choice.auth == "u:pw" and "pw" not in choice.display


def test_a_dead_resolver_costs_no_more_than_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    import time

    from dockerdoctor.probe.endpoint import probe_endpoint

    real = socket.getaddrinfo

    def slow(host, *a, **kw):  # type: ignore[no-untyped-def]
        if host == "slow.invalid":
            time.sleep(3)
        return real(host, *a, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    t = time.monotonic()
    rep = probe_endpoint(HostPort("slow.invalid", 5000), 0.3)
    assert rep.tcp == "dns" and "no answer within 0.3s" in rep.tcp_error
    assert time.monotonic() - t < 2.0


def test_sudo_user_config_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dockerdoctor.probe.auth import docker_config_path

    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "root-home"))
    assert docker_config_path() == str(tmp_path / "root-home" / ".docker" / "config.json")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "cfg"))
    assert docker_config_path() == str(tmp_path / "cfg" / "config.json")
    assert docker_config_path(str(tmp_path / "x.json")) == str(tmp_path / "x.json")
