"""This host's interface addresses (`ip -o addr`): which firewalld zone carries a registry's traffic."""

from __future__ import annotations

import re
from dataclasses import dataclass

from dockerdoctor.errors import FactUnavailable
from dockerdoctor.facts import Facts, fact

# --------------------------------------------------------------------------- interfaces


@dataclass(frozen=True)
class IfAddr:
    iface: str
    address: str
    prefix: int | None


def parse_ip_addr(text: str) -> list[IfAddr]:
    """`ip -o addr` and `ip addr` output."""
    out: list[IfAddr] = []
    cur = None
    for line in text.splitlines():
        m = re.match(r"^\d+:\s+([^:\s@]+)(?:@\S+)?:?\s", line)
        if m:
            cur = m.group(1)
        a = re.search(r"\binet6?\s+([0-9a-fA-F.:]+)(?:/(\d+))?", line)
        if a and cur:
            out.append(IfAddr(cur, a.group(1), int(a.group(2)) if a.group(2) else None))
    return out


@fact()
def interface_addresses(facts: Facts) -> list[IfAddr]:
    if facts.live:
        try:
            import psutil

            out = []
            for iface, addrs in psutil.net_if_addrs().items():
                for a in addrs:
                    if a.family.name in ("AF_INET", "AF_INET6"):
                        out.append(IfAddr(iface, a.address.split("%")[0], None))
            return out
        except Exception:
            pass
    text = facts.source.command("ip_addr")
    if not text:
        raise FactUnavailable("the host's interface addresses are unknown (no ip addr output)")
    return parse_ip_addr(text)
