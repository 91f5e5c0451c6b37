"""Proof that the real-parts lab (tests/lab.py, tests/conftest.py) reproduces what lab.md recorded."""

from __future__ import annotations

import datetime as dt

import lab
import pytest

pytestmark = pytest.mark.real


def _push(d: lab.Dockerd, hostport: str, repo: str = "lab/x:1"):
    ref = f"{hostport}/{repo}"
    assert d.docker("tag", "lab/busybox:1", ref).returncode == 0
    return d.docker("push", ref, timeout=60)


def test_labnet_has_two_hosts(labnet: lab.LabNet) -> None:
    assert labnet.srv_ip != labnet.cli_ip
    r = labnet.run(labnet.cli_ns, ["ip", "-4", "-o", "addr", "show", "dev", "veth1"])
    assert labnet.cli_ip in r.stdout
    assert not labnet.prefix.startswith("ddreg")


def test_registries_answer_v2(labnet: lab.LabNet, dist_registries) -> None:
    for name, reg in dist_registries.all().items():
        st, hdrs, _ = lab.http_get(labnet.cli_ns, reg.addr, reg.port, "/v2/", tls=bool(reg.tls))
        assert st == (401 if name == "htpasswd" else 200), name
        assert hdrs.get("docker-distribution-api-version") == "registry/2.0"


def test_plain_http_push_needs_insecure_registries(client_dockerd, dist_registries) -> None:
    reg = dist_registries.plain
    d = client_dockerd({}, busybox=True)
    r = _push(d, reg.hostport)
    assert r.returncode == 1
    assert f'Get "https://{reg.hostport}/v2/": http: server gave HTTP response to HTTPS client' in r.stderr

    d.write_daemon_json({"insecure-registries": [reg.hostport]})
    out = d.reload()
    assert "Reloaded configuration" in out
    r = _push(d, reg.hostport)
    assert r.returncode == 0, r.stderr
    assert "digest: sha256:" in r.stdout


def test_insecure_registry_flag_at_start(client_dockerd, dist_registries) -> None:
    reg = dist_registries.plain
    d = client_dockerd(None, [f"--insecure-registry={reg.hostport}"], busybox=True)
    assert reg.hostport in d.info()["RegistryConfig"]["IndexConfigs"]
    r = _push(d, reg.hostport, "lab/flag:1")
    assert r.returncode == 0, r.stderr


def test_flag_and_file_conflict_stops_dockerd(client_dockerd, dist_registries) -> None:
    reg = dist_registries.plain
    d = client_dockerd(
        {"insecure-registries": [reg.hostport]}, [f"--insecure-registry={reg.hostport}"], must_start=False
    )
    assert not d.running()
    assert d.returncode == 1
    assert d.failure_line() == (
        "unable to configure the Docker daemon with file /etc/docker/daemon.json: the following directives"
        " are specified both as a flag and in the configuration file: insecure-registries:"
        f" (from flag: [{reg.hostport}], from file: [{reg.hostport}])"
    )


def test_tls_errors(client_dockerd, dist_registries, certs) -> None:
    regs = dist_registries
    d = client_dockerd({}, busybox=True)
    r = _push(d, regs.tls.hostport)
    assert f'Get "https://{regs.tls.hostport}/v2/": x509: certificate signed by unknown authority' in r.stderr
    r = _push(d, regs.tls_cn_only.hostport)
    assert "x509: certificate relies on legacy Common Name field, use SANs instead" in r.stderr
    # certs.d is read on every push: no restart needed
    for reg in (regs.tls, regs.tls_wrong_name, regs.tls_expired):
        d.add_cert(reg.hostport, {"ca.crt": certs.ca_pem})
    r = _push(d, regs.tls.hostport)
    assert r.returncode == 0, r.stderr
    r = _push(d, regs.tls_wrong_name.hostport)
    wrong_ip = regs.tls_wrong_name.addr.rsplit(".", 1)[0] + ".9"
    assert f"x509: certificate is valid for {wrong_ip}, not {regs.tls_wrong_name.addr}" in r.stderr
    r = _push(d, regs.tls_expired.hostport)
    assert "x509: certificate has expired or is not yet valid: current time" in r.stderr


def test_speaks_neither_gives_eof(labnet: lab.LabNet, client_dockerd) -> None:
    d = client_dockerd({}, busybox=True)
    with lab.PlainServer(labnet.srv_ns, labnet.srv_ip, mode="eof") as srv:
        r = _push(d, srv.hostport)
    assert r.stderr.strip().endswith(f'Get "https://{srv.hostport}/v2/": EOF')
    port = lab.closed_port(labnet.srv_ns, labnet.srv_ip)
    r = _push(d, f"{labnet.srv_ip}:{port}")
    assert f"dial tcp {labnet.srv_ip}:{port}: connect: connection refused" in r.stderr


