"""What the DD2xx rules share: the targets, the probe-or-journal evidence skeleton, and the knowledge
base's hits in the docker journal and the registry's own log.

Every DD2xx rule asks the same question two ways: the live probe of HOST:PORT says so, or, with no
probe (a snapshot, probes off), the docker journal holds the error text the knowledge base ties to
that rule for that address. `probe_or_journal` is that question, once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from dockerdoctor.engine import basis_count, finding, passed_on
from dockerdoctor.errors import Skip
from dockerdoctor.facts.daemon import DEFAULT_INSECURE_CIDRS, EffectiveConfig, trusted_as_insecure
from dockerdoctor.facts.host import Journal, TargetRegistry
from dockerdoctor.facts.registry_containers import RegistryContainer, published_endpoints
from dockerdoctor.knowledge.events import filter_hits
from dockerdoctor.knowledge.journal import JournalHits
from dockerdoctor.model import Evidence, Finding, Fix
from dockerdoctor.net import HostPort
from dockerdoctor.probe.report import EndpointProbes, EndpointReport
from dockerdoctor.safetext import short

NO_SOURCE = ("no live probe of the registry (a snapshot, network probes off, a daemon on another host, or a "
             "daemon in another network namespace without root to enter it: a live report's last line says "
             "which) and no docker journal to read its errors from")


def registry_params(addr: HostPort, **extra: Any) -> dict[str, Any]:
    """The params of a finding about one registry endpoint."""
    return {"registry": str(addr), "host": addr.host, "port": addr.port, **extra}


def probe_or_journal(rule_id: str, addr: HostPort, rep: EndpointReport | None, hits: JournalHits | None,
                     says: Callable[[EndpointReport], str | Sequence[str] | None]) -> list[Evidence]:
    """Evidence that `rule_id` holds for `addr`: with a live probe, what `says(probe)` tells (its text, or
    None when the probe shows the rule does not apply); without one, the journal lines the knowledge
    base ties to `rule_id` for this address. [] when neither shows it."""
    if rep is not None:
        said = says(rep)
        if said is None:
            return []
        return [rep.evidence(t) for t in ([said] if isinstance(said, str) else said)]
    return journal_evidence(hits, rule_id, addr)


@dataclass(frozen=True)
class Seen:
    """A rule that is only "the probe shows it, else the journal does": what the probe shows (its text, or
    None when it shows the rule does not apply), then the finding's title, message, fix and params."""

    says: Callable[[EndpointReport, HostPort], str | Sequence[str] | None]
    title: Callable[[HostPort], str]
    message: Callable[[HostPort], str]
    fix: Callable[[HostPort], Fix]
    params: Callable[[HostPort], dict[str, Any]] = registry_params


def seen(rule_id: str, row: Seen, target_registries: list[TargetRegistry], endpoint_probes: EndpointProbes | None,
         docker_journal: Journal | None, hits: JournalHits | None) -> Iterator[Finding]:
    """The findings of a `Seen` rule, one per target where the probe or the journal shows it."""
    for addr, rep in each_target(target_registries, endpoint_probes, docker_journal):
        ev = probe_or_journal(rule_id, addr, rep, hits, lambda r, a=addr: row.says(r, a))  # type: ignore[misc]
        if ev:
            yield finding(rule_id, row.title(addr), row.message(addr), evidence=ev, fix=row.fix(addr),
                          params=row.params(addr))


def targets(target_registries: list[TargetRegistry]) -> list[HostPort]:
    if not target_registries:
        raise Skip("no registry to check: name one with --registry HOST:PORT")
    return [t.address for t in target_registries]


def insecure_entry(addr: HostPort, cfg: EffectiveConfig | None) -> str | None:
    """The entry that makes dockerd skip TLS verification for addr (loopback always), or None."""
    values: list[str] = []
    if cfg is not None:
        src = cfg.insecure_running if cfg.insecure_running is not None else cfg.insecure_planned
        values = [v.value for v in src]
    return trusted_as_insecure(addr, values)


