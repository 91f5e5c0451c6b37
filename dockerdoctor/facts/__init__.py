"""Facts: typed knowledge about one host, computed once per run on first use.

A fact is a function `fn(facts) -> value`, registered by name with `@fact`. Rules name the facts
they need as parameters; when a fact cannot be known on this source, it raises
FactUnavailable(reason) and the rule is reported as skipped with that reason.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dockerdoctor.errors import FactUnavailable
from dockerdoctor.net import HostPort, is_ip
from dockerdoctor.sources.base import Source

__all__ = ["CheckOptions", "FactUnavailable", "Facts", "HostPort", "fact", "is_ip", "known_facts"]

F = TypeVar("F", bound=Callable[..., Any])

_REGISTRY: dict[str, Callable[[Facts], Any]] = {}
# Modules that register facts; imported on first lookup. A fact name is defined once (fact() says so).
FACT_MODULES = [
    "dockerdoctor.facts.dockerhost",
    "dockerdoctor.facts.daemon",
    "dockerdoctor.facts.host",
    "dockerdoctor.facts.containers",
    "dockerdoctor.facts.registry_containers",
    "dockerdoctor.facts.firewalld",
    "dockerdoctor.facts.interfaces",
    "dockerdoctor.facts.netfilter",
    "dockerdoctor.facts.selinux",
    "dockerdoctor.facts.processes",
    "dockerdoctor.facts.ports",
    "dockerdoctor.facts.endpoint",
    # runtime adapters (podman, buildah, skopeo, CRI-O; the `runtimes` fact): dockerdoctor/runtimes/__init__.py
    "dockerdoctor.runtimes",
    "dockerdoctor.knowledge.journal",  # journal_hits: the docker journal through the knowledge base
    "dockerdoctor.runtimes.containerd",  # containerd CRI and the hosts.toml files (issue 14)
    "dockerdoctor.runtimes.dockerd_store",  # dockerd's image stores (issue 14)
    "dockerdoctor.runtimes.nerdctl",
    "dockerdoctor.runtimes.rootless",  # rootless containerd and nerdctl, per user
    "dockerdoctor.runtimes.k3s",  # k3s / rke2 registries.yaml
]


def fact(name: str | None = None) -> Callable[[F], F]:
    def deco(fn: F) -> F:
        key = name or fn.__name__
        old = _REGISTRY.get(key)
        if old is not None and (old.__module__, old.__qualname__) != (fn.__module__, fn.__qualname__):
            raise ValueError(f"fact {key!r} is defined twice: in {old.__module__} and in {fn.__module__}")
        _REGISTRY[key] = fn
        return fn

    return deco


def _load_modules() -> None:
    for mod in FACT_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


def known_facts() -> list[str]:
    _load_modules()
    return sorted(_REGISTRY)


@dataclass
class CheckOptions:
    registries: list[HostPort] = field(default_factory=list)
    docker_host: str | None = None  # the daemon's URL; None: resolve it (dockerdoctor.facts.dockerhost)
    docker_host_chosen_by: str | None = None  # "--docker-host", "DOCKER_HOST", "docker context ...", "default"
    timeout: float = 2.0
    network: bool = True  # live probes allowed
    e2e: bool = False  # --e2e: a real push/pull/delete round trip (dockerdoctor.probe.e2e)
    e2e_repo: str = "dockerdoctor-probe"
    containerd_config: str | None = None  # pin the containerd whose config.toml this is (issue 14)
    images: list[str] = field(default_factory=list)  # check --image REF: rules of every runtime for these


class Facts:
    """Lazy, cached, thread-safe fact store for one source."""

    @classmethod
    def from_values(cls, values: dict[str, Any] | None = None, unavailable: dict[str, str] | None = None, *,
                    live: bool = False, options: CheckOptions | None = None, source: Source | None = None) -> Facts:
        """A store seeded with fact values (for rule tests): `values` are returned as they are, the
        names in `unavailable` raise FactUnavailable with their reason, and every other fact is
        computed from `source` (default: a source that holds nothing)."""
        from dockerdoctor.sources.base import NoSource

        facts = cls(source if source is not None else NoSource(live), options)
        for name in [*(values or {}), *(unavailable or {})]:
            if name not in _REGISTRY:
                raise KeyError(f"no fact named {name!r}")
        facts._values.update(values or {})
        facts._errors.update({k: FactUnavailable(v) for k, v in (unavailable or {}).items()})
        return facts

    def __init__(self, source: Source, options: CheckOptions | None = None) -> None:
        self.source = source
        self.options = options or CheckOptions()
        self._values: dict[str, Any] = {}
        self._errors: dict[str, FactUnavailable] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        _load_modules()

    @property
    def live(self) -> bool:
        return self.source.live

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def get(self, name: str) -> Any:
        if name in self._values:
            return self._values[name]
        if name in self._errors:
            raise self._errors[name]
        fn = _REGISTRY.get(name)
        if fn is None:
            raise KeyError(f"no fact named {name!r}")
        with self._lock(name):
            if name in self._values:
                return self._values[name]
            if name in self._errors:
                raise self._errors[name]
            try:
                value = fn(self)
            except FactUnavailable as exc:
                self._errors[name] = exc
                raise
            self._values[name] = value
            return value

    def optional(self, name: str) -> Any:
        try:
            return self.get(name)
        except FactUnavailable:
            return None

    def prefetch(self, names: list[str], workers: int = 8) -> None:
        """Compute slow facts in parallel (live probes, D-Bus, Engine API)."""
        from concurrent.futures import ThreadPoolExecutor

        def one(n: str) -> None:
            try:
                self.get(n)
            except FactUnavailable:
                pass

        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(names)))) as pool:
            list(pool.map(one, names))
