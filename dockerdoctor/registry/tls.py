"""TLS for `serve-registry`: load a given certificate, or make a CA and a server certificate.

`--tls-self-signed NAME...` keeps a CA in `<tls dir>/ca.crt` + `ca.key` (reused across
restarts, so clients trust it once) and issues `server.crt` + `server.key` whose SANs cover
every NAME (IP addresses as IP SANs, the rest as DNS SANs). Docker wants the CA at
`/etc/docker/certs.d/HOST:PORT/ca.crt` for each HOST:PORT a client uses.

The tls dir holds private keys, so it must be a real directory (not a symlink) that only its
owner can write, and files are never opened through a symlink: a planted `server.key.tmp` ->
`/etc/shadow` is refused, not followed. Temporary files get fresh random names (O_EXCL).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import stat
import tempfile
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dockerdoctor.errors import DoctorError


class TLSSetupError(DoctorError, ValueError):
    """The certificate or key cannot be used."""


@dataclass(frozen=True)
class SelfSigned:
    ca_cert: str
    cert: str
    key: str


def split_names(values: list[str]) -> list[str]:
    names: list[str] = []
    for v in values:
        for part in v.replace(",", " ").split():
            if part and part not in names:
                names.append(part)
    return names


def _not_after(cert: x509.Certificate) -> dt.datetime:
    """Expiry as an aware datetime (cryptography < 42 has only the naive `not_valid_after`)."""
    aware = getattr(cert, "not_valid_after_utc", None)
    if aware is not None:
        return aware  # type: ignore[no-any-return]
    return cert.not_valid_after.replace(tzinfo=dt.timezone.utc)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
        return True
    except ValueError:
        return False


def _write(path: str, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))  # O_EXCL: never an existing file
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)  # replaces a symlink itself, never its target
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def _exists(path: str) -> bool:
    """True for a regular file; a symlink or anything else in a tls dir is refused."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode):
        raise TLSSetupError(f"{path} is not a regular file (a symlink?); remove it")
    return True


def check_dir(directory: str) -> None:
    """The tls dir must be a real directory, not writable by group or others."""
    st = os.lstat(directory)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise TLSSetupError(f"TLS directory {directory} is not a directory (a symlink?)")
    if st.st_mode & 0o022:
        raise TLSSetupError(f"TLS directory {directory} is writable by others (mode {st.st_mode & 0o777:o}); chmod 700")
    if st.st_uid != os.geteuid():
        raise TLSSetupError(f"TLS directory {directory} belongs to uid {st.st_uid}, not to us ({os.geteuid()})")


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _server_sans(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(v) for v in ext.get_values_for_type(x509.DNSName)} | {
        str(v) for v in ext.get_values_for_type(x509.IPAddress)
    }


def ensure_self_signed(directory: str, names: list[str], days: int = 825) -> SelfSigned:
    """Create (or reuse) the CA and a server certificate covering `names`."""
    if not names:
        raise TLSSetupError("--tls-self-signed needs at least one host name or IP")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    check_dir(directory)
    ca_crt, ca_key = os.path.join(directory, "ca.crt"), os.path.join(directory, "ca.key")
    srv_crt, srv_key = os.path.join(directory, "server.crt"), os.path.join(directory, "server.key")
    now = dt.datetime.now(dt.timezone.utc)
    ca_cert: x509.Certificate | None = None
    ca_private: ec.EllipticCurvePrivateKey | None = None
    for p in (ca_crt, ca_key, srv_crt, srv_key):
        _exists(p)
    if _exists(ca_crt) and _exists(ca_key):
        try:
            ca_cert = x509.load_pem_x509_certificate(_read(ca_crt))
            loaded = serialization.load_pem_private_key(_read(ca_key), None)
            if not isinstance(loaded, ec.EllipticCurvePrivateKey) or _not_after(ca_cert) < now:
                ca_cert = None
            else:
                ca_private = loaded
        except (ValueError, OSError):
            ca_cert = None
    if ca_cert is None or ca_private is None:
        ca_private = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dockerdoctor serve-registry CA")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(ca_private.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_private.public_key()), critical=False)
            .sign(ca_private, hashes.SHA256())
        )
        _write(ca_key, _key_pem(ca_private), 0o600)
        _write(ca_crt, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
        for stale in (srv_crt, srv_key):
            if _exists(stale):
                os.unlink(stale)
    wanted = {str(ipaddress.ip_address(n.strip("[]"))) if _is_ip(n) else n for n in names}
    if _exists(srv_crt) and _exists(srv_key):
        current = x509.load_pem_x509_certificate(_read(srv_crt))
        fresh = _not_after(current) > now + dt.timedelta(days=30)
        if fresh and _server_sans(current) == wanted and current.issuer == ca_cert.subject:
            return SelfSigned(ca_crt, srv_crt, srv_key)
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for n in names:
        if _is_ip(n):
            sans.append(x509.IPAddress(ipaddress.ip_address(n.strip("[]"))))
        else:
            sans.append(x509.DNSName(n))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_private.public_key()), critical=False)
        .sign(ca_private, hashes.SHA256())
    )
    _write(srv_key, _key_pem(key), 0o600)
    _write(srv_crt, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return SelfSigned(ca_crt, srv_crt, srv_key)


def server_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except FileNotFoundError as e:
        raise TLSSetupError(f"cannot read {e.filename or cert}: no such file") from None
    except ssl.SSLError as e:
        raise TLSSetupError(f"cannot use certificate {cert} with key {key}: {e.reason or e}") from None
    except OSError as e:
        raise TLSSetupError(f"cannot read certificate {cert} or key {key}: {e.strerror}") from None
    return ctx


def default_dir(root: str) -> str:
    """Where --tls-self-signed keeps its keys by default: next to the storage root, never inside it."""
    root = os.path.abspath(root).rstrip("/") or "/"
    if root == "/":
        return "/var/lib/dockerdoctor-registry.tls"
    return root + ".tls"


def inside(path: str, root: str) -> bool:
    p, r = os.path.realpath(path), os.path.realpath(root)
    return p == r or p.startswith(r.rstrip("/") + "/")


def adopt_legacy(root: str, directory: str) -> str | None:
    """Move a CA that older versions kept in ROOT/tls to `directory` (clients already trust it).

    Returns a note for the start-up output, or None if there was nothing to move.
    """
    old = os.path.join(root, "tls")
    old_key = os.path.join(old, "ca.key")
    if os.path.islink(old) or not os.path.isfile(old_key) or os.path.exists(os.path.join(directory, "ca.key")):
        return None
    os.makedirs(directory, mode=0o700, exist_ok=True)
    check_dir(directory)
    for name in ("ca.crt", "ca.key", "server.crt", "server.key"):
        src = os.path.join(old, name)
        if os.path.isfile(src) and not os.path.islink(src):
            _write(os.path.join(directory, name), _read(src), 0o600 if name.endswith(".key") else 0o644)
            os.unlink(src)
    return f"moved the CA and its private key out of the storage root: {old} -> {directory}"


def certs_d_path(host: str, port: int) -> str:
    """Where docker looks for this registry's CA (no port in the folder name for 443)."""
    hostport = host if port == 443 else f"{host}:{port}"
    if ":" in host and not host.startswith("["):  # IPv6 literal
        hostport = f"[{host}]" if port == 443 else f"[{host}]:{port}"
    return f"/etc/docker/certs.d/{hostport}/ca.crt"