def trusted(addr: HostPort, cfg: EffectiveConfig | None) -> bool:
    """Does dockerd skip TLS verification for addr? When it does, say why (for -v: the fact a pass rests on)."""
    entry = insecure_entry(addr, cfg)
    if entry is None:
        return False
    if "always insecure" in entry or entry in DEFAULT_INSECURE_CIDRS:
        passed_on(f"{addr}: dockerd treats {entry.split(' ', 1)[0]} as insecure")
        return True
    where = ""
    for v in [*(cfg.insecure_planned if cfg else []), *((cfg.insecure_running or []) if cfg else [])]:
        if v.value == entry:
            where = f" at {v.where()}"
            break
    passed_on(f"{addr} trusted via insecure-registries ({entry}){where}")
    return True


def planned_entry(addr: HostPort, cfg: EffectiveConfig | None) -> str | None:
    """Where the files list addr as insecure while the running daemon does not use it, else None."""
    if cfg is None or cfg.insecure_running is None:
        return None
    for v in cfg.insecure_planned:
        if trusted_as_insecure(addr, [v.value]) == v.value:
            return f"{v.value!s} in {v.where()}"
    return None


def journal_evidence(hits: JournalHits | None, rule_id: str, addr: HostPort) -> list[Evidence]:
    """The last three lines of the docker journal that the knowledge base ties to rule_id for this registry."""
    if hits is None:
        return []
    return [hits.evidence(short(line, 300), lineno) for lineno, line, _m in filter_hits(hits.hits, rule_id, addr)][-3:]


def container_hits(registry_containers: list[RegistryContainer] | None, rule_id: str, addr: HostPort) -> list[Evidence]:
    """Lines of the log of the registry container that serves addr's port, tied to rule_id."""
    if not registry_containers:
        return []
    from dockerdoctor.knowledge.events import scan_lines

    out = []
    for rc in registry_containers:
        try:
            ports = {hp.port for hp, _ in published_endpoints(rc)}
            logs = list(rc.container.logs)
        except Exception:  # noqa: BLE001 - a container we cannot read says nothing
            continue
        if addr.port not in ports:
            continue
        for lineno, line, _hit in scan_lines(logs, rule_id, None):
            out.append(Evidence(f"docker logs {rc.name}", short(line, 300), lineno))
    return out[-3:]


def each_target(target_registries: list[TargetRegistry], endpoint_probes: EndpointProbes | None,
                docker_journal: Journal | None, registry_containers: list[RegistryContainer] | None = None
                ) -> Iterator[tuple[HostPort, EndpointReport | None]]:
    """(address, probe or None) for each target; skip the rule when nothing can be known."""
    addrs = targets(target_registries)
    if endpoint_probes is None and docker_journal is None and not registry_containers:
        raise Skip(NO_SOURCE)
    unseen: list[str] = []
    for addr in addrs:
        rep = (endpoint_probes or {}).get(str(addr))
        rep = rep if isinstance(rep, EndpointReport) else None
        if rep is not None:
            passed_on(f"{addr}: probed live ({rep.seconds * 1000:.0f} ms)")
        elif mentioned(docker_journal, registry_containers, addr):
            passed_on(f"{addr}: not probed; the docker journal names it, without this error")
        else:
            unseen.append(str(addr))
        before = basis_count()
        yield addr, rep
        if unseen and unseen[-1] == str(addr) and basis_count() > before:
            unseen.pop()  # the rule judged it from the configuration alone (insecure-registries, loopback)
    if unseen and len(unseen) == len(addrs):
        # Nothing was looked at: no probe, and no journal line or registry log even names the registry.
        # A pass here would claim a registry is fine that nobody saw.
        raise Skip(f"{', '.join(unseen)} was not probed (a snapshot is never probed; network probes "
                   "off or not possible) and no docker journal line names it")


def mentioned(journal: Journal | None, registry_containers: list[RegistryContainer] | None, addr: HostPort) -> bool:
    """Does the docker journal (or a registry container serving addr's port) say anything about addr?"""
    if registry_containers:
        try:
            if any(addr.port in {hp.port for hp, _ in published_endpoints(rc)} for rc in registry_containers):
                return True
        except Exception:  # noqa: BLE001 - a container we cannot read says nothing
            pass
    return journal is not None and journal.names(addr)
