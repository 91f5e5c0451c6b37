"""Every file of a scenario that has a SOURCES.md is named there, with its origin: captured, hand-edited real
output, hand-written, or copied (from another scenario, whose sources apply)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

HOSTS = Path(__file__).resolve().parent.parent / "fixtures" / "hosts"
WITH_SOURCES = sorted(p.parent.name for p in HOSTS.glob("*/SOURCES.md"))
ORIGINS = {"captured", "hand-edited real output", "hand-written", "copied"}
ROW = re.compile(r"^\| `([^`]+)` \| ([^|]+) \| (.+) \|$")


@pytest.mark.parametrize("name", WITH_SOURCES)
def test_every_file_has_its_origin(name: str) -> None:
    d = HOSTS / name
    rows = {m.group(1): (m.group(2).strip(), m.group(3).strip())
            for m in map(ROW.match, (d / "SOURCES.md").read_text().splitlines()) if m}
    files = {str(p.relative_to(d)) for p in d.rglob("*")
             if p.is_file() and p.name not in ("SOURCES.md", "expected.json")}
    assert files == set(rows), (sorted(files - set(rows)), sorted(set(rows) - files))
    for f, (origin, source) in rows.items():
        assert origin in ORIGINS and len(source) > 20, (f, origin, source)
