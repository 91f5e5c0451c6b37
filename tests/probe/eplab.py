"""The endpoint probe tests' lab: a broken-endpoint zoo in its own namespaces (fixtures in conftest.py).

This module has a unique name so tests can import from it (several test folders have a conftest.py,
and `import conftest` would pick whichever was imported first).

``ep_lab`` starts, once per session, in a private pair of namespaces (prefix ``ddep``; registry host
10.N.0.1, client 10.N.0.2) every kind of endpoint the DD2xx rules name, all on ports 5200-5299:
real ``docker-registry`` servers (plain, TLS good / CN-only / wrong name / expired / not yet valid,
TLS + htpasswd), lab.PlainServer (EOF, reset, SSH banner, silent, an HTML web server, a v1
python-registry look-alike), a closed port, nft REJECT and DROP rules, and nginx with
client_max_body_size 1m in front of the plain registry. Everything is stopped by PID at the end;
work files live under /tmp/dd-ep-*.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lab
import pytest

PORTS = {
    "plain": 5200, "tls": 5201, "cn_only": 5202, "wrong_name": 5203, "expired": 5204, "auth": 5205,
    "not_yet_valid": 5206, "eof": 5207, "rst": 5208, "ssh": 5209, "silent": 5210, "closed": 5211,
    "reject": 5212, "drop": 5213, "html": 5214, "v1": 5215, "nginx": 5216, "nodelete": 5217, "mtls": 5221,
}
V1_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Docker-Registry-Version: 0.9.1\r\n"
               b"X-Docker-Registry-Standalone: True\r\nContent-Length: 4\r\nConnection: close\r\n\r\ntrue")
USER, PASSWORD = "epuser", "eppass"


@dataclass
class EpLab:
    dir: Path
    net: lab.LabNet
    ca_pem: bytes
    certs: dict[str, tuple[Path, Path]]
    servers: list[Any] = field(default_factory=list)
    nginx: lab.Nginx | None = None
    client_pair: tuple[bytes, bytes] = (b"", b"")  # a client certificate (clientAuth) signed by the lab CA

    @property
    def srv(self) -> str:
        return self.net.srv_ip

    def hp(self, name: str) -> str:
        return f"{self.srv}:{PORTS[name]}"

    def certs_dir(self, name: str, files: dict[str, bytes] | None = None) -> str:
        """A certs.d/HOST:PORT folder for endpoint ``name`` (default: the lab CA as ca.crt)."""
        d = Path(tempfile.mkdtemp(prefix="certsd-", dir=self.dir)) / self.hp(name)
        d.mkdir(parents=True)
        for fname, content in (files if files is not None else {"ca.crt": self.ca_pem}).items():
            (d / fname).write_bytes(content)
        return str(d)

    def probe(self, name: str, *, timeout: float = 2.0, certs: bool | str | None = False, **kw: Any) -> Any:
        """probe_endpoint run from the client namespace (a thread that joined it)."""
        from dockerdoctor.facts import HostPort
        from dockerdoctor.probe.endpoint import probe_endpoint

        cdir = self.certs_dir(name) if certs is True else (certs or None)
        return lab.in_netns(self.net.cli_ns, probe_endpoint, HostPort(self.srv, PORTS[name]), timeout, cdir, **kw)

    def in_client(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        return lab.in_netns(self.net.cli_ns, fn, *args, **kw)


def make_client_pair(ca: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
    """A client certificate with the clientAuth usage (lab.Certs makes serverAuth ones only)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = x509.load_pem_x509_certificate(ca[0])
    ca_key = serialization.load_pem_private_key(ca[1], password=None)
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ddep-client")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption()))


