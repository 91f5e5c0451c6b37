"""Run the endpoint rules (rules/endpoint.py) on one probe report; used by the probe tests."""

from __future__ import annotations

import inspect
from typing import Any

from dockerdoctor.engine import discover
from dockerdoctor.errors import Skip
from dockerdoctor.facts import HostPort
from dockerdoctor.facts.host import TargetRegistry


def fired(rep: Any, *, effective_config: Any = None, certs_d: dict | None = None, journal: Any = None,
          e2e: dict | None = None, containers: list | None = None, prefix: str = "DD2") -> dict[str, list[Any]]:
    """{rule id: findings} of the DD2xx rules for a single registry probed as ``rep``."""
    addr: HostPort = rep.address if rep is not None else next(iter(e2e.values())).address  # type: ignore[union-attr]
    facts = {
        "target_registries": [TargetRegistry(addr, "test", True)],
        "endpoint_probes": {str(addr): rep} if rep is not None else None,
        "effective_config": effective_config,
        "certs_d": certs_d if certs_d is not None else {},
        "docker_journal": journal,
        "e2e_results": e2e,
        "registry_containers": containers,
    }
    out: dict[str, list[Any]] = {}
    for rid, spec in discover().items():
        if not rid.startswith(prefix):
            continue
        params = inspect.signature(spec.func).parameters
        if any(p not in facts and q.default is inspect.Parameter.empty for p, q in params.items()):
            continue
        if any(facts.get(n) is None and p.default is inspect.Parameter.empty for n, p in params.items()):
            continue  # a required fact is unavailable: the engine skips the rule
        try:
            found = list(spec.func(**{p: facts.get(p) for p in params}) or [])
        except Skip:
            continue
        if found:
            out[rid] = found
    return out
