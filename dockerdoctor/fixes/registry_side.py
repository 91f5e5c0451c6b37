"""Steps a trust fix asks for on the registry host rather than on this one."""

from __future__ import annotations

from dockerdoctor.model import RunCommand
from dockerdoctor.net import HostPort


def serve_tls_command(registry: str | HostPort, note: str) -> RunCommand:
    """`dockerdoctor serve-registry --port P --tls-self-signed HOST` for a registry given as HOST[:PORT]
    (no port: 443, the port a client without one tries)."""
    target = registry if isinstance(registry, HostPort) else HostPort.parse(registry)
    return RunCommand(("dockerdoctor", "serve-registry", "--port", str(target.port or 443),
                       "--tls-self-signed", target.host), note)
