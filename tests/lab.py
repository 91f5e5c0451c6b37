"""Real-parts test lab: network namespaces, docker-registry, dockerd, firewalld, nginx.

Shared by every test that needs real components (marked ``@pytest.mark.real``). The recipes come
from ``/work/shared/lab.md``; the traps listed there are handled here:

* dockerd runs under ``nsenter --net`` (``ip netns exec`` remounts /sys and hides the cgroups) and in a
  private mount namespace with its own directory bind-mounted over ``/etc/docker``, so the host's
  ``/etc/docker`` (daemon.json, certs.d) is never read or written, and dockerd's own mounts vanish with it.
* client and registry live in two namespaces joined by a veth pair: loopback skips the firewall, and
  127.0.0.0/8 is insecure by default, so the "HTTP response to HTTPS client" error needs a real address.
* every process is started by us and stopped by PID; nothing is found by name.

Everything here needs root. Nothing here imports ``dockerdoctor``.

Typical use (the fixtures in tests/conftest.py do this once per session)::

    net = LabNet("ddx1")                                   # ddx1srv 10.N.0.1 <-veth-> ddx1cli 10.N.0.2
    reg = DistRegistry(workdir, net.srv_ip, 5100, netns=net.srv_ns).start()
    d = Dockerd(workdir / "d", netns=net.cli_ns, daemon_json={})
    assert d.start(), d.failure_line()
    import_busybox(d)                                      # lab/busybox:1
    d.docker("tag", "lab/busybox:1", f"{reg.hostport}/x:1")
    d.docker("push", f"{reg.hostport}/x:1").stderr         # ... server gave HTTP response to HTTPS client
    d.write_daemon_json({"insecure-registries": [reg.hostport]}); d.reload()
    d.stop(); reg.stop(); net.close()

Code run inside a namespace from Python: ``in_netns(ns, fn)``, ``netns_socket(ns)``, ``http_get(ns, ...)``.
After a crash (SIGKILL), ``sweep_stale_labs()`` removes every lab whose owner process is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as _dt
import http.client
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tarfile
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Certs",
    "LabCerts",
    "make_lab_certs",
    "LabNet",
    "DistRegistry",
    "Dockerd",
    "PlainServer",
    "Firewalld",
    "Nginx",
    "import_busybox",
    "import_registry_image",
    "closed_port",
    "free_port",
    "netns_socket",
    "in_netns",
    "make_workdir",
    "missing_binaries",
    "sweep_stale_labs",
]

TMP_PREFIX = "dd-lab-"
PORT_RANGE = range(5100, 5200)

# --------------------------------------------------------------------------------------------------
# small helpers


def make_workdir(tag: str = "") -> Path:
    """A fresh ``/tmp/dd-lab-*`` directory, with an owner file so a crashed run can be swept later."""
    d = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{tag}{'-' if tag else ''}", dir="/tmp"))
    _state_update(d, owner=os.getpid())
    return d


def _state_update(workdir: Path, **kw: Any) -> None:
    """Record what this lab dir owns (owner pid, pids, namespaces) in ``lab-state.json``."""
    f = workdir / "lab-state.json"
    try:
        st = json.loads(f.read_text())
    except (OSError, ValueError):
        st = {"owner": os.getpid(), "pids": [], "netns": []}
    for k, v in kw.items():
        if k in ("pids", "netns"):
            st.setdefault(k, [])
            for x in v:
                if x not in st[k]:
                    st[k].append(x)
        else:
            st[k] = v
    with contextlib.suppress(OSError):
        f.write_text(json.dumps(st))


def _find_lab_root(p: Path) -> Path | None:
    for q in [p, *p.parents]:
        if q.name.startswith(TMP_PREFIX) and q.parent == Path("/tmp"):
            return q
    return None


def _record(path: Path, *, pid: int | None = None, netns: Iterable[str] = ()) -> None:
    root = _find_lab_root(Path(path))
    if root is None:
        return
    _state_update(root, pids=[pid] if pid else [], netns=list(netns))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _pid_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _stop_proc(proc: subprocess.Popen[Any] | None, timeout: float = 10.0) -> None:
    """SIGTERM, wait, then SIGKILL. By PID (the Popen object), never by name."""
    if proc is None:
        return
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
    else:
        proc.wait()


def umount_under(path: Path | str) -> list[str]:
    """Unmount everything mounted at or below ``path`` in our mount namespace (deepest first)."""
    path = str(Path(path).resolve())
    done = []
    for _ in range(3):
        mps = []
        with open("/proc/self/mounts") as f:
            for line in f:
                mp = line.split()[1].replace("\\040", " ")
                if mp == path or mp.startswith(path + "/"):
                    mps.append(mp)
        if not mps:
            break
        for mp in sorted(set(mps), key=len, reverse=True):
            r = subprocess.run(["umount", mp], capture_output=True)
            if r.returncode != 0:
                subprocess.run(["umount", "-l", mp], capture_output=True)
            done.append(mp)
    return done


def rmtree(path: Path | str) -> None:
    path = Path(path)
    if not path.exists():
        return
    umount_under(path)
    shutil.rmtree(path, ignore_errors=True)


def missing_binaries(*names: str) -> list[str]:
    return [n for n in names if shutil.which(n) is None and not Path(n).exists()]


def docker_cli() -> str:
    """The docker CLI: the first on PATH (any version prints the daemon's texts), else Debian's."""
    return shutil.which("docker") or "/usr/bin/docker"


def dockerd_bin() -> str:
    return shutil.which("dockerd") or "/usr/sbin/dockerd"


def wait_for(pred: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            return v
        time.sleep(interval)


# --------------------------------------------------------------------------------------------------
# network namespaces from Python (setns in a helper thread; the socket keeps its namespace)

_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNET = 0x40000000


def in_netns(ns: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """Run ``fn`` in a thread that has joined network namespace ``ns``; return its result.

    Sockets created inside stay in that namespace and may be used from any thread afterwards.
    """
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, f"setns({ns}): {os.strerror(e)}")
            finally:
                os.close(fd)
            out["v"] = fn(*args, **kw)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            out["e"] = e

    t = threading.Thread(target=target, name=f"netns-{ns}")
    t.start()
    t.join()
    if "e" in out:
        raise out["e"]
    return out.get("v")


def netns_socket(ns: str | None, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM) -> socket.socket:
    if ns is None:
        return socket.socket(family, type)
    return in_netns(ns, socket.socket, family, type)


def tcp_connect(ns: str | None, host: str, port: int, timeout: float = 2.0) -> socket.socket:
    s = netns_socket(ns)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
    except BaseException:
        s.close()
        raise
    return s


def port_open(ns: str | None, host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        tcp_connect(ns, host, port, timeout).close()
        return True
    except OSError:
        return False


def http_get(
    ns: str | None,
    host: str,
    port: int,
    path: str = "/",
    *,
    tls: bool = False,
    timeout: float = 3.0,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """A tiny HTTP(S) GET from inside ``ns`` (TLS unverified). Returns (status, headers, body)."""
    s = tcp_connect(ns, host, port, timeout)
    try:
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s, server_hostname=host)
        h = {"Host": f"{host}:{port}", "Connection": "close", **(headers or {})}
        req = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
        s.sendall(req.encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, body


def free_port(ns: str | None, host: str, ports: Iterable[int] = PORT_RANGE) -> int:
    """A port in ``ports`` that nothing in ``ns`` listens on (checked by binding it)."""
    for p in ports:
        s = netns_socket(ns)
        try:
            s.bind((host, p))
            return p
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError(f"no free port in {ports!r} on {host} in netns {ns}")


def closed_port(ns: str | None, host: str, ports: Iterable[int] | None = None) -> int:
    """A port with nothing listening (connect gives 'connection refused'). Searches from 5199 down."""
    return free_port(ns, host, list(ports) if ports is not None else list(reversed(PORT_RANGE)))


# --------------------------------------------------------------------------------------------------
# certificates


class Certs:
    """X.509 helpers on top of ``cryptography``. PEM bytes in, PEM bytes out.

    ``make_ca(cn)`` -> (cert_pem, key_pem).
    ``make_leaf(ca, sans=[...], cn=...)`` -> (cert_pem, key_pem); ``sans=[]`` gives a CN-only cert,
    ``not_before``/``not_after`` (datetimes) give expired or not-yet-valid ones. ``ca=None`` is self-signed.
    """

    @staticmethod
    def _key():
        from cryptography.hazmat.primitives.asymmetric import ec

        return ec.generate_private_key(ec.SECP256R1())

    @staticmethod
    def _key_pem(key) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )

    @staticmethod
    def _name(cn: str):
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    @classmethod
    def make_ca(cls, cn: str = "dockerdoctor-lab-ca", *, days: int = 3) -> tuple[bytes, bytes]:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization

        key = cls._key()
        now = _dt.datetime.now(_dt.timezone.utc)
        name = cls._name(cn)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(hours=1))
            .not_valid_after(now + _dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM), cls._key_pem(key)

    @classmethod
    def make_leaf(
        cls,
        ca: tuple[bytes, bytes] | None,
        *,
        sans: Sequence[str] = (),
        cn: str = "registry",
        not_before: _dt.datetime | None = None,
        not_after: _dt.datetime | None = None,
        days: int = 3,
    ) -> tuple[bytes, bytes]:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.x509.oid import ExtendedKeyUsageOID

        key = cls._key()
        now = _dt.datetime.now(_dt.timezone.utc)
        nb = not_before or (now - _dt.timedelta(hours=1))
        na = not_after or (now + _dt.timedelta(days=days))
        if ca is None:
            issuer, signer = cls._name(cn), key
        else:
            ca_cert = x509.load_pem_x509_certificate(ca[0])
            signer = serialization.load_pem_private_key(ca[1], password=None)
            issuer = ca_cert.subject
        b = (
            x509.CertificateBuilder()
            .subject_name(cls._name(cn))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(nb)
            .not_valid_after(na)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        )
        if ca is not None:
            b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False)
        names: list[x509.GeneralName] = []
        for s in sans:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(s)))
            except ValueError:
                names.append(x509.DNSName(s))
        if names:
            b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = b.sign(signer, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), cls._key_pem(key)

    @staticmethod
    def write(dirpath: Path | str, name: str, pair: tuple[bytes, bytes]) -> tuple[Path, Path]:
        """Write ``name.crt`` and ``name.key`` into ``dirpath``; return their paths."""
        d = Path(dirpath)
        d.mkdir(parents=True, exist_ok=True)
        c, k = d / f"{name}.crt", d / f"{name}.key"
        c.write_bytes(pair[0])
        k.write_bytes(pair[1])
        k.chmod(0o600)
        return c, k


@dataclass
class LabCerts:
    dir: Path
    ca_pem: bytes
    ca_key_pem: bytes
    ca_path: Path
    pems: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)
    paths: dict[str, tuple[Path, Path]] = field(default_factory=dict)

    @property
    def ca(self) -> tuple[bytes, bytes]:
        return (self.ca_pem, self.ca_key_pem)

    def __getattr__(self, name: str) -> tuple[Path, Path]:
        try:
            return self.__dict__["paths"][name]
        except KeyError:
            raise AttributeError(name) from None


def make_lab_certs(d: Path, ip: str) -> LabCerts:
    """A CA and server certificates for ``ip``: good SAN, CN-only, wrong name, expired, not yet valid."""
    C = Certs
    ca = C.make_ca("dockerdoctor-lab-ca")
    now = _dt.datetime.now(_dt.timezone.utc)
    wrong_ip = ".".join(ip.split(".")[:3] + ["9"])
    leaves = {
        "good": C.make_leaf(ca, sans=[ip, "registry.lab"], cn=ip),
        "cn_only": C.make_leaf(ca, sans=[], cn=ip),
        "wrong_name": C.make_leaf(ca, sans=[wrong_ip, "other.lab"], cn="other.lab"),
        "expired": C.make_leaf(
            ca, sans=[ip], cn=ip, not_before=now - _dt.timedelta(days=3), not_after=now - _dt.timedelta(days=1)
        ),
        "not_yet_valid": C.make_leaf(
            ca, sans=[ip], cn=ip, not_before=now + _dt.timedelta(days=1), not_after=now + _dt.timedelta(days=3)
        ),
    }
    d.mkdir(parents=True, exist_ok=True)
    ca_path, _ = C.write(d, "ca", ca)
    certs = LabCerts(dir=d, ca_pem=ca[0], ca_key_pem=ca[1], ca_path=ca_path)
    for name, pair in leaves.items():
        certs.pems[name] = pair
        certs.paths[name] = C.write(d, name, pair)
    return certs


# --------------------------------------------------------------------------------------------------
# network namespaces

_used_subnets: set[int] = set()
_subnet_lock = threading.Lock()


class LabNet:
    """Two namespaces, ``<prefix>srv`` (10.N.0.1) and ``<prefix>cli`` (10.N.0.2), joined by veth.

    N is derived from the prefix (10.200-10.250) and differs between labs of one process. Labs in other
    processes may share an N without harm: each pair of namespaces is isolated.
    """

    def __init__(self, prefix: str, n: int | None = None) -> None:
        if missing := missing_binaries("ip"):
            raise RuntimeError(f"missing binaries: {missing}")
        if prefix.startswith("ddreg"):
            raise ValueError("the prefix 'ddreg' belongs to the serve-registry tests")
        self.prefix = prefix
        self.srv_ns = f"{prefix}srv"
        self.cli_ns = f"{prefix}cli"
        with _subnet_lock:
            if n is None:
                n = 200 + zlib.crc32(prefix.encode()) % 51
                for _ in range(51):
                    if n not in _used_subnets:
                        break
                    n = 200 + (n - 199) % 51
            _used_subnets.add(n)
        self.n = n
        self.subnet = f"10.{n}.0.0/24"
        self.srv_ip = f"10.{n}.0.1"
        self.cli_ip = f"10.{n}.0.2"
        self._closed = False
        for ns in (self.srv_ns, self.cli_ns):
            if Path(f"/run/netns/{ns}").exists():
                raise RuntimeError(f"network namespace {ns} exists already (another lab, or a stale one)")
        self._created: list[str] = []
        try:
            for ns in (self.srv_ns, self.cli_ns):
                self._ip("netns", "add", ns)
                self._created.append(ns)
                self._ip("-n", ns, "link", "set", "lo", "up")
            self._ip("-n", self.srv_ns, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1")
            self._ip("-n", self.srv_ns, "link", "set", "veth1", "netns", self.cli_ns)
            self._ip("-n", self.srv_ns, "addr", "add", f"{self.srv_ip}/24", "dev", "veth0")
            self._ip("-n", self.cli_ns, "addr", "add", f"{self.cli_ip}/24", "dev", "veth1")
            self._ip("-n", self.srv_ns, "link", "set", "veth0", "up")
            self._ip("-n", self.cli_ns, "link", "set", "veth1", "up")
        except Exception:
            self.close()
            raise

    @staticmethod
    def _ip(*args: str) -> None:
        r = subprocess.run(["ip", *args], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")

    def record_in(self, workdir: Path) -> None:
        _state_update(workdir, netns=[self.srv_ns, self.cli_ns])

    def ns_path(self, ns: str) -> str:
        return f"/run/netns/{ns}"

    def argv(self, ns: str | None, argv: Sequence[str], *, nsenter: bool = False) -> list[str]:
        if ns is None:
            return list(argv)
        if nsenter:
            return ["nsenter", f"--net=/run/netns/{ns}", *argv]
        return ["ip", "netns", "exec", ns, *argv]

    def popen(self, ns: str | None, argv: Sequence[str], *, nsenter: bool = False, **kw: Any) -> subprocess.Popen:
        """Start ``argv`` in ``ns`` (``ip netns exec`` execs in place, so ``.pid`` is the program's)."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen(self.argv(ns, argv, nsenter=nsenter), **kw)

    def run(
        self, ns: str | None, argv: Sequence[str], timeout: float = 60, *, check: bool = False, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        if kw.get("input") is None:
            kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run(self.argv(ns, argv), timeout=timeout, check=check, **kw)

    def socket(self, ns: str) -> socket.socket:
        return netns_socket(ns)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for ns in (self.srv_ns, self.cli_ns):
            if Path(f"/run/netns/{ns}").exists():
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        with _subnet_lock:
            _used_subnets.discard(self.n)

    def __enter__(self) -> LabNet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LabNet({self.prefix!r}, srv={self.srv_ns}@{self.srv_ip}, cli={self.cli_ns}@{self.cli_ip})"


def _netns_popen(netns: str | None, argv: Sequence[str], *, nsenter: bool = False, **kw: Any) -> subprocess.Popen:
    kw.setdefault("stdin", subprocess.DEVNULL)
    if netns is None:
        return subprocess.Popen(list(argv), **kw)
    pre = ["nsenter", f"--net=/run/netns/{netns}"] if nsenter else ["ip", "netns", "exec", netns]
    return subprocess.Popen([*pre, *argv], **kw)


def _ns_name(netns: Any) -> str | None:
    """Accept a namespace name, or None."""
    return netns if netns is None or isinstance(netns, str) else str(netns)


# --------------------------------------------------------------------------------------------------
# docker-registry (distribution 2.8)


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def write_htpasswd(path: Path | str, users: dict[str, str]) -> Path:
    """An htpasswd file with bcrypt hashes (what distribution accepts)."""
    import bcrypt

    p = Path(path)
    p.write_text(
        "".join(f"{u}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=5)).decode()}\n" for u, pw in users.items())
    )
    return p


class DistRegistry:
    """``docker-registry serve`` (CNCF distribution 2.8) with a generated config.

    ``tls=(cert_path, key_path)``, ``htpasswd=path`` (bcrypt), ``delete`` toggles storage.delete,
    ``extra_config`` is deep-merged into the config dict.
    """

    def __init__(
        self,
        workdir: Path | str,
        addr: str,
        port: int,
        *,
        netns: str | None = None,
        tls: tuple[Path | str, Path | str] | None = None,
        htpasswd: Path | str | None = None,
        delete: bool = True,
        extra_config: dict | None = None,
        name: str | None = None,
    ) -> None:
        self.addr, self.port, self.netns = addr, port, _ns_name(netns)
        self.name = name or f"reg{port}"
        self.workdir = Path(workdir) / self.name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.tls = tls
        self.htpasswd = htpasswd
        cfg: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.workdir / "data")},
                "delete": {"enabled": bool(delete)},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": f"{addr}:{port}", "secret": "dockerdoctor-lab"},
        }
        if tls:
            cfg["http"]["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
        if htpasswd:
            cfg["auth"] = {"htpasswd": {"realm": "dockerdoctor-lab", "path": str(htpasswd)}}
        if extra_config:
            cfg = _deep_merge(cfg, extra_config)
        self.config = cfg
        self.config_path = self.workdir / "config.yml"
        self.log_path = self.workdir / "registry.log"
        self.proc: subprocess.Popen | None = None

    @property
    def hostport(self) -> str:
        return f"{self.addr}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.hostport}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, timeout: float = 10.0) -> DistRegistry:
        import yaml

        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
        log = open(self.log_path, "ab")
        try:
            self.proc = _netns_popen(
                self.netns,
                ["docker-registry", "serve", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()
        _record(self.workdir, pid=self.proc.pid)

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry {self.hostport} exited {self.proc.returncode}:\n{self.log_text()}")
            try:
                st, _, _ = http_get(self.netns, self.addr, self.port, "/v2/", tls=bool(self.tls), timeout=0.5)
                return st in (200, 401)
            except (OSError, ValueError, IndexError):
                return False

        if not wait_for(ready, timeout):
            self.stop()
            raise RuntimeError(f"docker-registry {self.hostport} did not answer /v2/ in {timeout}s:\n{self.log_text()}")
        return self

    def stop(self) -> None:
        _stop_proc(self.proc)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> DistRegistry:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"DistRegistry({self.url}, netns={self.netns}, pid={self.pid})"


# --------------------------------------------------------------------------------------------------
# dockerd 20.10


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 10.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


def engine_api(sock: str | Path, method: str, path: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
    """A raw Docker Engine API call over the unix socket. Returns (status, decoded JSON or text)."""
    c = _UnixHTTPConnection(str(sock), timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        c.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        r = c.getresponse()
        raw = r.read()
        try:
            return r.status, json.loads(raw)
        except ValueError:
            return r.status, raw.decode(errors="replace")
    finally:
        c.close()


class Dockerd:
    """A dockerd 20.10 of our own: own data/exec root and socket, private ``/etc/docker``, optional netns.

    Started as ``unshare -m --propagation private sh -c 'mount --bind ETC /etc/docker && exec
    [nsenter --net=/run/netns/NS] dockerd ...'`` so ``.pid`` is dockerd's own PID.
    ``etc_docker=None`` makes an empty ``<workdir>/etc-docker``: the host's /etc/docker is never seen.
    ``daemon_json`` (dict or raw text) is written to ``etc_docker/daemon.json``; ``config_file`` adds
    ``--config-file``. ``defaults=False`` drops the --iptables/--bridge/--storage-driver defaults.
    """

    DEFAULT_ARGS = ("--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver=vfs")

    def __init__(
        self,
        workdir: Path | str,
        *,
        netns: str | None = None,
        etc_docker: Path | str | None = None,
        extra_args: Sequence[str] = (),
        daemon_json: dict | str | None = None,
        config_file: Path | str | None = None,
        defaults: bool | Sequence[str] = True,
        certs_d: dict[str, dict[str, bytes | str]] | None = None,
        env: dict[str, str] | None = None,
        cli: str | None = None,
        sock: str | None = None,
        private_run: bool = False,
    ) -> None:
        self.workdir = Path(workdir)
        self.cli = cli  # docker CLI binary for .docker() (default: the first `docker` on PATH)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.netns = _ns_name(netns)
        self.etc_docker = Path(etc_docker) if etc_docker else self.workdir / "etc-docker"
        self.etc_docker.mkdir(parents=True, exist_ok=True)
        self.extra_args = list(extra_args)
        self.config_file = Path(config_file) if config_file else None
        if defaults is True:
            self.default_args = list(self.DEFAULT_ARGS)
        elif defaults is False:
            self.default_args = []
        else:
            self.default_args = list(defaults)
        self.env = env
        # ``sock``: the socket dockerd is told to serve (-H). ``private_run=True`` gives it a private, empty
        # /run (so /var/run/docker.sock is its own); the lab then reaches it as /proc/PID/root/...
        self.private_run = private_run
        self.listen_sock = sock or str(self.workdir / "docker.sock")
        self.sock = self.listen_sock
        self.host = f"unix://{self.sock}"
        self.pidfile = self.workdir / "docker.pid"
        self.data_root = self.workdir / "root"
        self.exec_root = self.workdir / "exec"
        self.log_path = self.workdir / "dockerd.log"
        self.docker_config = self.workdir / "docker-config"  # DOCKER_CONFIG for the CLI (logins stay here)
        self.proc: subprocess.Popen | None = None
        self._client = None
        if daemon_json is not None:
            self.write_daemon_json(daemon_json)
        if certs_d:
            for hostport, files in certs_d.items():
                self.add_cert(hostport, files)

    # -- configuration
    @property
    def daemon_json_path(self) -> Path:
        return self.etc_docker / "daemon.json"

    def write_daemon_json(self, content: dict | str) -> Path:
        text = content if isinstance(content, str) else json.dumps(content, indent=2) + "\n"
        self.daemon_json_path.write_text(text)
        return self.daemon_json_path

    def certs_dir(self, hostport: str) -> Path:
        return self.etc_docker / "certs.d" / hostport

    def add_cert(self, hostport: str, files: dict[str, bytes | str]) -> Path:
        """Write files (e.g. ``{"ca.crt": pem}``) into the private ``/etc/docker/certs.d/HOSTPORT/``."""
        d = self.certs_dir(hostport)
        d.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (d / name).write_bytes(content.encode() if isinstance(content, str) else content)
        return d

    def argv(self) -> list[str]:
        a = [
            dockerd_bin(),
            *self.default_args,
            "--data-root",
            str(self.data_root),
            "--exec-root",
            str(self.exec_root),
            "-H",
            f"unix://{self.listen_sock}",
            "--pidfile",
            str(self.pidfile),
        ]
        if self.config_file:
            a += ["--config-file", str(self.config_file)]
        return a + self.extra_args

    def _shell(self) -> str:
        import shlex

        inner = shlex.join(self.argv())
        if self.private_run:
            inner = "sh -c " + shlex.quote(f"mount -n -t tmpfs -o mode=0755 dd-lab /run && exec {inner}")
        if self.netns:
            inner = f"nsenter --net=/run/netns/{shlex.quote(self.netns)} {inner}"
        # /run/containerd and /run/docker get a private tmpfs: dockerd's containerd would otherwise use a
        # system containerd socket found there, and would put its shim sockets (/run/containerd/s) and
        # plugin dir (/run/docker/plugins) on the host. Only the empty directories are created on the host.
        return (
            f"mount -n --bind {shlex.quote(str(self.etc_docker))} /etc/docker"
            " && mkdir -p /run/containerd /run/docker"
            " && mount -n -t tmpfs -o mode=0711 dd-lab /run/containerd"
            " && mount -n -t tmpfs -o mode=0700 dd-lab /run/docker"
            f" && exec {inner}"
        )

    # -- lifecycle
    def start(self, timeout: float = 15.0) -> bool:
        """Start dockerd; True once the API answers ``/_ping``, False if dockerd exited (see failure_line)."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("dockerd already running")
        self._client = None
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        if not self.private_run:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.sock)
        env = dict(os.environ)
        env.pop("DOCKER_HOST", None)
        if self.env:
            env.update(self.env)
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                ["unshare", "-m", "--propagation", "private", "sh", "-c", self._shell()],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        finally:
            log.close()
        _record(self.workdir, pid=self.proc.pid)
        if self.private_run:  # (/var/run is an absolute symlink: through /proc/PID/root it would lead to ours)
            real = "/run/" + self.listen_sock[len("/var/run/"):] if self.listen_sock.startswith("/var/run/") \
                else self.listen_sock
            self.sock = f"/proc/{self.proc.pid}/root{real}"
            self.host = f"unix://{self.sock}"

        def ready() -> str | None:
            if self.proc.poll() is not None:
                return "exited"
            try:
                st, _ = engine_api(self.sock, "GET", "/_ping", timeout=1)
                return "up" if st == 200 else None
            except OSError:
                return None

        state = wait_for(ready, timeout, 0.05)
        if state == "up":
            return True
        if state == "exited":
            self.proc.wait()
            return False
        self.stop()
        raise RuntimeError(f"dockerd did not answer in {timeout}s:\n{self.log_text()}")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int | None:
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None
        self._terminate(timeout)
        # The private mount namespace dies with dockerd; unmount anything that leaked into ours anyway.
        umount_under(self.workdir)
        return self.proc.returncode if self.proc else None

    def _containerd_pid(self) -> int | None:
        try:
            pid = int((self.exec_root / "containerd" / "containerd.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if str(self.exec_root) in _pid_cmdline(pid) else None

    def _terminate(self, timeout: float) -> None:
        """SIGTERM; once dockerd logged 'Daemon shutdown complete' and its containerd is gone, dockerd
        only idles for about 1 s before exiting, so SIGKILL it then. SIGKILL after ``timeout``."""
        p = self.proc
        if p is None or p.poll() is not None:
            if p is not None:
                p.wait()
            return
        cpid = self._containerd_pid()
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(signal.SIGTERM)
        end = time.monotonic() + timeout
        while p.poll() is None and time.monotonic() < end:
            if "Daemon shutdown complete" in self.log_text(since_start=True) and not (cpid and _pid_alive(cpid)):
                break
            time.sleep(0.02)
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
        p.wait()
        if cpid and _pid_alive(cpid):  # only after a timeout: never leave its containerd behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(cpid, signal.SIGKILL)
            wait_for(lambda: not _pid_alive(cpid), 5, 0.02)
        # dockerd 20.10 reuses the containerd its pid file names while kill(pid, 0) succeeds, which a
        # zombie (or a pid reused meanwhile) does: it then waits 15 s and fails with "timeout waiting
        # for containerd to start". Ours is gone by now, so the next start must launch its own.
        if cpid is None or not _pid_alive(cpid):
            with contextlib.suppress(OSError):
                (self.exec_root / "containerd" / "containerd.pid").unlink()

    def cleanup(self) -> None:
        """Stop and remove the work dir (data-root with vfs layers can be large)."""
        self.stop()
        rmtree(self.workdir)

    # -- output
    def log_text(self, since_start: bool = False) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        if since_start:
            data = data[getattr(self, "_log_offset", 0) :]
        return data.decode(errors="replace")

    def failure_line(self) -> str:
        """The last plain (non ``level=``) line dockerd printed since its last start: why it exited."""
        lines = [ln for ln in self.log_text(since_start=True).splitlines() if ln.strip() and "level=" not in ln]
        return lines[-1] if lines else ""

    # -- clients
    def cli_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("DOCKER_CONTEXT", None)
        env["DOCKER_HOST"] = self.host
        env["DOCKER_CONFIG"] = str(self.docker_config)
        self.docker_config.mkdir(exist_ok=True)
        return env

    def docker(
        self, *args: str, timeout: float = 120, input: bytes | str | None = None, check: bool = False
    ) -> subprocess.CompletedProcess:
        """Run the docker CLI against this daemon (text mode unless ``input`` is bytes)."""
        text = not isinstance(input, bytes)
        return subprocess.run(
            [self.cli or docker_cli(), "-H", self.host, *args],
            capture_output=True,
            text=text,
            input=input,
            timeout=timeout,
            env=self.cli_env(),
            check=check,
            stdin=None if input is not None else subprocess.DEVNULL,
        )

    def client(self):
        import docker

        if self._client is None:
            self._client = docker.DockerClient(base_url=self.host, version="auto", timeout=120)
        return self._client

    def api(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
        return engine_api(self.sock, method, path, body, timeout)

    def info(self) -> dict:
        st, data = engine_api(self.sock, "GET", "/info")
        if st != 200:
            raise RuntimeError(f"GET /info -> {st}: {data}")
        return data

    def reload(self, timeout: float = 10.0) -> str:
        """SIGHUP, then wait until the log shows the reload result. Returns the new log text.

        A good file logs ``Reloaded configuration``; a bad one logs ``unable to configure the Docker
        daemon`` at level=error, and dockerd keeps running with its old configuration.
        """
        assert self.proc is not None and self.proc.poll() is None, "dockerd is not running"
        before = len(self.log_path.read_bytes())
        os.kill(self.proc.pid, signal.SIGHUP)

        def done() -> str | None:
            new = self.log_path.read_bytes()[before:].decode(errors="replace")
            if "Reloaded configuration" in new or "unable to configure the Docker daemon" in new:
                return new
            return None

        out = wait_for(done, timeout)
        if not out:
            raise RuntimeError(f"dockerd did not log a reload in {timeout}s:\n{self.log_text()[-2000:]}")
        time.sleep(0.05)
        return self.log_path.read_bytes()[before:].decode(errors="replace")

    def __enter__(self) -> Dockerd:
        if not self.running() and not self.start():
            raise RuntimeError(f"dockerd failed to start: {self.failure_line()}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Dockerd({self.host}, netns={self.netns}, pid={self.pid})"


# --------------------------------------------------------------------------------------------------
# images without internet


def _ldd_libs(binary: str) -> list[str]:
    r = subprocess.run(["ldd", binary], capture_output=True, text=True)
    libs = []
    for ln in r.stdout.splitlines():
        ln = ln.strip()
        if "=>" in ln:
            p = ln.split("=>", 1)[1].split("(")[0].strip()
        else:
            p = ln.split("(")[0].strip()
        if p.startswith("/"):
            libs.append(p)
    return libs


def _add_file(tar: tarfile.TarFile, src: str, arcname: str, mode: int | None = None) -> None:
    ti = tar.gettarinfo(os.path.realpath(src), arcname=arcname)
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    if mode is not None:
        ti.mode = mode
    with open(os.path.realpath(src), "rb") as f:
        tar.addfile(ti, f)


def _add_dir(tar: tarfile.TarFile, arcname: str, mode: int = 0o755) -> None:
    ti = tarfile.TarInfo(arcname)
    ti.type = tarfile.DIRTYPE
    ti.mode = mode
    tar.addfile(ti)


def _add_bytes(tar: tarfile.TarFile, arcname: str, data: bytes, mode: int = 0o644) -> None:
    import io

    ti = tarfile.TarInfo(arcname)
    ti.size = len(data)
    ti.mode = mode
    tar.addfile(ti, io.BytesIO(data))


def _add_symlink(tar: tarfile.TarFile, arcname: str, target: str) -> None:
    ti = tarfile.TarInfo(arcname)
    ti.type = tarfile.SYMTYPE
    ti.linkname = target
    tar.addfile(ti)


def _rootfs_tar(
    binaries: dict[str, str],
    *,
    symlinks: dict[str, str] | None = None,
    files: dict[str, bytes] | None = None,
    dirs: Sequence[str] = (),
) -> bytes:
    """A rootfs tarball: ``binaries`` maps source -> path in image; their shared libs are added too."""
    import io

    buf = io.BytesIO()
    seen_dirs: set[str] = set()

    def mkdirs(tar: tarfile.TarFile, path: str) -> None:
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in seen_dirs:
                seen_dirs.add(d)
                _add_dir(tar, d, 0o1777 if d == "tmp" else 0o755)

    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("tmp", *dirs):
            mkdirs(tar, d.strip("/") + "/x")
        for src, dst in binaries.items():
            mkdirs(tar, dst)
            _add_file(tar, src, dst.strip("/"), 0o755)
            for lib in _ldd_libs(src):
                mkdirs(tar, lib)
                if lib.strip("/") not in tar.getnames():
                    _add_file(tar, lib, lib.strip("/"))
        for dst, target in (symlinks or {}).items():
            mkdirs(tar, dst)
            _add_symlink(tar, dst.strip("/"), target)
        for dst, data in (files or {}).items():
            mkdirs(tar, dst)
            _add_bytes(tar, dst.strip("/"), data)
    return buf.getvalue()


def _busybox_bin() -> str:
    for p in ("/bin/busybox", "/usr/bin/busybox"):
        if Path(p).exists():
            return p
    raise RuntimeError("busybox not found (apt-get install busybox-static)")


def busybox_rootfs_tar() -> bytes:
    return _rootfs_tar({_busybox_bin(): "/bin/busybox"}, symlinks={"/bin/sh": "busybox"}, dirs=("etc", "proc", "sys"))


def _docker_import(dockerd: Dockerd, tag: str, tar: bytes, changes: Sequence[str] = ()) -> str:
    args = ["import"]
    for c in changes:
        args += ["--change", c]
    r = dockerd.docker(*args, "-", tag, input=tar, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"docker import {tag} failed: {r.stderr.decode(errors='replace')}")
    return r.stdout.decode().strip()


# The old python registry's crash (docker-registry 0.9, gunicorn without --preload), as a shell
# script for a busybox container: it prints the real traceback and exits 3, unless GUNICORN_OPTS
# holds --preload, in which case it stays up like the fixed registry.
LOCK_CRASH_SH = """\
echo "Starting docker-registry (attempt at $(date -u +%H:%M:%S))"
case "$GUNICORN_OPTS" in *--preload*)
  echo "[INFO] Listening at: http://0.0.0.0:5000 (1)"; exec sleep 3600;;
esac
cat >&2 <<'TB'
Traceback (most recent call last):
  File "/usr/local/bin/docker-registry", line 9, in <module>
    load_entry_point('docker-registry==0.9.1', 'console_scripts', 'docker-registry')()
  File "/usr/local/lib/python2.7/dist-packages/docker_registry/run.py", line 94, in run_gunicorn
    registry._setup_database()
  File "/usr/local/lib/python2.7/dist-packages/docker_registry/lib/mirroring.py", line 28, in _setup_database
    with open('./registry._setup_database.lock', 'w+') as f:
OSError: [Errno 2] No such file or directory: './registry._setup_database.lock'
TB
exit 3
"""


def import_busybox(dockerd: Dockerd, tag: str = "lab/busybox:1") -> str:
    """Import a ~1 MB image with /bin/busybox (static) and /bin/sh; returns the image id."""
    return _docker_import(dockerd, tag, busybox_rootfs_tar(), ["ENV PATH=/bin", 'CMD ["/bin/sh"]'])


REGISTRY_IMAGE_CONFIG = """\
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"""


def import_registry_image(dockerd: Dockerd, tag: str = "lab/registry:2.8.2") -> str:
    """An image like ``registry:2`` made from the host's docker-registry binary (no internet needed).

    ENTRYPOINT ["/bin/registry"], CMD ["serve","/etc/docker/registry/config.yml"], the stock config
    (storage /var/lib/registry, :5000) and busybox for a shell. Run it with ``--network host`` under a
    dockerd in a namespace and set ``REGISTRY_HTTP_ADDR``.
    """
    reg = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    tar = _rootfs_tar(
        {reg: "/bin/registry", _busybox_bin(): "/bin/busybox"},
        symlinks={"/bin/sh": "busybox"},
        files={"/etc/docker/registry/config.yml": REGISTRY_IMAGE_CONFIG.encode()},
        dirs=("var/lib/registry", "etc/ssl/certs", "proc", "sys"),
    )
    return _docker_import(
        dockerd,
        tag,
        tar,
        [
            'ENTRYPOINT ["/bin/registry"]',
            'CMD ["serve","/etc/docker/registry/config.yml"]',
            "EXPOSE 5000",
            'VOLUME ["/var/lib/registry"]',
            "ENV PATH=/bin",
        ],
    )


# --------------------------------------------------------------------------------------------------
# plain TCP servers for endpoint tests


class PlainServer:
    """A TCP server in a namespace that does not speak HTTP or TLS.

    Modes (lab.md §3): ``eof`` reads the request then closes (client sees ``EOF``); ``rst`` closes with
    SO_LINGER 0 without reading (``connection reset by peer``); ``ssh`` sends an SSH banner
    (``first record does not look like a TLS handshake``); ``silent`` accepts and never answers
    (``TLS handshake timeout`` after 10 s); ``http`` answers every request with a fixed HTTP response
    (``response`` bytes), e.g. a web server that is not a registry.
    """

    SSH_BANNER = b"SSH-2.0-OpenSSH_9.2\r\n"

    def __init__(
        self,
        netns: str | None,
        addr: str,
        port: int | None = None,
        mode: str = "eof",
        response: bytes | None = None,
    ) -> None:
        if mode not in ("eof", "rst", "ssh", "silent", "http"):
            raise ValueError(mode)
        self.netns, self.addr, self.mode = _ns_name(netns), addr, mode
        # default: a free port in 5160-5199, away from the fixtures' fixed registry ports (5100-5130)
        self.port = port if port is not None else free_port(self.netns, addr, range(5160, 5200))
        self.response = response or (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 13\r\nConnection: close\r\n\r\n"
            b"<html></html>"
        )
        self._sock = netns_socket(self.netns)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((addr, self.port))
        self._sock.listen(64)
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, name=f"plain-{mode}-{self.port}", daemon=True)
        self._thread.start()

    @property
    def hostport(self) -> str:
        return f"{self.addr}:{self.port}"

    def _serve(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                c, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._handle, args=(c,), daemon=True).start()

    def _handle(self, c: socket.socket) -> None:
        import struct

        try:
            c.settimeout(5)
            if self.mode == "eof":
                with contextlib.suppress(OSError):
                    c.recv(4096)
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            elif self.mode == "rst":
                # Wait for the client's first bytes (so it sees a reset on read, not on connect), then
                # close without reading them: with SO_LINGER 0 the kernel sends RST.
                with contextlib.suppress(OSError):
                    c.recv(1, socket.MSG_PEEK)
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.close()
            elif self.mode == "ssh":
                c.sendall(self.SSH_BANNER)
                with contextlib.suppress(OSError):
                    c.recv(4096)
                c.close()
            elif self.mode == "http":
                with contextlib.suppress(OSError):
                    c.recv(65536)
                c.sendall(self.response)
                c.close()
            else:  # silent: hold the connection open until stop()
                self._held.append(c)
        except OSError:
            with contextlib.suppress(OSError):
                c.close()

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._sock.close()
        self._thread.join(2)
        for c in self._held:
            with contextlib.suppress(OSError):
                c.close()
        self._held.clear()

    def __enter__(self) -> PlainServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"PlainServer({self.mode}, {self.hostport}, netns={self.netns})"


# --------------------------------------------------------------------------------------------------
# firewalld on a private system bus

BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={sock}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""


class Firewalld:
    """firewalld in ``labnet``'s srv namespace, on a private dbus system bus in the work dir.

    ``--system-config`` is a copy of /etc/firewalld, so the host's config is never changed, and firewalld
    gets a private tmpfs on /run, so it never creates /run/firewalld on the host. The default
    zone is public: every port not opened is rejected (``connect: no route to host``).
    """

    def __init__(
        self, labnet: LabNet, workdir: Path | str | None = None, *, ns: str | None = None, start: bool = True
    ) -> None:
        if missing := missing_binaries("firewalld", "firewall-cmd", "dbus-daemon"):
            raise RuntimeError(f"missing binaries: {missing}")
        self.labnet = labnet
        self.ns = ns or labnet.srv_ns
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else make_workdir("fw")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.bus_sock = self.workdir / "bus.sock"
        self.bus_address = f"unix:path={self.bus_sock}"
        self.etc = self.workdir / "fw-etc"
        self.log_path = self.workdir / "firewalld.log"
        self.bus_proc: subprocess.Popen | None = None
        self.proc: subprocess.Popen | None = None
        if start:
            self.start()

    def env(self) -> dict[str, str]:
        e = dict(os.environ)
        e["DBUS_SYSTEM_BUS_ADDRESS"] = self.bus_address
        return e

    def start(self, timeout: float = 30.0) -> Firewalld:
        conf = self.workdir / "bus.conf"
        conf.write_text(BUS_CONF.format(sock=self.bus_sock))
        self.bus_proc = subprocess.Popen(
            ["dbus-daemon", "--config-file", str(conf), "--nofork", "--nopidfile"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "dbus.log", "ab"),
        )
        _record(self.workdir, pid=self.bus_proc.pid)
        if not wait_for(self.bus_sock.exists, 10):
            raise RuntimeError("private dbus-daemon did not create its socket")
        if not self.etc.exists():
            shutil.copytree("/etc/firewalld", self.etc, symlinks=True)
        fw_argv = [
            "firewalld", "--nofork", "--nopid", "--system-config", str(self.etc),
            "--log-target", "file", "--log-file", str(self.log_path),
        ]  # fmt: skip
        # `ip netns exec` gives the command its own (slave) mount namespace; a tmpfs over /run there keeps
        # firewalld's /run/firewalld and /run/xtables.lock off the host (its bus is in the work dir).
        self.proc = self.labnet.popen(
            self.ns,
            ["sh", "-c", 'mount -n -t tmpfs -o mode=0755 dd-lab-run /run && exec "$@"', "sh", *fw_argv],
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "firewalld.stderr", "ab"),
            env=self.env(),
        )
        _record(self.workdir, pid=self.proc.pid)

        def up() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"firewalld exited {self.proc.returncode}: {self.log_text()[-2000:]}")
            return self.cmd("--state", timeout=5).stdout.strip() == "running"

        if not wait_for(up, timeout, 0.1):
            self.stop()
            raise RuntimeError(f"firewalld not running after {timeout}s: {self.log_text()[-2000:]}")
        return self

    def cmd(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """``firewall-cmd ARGS`` in the namespace, on the private bus."""
        return self.labnet.run(self.ns, ["firewall-cmd", *args], timeout=timeout, env=self.env())

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        _stop_proc(self.proc, 15)  # CleanupOnExit=yes: firewalld removes its nft table
        _stop_proc(self.bus_proc, 5)
        if self._own_workdir:
            rmtree(self.workdir)

    def __enter__(self) -> Firewalld:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------------
# nginx reverse proxy


class Nginx:
    """nginx as a reverse proxy (``listen`` "ADDR:PORT", ``upstream`` "http://ADDR:PORT").

    ``client_max_body_size`` small (the default "1m") reproduces the 413 on a layer push (DD211).
    """

    def __init__(
        self,
        workdir: Path | str,
        listen: str,
        upstream: str,
        client_max_body_size: str = "1m",
        netns: str | None = None,
        *,
        tls: tuple[Path | str, Path | str] | None = None,
    ) -> None:
        if missing := missing_binaries("nginx"):
            raise RuntimeError(f"missing binaries: {missing}")
        self.workdir = Path(workdir) / f"nginx-{listen.replace(':', '-')}"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.listen, self.upstream, self.netns = listen, upstream, _ns_name(netns)
        self.client_max_body_size = client_max_body_size
        self.tls = tls
        self.proc: subprocess.Popen | None = None
        self.conf = self.workdir / "nginx.conf"
        self.error_log = self.workdir / "error.log"
        self.access_log = self.workdir / "access.log"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.listen}"

    def config_text(self) -> str:
        w = self.workdir
        ssl_lines = ""
        listen = self.listen
        if self.tls:
            listen += " ssl"
            ssl_lines = f"    ssl_certificate {self.tls[0]};\n    ssl_certificate_key {self.tls[1]};\n"
        return f"""daemon off;
master_process on;
worker_processes 1;
pid {w}/nginx.pid;
error_log {self.error_log} info;
events {{ worker_connections 64; }}
http {{
  access_log {self.access_log};
  client_body_temp_path {w}/body;
  proxy_temp_path {w}/proxy;
  fastcgi_temp_path {w}/fastcgi;
  uwsgi_temp_path {w}/uwsgi;
  scgi_temp_path {w}/scgi;
  server {{
    listen {listen};
{ssl_lines}    client_max_body_size {self.client_max_body_size};
    chunked_transfer_encoding on;
    location / {{
      proxy_pass {self.upstream};
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_read_timeout 300;
      proxy_request_buffering off;
    }}
  }}
}}
"""

    def start(self, timeout: float = 10.0) -> Nginx:
        self.conf.write_text(self.config_text())
        log = open(self.workdir / "nginx.stderr", "ab")
        try:
            self.proc = _netns_popen(
                self.netns,
                ["nginx", "-c", str(self.conf), "-p", str(self.workdir), "-e", str(self.error_log)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            log.close()
        _record(self.workdir, pid=self.proc.pid)
        host, port = self.listen.rsplit(":", 1)

        def up() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited {self.proc.returncode}: {self.log_text()}")
            return port_open(self.netns, host, int(port), 0.3)

        if not wait_for(up, timeout):
            self.stop()
            raise RuntimeError(f"nginx did not listen on {self.listen}: {self.log_text()}")
        return self

    def log_text(self) -> str:
        out = ""
        for p in (self.workdir / "nginx.stderr", self.error_log):
            with contextlib.suppress(OSError):
                out += p.read_text(errors="replace")
        return out

    def stop(self) -> None:
        _stop_proc(self.proc)  # SIGTERM = fast shutdown of master and workers

    def __enter__(self) -> Nginx:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------------
# crash recovery


def sweep_stale_labs() -> list[str]:
    """Clean up lab dirs left by a run that died (owner PID gone): kill their recorded processes
    (only if the PID's command line still names that lab dir), delete their namespaces, unmount, remove."""
    done = []
    for d in Path("/tmp").glob(f"{TMP_PREFIX}*"):
        f = d / "lab-state.json"
        try:
            st = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        owner = int(st.get("owner", 0))
        if owner and _pid_alive(owner):
            continue
        for pid in set(st.get("pids", [])) | set(_pids_mentioning(str(d) + "/")):
            if _pid_alive(pid) and (str(d) in _pid_cmdline(pid) or _pid_env_mentions(pid, str(d))):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for ns in st.get("netns", []):
            if Path(f"/run/netns/{ns}").exists():
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        time.sleep(0.2)
        rmtree(d)
        done.append(str(d))
    return done


def _pids_mentioning(path: str) -> list[int]:
    """PIDs whose command line names ``path`` (e.g. a dockerd's orphaned containerd: its --config is there)."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) != os.getpid() and path in _pid_cmdline(int(p.name)):
            out.append(int(p.name))
    return out


def _pid_env_mentions(pid: int, s: str) -> bool:
    try:
        return s.encode() in Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False

def run_group(argv: list[str], timeout: float, **kw) -> subprocess.CompletedProcess[str]:
    """subprocess.run(capture_output=True, text=True) in a session of its own: on a timeout the whole process
    group is killed (the script's awk and find too, not only sh), then TimeoutExpired is raised again."""
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                          **kw) as p:
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
            raise
    return subprocess.CompletedProcess(argv, p.returncode, out, err)


def cannot_run(why: str) -> None:
    """A test whose real parts are missing: skipped off CI, failed on CI (where the suite installs them)."""
    import pytest

    if os.environ.get("CI"):
        pytest.fail(f"cannot run on CI: {why}", pytrace=False)
    pytest.skip(why)
