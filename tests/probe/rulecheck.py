"""Run the endpoint rules (rules/endpoint.py, rules/endpoint_tls.py) on one probe report, through the real
engine on a fact store seeded with values (Facts.from_values); used by the rule and probe tests."""

from __future__ import annotations

from typing import Any

from dockerdoctor.engine import discover, run_rule
from dockerdoctor.facts import Facts, HostPort
from dockerdoctor.facts.host import TargetRegistry
from dockerdoctor.model import RuleStatus
from dockerdoctor.sources.base import Source


def facts_for(rep: Any, *, effective_config: Any = None, certs_d: dict | None = None, journal: Any = None,
              e2e: dict | None = None, containers: list | None = None, source: Source | None = None) -> Facts:
    """The fact store the DD2xx rules see for a single registry probed as ``rep`` (None: not probed)."""
    addr: HostPort = rep.address if rep is not None else next(iter(e2e.values())).address  # type: ignore[union-attr]
    given = {
        "target_registries": [TargetRegistry(addr, "test", True)],
        "endpoint_probes": {str(addr): rep} if rep is not None else None,
        "effective_config": effective_config,
        "certs_d": certs_d if certs_d is not None else {},
        "docker_journal": journal,
        "e2e_results": e2e,
        "registry_containers": containers,
    }
    values = {k: v for k, v in given.items() if v is not None}
    unavailable = {k: "not given to this test" for k, v in given.items() if v is None}
    return Facts.from_values(values, unavailable, source=source)


def fired(rep: Any, *, prefix: str = "DD2", **given: Any) -> dict[str, list[Any]]:
    """{rule id: findings} of the rules whose id starts with `prefix`, keyed by the rule that reported them
    (DD213's DD406 finding stays under DD213). A crashed rule fails the test."""
    facts = facts_for(rep, **given)
    out: dict[str, list[Any]] = {}
    for rid in discover():
        if not rid.startswith(prefix):
            continue
        res = run_rule(rid, facts)
        assert res.status != RuleStatus.CRASHED, (rid, res.reason, res.traceback)
        if res.findings:
            out[rid] = res.findings
    return out
