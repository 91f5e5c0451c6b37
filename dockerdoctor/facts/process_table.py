"""A snapshot's process list (`ps auxwww`, sos_commands/process/ps_auxwww) as (pid, argv) rows."""

from __future__ import annotations

from dockerdoctor.errors import FactUnavailable
from dockerdoctor.facts import Facts
from dockerdoctor.facts.systemd import split_command_line
from dockerdoctor.safetext import isdigits


def ps_rows(text: str) -> list[tuple[int | None, list[str]]]:
    """Each process of `ps auxwww` output: its PID (None when the column is not a number) and argv."""
    out: list[tuple[int | None, list[str]]] = []
    for line in text.splitlines()[1:]:
        cols = line.split(None, 10)
        if len(cols) < 11:
            continue
        out.append((int(cols[1]) if isdigits(cols[1]) else None, split_command_line(cols[10])))
    return out


def snapshot_processes(facts: Facts) -> list[tuple[int | None, list[str]]]:
    """The snapshot's process list; FactUnavailable when the snapshot has none."""
    text = facts.source.command("ps")
    if text is None:
        raise FactUnavailable("no process list in the snapshot (sos_commands/process/ps_auxwww)")
    return ps_rows(text)
