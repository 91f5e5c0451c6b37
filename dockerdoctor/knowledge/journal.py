"""The `journal_hits` fact: the docker journal read through the knowledge base's parser, once.

Live or from a snapshot (`check --root`), the same events a paste gives: client errors dockerd
logged, access-log lines, truncated journal lines. Rules read the hits instead of grepping.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dockerdoctor.errors import FactUnavailable
from dockerdoctor.facts import Facts, fact
from dockerdoctor.knowledge.events import Hit, filter_hits, recent_hits
from dockerdoctor.model import Provenance
from dockerdoctor.net import HostPort


@dataclass
class JournalHits:
    source: str
    hits: list[Hit] = field(default_factory=list)  # the last few of each (pattern, host, port), in order
    truncated: bool = False  # the journal was longer than what was read

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        return Provenance(self.source, text, line)

    def for_rule(self, rule_id: str, addr: HostPort | None = None) -> list[Hit]:
        return [h for _n, _l, h in filter_hits(self.hits, rule_id, addr)]

    def rules(self) -> set[str]:
        return {h.pattern.rule for h in self.hits}


@fact()
def journal_hits(facts: Facts) -> JournalHits:
    journal = facts.get("docker_journal")  # raises FactUnavailable with its reason
    if journal is None:  # a store seeded with "no journal" (Facts.from_values)
        raise FactUnavailable("the docker journal is not available")
    return JournalHits(journal.source, recent_hits(journal.lines), journal.truncated)
