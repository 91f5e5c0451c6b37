"""Layered probe of a registry endpoint, as dockerd 20.10 would reach it.

1. TCP: refused (DD201); timeout, "no route to host", "network is unreachable" (DD202); a name
   that does not resolve (DD212).
2. TLS: verified like dockerd (see dockerdoctor.probe.tls): plain HTTP (DD203), unknown CA (DD204),
   name or CN-only (DD205), expired or not yet valid (DD206); certs.d errors (DD209). A server that
   answers the ClientHello with neither TLS nor HTTP (EOF, reset, SSH banner, silence) is DD210.
3. HTTP: ``GET /v2/`` (200, or 401 with ``Docker-Distribution-Api-Version``), then ``/v1/_ping``
   only when /v2/ is not a registry: v1 only (DD207), neither (DD210).
4. Auth: a 401 and no credentials for exactly HOST:PORT in the docker client config (DD208).
5. Proxy: when the daemon's HTTPS_PROXY would carry the traffic, whether the proxy tunnels it.

The first layer that breaks is ``EndpointReport.layer``. Every network operation has ``timeout``;
a blackholed endpoint costs one timeout. Nothing here prints or stores a secret.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import http.client
import os
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from dockerdoctor import __version__
from dockerdoctor.net import HostPort, is_ip
from dockerdoctor.probe.auth import find_credentials
from dockerdoctor.probe.proxy import ProxyChoice, connect_via, proxy_for
from dockerdoctor.probe.report import EndpointReport, HttpAnswer, TlsError  # the first two re-exported
from dockerdoctor.probe.tls import (
    CertsDirContents,
    LeafInfo,
    check_hostname,
    check_validity,
    classify_chain_error,
    parse_leaf,
    read_certs_dir,
    unverified_context,
    verify_context,
)

USER_AGENT = f"dockerdoctor/{__version__}"
API_HEADER = "docker-distribution-api-version"


# ---------------------------------------------------------------------------------------------- TCP


def _connect(address: HostPort, timeout: float, rep: EndpointReport) -> socket.socket | None:
    port = address.port or 443
    deadline = time.monotonic() + timeout
    try:
        infos = _resolve(address.host, port, timeout)
    except socket.gaierror as exc:
        rep.tcp = "dns"
        rep.tcp_error = f"lookup {address.host}: {exc.strerror}"
        rep.docker_text = f"dial tcp: lookup {address.host}: no such host"
        return None
    except TimeoutError:
        rep.tcp = "dns"
        rep.tcp_error = f"lookup {address.host}: no answer within {timeout:g}s"
        rep.docker_text = f"dial tcp: lookup {address.host}: i/o timeout"
        return None
    last: OSError | None = None
    for family, stype, proto, _, sa in infos:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        s = socket.socket(family, stype, proto)
        s.settimeout(left)
        try:
            s.connect(sa)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as Go does; avoids a 40 ms Nagle stall
            rep.tcp = "open"
            return s
        except OSError as exc:
            s.close()
            last = exc
    dial = f"dial tcp {address.host}:{port}"
    if isinstance(last, ConnectionRefusedError):
        rep.tcp, rep.tcp_error = "refused", "connect: connection refused"
    elif last is None or isinstance(last, TimeoutError) or last.errno == errno.ETIMEDOUT:
        rep.tcp, rep.tcp_error = "timeout", f"no answer within {timeout:g}s (i/o timeout)"
        rep.docker_text = (
            "net/http: request canceled while waiting for connection "
            "(Client.Timeout exceeded while awaiting headers)")
        return None
    elif last.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        rep.tcp, rep.tcp_error = "unreachable", f"connect: {os.strerror(last.errno).lower()}"
    else:
        rep.tcp, rep.tcp_error = "error", f"connect: {last.strerror or last}"
    rep.docker_text = f"{dial}: {rep.tcp_error}"
    return None


def _resolve(host: str, port: int, timeout: float) -> list[Any]:
    """getaddrinfo bounded by the timeout (a dead resolver must not cost more than a dead registry)."""
    import ipaddress

    try:
        ipaddress.ip_address(host)
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)  # a literal: no lookup
    except ValueError:
        pass
    import threading

    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["v"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            out["e"] = exc

    t = threading.Thread(target=run, name=f"resolve-{host}", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"lookup {host}")
    if "e" in out:
        raise out["e"]
    return out["v"]


# ---------------------------------------------------------------------------------------------- HTTP


def _http_get(sock: socket.socket, address: HostPort, path: str, timeout: float,
              headers: dict[str, str] | None = None) -> HttpAnswer:
    ans = HttpAnswer(path)
    conn = http.client.HTTPConnection(address.host, address.port, timeout=timeout)
    conn.sock = sock
    try:
        conn.request("GET", path, headers={"Host": str(address), "User-Agent": USER_AGENT,
                                           "Accept": "application/json", "Connection": "close",
                                           **(headers or {})})
        resp = conn.getresponse()
        ans.status = resp.status
        ans.headers = {k.lower(): v for k, v in resp.getheaders()}
        ans.body = resp.read(4096).decode("utf-8", "replace")[:512]
    except (http.client.HTTPException, OSError, ValueError) as exc:
        ans.error = _describe_read_error(exc)
    finally:
        conn.close()
    return ans


def _describe_read_error(exc: BaseException) -> str:
    if isinstance(exc, http.client.BadStatusLine):
        return f"malformed HTTP response {str(exc)[:60]!r}"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "EOF"
    if isinstance(exc, TimeoutError):
        return "timeout awaiting response headers"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by peer"
    return f"{exc.__class__.__name__}: {exc}"


def _is_v2(ans: HttpAnswer | None) -> bool:
    if ans is None or ans.status is None:
        return False
    api = (ans.header(API_HEADER) or "").lower()
    if "registry/2.0" in api and ans.status in (200, 401):
        return True
    if ans.status == 401 and ans.header("www-authenticate") and not ans.header("x-docker-registry-version"):
        return True  # e.g. nginx basic auth in front of a registry without add_header; dockerd goes on
    if ans.status == 200 and not ans.header("x-docker-registry-version"):
        ctype = (ans.header("content-type") or "").lower()
        if "json" in ctype and ans.body.strip().startswith("{"):
            return True
    return False


def _is_v1(ans: HttpAnswer | None) -> bool:
    if ans is None or ans.status != 200:
        return False
    if ans.header("x-docker-registry-version") or ans.header("x-docker-registry-standalone"):
        return True
    return ans.body.strip() in ("true", "{}")


# ---------------------------------------------------------------------------------------------- probe


Connector = Callable[[], socket.socket | None]


def probe_endpoint(address: HostPort, timeout: float = 2.0, certs_dir: str | None = None, *,
                   docker_config: str | None = None, proxy_env: dict[str, str] | None = None,
                   check_auth: bool = True) -> EndpointReport:
    """Probe HOST:PORT layer by layer; never raises for network trouble."""
    rep = EndpointReport(address)
    start = time.monotonic()
    try:
        _probe(rep, address, timeout, certs_dir, docker_config, proxy_env, check_auth)
    finally:
        rep.seconds = time.monotonic() - start
    return rep


def _probe(rep: EndpointReport, address: HostPort, timeout: float, certs_dir: str | None,
           docker_config: str | None, proxy_env: dict[str, str] | None, check_auth: bool) -> None:
    certs = read_certs_dir(certs_dir)
    rep.certs_dir = certs_dir if certs.exists else None
    rep.certs_dir_error = certs.error
    rep.certs_dir_ignored = certs.ignored
    rep.certs_dir_bad_ca = certs.bad_ca_files
    rep.ca_files = certs.ca_files

    choice: ProxyChoice | None = proxy_for(address, proxy_env or {}, "https") if proxy_env else None
    proxy_thread = None
    if choice is not None:  # asked in parallel with the direct probe: a dead proxy costs no extra time
        import threading

        rep.proxy, rep.proxy_variable = choice.display, choice.variable
        proxy_thread = threading.Thread(target=_ask_proxy, args=(rep, choice, address, timeout), daemon=True)
        proxy_thread.start()
    try:
        _layers(rep, address, timeout, certs, docker_config, check_auth)
    finally:
        if proxy_thread is not None:
            proxy_thread.join(timeout + 1.0)


def _ask_proxy(rep: EndpointReport, choice: ProxyChoice, address: HostPort, timeout: float) -> None:
    tunnel, rep.proxy_result = connect_via(choice, address, timeout)
    rep.proxy_ok = tunnel is not None
    if tunnel is not None:
        tunnel.close()


def _layers(rep: EndpointReport, address: HostPort, timeout: float, certs: CertsDirContents,
            docker_config: str | None, check_auth: bool) -> None:
    sock = _connect(address, timeout, rep)
    if sock is None:
        rep.layer = "tcp"
        return

    def fresh() -> socket.socket | None:
        with contextlib.suppress(OSError):
            s = socket.create_connection((address.host, address.port or 443), timeout=timeout)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return s
        return None

    sni = None if is_ip(address.host) else address.host
    tls_sock = _tls_layer(rep, address, timeout, certs, sock, sni, fresh)
    connector = _connector(rep, address, timeout, tls_sock, certs, sni, fresh)
    if connector is not None:
        _http_layer(rep, address, timeout, connector, docker_config, check_auth)
    elif rep.layer == "ok":
        rep.layer = "tls"


def _leaf_problem(leaf: LeafInfo, host: str) -> tuple[TlsError, str] | None:
    """What dockerd says of a certificate it can parse: out of its validity first, then the wrong name."""
    problem = check_validity(leaf)
    if problem:
        return "expired", problem
    problem = check_hostname(leaf, host)
    return ("name-mismatch", problem) if problem else None


def _tls_layer(rep: EndpointReport, address: HostPort, timeout: float, certs: CertsDirContents,
               sock: socket.socket, sni: str | None, fresh: Connector) -> ssl.SSLSocket | None:
    """The handshake, verified as dockerd would; fills scheme, tls_error/detail, handshake and leaf. The TLS
    socket to ask HTTP over, or None."""
    tls_sock: ssl.SSLSocket | None = None
    leaf: LeafInfo | None = None
    try:
        tls_sock = verify_context(certs).wrap_socket(sock, server_hostname=sni)
        rep.scheme = "https"
        der = tls_sock.getpeercert(binary_form=True)
        leaf = parse_leaf(der) if der else None
        found = _leaf_problem(leaf, address.host) if leaf is not None else None
        if found:
            rep.tls_error, rep.tls_detail = found
    except ssl.SSLCertVerificationError as exc:
        sock.close()
        rep.scheme = "https"
        kind, text = classify_chain_error(exc)
        tls_sock, leaf = _unverified_look(certs, sni, fresh)
        found = _leaf_problem(leaf, address.host) if leaf is not None else None
        rep.tls_error, rep.tls_detail = found or (kind, text)
    except ssl.SSLError as exc:
        sock.close()
        if _client_cert_alert(str(exc.reason or exc)):
            rep.scheme = "https"
            _client_cert_refused(rep, str(exc.reason or exc), certs)
        else:
            if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)) or "EOF" in str(exc.reason or ""):
                rep.handshake = "eof"  # the server closed after reading the ClientHello
            _not_tls(rep, address, timeout, f"{exc.reason or exc}")
    except (ConnectionResetError, BrokenPipeError) as exc:
        sock.close()
        rep.handshake = "reset"
        _not_tls(rep, address, timeout, f"{exc.__class__.__name__}")
    except TimeoutError:
        sock.close()
        rep.handshake = "timeout"
        _not_tls(rep, address, timeout, "timeout")
    except OSError as exc:  # EOF in violation of protocol and friends
        sock.close()
        rep.handshake = "eof"
        _not_tls(rep, address, timeout, f"{exc.__class__.__name__}: {exc}")
    if leaf is not None:
        rep.leaf = {
            "subject_cn": leaf.subject_cn, "dns_names": leaf.dns_names, "ip_addresses": leaf.ip_addresses,
            "not_before": leaf.not_before.isoformat(), "not_after": leaf.not_after.isoformat(),
            "issuer": leaf.issuer, "self_signed": leaf.self_signed,
        }
    if rep.scheme == "https" and rep.tls_error:
        rep.layer = "tls"
        if rep.tls_error != "client-certificate":  # that one's dockerd text is set with it
            rep.docker_text = f'Get "https://{address}/v2/": {rep.tls_detail}'
    if rep.certs_dir_error:
        rep.layer = "tls"
        rep.docker_text = f"Error response from daemon: {rep.certs_dir_error}"
    return tls_sock


def _unverified_look(certs: CertsDirContents, sni: str | None,
                     fresh: Connector) -> tuple[ssl.SSLSocket | None, LeafInfo | None]:
    """A second handshake that verifies nothing, to read the certificate dockerd refused."""
    s2 = fresh()
    if s2 is None:
        return None, None
    tls_sock: ssl.SSLSocket | None = None
    leaf: LeafInfo | None = None
    with contextlib.suppress(ssl.SSLError, OSError):
        tls_sock = unverified_context(certs).wrap_socket(s2, server_hostname=sni)
        der = tls_sock.getpeercert(binary_form=True)
        leaf = parse_leaf(der) if der else None
    if tls_sock is None:
        s2.close()
    return tls_sock, leaf


def _connector(rep: EndpointReport, address: HostPort, timeout: float, tls_sock: ssl.SSLSocket | None,
               certs: CertsDirContents, sni: str | None, fresh: Connector) -> Connector | None:
    """After the handshake: GET /v2/ over TLS when it held, and how to open more connections for the HTTP
    layer; None when there is nothing to ask HTTP over (the layer then is tls)."""
    if rep.scheme == "http":
        return fresh  # rep.v2 was filled by _not_tls
    if rep.scheme != "https" or tls_sock is None:  # neither, or the unverified second handshake failed too
        return None
    rep.v2 = _http_get(tls_sock, address, "/v2/", timeout)
    if rep.v2.status is None and _client_cert_alert(rep.v2.error or ""):
        _client_cert_refused(rep, rep.v2.error or "", certs)  # TLS 1.3: the alert comes after the handshake
    if rep.tls_error == "client-certificate":
        rep.layer = "tls"
        return None

    def connector() -> socket.socket | None:
        s = fresh()
        if s is None:
            return None
        try:
            return unverified_context(certs).wrap_socket(s, server_hostname=sni)
        except (ssl.SSLError, OSError):
            s.close()
            return None

    return connector


_CLIENT_CERT_ALERTS = {
    "certificate required": "certificate required", "certificate_required": "certificate required",
    "bad certificate": "bad certificate", "bad_certificate": "bad certificate",
    "unknown ca": "unknown certificate authority", "unknown_ca": "unknown certificate authority",
}


def _client_cert_alert(text: str) -> str | None:
    low = text.lower()
    return next((go for key, go in _CLIENT_CERT_ALERTS.items() if key in low), None)


def _client_cert_refused(rep: EndpointReport, text: str, certs: CertsDirContents) -> None:
    """The server refused the handshake over the client certificate (mutual TLS)."""
    go = _client_cert_alert(text) or "bad certificate"
    rep.tls_error = "client-certificate"
    have = ", ".join(f"{c}+{k}" for c, k in certs.client_pairs) or "no client certificate"
    rep.tls_detail = f"remote error: tls: {go} (the registry wants a client certificate; certs.d has {have})"
    rep.docker_text = f'Get "https://{rep.address}/v2/": remote error: tls: {go}'


def _not_tls(rep: EndpointReport, address: HostPort, timeout: float, why: str) -> None:
    """The TLS handshake failed without a certificate: is it plain HTTP, or something else?"""
    base = f'Get "https://{address}/v2/"'
    if rep.handshake == "timeout":  # a plain HTTP server would have answered the ClientHello at once
        rep.tls_error = "handshake"
        rep.tls_detail = f"net/http: TLS handshake timeout (no answer within {timeout:g}s)"
        rep.docker_text = f"{base}: net/http: TLS handshake timeout"
        return
    try:
        s = socket.create_connection((address.host, address.port or 443), timeout=timeout)
    except OSError as exc:
        rep.tls_error = "handshake"
        rep.tls_detail = f"TLS handshake failed ({why}); reconnect failed: {exc}"
        return
    ans = _http_get(s, address, "/v2/", timeout)
    if ans.status is not None:
        rep.scheme = "http"
        rep.handshake = rep.handshake or "http"
        rep.v2 = ans
        rep.tls_detail = "http: server gave HTTP response to HTTPS client"
        rep.docker_text = f"{base}: {rep.tls_detail}"
        return
    rep.tls_error = "handshake"
    rep.v2 = ans
    if rep.handshake == "reset":
        rep.tls_detail = "read: connection reset by peer"
        rep.docker_text = f"{base}: read tcp ->{address}: read: connection reset by peer"
    elif rep.handshake == "eof":
        rep.tls_detail = "EOF"
        rep.docker_text = f"{base}: EOF"
    else:
        rep.handshake = "not-tls"
        first = ans.error or ""
        rep.tls_detail = "tls: first record does not look like a TLS handshake"
        if first:
            rep.tls_detail += f" (the server sent {first})"
        rep.docker_text = f"{base}: tls: first record does not look like a TLS handshake"


def _http_layer(rep: EndpointReport, address: HostPort, timeout: float, connector: Connector,
                docker_config: str | None, check_auth: bool) -> None:
    v2 = rep.v2
    if v2 is not None:
        rep.http_status = v2.status
        rep.api_version_header = v2.header(API_HEADER)
    if _is_v2(v2):
        rep.registry_api = "v2"
    else:
        s = connector()
        if s is not None:
            rep.v1 = _http_get(s, address, "/v1/_ping", timeout)
        if _is_v1(rep.v1) or (v2 is not None and v2.header("x-docker-registry-version")):
            rep.registry_api = "v1"
        if rep.layer == "ok":
            rep.layer = "http"
        return
    assert v2 is not None
    if v2.status != 401:
        return
    challenge = v2.header("www-authenticate") or ""
    scheme, params = _parse_challenge(challenge)
    rep.auth_challenge = scheme or None
    rep.auth_realm = params.get("realm")
    creds = find_credentials(address, docker_config)
    rep.credentials = creds
    if creds.found and creds._secret and check_auth:
        rep.credentials_valid = _check_credentials(address, timeout, connector, scheme, params, creds._secret)
    if not creds.found or rep.credentials_valid is False:
        if rep.layer == "ok":
            rep.layer = "auth"
        if rep.docker_text is None:
            rep.docker_text = ("unauthorized: authentication required" if not creds.found
                               else f'Get "https://{address}/v2/": unauthorized: incorrect username or password')


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    for part in _split_params(rest):
        k, _, v = part.partition("=")
        params[k.strip().lower()] = v.strip().strip('"')
    return scheme.capitalize(), params


def _split_params(text: str) -> list[str]:
    out, cur, quoted = [], "", False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return out


def _check_credentials(address: HostPort, timeout: float, connector: Connector, scheme: str,
                       params: dict[str, str], secret: tuple[str, str]) -> bool | None:
    basic = "Basic " + base64.b64encode(f"{secret[0]}:{secret[1]}".encode()).decode()
    if scheme == "Basic":
        s = connector()
        if s is None:
            return None
        ans = _http_get(s, address, "/v2/", timeout, {"Authorization": basic})
        return None if ans.status is None else ans.status == 200
    if scheme == "Bearer" and params.get("realm"):
        import warnings

        import requests

        q = {"account": secret[0]}
        if params.get("service"):
            q["service"] = params["service"]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = requests.get(params["realm"], params=q, headers={"Authorization": basic,
                                                                     "User-Agent": USER_AGENT},
                                 timeout=timeout, verify=False)
        except requests.RequestException:
            return None
        if r.status_code in (401, 403):
            return False
        try:
            token = r.json().get("token") or r.json().get("access_token")
        except ValueError:
            return None
        if not token:
            return None
        s = connector()
        if s is None:
            return None
        ans = _http_get(s, address, "/v2/", timeout, {"Authorization": f"Bearer {token}"})
        return None if ans.status is None else ans.status == 200
    return None
