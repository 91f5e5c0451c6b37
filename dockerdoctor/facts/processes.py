"""The process list of a snapshot (`ps auxwww`, sos_commands/process/ps_auxwww), parsed once: the one
`ps` parser the facts that look for dockerd and registry servers share. A live host asks psutil instead."""

from __future__ import annotations

from dataclasses import dataclass

from dockerdoctor.errors import FactUnavailable
from dockerdoctor.facts import Facts, fact
from dockerdoctor.facts.systemd import split_command_line
from dockerdoctor.model import Provenance
from dockerdoctor.safetext import isdigits


@dataclass(frozen=True)
class PsProcess:
    pid: int | None
    argv: list[str]
    source: str = ""
    line: int | None = None
    user: str = ""  # ps's USER column (a name, possibly cut with '+', or a uid)

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        return Provenance(self.source, text or " ".join(self.argv), line if line is not None else self.line)


def parse_ps(text: str, source: str = "") -> list[PsProcess]:
    """`ps aux`-style output: the header skipped, the 11th column on split as systemd splits a command line."""
    out = []
    for lineno, line in enumerate(text.splitlines()[1:], start=2):
        cols = line.split(None, 10)
        if len(cols) < 11:
            continue
        out.append(PsProcess(int(cols[1]) if isdigits(cols[1]) else None, split_command_line(cols[10]), source,
                             lineno, cols[0]))
    return out


@fact()
def ps_processes(facts: Facts) -> list[PsProcess]:
    """A snapshot's process list. Live hosts have psutil; this is for snapshots (and live `ps` output alike)."""
    text = facts.source.command("ps")
    if text is None:
        raise FactUnavailable("no process list in the snapshot (sos_commands/process/ps_auxwww)")
    return parse_ps(text, facts.source.command_source("ps"))