def test_htpasswd_registry_login(client_dockerd, dist_registries) -> None:
    reg = dist_registries.htpasswd
    d = client_dockerd({"insecure-registries": [reg.hostport]}, busybox=True)
    r = _push(d, reg.hostport)
    assert r.returncode == 1 and "no basic auth credentials" in r.stderr
    r = d.docker(
        "login",
        "-u",
        dist_registries.username,
        "--password-stdin",
        reg.hostport,
        input=dist_registries.password,
    )
    assert r.returncode == 0, r.stderr
    r = _push(d, reg.hostport)
    assert r.returncode == 0, r.stderr


def test_certs_helpers_make_what_they_say() -> None:
    from cryptography import x509

    ca = lab.Certs.make_ca("t")
    now = dt.datetime.now(dt.timezone.utc)
    cn_only = x509.load_pem_x509_certificate(lab.Certs.make_leaf(ca, sans=[], cn="10.1.2.3")[0])
    with pytest.raises(x509.ExtensionNotFound):
        cn_only.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    old = x509.load_pem_x509_certificate(
        lab.Certs.make_leaf(
            ca, sans=["a.b"], not_before=now - dt.timedelta(days=2), not_after=now - dt.timedelta(days=1)
        )[0]
    )
    assert old.not_valid_after_utc < now


@pytest.mark.real("firewalld", "firewall-cmd", "dbus-daemon")
def test_firewalld_reject_gives_no_route_to_host(firewalld, client_dockerd) -> None:
    reg = firewalld.registry
    d = client_dockerd({"insecure-registries": [reg.hostport]}, labnet=firewalld.labnet, busybox=True)
    r = _push(d, reg.hostport)
    assert f'Get "http://{reg.hostport}/v2/": dial tcp {reg.hostport}: connect: no route to host' in r.stderr
    q = firewalld.cmd("--query-port=5100/tcp")
    assert (q.returncode, q.stdout.strip()) == (1, "no")
    try:
        assert firewalld.cmd("--add-port=5100/tcp").stdout.strip() == "success"
        r = _push(d, reg.hostport)
        assert r.returncode == 0, r.stderr
    finally:
        firewalld.cmd("--remove-port=5100/tcp")
    # permanent changes land in the lab's copy of /etc/firewalld; reset() restores the stock config
    assert firewalld.cmd("--permanent", "--add-port=5100/tcp").returncode == 0
    assert '<port port="5100" protocol="tcp"/>' in (firewalld.etc / "zones" / "public.xml").read_text()
    firewalld.reset()
    assert firewalld.cmd("--permanent", "--query-port=5100/tcp").stdout.strip() == "no"
    assert firewalld.cmd("--query-port=5100/tcp").stdout.strip() == "no"


@pytest.mark.real("nginx")
def test_nginx_body_limit_gives_413(labnet: lab.LabNet, lab_root, client_dockerd, dist_registries) -> None:
    reg = dist_registries.plain
    with lab.Nginx(
        lab_root, f"{labnet.srv_ip}:5150", reg.url, client_max_body_size="1k", netns=labnet.srv_ns
    ).start() as ngx:
        d = client_dockerd({"insecure-registries": [ngx.listen]}, busybox=True)
        r = _push(d, ngx.listen)
    assert r.returncode == 1
    expected = "error parsing HTTP 413 response body: invalid character '<' looking for beginning of value"
    assert expected in r.stderr
    assert "413 Request Entity Too Large" in r.stderr


def test_registry_image_runs_under_a_lab_dockerd(labnet: lab.LabNet, client_dockerd) -> None:
    # A dockerd in the registry host's namespace runs the imported registry image with --network host.
    d = client_dockerd(None, netns="srv")
    lab.import_registry_image(d)
    addr = f"{labnet.srv_ip}:5130"
    r = d.docker(
        "run", "-d", "--name", "lab-reg", "--network", "host", "-e", f"REGISTRY_HTTP_ADDR={addr}", "lab/registry:2.8.2"
    )
    assert r.returncode == 0, r.stderr
    assert lab.wait_for(lambda: lab.port_open(labnet.cli_ns, labnet.srv_ip, 5130), 10)
    st, hdrs, _ = lab.http_get(labnet.cli_ns, labnet.srv_ip, 5130, "/v2/")
    assert (st, hdrs["docker-distribution-api-version"]) == (200, "registry/2.0")
    cfg = d.client().containers.get("lab-reg").attrs["Config"]
    assert (cfg["Entrypoint"], cfg["Cmd"]) == (["/bin/registry"], ["serve", "/etc/docker/registry/config.yml"])
