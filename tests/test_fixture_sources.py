"""Every file of a scenario that has a SOURCES.md is named there, with its origin: captured, hand-edited real
output, hand-written, or copied (from another scenario, whose sources apply). Every DD6xx scenario (one whose
expected.json fires a DD6xx rule, or whose name says DD6) has a SOURCES.md."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

HOSTS = Path(__file__).resolve().parent.parent / "fixtures" / "hosts"
WITH_SOURCES = sorted(p.parent.name for p in HOSTS.glob("*/SOURCES.md"))
ORIGINS = {"captured", "hand-edited real output", "hand-written", "copied"}
ROW = re.compile(r"^\| `([^`]+)` \| ([^|]+) \| (.+) \|$")


def _dd6(d: Path) -> bool:
    fire = json.loads((d / "expected.json").read_text()).get("fire", [])
    return "dd6" in d.name.lower() or any(str(r).upper().startswith("DD6") for r in fire)


DD6 = sorted(d.name for d in HOSTS.iterdir() if (d / "expected.json").is_file() and _dd6(d))


def test_dd6_scenarios_found() -> None:
    assert len(DD6) >= 5, DD6


@pytest.mark.parametrize("name", DD6)
def test_dd6_scenario_has_sources(name: str) -> None:
    assert (HOSTS / name / "SOURCES.md").is_file(), f"{name}: a DD6xx scenario needs a SOURCES.md"


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
