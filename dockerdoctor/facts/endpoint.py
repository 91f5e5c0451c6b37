"""Endpoint facts beyond the basic probe (dockerdoctor.facts.host.endpoint_probes): the
end-to-end push round trip of `check --e2e` (dockerdoctor.probe.e2e)."""

from __future__ import annotations

from typing import Any

from dockerdoctor.errors import FactUnavailable
from dockerdoctor.facts import Facts, fact


@fact()
def e2e_results(facts: Facts) -> dict[str, Any]:
    """A real push / pull / delete round trip against every target registry (only with --e2e)."""
    if not facts.options.e2e:
        raise FactUnavailable("the end-to-end push probe runs only with --e2e")
    if not facts.live or not facts.options.network:
        raise FactUnavailable("the end-to-end push probe needs a live host with network probes on")
    targets = facts.get("target_registries")
    probes = facts.optional("endpoint_probes") or {}
    from dockerdoctor.facts.host import daemon_certs_dir
    from dockerdoctor.probe.e2e import run_e2e
    from dockerdoctor.probe.netns import probe_pool

    origin = facts.get("probe_origin")  # the push runs from where the daemon stands, as its own would

    def one(t: Any) -> Any:
        name = str(t.address)
        return run_e2e(t.address, repo=facts.options.e2e_repo, timeout=max(facts.options.timeout, 5.0),
                       probe=probes.get(name),
                       certs_dir=daemon_certs_dir(facts, name))

    if not targets:
        return {}
    with probe_pool(origin, min(4, len(targets))) as pool:
        return dict(zip((str(t.address) for t in targets), pool.map(one, targets), strict=True))
