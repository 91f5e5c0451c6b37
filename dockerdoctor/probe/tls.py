"""TLS the way dockerd 20.10 (Go 1.19 crypto/x509) verifies a registry.

Trust: the system store plus every ``*.crt`` in ``/etc/docker/certs.d/HOST:PORT/``; client
certificates are ``NAME.cert`` + ``NAME.key`` pairs (moby ``registry.ReadCertsDirectory``). A
``.cert`` without its ``.key`` (or the reverse) is a hard error for dockerd, a garbage ``.crt`` is
silently ignored, and so is every other file name (``ca.pem``).

Order of checks, as in Go's ``Certificate.Verify``: validity period first, then the host name (a
certificate without SANs fails here with the "legacy Common Name" text, even when its CA is
unknown), then the chain. The texts in ``detail`` are Go's, so that a probe finding and the error a
user pasted read the same.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import ssl
from dataclasses import dataclass, field

from dockerdoctor.probe.report import TlsError

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


@dataclass
class CertsDirContents:
    """What dockerd takes from one certs.d/HOST:PORT directory."""

    path: str
    exists: bool = False
    ca_files: list[str] = field(default_factory=list)  # *.crt with at least one PEM certificate
    bad_ca_files: list[str] = field(default_factory=list)  # *.crt that hold no certificate (ignored)
    client_pairs: list[tuple[str, str]] = field(default_factory=list)  # (NAME.cert, NAME.key)
    ignored: list[str] = field(default_factory=list)  # names dockerd never reads (ca.pem, ca.cer ...)
    error: str | None = None  # the error dockerd fails every push with (missing key / cert)
    ca_pems: list[bytes] = field(default_factory=list)


def pair_problem(name: str, names: list[str]) -> str | None:
    """What dockerd says of certs.d file `name` among `names`: a NAME.cert without its NAME.key, or the reverse."""
    if name.endswith(".cert"):
        key = name[: -len(".cert")] + ".key"
        if key not in names:
            return (f"missing key {key} for client certificate {name}. "
                    "Note that CA certificates should use the extension .crt")
    elif name.endswith(".key"):
        cert = name[: -len(".key")] + ".cert"
        if cert not in names:
            return f"Missing client certificate {cert} for key {name}"
    return None


def pair_error(names: list[str]) -> str | None:
    """The first client-pair problem dockerd fails every push with, in the order of `names`."""
    return next((p for n in names if (p := pair_problem(n, names))), None)


def read_certs_dir(path: str | None) -> CertsDirContents:
    """Read a certs.d/HOST:PORT directory with dockerd's rules."""
    out = CertsDirContents(path or "")
    if not path or not os.path.isdir(path):
        return out
    out.exists = True
    try:
        names = sorted(os.listdir(path))
    except OSError as exc:
        out.error = f"open {path}: {exc.strerror}"
        return out
    for name in names:
        full = os.path.join(path, name)
        if name.endswith(".crt"):
            try:
                with open(full, "rb") as f:
                    data = f.read(4 * 1024 * 1024)
            except OSError as exc:
                out.error = out.error or f"open {full}: {exc.strerror}"
                continue
            pems = _PEM.findall(data)
            if pems:
                out.ca_files.append(name)
                out.ca_pems.extend(pems)
            else:
                out.bad_ca_files.append(name)
        elif name.endswith((".cert", ".key")):
            problem = pair_problem(name, names)
            if problem:
                out.error = out.error or problem
            elif name.endswith(".cert"):
                out.client_pairs.append((name, name[: -len(".cert")] + ".key"))
        else:
            out.ignored.append(name)
    return out


