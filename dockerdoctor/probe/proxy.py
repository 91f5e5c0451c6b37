"""Layer 4 of the probe: would dockerd send this registry's traffic through a proxy, and does the
proxy carry it?

Which proxy: Go's net/http (golang.org/x/net/http/httpproxy), as dockerd uses it: HTTPS_PROXY for
https:// requests, HTTP_PROXY for http://, upper case first, a value without a scheme means
http://; NO_PROXY (see dockerdoctor.net.no_proxy_match) and loopback exempt a host.
"""

from __future__ import annotations

import base64
import socket
import urllib.parse
from dataclasses import dataclass
from typing import Literal

from dockerdoctor.net import HostPort, no_proxy_match

ProxyVariable = Literal["HTTPS_PROXY", "HTTP_PROXY"]


@dataclass
class ProxyChoice:
    url: str  # the proxy as configured
    variable: ProxyVariable
    host: str
    port: int
    auth: str | None = None  # user:password from the URL (never printed)

    @property
    def display(self) -> str:
        """The proxy URL without credentials."""
        return f"http://{self.host}:{self.port}" if self.auth else self.url


def _get(env: dict[str, str], name: str) -> str:
    return env.get(name) or env.get(name.lower()) or ""


def proxy_for(address: HostPort, env: dict[str, str], scheme: str = "https") -> ProxyChoice | None:
    """The proxy dockerd would use to reach ``scheme://address``, or None (direct)."""
    var: ProxyVariable = "HTTPS_PROXY" if scheme == "https" else "HTTP_PROXY"
    raw = _get(env, var).strip()
    if not raw:
        return None
    no_proxy = _get(env, "NO_PROXY")
    port = address.port or (443 if scheme == "https" else 80)
    if no_proxy_match(no_proxy, address.host, port):
        return None
    url = raw if "://" in raw else "http://" + raw
    parsed = urllib.parse.urlsplit(url)
    if not parsed.hostname:
        return None
    auth = None
    if parsed.username:
        auth = f"{urllib.parse.unquote(parsed.username)}:{urllib.parse.unquote(parsed.password or '')}"
    pport = parsed.port or (443 if parsed.scheme == "https" else 80)
    return ProxyChoice(raw, var, parsed.hostname, pport, auth)


def connect_via(proxy: ProxyChoice, address: HostPort, timeout: float) -> tuple[socket.socket | None, str]:
    """Open a CONNECT tunnel through the proxy. Returns (socket or None, what happened)."""
    try:
        s = socket.create_connection((proxy.host, proxy.port), timeout=timeout)
    except OSError as exc:
        return None, f"proxy {proxy.display} unreachable: {exc.strerror or exc}"
    target = str(address) if address.port else f"{address}:443"
    req = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
    if proxy.auth:
        req += f"Proxy-Authorization: Basic {base64.b64encode(proxy.auth.encode()).decode()}\r\n"
    try:
        s.sendall((req + "\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 16384:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        s.close()
        return None, f"proxy {proxy.display}: {exc.__class__.__name__} during CONNECT"
    line = data.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    parts = line.split()
    if len(parts) >= 2 and parts[1] == "200":
        return s, f"proxy {proxy.display} tunnels to {target}"
    s.close()
    return None, f"proxy {proxy.display} refused CONNECT {target}: {line or 'no answer'}"
