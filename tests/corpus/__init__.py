"""The explain corpus: real texts with their sources (explain-corpus.yaml, from public threads;
lab-corpus.yaml, printed by real clients in the lab), split by a rule nobody chooses: an entry is
held out when the SHA-256 of its source, tool, expected rule and first 80 characters starts with
0-4 (about 30%; the lab's temporary paths are written as /tmp/LAB, so a re-run keeps the split).
Patterns are tuned on the rest."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
FILES = ("explain-corpus.yaml", "lab-corpus.yaml")
HELD_OUT_PREFIXES = "01234"


@dataclass(frozen=True)
class Entry:
    text: str
    expect: str  # a rule id, or NONE: the answer must be "no known cause"
    source: str
    tool: str
    file: str
    batch: str = ""  # "fresh": collected after the patterns were written (a blind measurement)

    @property
    def split(self) -> str:
        key = f"{self.source}|{self.tool}|{self.expect}|{self.text[:80]}"  # stable across lab re-runs
        return "heldout" if hashlib.sha256(key.encode()).hexdigest()[0] in HELD_OUT_PREFIXES else "tune"


def load(split: str | None = None) -> list[Entry]:
    import yaml

    out = []
    for name in FILES:
        p = HERE / name
        if not p.exists():
            continue
        for e in yaml.safe_load(p.read_text(encoding="utf-8"))["entries"]:
            out.append(Entry(e["text"], str(e["expect"]), e["source"], e.get("tool", ""), name, e.get("batch", "")))
    if split in ("fresh", "fresh2"):
        return [e for e in out if e.batch == split]
    return [e for e in out if split is None or e.split == split]