def verify_context(certs: CertsDirContents) -> ssl.SSLContext:
    """A client context that trusts what dockerd would trust (chain only; names are checked apart)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    _load_system_store(ctx)
    for pem in certs.ca_pems:
        try:
            ctx.load_verify_locations(cadata=pem.decode("ascii", "replace"))
        except (ssl.SSLError, ValueError):
            pass  # Go's AppendCertsFromPEM skips what it cannot parse
    _load_client_pairs(ctx, certs)
    return ctx


_HASHED = re.compile(r"^[0-9a-f]{8}\.\d+$")
_store_mode: str | None = None


def _load_system_store(ctx: ssl.SSLContext) -> None:
    """The system store, as Go reads it. A hashed capath (Debian's /etc/ssl/certs) is looked up
    lazily by OpenSSL, which costs ~3 ms instead of ~60 ms for parsing the whole bundle."""
    global _store_mode
    paths = ssl.get_default_verify_paths()
    if _store_mode is None:
        mode = "default"
        capath = os.environ.get(paths.openssl_capath_env) or paths.capath
        cafile = os.environ.get(paths.openssl_cafile_env)
        same_bundle = not cafile or os.path.realpath(cafile) in (
            os.path.realpath(paths.cafile or ""), os.path.realpath(paths.openssl_cafile))
        if capath and same_bundle:
            try:
                if any(_HASHED.match(n) for n in os.listdir(capath)):
                    mode = capath
            except OSError:
                pass
        _store_mode = mode
    if _store_mode == "default":
        ctx.load_default_certs()
    else:
        ctx.load_verify_locations(capath=_store_mode)


def unverified_context(certs: CertsDirContents | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if certs is not None:
        _load_client_pairs(ctx, certs)
    return ctx


def _load_client_pairs(ctx: ssl.SSLContext, certs: CertsDirContents) -> None:
    for cert, key in certs.client_pairs:
        try:
            ctx.load_cert_chain(os.path.join(certs.path, cert), os.path.join(certs.path, key))
        except (ssl.SSLError, OSError):
            pass


@dataclass
class LeafInfo:
    subject_cn: str | None
    dns_names: list[str]
    ip_addresses: list[str]
    not_before: dt.datetime
    not_after: dt.datetime
    issuer: str
    self_signed: bool

    @property
    def has_san(self) -> bool:
        return bool(self.dns_names or self.ip_addresses)


def parse_leaf(der: bytes) -> LeafInfo:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_der_x509_certificate(der)
    try:
        cn_attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        cn = str(cn_attrs[0].value) if cn_attrs else None
    except ValueError:
        cn = None
    dns: list[str] = []
    ips: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = [str(n) for n in san.get_values_for_type(x509.DNSName)]
        ips = [str(n) for n in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        pass
    nb = getattr(cert, "not_valid_before_utc", None) or cert.not_valid_before.replace(tzinfo=dt.timezone.utc)
    na = getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after.replace(tzinfo=dt.timezone.utc)
    return LeafInfo(cn, dns, ips, nb, na, cert.issuer.rfc4514_string(), cert.issuer == cert.subject)


def _go_time(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_validity(leaf: LeafInfo, now: dt.datetime | None = None) -> str | None:
    """Go's text for an expired or not-yet-valid certificate, or None."""
    now = now or dt.datetime.now(dt.timezone.utc)
    if now > leaf.not_after:
        return (f"x509: certificate has expired or is not yet valid: current time {_go_time(now)} "
                f"is after {_go_time(leaf.not_after)}")
    if now < leaf.not_before:
        return (f"x509: certificate has expired or is not yet valid: current time {_go_time(now)} "
                f"is before {_go_time(leaf.not_before)}")
    return None


def _match_hostname(pattern: str, host: str) -> bool:
    """Go's matchHostnames: case-insensitive, a leftmost '*' label matches exactly one label."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if not pattern or not host:
        return False
    p, h = pattern.split("."), host.split(".")
    if len(p) != len(h):
        return False
    for i, (a, b) in enumerate(zip(p, h, strict=True)):
        if i == 0 and a == "*":
            continue
        if a != b:
            return False
    return True


def check_hostname(leaf: LeafInfo, host: str) -> str | None:
    """Go's HostnameError text when the certificate does not cover ``host``, or None."""
    host = host.strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        if any(ipaddress.ip_address(a) == ip for a in leaf.ip_addresses):
            return None
    elif any(_match_hostname(d, host) for d in leaf.dns_names):
        return None
    if not leaf.has_san and leaf.subject_cn and _match_hostname(leaf.subject_cn, host):
        return "x509: certificate relies on legacy Common Name field, use SANs instead"
    if ip is not None:
        if not leaf.ip_addresses:
            return f"x509: cannot validate certificate for {host} because it doesn't contain any IP SANs"
        valid = ", ".join(leaf.ip_addresses)
    else:
        valid = ", ".join(leaf.dns_names)
    if not valid:
        return f"x509: certificate is not valid for any names, but wanted to match {host}"
    return f"x509: certificate is valid for {valid}, not {host}"


def classify_chain_error(exc: ssl.SSLCertVerificationError) -> tuple[TlsError, str]:
    """(kind, Go-like text) for an OpenSSL chain verification failure."""
    code = getattr(exc, "verify_code", None)
    msg = exc.verify_message or str(exc)
    if code in (9, 10):  # X509_V_ERR_CERT_NOT_YET_VALID / CERT_HAS_EXPIRED (an intermediate or the CA)
        return "expired", f"x509: certificate has expired or is not yet valid ({msg})"
    return "unknown-authority", "x509: certificate signed by unknown authority"