def _start_mtls(d: Path, ip: str, net: lab.LabNet, tls: tuple[Path, Path], ca_path: Path) -> lab.DistRegistry:
    """A registry that requires client certificates (distribution's http.tls.clientcas)."""
    reg = lab.DistRegistry(d / "reg", ip, PORTS["mtls"], netns=net.srv_ns, tls=tls,
                           extra_config={"http": {"tls": {"clientcas": [str(ca_path)]}}}, name="mtls")
    # lab's readiness check cannot present a client certificate: start it here, ready when the port opens
    import yaml

    reg.config_path.write_text(yaml.safe_dump(reg.config, sort_keys=False))
    log = open(reg.log_path, "ab")
    reg.proc = net.popen(net.srv_ns, ["docker-registry", "serve", str(reg.config_path)],
                         stdout=log, stderr=subprocess.STDOUT)
    log.close()
    if not lab.wait_for(lambda: lab.port_open(net.srv_ns, ip, PORTS["mtls"]), 10):
        raise RuntimeError(f"mtls registry did not start: {reg.log_text()}")
    return reg


def _nft(net: lab.LabNet, *args: str) -> None:
    r = net.run(net.srv_ns, ["nft", *args])
    assert r.returncode == 0, r.stderr


def _record(d: Path, net: lab.LabNet | None, servers: list[Any], nginx: Any = None) -> None:
    """What this session owns, so that a later session can clean up after a crash (by PID and name)."""
    import json

    pids = [getattr(x, "pid", None) or getattr(getattr(x, "proc", None), "pid", None) for x in [*servers, nginx]]
    state = {"owner": os.getpid(), "netns": [net.srv_ns, net.cli_ns] if net else [],
             "pids": [p for p in pids if isinstance(p, int)]}
    (d / "ep-state.json").write_text(json.dumps(state))


def sweep_stale() -> list[str]:
    """Remove what a crashed session left: its servers (only if their command line names its dir),
    its namespaces, its /tmp/dd-ep-* dir. Never touches anything a live session owns."""
    import json
    import signal

    done = []
    for d in Path("/tmp").glob("dd-ep-*"):
        try:
            st = json.loads((d / "ep-state.json").read_text())
        except (OSError, ValueError):
            continue
        if lab._pid_alive(int(st.get("owner", 0))):
            continue
        for pid in st.get("pids", []):
            if lab._pid_alive(pid) and str(d) in lab._pid_cmdline(pid):
                os.kill(pid, signal.SIGKILL)
        for ns in st.get("netns", []):
            if ns.startswith("ddep") and Path(f"/run/netns/{ns}").exists():
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        lab.rmtree(d)
        done.append(str(d))
    return done


@pytest.fixture(scope="session")
def ep_lab() -> Iterator[EpLab]:
    sweep_stale()
    d = Path(tempfile.mkdtemp(prefix="dd-ep-", dir="/tmp"))
    net = lab.LabNet(f"ddep{os.getpid() % 100000}")
    servers: list[Any] = []
    nginx = None
    _record(d, net, servers)
    try:
        C = lab.Certs
        ca = C.make_ca("dockerdoctor-ep-ca")
        ip = net.srv_ip
        now = dt.datetime.now(dt.timezone.utc)
        leaves = {
            "tls": C.make_leaf(ca, sans=[ip, "registry.lab"], cn=ip),
            "cn_only": C.make_leaf(ca, sans=[], cn=ip),
            "wrong_name": C.make_leaf(ca, sans=[".".join(ip.split(".")[:3] + ["9"]), "other.lab"], cn="other.lab"),
            "expired": C.make_leaf(ca, sans=[ip], cn=ip, not_before=now - dt.timedelta(days=3),
                                   not_after=now - dt.timedelta(days=1)),
            "not_yet_valid": C.make_leaf(ca, sans=[ip], cn=ip, not_before=now + dt.timedelta(days=1),
                                         not_after=now + dt.timedelta(days=3)),
        }
        certs = {k: C.write(d / "certs", k, v) for k, v in leaves.items()}
        htp = lab.write_htpasswd(d / "htpasswd", {USER: PASSWORD})
        for name in ("plain", "tls", "cn_only", "wrong_name", "expired", "not_yet_valid", "auth"):
            tls = certs["tls" if name == "auth" else name] if name != "plain" else None
            servers.append(lab.DistRegistry(d / "reg", ip, PORTS[name], netns=net.srv_ns, tls=tls,
                                            htpasswd=htp if name == "auth" else None, name=name).start())
        servers.append(lab.DistRegistry(d / "reg", ip, PORTS["nodelete"], netns=net.srv_ns, delete=False,
                                        name="nodelete").start())
        ca_path = d / "certs" / "ca.crt"
        ca_path.write_bytes(ca[0])
        servers.append(_start_mtls(d, ip, net, certs["tls"], ca_path))
        for mode in ("eof", "rst", "ssh", "silent"):
            servers.append(lab.PlainServer(net.srv_ns, ip, PORTS[mode], mode=mode))
        servers.append(lab.PlainServer(net.srv_ns, ip, PORTS["html"], mode="http"))
        servers.append(lab.PlainServer(net.srv_ns, ip, PORTS["v1"], mode="http", response=V1_RESPONSE))
        _nft(net, "add", "table", "inet", "ddep")
        _nft(net, "add", "chain", "inet", "ddep", "input",
             "{ type filter hook input priority 0; policy accept; }")
        _nft(net, "add", "rule", "inet", "ddep", "input", "tcp", "dport", str(PORTS["reject"]),
             "reject", "with", "icmpx", "admin-prohibited")
        _nft(net, "add", "rule", "inet", "ddep", "input", "tcp", "dport", str(PORTS["drop"]), "drop")
        if shutil.which("nginx"):
            nginx = lab.Nginx(d, f"{ip}:{PORTS['nginx']}", f"http://{ip}:{PORTS['plain']}", "1m",
                              netns=net.srv_ns).start()
        _record(d, net, servers, nginx)
        lab_ = EpLab(d, net, ca[0], certs, servers, nginx)
        lab_.client_pair = make_client_pair(ca)
        yield lab_
    finally:
        if nginx is not None:
            nginx.stop()
        for s in servers:
            s.stop()
        net.close()
        lab.rmtree(d)


