"""Ground-floor value types for network addresses, shared by sources, probes, facts and rules.

`HostPort` is the one HOST:PORT value; `split_host_port` the one splitter (IPv6 brackets included)
that every parser uses; `ip_of` the address a listener binds; `is_ip` tells an address from a name;
`no_proxy_match` is proxy selection as Go's net/http (golang.org/x/net/http/httpproxy) does it for
dockerd. Nothing here imports the package.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


def split_host_port(text: str) -> tuple[str, str]:
    """HOST and PORT text of `text` (`[v6]:port`, `host:port`, `host`, or a bare IPv6 address);
    PORT is "" when there is none. Nothing is validated."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, rest.lstrip(":")
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, port
    return text, ""


def ip_of(addr: str) -> str:
    """The address part of a listen address (`0.0.0.0:5000`, `[::1]:5000`, `:5000`), without brackets;
    "" when it names none (`:5000`, a bare port, nothing)."""
    return addr.rpartition(":")[0].strip("[]") if ":" in addr else ""


def is_ip(host: str) -> bool:
    """An IP address (v4 or v6, brackets allowed), not a name."""
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int | None

    def __str__(self) -> str:
        if self.port is None:
            return self.host
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> HostPort:
        t = text.strip()
        for scheme in ("https://", "http://"):
            if t.lower().startswith(scheme):
                t = t[len(scheme) :]
        host, port = split_host_port(t.split("/", 1)[0])
        if not host:
            raise ValueError(f"no host in {text!r}")
        if port:
            if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
                raise ValueError(f"bad port in {text!r}")
            return cls(host.lower(), int(port))
        return cls(host.lower(), None)


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
        ehost, eport = split_host_port(entry)
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
