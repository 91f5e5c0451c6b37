"""Proxy selection as Go's net/http (golang.org/x/net/http/httpproxy) does it for dockerd."""

from __future__ import annotations

import ipaddress


def _split_host_port(entry: str) -> tuple[str, str]:
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, rest.lstrip(":")
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, port
    return entry, ""


def no_proxy_match(no_proxy: str, host: str, port: int) -> str | None:
    """The NO_PROXY entry that exempts host:port from the proxy, or None."""
    host = host.lower().strip("[]")
    if host == "localhost":
        return "localhost (never proxied)"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None and ip.is_loopback:
        return "loopback (never proxied)"
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return entry
        try:
            net = ipaddress.ip_network(entry, strict=False)
            if "/" in entry:
                if ip is not None and ip in net:
                    return raw.strip()
                continue
        except ValueError:
            pass
        ehost, eport = _split_host_port(entry)
        if eport and eport != str(port):
            continue
        try:
            eip = ipaddress.ip_address(ehost)
            if ip is not None and ip == eip:
                return raw.strip()
            continue
        except ValueError:
            pass
        if ip is not None:
            continue
        if ehost.startswith("*."):
            ehost = ehost[1:]
        if ehost.startswith("."):
            if host.endswith(ehost):
                return raw.strip()
        elif host == ehost or host.endswith("." + ehost):
            return raw.strip()
    return None
