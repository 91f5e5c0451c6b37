"""Which host a report is about: the name a fleet report groups by.

Live: this host's name (its UTS namespace). A snapshot: the name it recorded (`/etc/hostname` of a
host root; `hostname` or `sos_commands/*/hostname` of a sosreport), or "" when it recorded none.
The name is cut to one printable line of at most 253 characters, so a hostile snapshot cannot put
terminal escapes into a report.
"""

from __future__ import annotations

import socket

from dockerdoctor.sources.base import Source

SNAPSHOT_NAME_FILES = (
    "/etc/hostname",
    "/hostname",
    "/sos_commands/general/hostname",
    "/sos_commands/host/hostname",
    "/proc/sys/kernel/hostname",
)
MAX_NAME = 253


def clean_name(text: str) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), "")
    return "".join(c for c in line if c.isprintable())[:MAX_NAME]


def host_name(source: Source) -> str:
    if source.live:
        return clean_name(socket.gethostname())
    for path in SNAPSHOT_NAME_FILES:
        text = source.read_text(path, limit=4096)
        if text and (name := clean_name(text)):
            return name
    return ""
