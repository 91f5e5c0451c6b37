"""The knowledge base of error texts, apart from the `explain` command that prints it.

- `base`: patterns (real wordings with their sources), access-log rules, rule titles and fixes.
- `events`: stage one, text (a paste, a journal, a container log) into events.
- `reason`: stage two, the ranked causes over the events, with a calibrated verdict.
- `journal`: the `journal_hits` fact, the same parser over the docker journal of a host or snapshot.
"""

from __future__ import annotations

from dockerdoctor.knowledge.base import NONE, AccessRule, KnowledgeBase, Pattern, load_kb, write_compiled_file
from dockerdoctor.knowledge.events import (
    Event,
    Hit,
    clean,
    extract_params,
    filter_hits,
    iter_events,
    iter_hits,
    parse,
    printable,
    recent_hits,
    scan_lines,
)
from dockerdoctor.knowledge.reason import Diagnosis, RuleMatch, diagnose

__all__ = [
    "NONE", "AccessRule", "Diagnosis", "Event", "Hit", "KnowledgeBase", "Pattern", "RuleMatch", "clean", "diagnose",
    "extract_params", "filter_hits", "iter_events", "iter_hits", "load_kb", "parse", "printable", "recent_hits",
    "scan_lines", "write_compiled_file",
]
