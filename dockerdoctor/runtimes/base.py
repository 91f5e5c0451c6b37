"""The shape every runtime adapter shares: what a client of the registry would try for one image.

dockerd's effective configuration was the first adapter; each other client of a private registry
(dockerd on the containerd image store, containerd's CRI, nerdctl, k3s, podman, buildah, skopeo,
CRI-O) gets one in this shape:

* it is a fact (``@fact``) whose value is a :class:`Runtime`, or ``None`` when the client is not on
  this host (FactUnavailable when that cannot be known);
* it reads the client's registry configuration with provenance (:class:`Origin`: file and line);
* ``runtime.resolve(ref)`` answers for one image reference: the :class:`Endpoint` list in the order
  the client tries it, each with scheme, TLS material, capabilities and the file:line that said so.

Rules ask the adapter (``runtime.resolve(ref)``), ``dockerdoctor resolve IMAGE`` prints the table, and
the probe runs from ``runtime.netns`` (the network namespace the client pulls from). Nothing here
reads a host; adapters do that through the Source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Protocol

from dockerdoctor.model import Evidence
from dockerdoctor.safetext import isdigits

Scheme = Literal["https", "http"]
Capability = Literal["pull", "resolve", "push"]
ALL_CAPABILITIES: tuple[Capability, ...] = ("pull", "resolve", "push")

DOCKER_HUB = "docker.io"
# What the Go clients normalise Docker Hub's other names to.
_HUB_ALIASES = {"index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}


@dataclass(frozen=True)
class Origin:
    """Where a setting came from: a file and line, or a default (``source="default"``)."""

    source: str
    line: int | None = None
    detail: str = ""  # e.g. 'prefix "10.0.0.5:5000" in /etc/containers/registries.conf.d/10-lab.conf:4'

    def evidence(self, text: str = "") -> Evidence:
        return Evidence(self.source, text or self.detail, self.line)

    def where(self) -> str:
        return f"{self.source}:{self.line}" if self.line else self.source


DEFAULT = Origin("default")


@dataclass(frozen=True)
class ImageRef:
    """An image reference as a client reads it: registry host[:port], repository, tag or digest.

    ``qualified`` is False for a short name (``alpine``, ``team/app``): Docker and containerd take
    docker.io for it, containers/image asks ``unqualified-search-registries`` and its aliases.
    """

    registry: str  # host[:port], lower-case host; docker.io for a short name
    repository: str  # library/alpine, team/app
    tag: str | None = None
    digest: str | None = None
    qualified: bool = True
    text: str = ""

    @property
    def reference(self) -> str:
        """What the registry is asked for: the digest, else the tag (``latest`` when none)."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """Parse like the docker/distribution reference grammar; raise ValueError on a bad reference."""
        raw = text.strip()
        t = raw
        for scheme in ("docker://",):
            if t.startswith(scheme):
                t = t[len(scheme) :]
        if not t or any(c.isspace() for c in t):
            raise ValueError(f"not an image reference: {text!r}")
        digest = None
        if "@" in t:
            t, digest = t.split("@", 1)
            if not _DIGEST.fullmatch(digest):
                raise ValueError(f"bad digest in {text!r}")
        tag = None
        last = t.rsplit("/", 1)[-1]
        if ":" in last:
            t, tag = t.rsplit(":", 1)
            if not _TAG.fullmatch(tag):
                raise ValueError(f"bad tag in {text!r}")
        first, _, rest = t.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
            registry, repo, qualified = first, rest, True
        else:
            registry, repo, qualified = DOCKER_HUB, t, False
        host, sep, port = registry.rpartition(":") if ":" in registry and not registry.endswith("]") else (
            registry, "", "")
        if sep and not isdigits(port):
            raise ValueError(f"bad port in {text!r}")
        registry = (host.lower() + sep + port) if sep else registry.lower()
        if registry in _HUB_ALIASES:
            registry = DOCKER_HUB
        if registry == DOCKER_HUB and "/" not in repo:
            repo = f"library/{repo}"
        if not all(_COMPONENT.fullmatch(c) for c in repo.split("/")):
            raise ValueError(f"bad repository name in {text!r} (lower-case letters, digits and . _ - only)")
        return cls(registry, repo, tag, digest, qualified, raw)


_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}")


@dataclass(frozen=True)
class TlsMaterial:
    """What the client verifies a TLS endpoint with."""

    ca_files: tuple[str, ...] = ()  # extra CAs, on top of the system roots
    client_pairs: tuple[tuple[str, str], ...] = ()  # (cert, key)
    skip_verify: bool = False  # the certificate is not verified at all
    system_roots: bool = True
    origin: Origin = DEFAULT


@dataclass(frozen=True)
class Endpoint:
    """One place the client sends requests to, in the order it tries them."""

    url: str  # scheme://host[:port][/path], as the client builds it
    scheme: Scheme
    host: str  # host[:port] contacted
    role: Literal["mirror", "registry"]  # a mirror is tried before the registry itself
    capabilities: tuple[Capability, ...] = ALL_CAPABILITIES
    tls: TlsMaterial = field(default_factory=TlsMaterial)
    http_fallback: bool = False  # tries HTTPS first, then plain HTTP (insecure registries)
    override_path: bool = False  # hosts.toml: the URL path replaces /v2
    origin: Origin = DEFAULT  # the file:line that put this endpoint here
    notes: tuple[str, ...] = ()  # behaviour worth saying (a version quirk, a setting ignored)


@dataclass(frozen=True)
class Credentials:
    """Where the credentials for a registry would come from. Never the secret itself."""

    source: str  # a file path, a helper name, or "none"
    helper: str | None = None
    origin: Origin = DEFAULT


@dataclass(frozen=True)
class Resolution:
    """A runtime's answer for one image: the endpoints it tries, in order, and why."""

    runtime: str  # Runtime.name
    image: ImageRef
    endpoints: tuple[Endpoint, ...]
    credentials: Credentials | None = None
    proxy: str | None = None  # the proxy URL it would use for the first endpoint, None for direct
    blocked: Origin | None = None  # containers/image `blocked = true`: the pull is refused
    notes: tuple[str, ...] = ()
    rewritten: str | None = None  # the reference after a `location` rewrite, when it differs


class Runtime(Protocol):
    """A client of the registry on this host, as one adapter sees it."""

    name: str  # stable id: "dockerd", "dockerd-containerd-store", "containerd-cri", "nerdctl", "k3s",
    #            "podman", "buildah", "skopeo", "cri-o"
    display: str  # how a report names it
    netns: str | None  # /proc/PID/ns/net the client pulls from; None = the caller's namespace
    origin: Origin  # how it was found (process, unit, config file)

    def resolve(self, ref: ImageRef, *, push: bool = False) -> Resolution: ...
