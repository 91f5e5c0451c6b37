"""What a real dockerd 20.10 prints when the registry end is wrong (lab.md §2-§4).

TLS (unknown CA, CN-only, wrong name, expired, not yet valid, certs.d mistakes), servers that speak
neither HTTP nor TLS (EOF, reset, SSH banner, silence, refused, a web page), packet filters (reject
variants, drop), basic auth, and a proxy's 413. Each test asserts the real behaviour and saves the text
under ``fixtures/errors/dockerd-20.10/`` (see dockerd_capture.py). Registry host 10.203.0.1, client
10.203.0.2; ports in ``dockerd_capture.PORTS``.

The two slow cases (a silent server: 10 s TLS handshake timeout; a DROP rule: 15 s client timeout)
start in the background when the module starts, so they overlap the other tests.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import lab
import pytest
from dockerd_capture import CLI, PORTS, SRV, record
from dockerd_capture import push as _push

pytestmark = pytest.mark.real

REFUSED = f"{SRV}:{PORTS['refused']}"
NFT_TABLE = "ddlabcapture"
FILTER_PORTS = {"drop": 5120, "admin_prohibited": 5121, "tcp_reset": 5122, "no_route": 5123}


def hp(name: str) -> str:
    return f"{SRV}:{PORTS[name]}"


# ---------------------------------------------------------------------------------------------------
# servers that are not registries, packet filters, and the slow pushes in the background


@pytest.fixture(scope="module")
def plain_servers(bnet: lab.LabNet) -> Iterator[dict[str, lab.PlainServer]]:
    servers = {m: lab.PlainServer(bnet.srv_ns, SRV, PORTS[m], mode=m) for m in ("eof", "rst", "ssh", "silent")}
    servers["html"] = lab.PlainServer(bnet.srv_ns, SRV, PORTS["html"], mode="http")
    try:
        yield servers
    finally:
        for s in servers.values():
            s.stop()


@pytest.fixture(scope="module")
def nft_rules(bnet: lab.LabNet) -> Iterator[None]:
    if lab.missing_binaries("nft"):
        yield None  # the tests that need it are marked real("nft")
        return
    fp = FILTER_PORTS
    script = f"""table inet {NFT_TABLE} {{
  chain input {{
    type filter hook input priority 0; policy accept;
    tcp dport {fp["drop"]} drop
    tcp dport {fp["admin_prohibited"]} reject with icmpx admin-prohibited
    tcp dport {fp["tcp_reset"]} reject with tcp reset
    tcp dport {fp["no_route"]} reject with icmpx no-route
  }}
}}
"""
    r = bnet.run(bnet.srv_ns, ["nft", "-f", "-"], input=script)
    assert r.returncode == 0, r.stderr
    try:
        yield None
    finally:
        bnet.run(bnet.srv_ns, ["nft", "delete", "table", "inet", NFT_TABLE])


class _Bg:
    def __init__(self, fn) -> None:
        self.result: subprocess.CompletedProcess | None = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.result = fn()
            except BaseException as e:  # noqa: BLE001
                self.error = e

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def get(self, timeout: float = 60) -> subprocess.CompletedProcess:
        self.thread.join(timeout)
        if self.error:
            raise self.error
        assert self.result is not None, "background push did not finish"
        return self.result


@pytest.fixture(scope="module", autouse=True)
def slow_pushes(client_dockerd_factory, bnet, breg, plain_servers, nft_rules) -> Iterator[dict[str, object]]:
    """Start the 10 s and 15 s cases at module start, each from its own dockerd."""
    out: dict[str, object] = {}
    d1 = client_dockerd_factory({}, labnet=bnet, busybox=True, cli=_cli())
    out["silent_d"] = d1
    out["silent"] = _Bg(lambda: _push(d1, hp("silent")))
    if not lab.missing_binaries("nft"):
        d2 = client_dockerd_factory({}, labnet=bnet, busybox=True, cli=_cli())
        out["drop_d"] = d2
        out["drop"] = _Bg(lambda: _push(d2, f"{SRV}:{FILTER_PORTS['drop']}"))
    yield out
    for k in ("silent", "drop"):
        if k in out:
            out[k].thread.join(30)  # type: ignore[attr-defined]
    for k in ("silent_d", "drop_d"):
        if k in out:
            out[k].stop()  # type: ignore[attr-defined]


def _cli() -> str | None:
    from dockerd_capture import CLI_BIN

    return CLI_BIN


# ---------------------------------------------------------------------------------------------------
# TLS


def test_tls_unknown_authority(start, bregs) -> None:
    d = start({}, must_start=True, busybox=True)
    r = _push(d, hp("tls"))
    assert r.returncode == 1
    assert r.stderr.strip() == f'Get "https://{hp("tls")}/v2/": x509: certificate signed by unknown authority'
    record("tls-unknown-authority", r.stderr, d, kind="push-stderr", rule="DD204")
    # the registry's side of the same handshake
    line = wait_line(bregs["tls"], "TLS handshake error")
    assert "remote error: tls: bad certificate" in line
    record(
        "registry-log-tls-handshake-error",
        line,
        None,
        kind="registry-log",
        rule="DD204",
        note="docker-registry 2.8's log while a client rejects its certificate",
    )


def wait_line(reg: lab.DistRegistry, needle: str) -> str:
    line = lab.wait_for(lambda: next((ln for ln in reg.log_text().splitlines() if needle in ln), None), 5)
    assert line, f"{needle!r} not in the registry log:\n{reg.log_text()[-2000:]}"
    return line


def test_tls_cn_only(start, bregs, bcerts) -> None:
    d = start({}, must_start=True, busybox=True)
    want = (
        f'Get "https://{hp("tls_cn_only")}/v2/": x509: certificate relies on legacy Common Name field, use SANs instead'
    )
    r = _push(d, hp("tls_cn_only"))
    assert r.returncode == 1 and r.stderr.strip() == want
    record("tls-cn-only", r.stderr, d, kind="push-stderr", rule="DD205", note="CA not trusted; CN-only wins")
    d.add_cert(hp("tls_cn_only"), {"ca.crt": bcerts.ca_pem})
    r = _push(d, hp("tls_cn_only"))
    assert r.returncode == 1 and r.stderr.strip() == want  # the same with the CA trusted


def test_tls_wrong_name_expired_not_yet_valid(start, bregs, bcerts) -> None:
    d = start({}, must_start=True, busybox=True)
    for name in ("tls", "tls_wrong_name", "tls_expired", "tls_not_yet_valid"):
        d.add_cert(hp(name), {"ca.crt": bcerts.ca_pem})
    r = _push(d, hp("tls"))
    assert r.returncode == 0, r.stderr  # certs.d is read on every push: no restart
    r = _push(d, hp("tls_wrong_name"))
    assert (
        r.stderr.strip()
        == f'Get "https://{hp("tls_wrong_name")}/v2/": x509: certificate is valid for 10.203.0.9, not {SRV}'
    )
    record("tls-wrong-name", r.stderr, d, kind="push-stderr", rule="DD205", note="CA trusted; SAN IP 10.203.0.9")
    r = _push(d, hp("tls_expired"))
    assert "x509: certificate has expired or is not yet valid: current time " in r.stderr and " is after " in r.stderr
    record("tls-expired", r.stderr, d, kind="push-stderr", rule="DD206", note="CA trusted")
    r = _push(d, hp("tls_not_yet_valid"))
    assert "x509: certificate has expired or is not yet valid: current time " in r.stderr and " is before " in r.stderr
    record("tls-not-yet-valid", r.stderr, d, kind="push-stderr", rule="DD206", note="CA trusted")


def test_insecure_turns_off_verification(start, bregs) -> None:
    bad = [hp("tls_cn_only"), hp("tls_expired"), hp("tls")]
    d = start({"insecure-registries": bad}, must_start=True, busybox=True)
    for h in bad:
        r = _push(d, h)
        assert r.returncode == 0, (h, r.stderr)


def test_certs_d_mistakes(start, bregs, bcerts) -> None:
    d = start({}, must_start=True, busybox=True)
    h = hp("tls")
    unknown = f'Get "https://{h}/v2/": x509: certificate signed by unknown authority'
    # ca.pem instead of ca.crt: silently ignored
    d.add_cert(h, {"ca.pem": bcerts.ca_pem})
    r = _push(d, h)
    assert r.stderr.strip() == unknown
    record(
        "certs-d-ca-pem-ignored",
        r.stderr,
        d,
        kind="push-stderr",
        rule="DD209",
        certs_d={h: ["ca.pem"]},
        note="ca.pem is ignored; only *.crt files are CAs",
    )
    lab.rmtree(d.certs_dir(h))
    # a directory without the port
    d.add_cert(SRV, {"ca.crt": bcerts.ca_pem})
    r = _push(d, h)
    assert r.stderr.strip() == unknown
    record("certs-d-dir-without-port", r.stderr, d, kind="push-stderr", rule="DD209", certs_d={SRV: ["ca.crt"]})
    lab.rmtree(d.certs_dir(SRV))
    # client.cert without client.key, and the reverse
    leaf = lab.Certs.make_leaf(bcerts.ca, sans=["client.lab"], cn="client")
    d.add_cert(h, {"ca.crt": bcerts.ca_pem, "client.cert": leaf[0]})
    r = _push(d, h)
    assert r.stderr.strip() == (
        "Error response from daemon: missing key client.key for client certificate client.cert."
        " Note that CA certificates should use the extension .crt"
    )
    record(
        "certs-d-client-cert-without-key",
        r.stderr,
        d,
        kind="push-stderr",
        rule="DD209",
        certs_d={h: ["ca.crt", "client.cert"]},
    )
    lab.rmtree(d.certs_dir(h))
    d.add_cert(h, {"ca.crt": bcerts.ca_pem, "client.key": leaf[1]})
    r = _push(d, h)
    assert r.stderr.strip() == "Error response from daemon: Missing client certificate client.cert for key client.key"
    record(
        "certs-d-client-key-without-cert",
        r.stderr,
        d,
        kind="push-stderr",
        rule="DD209",
        certs_d={h: ["ca.crt", "client.key"]},
    )
    lab.rmtree(d.certs_dir(h))
    d.add_cert(h, {"ca.crt": bcerts.ca_pem})
    assert _push(d, h).returncode == 0


# ---------------------------------------------------------------------------------------------------
# servers that speak neither HTTP nor TLS (lab.md §3)


def test_endpoint_errors_https(start, plain_servers) -> None:
    d = start({}, must_start=True, busybox=True)
    cases = {
        "eof": f'Get "https://{hp("eof")}/v2/": EOF',
        "rst": f'Get "https://{hp("rst")}/v2/": read tcp {CLI}:',
        "ssh": f'Get "https://{hp("ssh")}/v2/": tls: first record does not look like a TLS handshake',
        "refused": f'Get "https://{REFUSED}/v2/": dial tcp {REFUSED}: connect: connection refused',
        "html": f'Get "https://{hp("html")}/v2/": http: server gave HTTP response to HTTPS client',
    }
    for name, want in cases.items():
        r = _push(d, hp(name))
        assert r.returncode == 1
        assert r.stderr.strip().startswith(want), (name, r.stderr)
        if name == "rst":
            assert r.stderr.strip().endswith(f"->{hp('rst')}: read: connection reset by peer")
        record(
            f"endpoint-{name}-https",
            r.stderr,
            d,
            kind="push-stderr",
            rule="DD210" if name != "refused" else "DD201",
            server=_server_note(name),
        )


def _server_note(name: str) -> str:
    return {
        "eof": "accepts, reads the request, closes (FIN)",
        "rst": "accepts, closes with SO_LINGER 0 (RST) without reading",
        "ssh": "sends an SSH-2.0 banner",
        "silent": "accepts and never answers",
        "refused": "nothing listens on the port",
        "html": "a web server: every request gets 200 text/html",
    }[name]


def test_endpoint_errors_http_when_insecure(start, plain_servers) -> None:
    # Not "html": a 200 text/html /v2/ passes the ping, and the layer upload then fails 5 times with
    # "received unexpected HTTP status: 200 OK", with 5+10+15+20 s of retries in between (50 s).
    names = ("eof", "ssh", "refused")
    d = start({"insecure-registries": [hp(n) for n in names]}, must_start=True, busybox=True)
    # Go's HTTP transport words one failure three ways, depending on which of its loops sees the banner first:
    # the read loop (with or without the "connection broken" prefix), or, when the banner arrives before the
    # request is registered, the idle-connection check ("readLoopPeekFailLocked: <nil>", seen under load).
    # All come from the same dockerd and are the same case.
    ssh_reply = 'malformed HTTP response "SSH-2.0-OpenSSH_9.2"'
    cases = {
        "eof": (f'Get "http://{hp("eof")}/v2/": EOF',),
        "ssh": (f'Get "http://{hp("ssh")}/v2/": net/http: HTTP/1.x transport connection broken: {ssh_reply}',
                f'Get "http://{hp("ssh")}/v2/": {ssh_reply}',
                f'Get "http://{hp("ssh")}/v2/": readLoopPeekFailLocked: <nil>'),
        "refused": (f'Get "http://{REFUSED}/v2/": dial tcp {REFUSED}: connect: connection refused',),
    }
    for name in names:
        r = _push(d, hp(name))
        assert r.returncode == 1, r.stdout
        assert r.stderr.strip() in cases[name], (name, r.stderr)
        record(
            f"endpoint-{name}-http-insecure",
            r.stderr,
            d,
            kind="push-stderr",
            rule="DD210" if name != "refused" else "DD201",
            server=_server_note(name),
            daemon_json={"insecure-registries": [hp(name)]},
            **({"variants": list(cases[name])} if len(cases[name]) > 1 else {}),
        )


def test_login_against_reset_server(start, plain_servers) -> None:
    d = start({}, must_start=True)
    r = d.docker("login", "-u", "u", "--password-stdin", hp("rst"), input="p")
    assert r.returncode == 1
    assert r.stderr.strip().startswith(f'Error response from daemon: Get "https://{hp("rst")}/v2/": read tcp {CLI}:')
    record("endpoint-rst-login", r.stderr, d, kind="login-stderr", rule="DD210", server=_server_note("rst"))


def test_silent_server_times_out_after_10s(slow_pushes) -> None:
    r = slow_pushes["silent"].get()
    assert r.returncode == 1
    assert r.stderr.strip() == f'Get "https://{hp("silent")}/v2/": net/http: TLS handshake timeout'
    record(
        "endpoint-silent-https",
        r.stderr,
        slow_pushes["silent_d"],
        kind="push-stderr",
        rule="DD210",
        server=_server_note("silent"),
        note="after 10 s",
    )


# ---------------------------------------------------------------------------------------------------
# packet filters in the registry host's namespace (nft), lab.md §4


@pytest.mark.real("nft")
def test_filter_reject_variants(start, nft_rules) -> None:
    d = start({}, must_start=True, busybox=True)
    want = {
        "admin_prohibited": "connect: no route to host",
        "tcp_reset": "connect: connection refused",
        "no_route": "connect: network is unreachable",
    }
    for name, tail in want.items():
        h = f"{SRV}:{FILTER_PORTS[name]}"
        r = _push(d, h)
        assert r.stderr.strip() == f'Get "https://{h}/v2/": dial tcp {h}: {tail}', r.stderr
        record(
            f"filter-reject-{name.replace('_', '-')}",
            r.stderr,
            d,
            kind="push-stderr",
            rule="DD201" if name == "tcp_reset" else "DD202",
            nft_rule=f"tcp dport {FILTER_PORTS[name]} reject with "
            + {"admin_prohibited": "icmpx admin-prohibited", "tcp_reset": "tcp reset", "no_route": "icmpx no-route"}[
                name
            ],
        )
    # with the host insecure, the http URL shows
    h = f"{SRV}:{FILTER_PORTS['admin_prohibited']}"
    d2 = start({"insecure-registries": [h]}, must_start=True, busybox=True)
    r = _push(d2, h)
    assert r.stderr.strip() == f'Get "http://{h}/v2/": dial tcp {h}: connect: no route to host'
    record(
        "filter-reject-admin-prohibited-http-insecure",
        r.stderr,
        d2,
        kind="push-stderr",
        rule="DD202",
        nft_rule=f"tcp dport {FILTER_PORTS['admin_prohibited']} reject with icmpx admin-prohibited",
        daemon_json={"insecure-registries": [h]},
        note="the text firewalld's public zone gives",
    )


@pytest.mark.real("nft")
def test_filter_drop_times_out_after_15s(slow_pushes) -> None:
    r = slow_pushes["drop"].get()
    h = f"{SRV}:{FILTER_PORTS['drop']}"
    # Three timers race at 15 s (the registry client's timeout, the dial timeout, the ping context), so
    # a DROP gives one of three texts; all three were seen here.
    variants = [
        f'Get "https://{h}/v2/": net/http: request canceled while waiting for connection'
        " (Client.Timeout exceeded while awaiting headers)",
        f'Get "https://{h}/v2/": dial tcp {h}: i/o timeout',
        f'Get "https://{h}/v2/": context deadline exceeded',
    ]
    assert r.returncode == 1
    assert r.stderr.strip() in variants, r.stderr
    record(
        "filter-drop",
        r.stderr,
        slow_pushes["drop_d"],
        kind="push-stderr",
        rule="DD202",
        nft_rule=f"tcp dport {FILTER_PORTS['drop']} drop",
        note="after 15 s; the text is one of 'variants' (racing timers)",
        variants=variants,
    )


# ---------------------------------------------------------------------------------------------------
# auth and proxies


def test_basic_auth(start, bregs) -> None:
    h = hp("htpasswd")
    d = start({"insecure-registries": [h]}, must_start=True, busybox=True)
    r = _push(d, h)
    assert r.returncode == 1 and r.stderr.strip() == "no basic auth credentials"
    record("auth-push-no-credentials", r.stderr, d, kind="push-stderr", rule="DD208")
    r = d.docker("login", "-u", "labuser", "--password-stdin", h, input="wrong")
    assert r.returncode == 1
    assert (
        r.stderr.strip()
        == f"Error response from daemon: login attempt to http://{h}/v2/ failed with status: 401 Unauthorized"
    )
    record("auth-login-wrong-password", r.stderr, d, kind="login-stderr", rule="DD208")
    r = d.docker("login", "-u", "labuser", "--password-stdin", h, input="labpass")
    assert r.returncode == 0 and "Login Succeeded" in r.stdout
    assert _push(d, h).returncode == 0


@pytest.mark.real("nginx")
def test_proxy_413(start, bnet, breg, lab_root: Path) -> None:
    listen = hp("nginx")
    with lab.Nginx(lab_root, listen, breg.url, client_max_body_size="1k", netns=bnet.srv_ns).start():
        d = start({"insecure-registries": [listen]}, must_start=True, busybox=True)
        r = _push(d, listen)
    assert r.returncode == 1
    assert "error parsing HTTP 413 response body: invalid character '<' looking for beginning of value" in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "413" in ln]
    record(
        "proxy-413-push",
        "\n".join(lines),
        d,
        kind="push-stderr",
        rule="DD211",
        proxy="nginx 1.22 client_max_body_size 1k in front of docker-registry",
    )
