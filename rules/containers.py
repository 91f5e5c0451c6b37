"""podman, buildah, skopeo and CRI-O: registries.conf, certs.d, CRI-O's insecure_registries (DD701-DD705).

The rules read the containers/image facts (dockerdoctor.runtimes): each installed client's configuration
as it loads it (ContainersConfig, with file:line for every table), CRI-O's crio.conf, the target
registries and what they answer (the layered probe live, the docker journal offline).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from dockerdoctor.rules.endpoint_evidence import journal_evidence

from dockerdoctor.engine import finding, rule
from dockerdoctor.errors import Skip
from dockerdoctor.facts.host import Journal, TargetRegistry
from dockerdoctor.knowledge.journal import JournalHits
from dockerdoctor.model import Evidence, Finding, Fix, Severity
from dockerdoctor.net import HostPort
from dockerdoctor.runtimes.containers_image import ContainersConfig, certs_for
from dockerdoctor.runtimes.crio import CrioConf


def _ev(origin: Any, text: str | None = None) -> Evidence:
    return Evidence(origin.source, text if text is not None else origin.detail, origin.line)


def _clients(configs: dict[str, ContainersConfig]) -> str:
    return ", ".join(sorted(configs))


# ============================================================================ DD701

_KINDS = {"toml": "does not parse as TOML", "mixing": "mixes v1 and v2 syntax", "v1-dropin": "v1 syntax in a drop-in",
          "bad-location": "invalid prefix or location", "mirror-option": "mirror option in the wrong table",
          "unknown-key": "unknown key (ignored)", "invalid": "invalid setting"}


@rule("DD701", "registries-conf-invalid", category="runtime", severity=Severity.ERROR,
      title="registries.conf (or a drop-in) is invalid")
def registries_conf_invalid(containers_configs: dict[str, ContainersConfig]) -> Iterator[Finding]:
    """A registries.conf file that podman, buildah, skopeo and CRI-O refuse, or read differently
    from what it says: it does not parse as TOML, it mixes v1 (`[registries.insecure]`) and v2
    (`[[registry]]`) syntax (`mixing sysregistry v1/v2 is not supported`), a drop-in in
    registries.conf.d uses v1 syntax (`registry must be in v2 format but is in v1`), a prefix or
    location is not `host[:port][/path]` (a URL with `http://` is the common one: `invalid location
    ...: URI schemes are not supported`), a wildcard sits anywhere but the start (`*.example.com`),
    or a mirror-only option (`pull-from-mirror`) is set on a `[[registry]]` table. Unknown keys are
    ignored by the clients and reported as warnings.

    Why it happens: hand edits from guides written for the other syntax, `location =
    "http://..."` to mean "plain HTTP" (that is `insecure = true`), v1 snippets dropped into
    registries.conf.d.

    How to fix: write the table in v2 syntax, e.g.
    `[[registry]]` / `location = "10.0.0.5:5000"` / `insecure = true`, in one place.

    Example:
        mixing sysregistry v1/v2 is not supported
    """
    seen: set[tuple[str, int | None, str]] = set()
    for _client, cfg in sorted(containers_configs.items()):
        for p in cfg.problems:
            key = (p.path, p.line, p.message)
            if key in seen or p.kind == "v1":
                continue
            seen.add(key)
            users = [c for c, other in containers_configs.items()
                     if any(q.path == p.path for q in other.problems)]
            yield finding(
                "DD701", f"{p.path}: {_KINDS.get(p.kind, 'invalid setting')}",
                f"{p.path}" + (f":{p.line}" if p.line else "") + f": {p.message}"
                + (f" ({', '.join(sorted(users))} {'refuse to run' if p.severity == 'error' else 'ignore it'})"),
                severity=Severity.ERROR if p.severity == "error" else Severity.WARNING,
                evidence=[_ev(p.origin(), p.message)],
                fix=Fix(f"Rewrite {p.path} in v2 syntax ([[registry]] tables with location/insecure/blocked); "
                        "`podman info` prints the registries it loads once it parses"),
                params={"file": p.path, "line": p.line, "kind": p.kind},
            )


# ============================================================================ DD702


def _targets(target_registries: list[TargetRegistry] | None, checked_images: list[Any] | None) -> list[str]:
    out = [str(t.address) for t in target_registries or []]
    for ref in checked_images or []:
        if ref.qualified and ref.registry not in out:
            out.append(ref.registry)
    return out


def _protocol(addr: str, endpoint_probes: dict | None, journal_hits: JournalHits | None
              ) -> tuple[str | None, list[Evidence]]:
    """("http" | "unknown-ca" | None, evidence) for what the registry speaks."""
    rep = (endpoint_probes or {}).get(addr)
    if rep is not None and getattr(rep, "address", None) is not None:
        ms = f"probe {addr} ({rep.seconds * 1000:.0f} ms)"
        if rep.scheme == "http":
            return "http", [Evidence(ms, f"a TLS ClientHello got an HTTP answer; GET /v2/ over HTTP -> "
                                         f"{rep.http_status}")]
        if rep.tls_error == "unknown-authority":
            return "unknown-ca", [Evidence(ms, rep.tls_detail or "x509: certificate signed by unknown authority")]
        return None, []
    if journal_hits is not None:
        try:
            hp = HostPort.parse(addr)
        except ValueError:
            return None, []
        ev = journal_evidence(journal_hits, "DD203", hp)
        if ev:
            return "http", ev
        ev = journal_evidence(journal_hits, "DD204", hp)
        if ev:
            return "unknown-ca", ev
    return None, []


@rule("DD702", "containers-registry-not-trusted", category="runtime", severity=Severity.ERROR,
      title="podman/buildah/skopeo/CRI-O do not trust the registry")
def containers_registry_not_trusted(containers_configs: dict[str, ContainersConfig],
                                    target_registries: list[TargetRegistry] | None = None,
                                    checked_images: list[Any] | None = None,
                                    endpoint_probes: dict | None = None,
                                    docker_journal: Journal | None = None,
                                    journal_hits: JournalHits | None = None,
                                    containers_texts: dict | None = None,
                                    crio_conf: CrioConf | None = None) -> Iterator[Finding]:
    """DD101's twin for containers/image clients: the `[[registry]]` table that matches the
    registry has no `insecure = true`, and neither certs.d directory holds its CA, while the
    registry speaks plain HTTP or shows a certificate from an unknown CA. podman, buildah,
    skopeo and CRI-O then fail every pull with `pinging container registry HOST:PORT: Get
    "https://HOST:PORT/v2/": http: server gave HTTP response to HTTPS client` or `x509:
    certificate signed by unknown authority`.

    Why it happens: the registry was set up for dockerd (daemon.json insecure-registries, or
    /etc/docker/certs.d), and these clients read registries.conf; or the CA went to a certs.d
    directory that is not the first one they look in (an empty /etc/containers/certs.d/HOST:PORT
    hides /etc/docker/certs.d/HOST:PORT: only the first existing directory is used).

    How to fix: preferred, serve TLS and install the CA as /etc/containers/certs.d/HOST:PORT/ca.crt
    (read on every pull, no restart; `fix --ca ca.crt`). The named alternative is `insecure =
    true` in the table that decides (`fix --insecure`), which allows plain HTTP and any
    certificate for that registry.

    Example:
        pinging container registry 10.0.0.5:5000: Get "https://10.0.0.5:5000/v2/": http: server gave HTTP
        response to HTTPS client
    """
    targets = _targets(target_registries, checked_images)
    if not targets:
        raise Skip("no registry to check: name one with --registry HOST:PORT or --image REF")
    if endpoint_probes is None and docker_journal is None:
        raise Skip("no live probe of the registry and no journal to read its errors from")
    for addr in targets:
        kind, ev = _protocol(addr, endpoint_probes, journal_hits)
        if kind is None:
            continue
        untrusting = _untrusting(addr, kind, containers_configs, crio_conf)
        if not untrusting:
            continue
        client, cfg, table, certs = untrusting[0]
        names = ", ".join(c for c, *_ in untrusting)
        from dockerdoctor.fixes.registries_conf import trust_fix

        fix = trust_fix([c for _, c, *_ in untrusting], addr, kind == "http", containers_texts or {})
        yield finding(
            "DD702", f"{names}: {addr} is not trusted ({'plain HTTP' if kind == 'http' else 'unknown CA'})",
            f"{addr} {'speaks plain HTTP' if kind == 'http' else 'shows a certificate from an unknown CA'}, and "
            f"the registries.conf that {names} read{'s' if len(untrusting) == 1 else ''} gives it no insecure = "
            f"true and no CA, so every pull fails.",
            evidence=ev + _config_evidence(addr, cfg, table, certs), fix=fix,
            params={"registry": addr, "clients": [c for c, *_ in untrusting], "plain_http": kind == "http",
                    "file": table.origin.source if table is not None else cfg.main},
        )


def _untrusting(addr: str, kind: str, containers_configs: dict[str, ContainersConfig], crio_conf: CrioConf | None
                ) -> list[tuple[str, ContainersConfig, Any, Any]]:
    """(client, its configuration, the table that decides, its certs.d) for each client that trusts addr neither
    by insecure = true (or CRI-O's own insecure_registries) nor, for an unknown CA, by a CA in certs.d."""
    out = []
    for client, cfg in sorted(containers_configs.items()):
        if not cfg.valid:
            continue  # DD701 says why
        table = cfg.table_for(addr)
        if table is not None and (table.insecure or table.blocked):
            continue
        if client == "cri-o" and crio_conf is not None and crio_conf.entry_for(addr) is not None:
            continue  # CRI-O's own insecure_registries covers it (DD704 judges that setting)
        certs = certs_for(addr, cfg.dirs, cfg.home)
        if kind == "unknown-ca" and any(f.endswith(".crt") for f in certs.files):
            continue
        out.append((client, cfg, table, certs))
    return out


def _config_evidence(addr: str, cfg: ContainersConfig, table: Any, certs: Any) -> list[Evidence]:
    more = [_ev(table.origin, f"{table.origin.detail}: no insecure = true")] if table is not None else [
        Evidence(cfg.main, f"no [[registry]] table matches {addr} ({cfg.chosen_by})")]
    if certs.directory:
        more.append(Evidence(certs.directory, f"used for {addr}: {', '.join(certs.files) or 'empty'}"
                             + (f"; hides {', '.join(certs.hidden)}" if certs.hidden else "")))
    return more


# ============================================================================ DD703


def _differs(a: Any, b: Any) -> bool:
    keys = ("location", "insecure", "blocked", "mirrors", "mirror_by_digest_only")
    return any(getattr(a, k, None) != getattr(b, k, None) for k in keys)


@rule("DD703", "registries-conf-shadowed", category="runtime", severity=Severity.WARNING,
      title="The registries.conf setting that was edited is not the one in effect")
def registries_conf_shadowed(containers_configs: dict[str, ContainersConfig],
                             target_registries: list[TargetRegistry] | None = None,
                             checked_images: list[Any] | None = None) -> Iterator[Finding]:
    """A registries.conf table or file is read but does not decide: a user's
    ~/.config/containers/registries.conf exists and *replaces* /etc/containers/registries.conf
    (and its drop-ins); a drop-in in registries.conf.d has a table with the same prefix (it
    replaces the earlier one); a longer prefix in another table wins for the registry
    (`10.0.0.5:5000/team` beats `10.0.0.5:5000`); `CONTAINERS_REGISTRIES_CONF` points elsewhere;
    or a client ignores that variable (skopeo 1.9 does, and loads /etc/containers/registries.conf).

    Why it happens: the edit went to the file the guide named, not the one this client loads.
    `podman info --debug` and `skopeo --debug` print which files they load.

    How to fix: put the setting in the file in effect (the evidence names it), or remove what
    shadows it.

    Example:
        /etc/containers/registries.conf:4 insecure = true, but
        /root/.config/containers/registries.conf exists and replaces it
    """
    seen: set[tuple[str, int | None, str]] = set()
    for client, cfg in sorted(containers_configs.items()):
        yield from _shadowed(client, cfg, seen)
        for addr in _targets(target_registries, checked_images):
            yield from _longer_prefix(client, cfg, addr, seen)


def _shadowed(client: str, cfg: ContainersConfig, seen: set[tuple[str, int | None, str]]) -> Iterator[Finding]:
    """Settings another file replaces or a drop-in overrides (identical drop-in tables aside), each once."""
    for sh in cfg.shadows:
        if sh.what == "drop-in" and "prefix" in sh.message:
            old = next((r for f in cfg.files for r in f.registries if r.origin == sh.hidden), None)
            new = next((r for r in cfg.registries if r.origin == sh.by), None)
            if old is not None and new is not None and not _differs(old, new):
                continue
        key = (sh.hidden.source, sh.hidden.line, sh.message)
        if key in seen:
            continue
        seen.add(key)
        yield finding(
            "DD703", f"{client}: {sh.message}", f"{sh.message}.",
            evidence=[_ev(sh.hidden, "not in effect: " + (sh.hidden.detail or "")),
                      _ev(sh.by, "in effect: " + (sh.by.detail or ""))],
            fix=Fix(f"Make the change in {sh.by.source} (what {client} reads), or remove what shadows it"),
            params={"client": client, "kind": sh.what, "file": sh.hidden.source, "by": sh.by.source},
        )


def _longer_prefix(client: str, cfg: ContainersConfig, addr: str,
                   seen: set[tuple[str, int | None, str]]) -> Iterator[Finding]:
    """A [[registry]] table with a longer prefix under addr that disagrees with addr's own on insecure."""
    host_table = next((r for r in cfg.registries if r.prefix == addr), None)
    if host_table is None:
        return
    for r in [r for r in cfg.registries if r.prefix.startswith(addr + "/") and r is not host_table]:
        if host_table.insecure == r.insecure:
            continue
        key = (r.origin.source, r.origin.line, addr)
        if key in seen:
            continue
        seen.add(key)
        yield finding(
            "DD703", f"{client}: images under {r.prefix} use the longer prefix, not {addr}'s table",
            f"{host_table.origin.where()} sets insecure = {str(host_table.insecure).lower()} for {addr}, "
            f"but the table for {r.prefix} ({r.origin.where()}) has the longer prefix and wins for every "
            f"image under it, with insecure = {str(r.insecure).lower()}.",
            evidence=[_ev(host_table.origin), _ev(r.origin)],
            fix=Fix(f"Set insecure in the {r.prefix} table too, or remove it"),
            params={"client": client, "kind": "longer-prefix", "file": r.origin.source},
        )


# ============================================================================ DD704


@rule("DD704", "crio-insecure-mismatch", category="runtime", severity=Severity.WARNING,
      title="CRI-O's legacy insecure_registries does not do what it says")
def crio_insecure_mismatch(crio_conf: CrioConf, containers_configs: dict[str, ContainersConfig] | None = None,
                           target_registries: list[TargetRegistry] | None = None,
                           checked_images: list[Any] | None = None) -> Iterator[Finding]:
    """CRI-O's `[crio.image] insecure_registries` (deprecated in favour of registries.conf) is
    ignored, does not match, or disagrees: the key sits outside `[crio.image]` (CRI-O does not
    read it there); an entry names a host without the port the images use (`192.168.122.1` does
    not cover `192.168.122.1:443`, cri-o#2193; a CIDR such as `192.168.122.0/24` does); or
    registries.conf sets `insecure = false` for the same registry, so two files disagree.

    Why it happens: guides for older CRI-O, and the habit from dockerd, whose insecure-registries
    takes CIDRs and bare hosts differently.

    How to fix: move the setting to registries.conf (`[[registry]] location = "HOST:PORT" insecure
    = true`) and drop `insecure_registries`; then restart CRI-O (`systemctl restart crio`).

    Example:
        insecure_registries = ["192.168.122.1"] while kubelet pulls 192.168.122.1:443/app:1
    """
    cfg = (containers_configs or {}).get("cri-o")
    targets = _targets(target_registries, checked_images)
    locations = [r.location for r in (cfg.registries if cfg else [])]
    for e in crio_conf.insecure:
        if e.ignored:
            yield finding("DD704", f"insecure_registries {e.value!r} is not read", f"{e.origin.where()}: {e.ignored}.",
                          evidence=[_ev(e.origin)],
                          fix=Fix("Set it in registries.conf instead ([[registry]] location/insecure = true), "
                                  "then restart CRI-O"),
                          params={"entry": e.value, "kind": "ignored", "file": e.origin.source})
            continue
        if "/" not in e.value and ":" not in e.value:
            yield from _no_port(e, targets + locations)
        if cfg is not None:
            yield from _disagree(e, cfg)


def _no_port(e: Any, names: list[str]) -> Iterator[Finding]:
    """An insecure_registries entry without a port, which CRI-O compares as written (cri-o#2193)."""
    hits = [t for t in names if t.split(":")[0] == e.value and ":" in t]
    if hits:
        yield finding(
            "DD704", f"insecure_registries {e.value!r} does not cover {hits[0]}",
            f"{e.origin.where()} lists {e.value!r} without a port; CRI-O compares it with {hits[0]} as "
            f"written and does not match (cri-o#2193), so pulls from {hits[0]} still verify TLS.",
            severity=Severity.ERROR, evidence=[_ev(e.origin)],
            fix=Fix(f"Write {hits[0]!r} (or a CIDR) — better, registries.conf [[registry]] location = "
                    f"\"{hits[0]}\" insecure = true; restart CRI-O"),
            params={"entry": e.value, "kind": "no-port", "registry": hits[0], "file": e.origin.source})


def _disagree(e: Any, cfg: ContainersConfig) -> Iterator[Finding]:
    for r in cfg.registries:
        if e.covers(r.location.split("/")[0]) and r.insecure_origin is not None and not r.insecure:
            yield finding(
                "DD704", f"crio.conf and registries.conf disagree about {r.location}",
                f"{e.origin.where()} marks {r.location} insecure, {r.insecure_origin.where()} says "
                "insecure = false.",
                evidence=[_ev(e.origin), _ev(r.insecure_origin)],
                fix=Fix("Keep one setting, in registries.conf; remove insecure_registries"),
                params={"entry": e.value, "kind": "disagree", "file": e.origin.source})


# ============================================================================ DD705


@rule("DD705", "unqualified-search-empty", category="runtime", severity=Severity.WARNING,
      title="Short image names cannot resolve: no unqualified-search-registries")
def unqualified_search_empty(containers_configs: dict[str, ContainersConfig],
                             checked_images: list[Any] | None = None) -> Iterator[Finding]:
    """A short image name (`nginx`, `team/app`) needs an alias or `unqualified-search-registries`
    in registries.conf for podman, buildah and CRI-O; with neither, the pull fails with `short-name
    "nginx" did not resolve to an alias and no unqualified-search registries are defined` (podman)
    or `no registries configured while trying to pull an unqualified image, add at least one in
    either /etc/crio/crio.conf or /etc/containers/registries.conf` (CRI-O, cri-o#3884). Kubernetes
    manifests use short names often, so CRI-O is checked always; podman and buildah when
    `check --image` names a short one. skopeo takes a short name as docker.io/library/NAME.

    How to fix: qualify the image (`docker.io/library/nginx`), or add
    `unqualified-search-registries = ["docker.io"]` (or your registry) to registries.conf.

    Example:
        Error: short-name "nginx" did not resolve to an alias and no unqualified-search registries are
        defined in "/etc/containers/registries.conf"
    """
    shorts = [r for r in checked_images or [] if not r.qualified]
    for client, cfg in sorted(containers_configs.items()):
        if client == "skopeo" or not cfg.valid:
            continue
        if cfg.search:
            continue
        names = [r for r in shorts if r.repository.removeprefix("library/") not in cfg.aliases]
        if client != "cri-o" and not names:
            continue
        where = cfg.search_origin or None
        ev = [Evidence(cfg.main, f"unqualified-search-registries: {'[] ' if where else 'not set'} ({cfg.chosen_by})",
                       where.line if where else None)]
        what = f"short name {names[0].text!r}" if names else "short names in pod specs"
        yield finding(
            "DD705", f"{client}: {what} cannot resolve",
            f"{client} has no unqualified-search-registries and no alias for it in {cfg.main}, so pulling "
            f"{what} fails.",
            severity=Severity.ERROR if names else Severity.WARNING, evidence=ev,
            fix=Fix(f"Qualify the image name, or add unqualified-search-registries = [\"docker.io\"] to {cfg.main}"),
            params={"client": client, "file": cfg.main},
        )
