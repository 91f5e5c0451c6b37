"""Layered probe of a registry endpoint: TCP, then TLS (verified as dockerd would), then HTTP.

The first layer that breaks is what the finding names. Every network operation has a timeout.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
import time
from dataclasses import dataclass

from dockerdoctor.facts import HostPort


@dataclass
class EndpointReport:
    address: HostPort
    tcp: str = "unknown"  # open | refused | timeout | unreachable | error
    tcp_error: str = ""
    scheme: str | None = None  # https | http | None (neither)
    tls_error: str | None = None  # unknown-authority | name-mismatch | expired | handshake | None
    tls_detail: str = ""
    http_status: int | None = None
    api_version_header: str | None = None
    seconds: float = 0.0

    @property
    def summary(self) -> str:
        if self.tcp != "open":
            return f"TCP {self.tcp}: {self.tcp_error}"
        if self.scheme == "http":
            return "plain HTTP (no TLS)"
        if self.scheme == "https" and self.tls_error:
            return f"TLS {self.tls_error}: {self.tls_detail}"
        if self.scheme == "https":
            return "TLS verified"
        return self.tls_detail or "unknown"


def _tls_context(certs_dir: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if certs_dir and os.path.isdir(certs_dir):
        for name in sorted(os.listdir(certs_dir)):
            full = os.path.join(certs_dir, name)
            if name.endswith(".crt"):
                try:
                    ctx.load_verify_locations(cafile=full)
                except (ssl.SSLError, OSError):
                    pass  # dockerd ignores a garbage ca.crt too
            elif name.endswith(".cert"):
                key = full[: -len(".cert")] + ".key"
                try:
                    ctx.load_cert_chain(full, key)
                except (ssl.SSLError, OSError):
                    pass
    return ctx


def _classify_verify_error(exc: ssl.SSLCertVerificationError) -> str:
    msg = (exc.verify_message or str(exc)).lower()
    if "expired" in msg or "not yet valid" in msg:
        return "expired"
    if "hostname" in msg or "ip address mismatch" in msg or "doesn't match" in msg:
        return "name-mismatch"
    return "unknown-authority"


def probe_endpoint(address: HostPort, timeout: float = 2.0, certs_dir: str | None = None) -> EndpointReport:
    rep = EndpointReport(address)
    start = time.monotonic()
    port = address.port or 443
    try:
        sock = socket.create_connection((address.host, port), timeout=timeout)
    except ConnectionRefusedError as exc:
        rep.tcp, rep.tcp_error = "refused", f"connect: connection refused ({exc})"
    except TimeoutError:
        rep.tcp, rep.tcp_error = "timeout", f"no answer within {timeout:g}s"
    except OSError as exc:
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            rep.tcp, rep.tcp_error = "unreachable", f"connect: {os.strerror(exc.errno)}"
        else:
            rep.tcp, rep.tcp_error = "error", str(exc)
    else:
        rep.tcp = "open"
        try:
            _probe_tls(rep, sock, address, timeout, certs_dir)
        finally:
            sock.close()
    rep.seconds = time.monotonic() - start
    return rep


def _probe_tls(rep: EndpointReport, sock: socket.socket, address: HostPort, timeout: float,
               certs_dir: str | None) -> None:
    ctx = _tls_context(certs_dir)
    try:
        tls = ctx.wrap_socket(sock, server_hostname=address.host)
    except ssl.SSLCertVerificationError as exc:
        rep.scheme = "https"
        rep.tls_error = _classify_verify_error(exc)
        rep.tls_detail = exc.verify_message or str(exc)
        return
    except ssl.SSLError as exc:
        rep.tls_detail = exc.reason or str(exc)
        if _speaks_plain_http(address, timeout):
            rep.scheme = "http"
        else:
            rep.tls_error = "handshake"
        return
    except (OSError, TimeoutError) as exc:
        rep.tls_detail = f"EOF during TLS handshake ({exc.__class__.__name__})"
        if _speaks_plain_http(address, timeout):
            rep.scheme = "http"
        return
    rep.scheme = "https"
    tls.close()


def _speaks_plain_http(address: HostPort, timeout: float) -> bool:
    try:
        with socket.create_connection((address.host, address.port or 80), timeout=timeout) as s:
            s.sendall(f"GET /v2/ HTTP/1.0\r\nHost: {address}\r\n\r\n".encode())
            return s.recv(16).startswith(b"HTTP/")
    except OSError:
        return False
