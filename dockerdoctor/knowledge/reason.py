"""Stage two: reason over the events of a paste together.

Each hit scores its rule by its pattern's specificity (weight); a rule named as "also possible"
scores a share of it. Context lines then weigh in: an insecure-registry option in a file the
docker unit never reads turns a plain-HTTP error into DD102; a `docker run` of the registry
without -p turns a refusal into DD404, without a volume turns "manifest unknown" into DD403.
Texts whose honest answer is "not a private-registry fault" (a public registry's rate limit, a
missing platform, a full disk) come back as "no known cause", with the reason.

Confidence is calibrated on the tuning split of the corpus (tests/corpus, never the held-out one):
"cause" when the best evidence is specific (weight >= CAUSE_MIN) and clearly ahead of the next
rule; "possible" otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from dockerdoctor.knowledge.base import KnowledgeBase, load_kb
from dockerdoctor.knowledge.events import PUBLIC_REGISTRIES, Event, Hit, extract_params, parse

ALSO_FACTOR = 0.45  # an "also possible" rule scores this share of the pattern's weight
CAUSE_MIN = 8.0  # the weight of evidence specific enough to call a rule the cause
MARGIN = 1.0  # ... when it leads the next primary rule by at least this much
MAX_HITS = 20  # hits kept per rule (the score needs the best four; the answer shows three)
CONTEXT_WEIGHT = 11.0  # a context conclusion outranks the plain error it explains
# a symptom never outranks the cause the same paste shows: dockerd down (DD501) because its
# configuration is refused at start (a unit's "Main process exited" next to the reason)
CONSEQUENCES = {"DD501": ("DD104", "DD105", "DD106", "DD109")}

# files an init system reads for dockerd options, and who reads them
_SYSV_ENV = {"/etc/default/docker": "upstart and sysvinit only; docker-ce's systemd unit never reads it",
             "/etc/sysconfig/docker": "only RHEL's own docker package reads it; docker-ce's unit never does"}


@dataclass
class RuleMatch:
    rule_id: str
    score: float
    hits: list[Hit] = field(default_factory=list)  # hits where this rule is the primary cause
    also_hits: list[Hit] = field(default_factory=list)  # hits that name it as also possible
    params: dict[str, Any] = field(default_factory=dict)
    context: list[Event] = field(default_factory=list)  # context lines that led to it
    reason: str = ""  # why the context changed the diagnosis
    guess: bool = False

    @property
    def primary(self) -> bool:
        return bool(self.hits) or bool(self.context)

    @property
    def best_weight(self) -> float:
        ws = [h.weight for h in self.hits] + ([CONTEXT_WEIGHT] if self.context else [])
        return max(ws, default=0.0)


@dataclass
class Diagnosis:
    verdict: str  # "cause", "possible", "no known cause"
    matches: list[RuleMatch]
    not_private: list[Hit]
    events: list[Event]

    @property
    def known(self) -> bool:
        return self.verdict != "no known cause"


def _run_args(ev: Event) -> str | None:
    """The arguments of a `docker run`/`podman run` that starts a registry image."""
    if ev.kind != "command" or ev.client not in ("docker", "podman", "nerdctl"):
        return None
    args = ev.setting.get("args", "")
    if not re.match(r"(?:container\s+)?(?:run|create)\b", args):
        return None
    return args if re.search(r"\bregistry(?::[\w.\-]+)?(?:\s|$)|distribution/distribution|/registry:", args) else None


def _apply_context(events: list[Event], by_rule: dict[str, RuleMatch], kb: KnowledgeBase,
                   not_private: list[Hit] | None = None) -> None:
    primary = {r for r, m in by_rule.items() if m.hits}
    trust = primary & {"DD101", "DD203", "DD204"}
    configs = [e for e in events if e.kind == "config"]
    commands = [e for e in events if e.kind == "command"]
    # 1. an insecure-registry option written where the unit does not look (DD102), or loaded but unused (DD103)
    if trust:
        env_files = {e.setting.get("value", "").lstrip("-").strip("\"'") for e in configs
                     if e.setting.get("key") == "EnvironmentFile"}
        exec_lines = [e for e in configs if e.setting.get("key") == "ExecStart" and e.setting.get("value")]
        for e in configs:
            if not e.setting.get("insecure") or e.setting.get("syntax") != "env":
                continue
            f = e.file or ""
            var = e.setting.get("key", "")
            if f and f in env_files or (not f and env_files):
                if exec_lines and not any(f"${var}" in x.setting["value"] or f"${{{var}}}" in x.setting["value"]
                                          for x in exec_lines):
                    _add_context(by_rule, "DD103", e, f"{var} is loaded from {f or 'the environment file'}, but "
                                 "ExecStart never uses it")
                continue
            where = _SYSV_ENV.get(f, "a file the docker unit does not load (no EnvironmentFile names it)")
            _add_context(by_rule, "DD102", e, f"{var} in {f or 'an environment file'}: {where}")
        # 2. daemon.json lists the registry, yet the daemon still refuses it: the change is not live
        if "DD102" not in by_rule and "DD103" not in by_rule:
            regs = {r for m in by_rule.values() for h in m.hits for r in [h.params.get("registry")] if r}
            for e in configs:
                if e.setting.get("key") == "insecure-registries" and set(e.setting.get("insecure", [])) & regs:
                    _add_context(by_rule, "DD107", e, "daemon.json lists this registry as insecure, yet the daemon "
                                 "still uses TLS for it: dockerd has not been reloaded or restarted since")
    # 3. the registry was started without -p (DD404) or without a volume (DD403)
    for e in commands:
        args = _run_args(e)
        if args is None:
            continue
        if "DD201" in primary and not re.search(r"(?:^|\s)(?:-p|--publish)(?:\s|=)|\s-\w*p\s|--net(?:work)?[ =]host",
                                                args):
            _add_context(by_rule, "DD404", e, "the registry container was started without -p: its port is not "
                         "published on the host")
        lost = "DD403" in by_rule or any(h.pattern.id == "tag-missing" for h in not_private or ())
        if lost and not re.search(r"(?:^|\s)(?:-v|--volume|--mount)(?:\s|=)", args):
            _add_context(by_rule, "DD403", e, "the registry container was started without a volume: its data goes "
                         "when the container is recreated")
    # 4. the daemon has a proxy, NO_PROXY does not name the registry, and the registry times out,
    #    refuses or answers 5xx: the proxy carries its traffic (DD110)
    proxies = [e for e in configs if e.setting.get("proxy")]
    if proxies and primary & {"DD201", "DD202", "DD210", "DD405"} and "DD110" not in primary:
        hosts = {str(h.params["host"]) for m in by_rule.values() for h in m.hits if h.params.get("host")}
        exempt = {x.strip().lstrip(".").lower() for e in configs for x in e.setting.get("no_proxy", [])}
        named = {h for h in hosts if any(h == x or h.endswith("." + x) for x in exempt)}
        if hosts and not hosts <= named:
            _add_context(by_rule, "DD110", proxies[0], f"a proxy is set ({proxies[0].setting['proxy']}) and NO_PROXY "
                         f"does not name {', '.join(sorted(hosts - named))}: the registry's traffic goes to the proxy")
    # 5. a 404 on /v2/ from a registry whose own lines show the old python registry: v1 only (DD207)
    if "DD210" in by_rule and any(re.search(r"docker[_-]registry|gunicorn", e.text) for e in events):
        a404 = [e for e in events if e.kind == "access" and e.status == 404 and (e.path or "").startswith("/v2")]
        if a404:
            _add_context(by_rule, "DD207", a404[0], "the server that 404s /v2/ is the old python registry: it "
                         "speaks only the removed v1 API")


def _public(hit: Hit) -> bool:
    """A hit about a public registry (Docker Hub): whatever broke, it is not a private registry."""
    host = hit.params.get("host")
    return (bool(hit.params.get("public")) and not host) or (host in PUBLIC_REGISTRIES)


def _add_context(by_rule: dict[str, RuleMatch], rule: str, ev: Event, reason: str) -> None:
    rm = by_rule.setdefault(rule, RuleMatch(rule, 0.0))
    rm.context.append(ev)
    rm.reason = rm.reason or reason
    p = extract_params(ev.text)
    for k in ("registry", "host", "port"):
        if k in p:
            rm.params.setdefault(k, p[k])
    if ev.file:
        rm.params.setdefault("file", ev.file)


_HOSTPORT_HINT = re.compile(r"[\w\]]:\d{2,5}\b")


def _context_lines(text: str, events: list[Event]) -> list[str]:
    """Lines that may name the registry: the events first, then any line with a HOST:PORT in it."""
    out = [ev.text for ev in events[:2000]]
    if len(text) <= 200_000:
        out.extend(x for x in text.splitlines() if _HOSTPORT_HINT.search(x))
    return out


def diagnose(text: str, kb: KnowledgeBase | None = None, events: list[Event] | None = None) -> Diagnosis:
    """Parse the text and rank the causes that fit it."""
    kb = kb or load_kb()
    events = parse(text, kb) if events is None else events
    by_rule: dict[str, RuleMatch] = {}
    contrib: dict[str, list[float]] = {}
    not_private: list[Hit] = []
    for ev in events:
        for hit in ev.hits:
            p = hit.pattern
            if p.not_private or _public(hit):
                if len(not_private) < MAX_HITS:
                    not_private.append(hit)
                continue
            for rid in (p.rule, *p.equally):
                rm = by_rule.setdefault(rid, RuleMatch(rid, 0.0))
                if len(rm.hits) < MAX_HITS:  # a journal may repeat one error 10 000 times
                    rm.hits.append(hit)
                contrib.setdefault(rid, []).append(hit.weight)
            for other in p.also:
                ro = by_rule.setdefault(other, RuleMatch(other, 0.0))
                if len(ro.also_hits) < MAX_HITS:
                    ro.also_hits.append(hit)
                contrib.setdefault(other, []).append(hit.weight * ALSO_FACTOR)
    _apply_context(events, by_rule, kb, not_private)
    context: dict[str, Any] = {}
    if by_rule:  # a registry named on another line (e.g. "The push refers to repository [HOST:PORT/x]")
        for line in _context_lines(text, events):
            ctx = extract_params(line)
            if ctx.get("registry"):
                context = {k: ctx[k] for k in ("registry", "host", "port") if k in ctx}
                break
    for rid, rm in by_rule.items():
        ws = sorted(contrib.get(rid, []) + ([CONTEXT_WEIGHT] * len(rm.context)), reverse=True)
        rm.score = round(ws[0] + 0.05 * sum(ws[1:4]), 2)  # specific first; repetition adds little
        for h in rm.hits + rm.also_hits:
            for k, v in h.params.items():
                rm.params.setdefault(k, v)
        if "registry" not in rm.params and context and rm.params.get("host") in (None, context["host"]):
            rm.params.update(context)
    for symptom, causes in CONSEQUENCES.items():
        sm = by_rule.get(symptom)
        shown = [by_rule[c] for c in causes if c in by_rule and by_rule[c].hits]
        if sm is not None and shown:
            sm.score = min(sm.score, round(max(c.score for c in shown) - 0.01, 2))
    ranked = sorted(by_rule.values(), key=lambda r: (-r.score, not r.primary, r.rule_id))
    return Diagnosis(_verdict(ranked, not_private), ranked, not_private, events)


def _verdict(ranked: list[RuleMatch], not_private: list[Hit]) -> str:
    prim = [m for m in ranked if m.primary]
    if not prim:
        return "no known cause"
    top = prim[0]
    if not_private and top.best_weight < CAUSE_MIN:
        return "no known cause"  # generic evidence does not outweigh a named non-registry fault
    if top.best_weight >= CAUSE_MIN and (len(prim) == 1 or top.score - prim[1].score >= MARGIN):
        return "cause"
    return "possible"


def confidence(rm: RuleMatch, verdict: str, first: bool) -> str:
    if verdict == "cause" and first:
        return "cause"
    return "possible"