@pytest.fixture(scope="session")
def ep_dockerd(ep_lab: EpLab) -> Iterator[lab.Dockerd]:
    """A real dockerd 20.10 in the client namespace (private /etc/docker, CA trusted for the auth registry)."""
    d = lab.Dockerd(ep_lab.dir / "dockerd", netns=ep_lab.net.cli_ns, daemon_json={},
                    certs_d={ep_lab.hp("auth"): {"ca.crt": ep_lab.ca_pem}})
    try:
        if not d.start():
            pytest.fail(f"dockerd failed to start: {d.failure_line()}")
        _record(ep_lab.dir, ep_lab.net, [*ep_lab.servers, d], ep_lab.nginx)
        lab.import_busybox(d)
        yield d
    finally:
        d.stop()


def run_quiet(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kw)


@dataclass
class ServeRegistry:
    hostport: str
    ca_pem: bytes
    proc: subprocess.Popen


@pytest.fixture(scope="session")
def ep_serve_registry(ep_lab: EpLab) -> Iterator[ServeRegistry]:
    """dockerdoctor's own serve-registry as a target: TLS (self-signed for the server IP), uploads up
    to 1M (a bigger blob gets 413), deletes off; in the registry-host namespace on port 5218."""
    import time

    root = ep_lab.dir / "serve-registry"
    exe = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "dockerdoctor")
    port = 5218
    log = open(ep_lab.dir / "serve-registry.log", "ab")
    proc = ep_lab.net.popen(ep_lab.net.srv_ns, [
        exe, "serve-registry", "--host", ep_lab.srv, "--port", str(port), "--root", str(root / "data"),
        "--tls-self-signed", ep_lab.srv, "--tls-dir", str(root / "tls"), "--max-upload-size", "1M",
        "--no-delete", "--no-access-log"], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        up = lab.wait_for(lambda: proc.poll() is not None or lab.port_open(ep_lab.net.srv_ns, ep_lab.srv, port), 30)
        if proc.poll() is not None or not up:
            pytest.fail(f"serve-registry did not start: {(ep_lab.dir / 'serve-registry.log').read_text()[-2000:]}")
        cas = sorted((root / "tls").glob("*ca*.crt")) or sorted((root / "tls").glob("*.crt"))
        assert cas, list((root / "tls").iterdir())
        time.sleep(0.1)
        yield ServeRegistry(f"{ep_lab.srv}:{port}", cas[0].read_bytes(), proc)
    finally:
        lab._stop_proc(proc)
