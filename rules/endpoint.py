"""Registry endpoint: what HOST:PORT actually answers (DD201-DD212).

DD204-DD206 and DD209 (TLS and certs.d) are in endpoint_tls.py. Each rule reads the layered live
probe (fact ``endpoint_probes``, see dockerdoctor.probe.endpoint).
On a snapshot, or when the probe is off, the same rules read the docker journal through the error
knowledge base (dockerdoctor.knowledge), so a push error logged by dockerd is found offline too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from dockerdoctor.engine import finding, passed_on, rule
from dockerdoctor.errors import Skip
from dockerdoctor.facts.daemon import EffectiveConfig
from dockerdoctor.facts.host import Journal, TargetRegistry
from dockerdoctor.knowledge.journal import JournalHits
from dockerdoctor.model import Evidence, Finding, Severity
from dockerdoctor.net import HostPort
from dockerdoctor.probe.report import EndpointProbes, EndpointReport

if TYPE_CHECKING:
    from dockerdoctor.probe.auth import CredentialInfo
    from dockerdoctor.probe.e2e import E2EResult
from dockerdoctor.rules.endpoint_evidence import (
    Seen,
    each_target,
    insecure_entry,
    journal_evidence,
    mentioned,
    planned_entry,
    probe_or_journal,
    registry_params,
    seen,
    targets,
    trusted,
)

from dockerdoctor.fixes.recipes import (
    listen_fix,
    remote_open_port_fix,
    resolve_fix,
    trust_fix,
)
from dockerdoctor.fixes.recipes.daemon import reload_fix
from dockerdoctor.fixes.recipes.registry import login_fix, port_owner_fix, upload_limit_fix, v2_registry_fix
from dockerdoctor.safetext import short

# The rules that are only "the probe shows it, else the docker journal does" (see endpoint_evidence.seen).
SEEN: dict[str, Seen] = {
    "DD201": Seen(lambda r, a: f"TCP connect to {a}: connection refused" if r.tcp == "refused" else None,
                  lambda a: f"{a} refuses connections",
                  lambda a: f"Nothing accepts TCP connections on {a}: the registry is down, listens elsewhere, or "
                  "its port is not published.",
                  listen_fix),
    "DD207": Seen(lambda r, a: _v1_only(r),
                  lambda a: f"{a} is a v1-only registry",
                  lambda a: f"{a} speaks only the v1 registry API, which this docker no longer uses.",
                  v2_registry_fix),
    "DD210": Seen(lambda r, a: _not_a_registry(r),
                  lambda a: f"{a} is not a registry",
                  lambda a: f"Something accepts connections on {a}, but it does not answer as a docker registry.",
                  port_owner_fix),
    "DD212": Seen(lambda r, a: r.tcp_error if r.tcp == "dns" else None,
                  lambda a: f"{a.host} does not resolve",
                  lambda a: f"This host cannot resolve {a.host}.",
                  lambda a: resolve_fix(a.host),
                  lambda a: {"registry": str(a), "host": a.host}),
}

# ============================================================================ DD201


@rule("DD201", "registry-refused", category="endpoint", severity=Severity.ERROR,
      title="Nothing accepts connections on the registry's port")
def registry_refused(target_registries: list[TargetRegistry], endpoint_probes: EndpointProbes | None = None,
                     docker_journal: Journal | None = None,
                     journal_hits: JournalHits | None = None) -> Iterator[Finding]:
    """The registry's host answered the TCP connection with a reset: nothing listens on that port
    (or a firewall rule rejects with a TCP reset).

    Why it happens: the registry is not running (crashed, never started, see DD402), it listens on
    another port or only on 127.0.0.1 inside its host, the container port is not published
    (`-p 5000:5000` missing, DD404), or an iptables/nft rule uses `reject with tcp reset`.

    How to fix: on the registry host, check what listens: `ss -ltnp 'sport = :PORT'`. Start the
    registry, or publish its port on an address other hosts reach (`-p 5000:5000`, not
    `-p 127.0.0.1:5000:5000`).

    Example:
        Get "https://10.0.0.5:5000/v2/": dial tcp 10.0.0.5:5000: connect: connection refused
    """
    yield from seen("DD201", SEEN["DD201"], target_registries, endpoint_probes, docker_journal, journal_hits)


# ============================================================================ DD202


@rule("DD202", "registry-filtered", category="endpoint", severity=Severity.ERROR,
      title="A firewall drops or rejects the registry's traffic")
def registry_filtered(target_registries: list[TargetRegistry], endpoint_probes: EndpointProbes | None = None,
                      docker_journal: Journal | None = None,
                      journal_hits: JournalHits | None = None) -> Iterator[Finding]:
    """The TCP connection to the registry timed out, or came back "no route to host" / "network
    is unreachable": a packet filter on the way drops or rejects it.

    Why it happens: firewalld's default zone rejects every port it does not list, with
    icmp admin-prohibited, which Go reports as `connect: no route to host` (not "refused"). A DROP
    rule (or a zone target DROP, a cloud security group) gives no answer at all: dockerd waits 15 s
    and prints `net/http: request canceled while waiting for connection (Client.Timeout exceeded
    while awaiting headers)`, or `dial tcp ...: i/o timeout`.

    How to fix: on the registry host, open the port: `firewall-cmd --add-port=PORT/tcp`
    (now) plus `firewall-cmd --permanent --add-port=PORT/tcp` (after reboot), or the matching
    nft/iptables/ufw rule. Do not turn the firewall off (DD306).

    Example:
        Get "https://10.0.0.5:5000/v2/": dial tcp 10.0.0.5:5000: connect: no route to host
    """
    for addr, rep in each_target(target_registries, endpoint_probes, docker_journal):
        ev = probe_or_journal("DD202", addr, rep, journal_hits,
                              lambda r, a=addr: f"TCP connect to {a}: {r.tcp_error}"
                              if r.tcp in ("timeout", "unreachable") else None)
        if not ev:
            continue
        kind = "dropped" if rep is not None and rep.tcp == "timeout" else "rejected"
        yield finding(
            "DD202", f"Traffic to {addr} is {kind} on the way",
            f"The TCP connection to {addr} was {kind} ({'no answer' if kind == 'dropped' else 'no route to host'}): "
            "a firewall on the registry host (firewalld, nft, iptables, ufw) or in between filters the port.",
            evidence=ev, fix=remote_open_port_fix(addr.port), params=registry_params(addr, kind=kind))


# ============================================================================ DD203


@rule("DD203", "registry-plain-http", category="endpoint", severity=Severity.ERROR,
      title="The registry speaks plain HTTP where the daemon expects HTTPS")
def registry_plain_http(target_registries: list[TargetRegistry], endpoint_probes: EndpointProbes | None = None,
                        docker_journal: Journal | None = None, journal_hits: JournalHits | None = None,
                        effective_config: EffectiveConfig | None = None) -> Iterator[Finding]:
    """The registry answered a TLS ClientHello with an HTTP response: it serves plain HTTP, and
    this daemon does not list it in insecure-registries, so it only speaks HTTPS to it.

    Why it happens: `docker run -p 5000:5000 registry:2` serves HTTP. dockerd uses HTTPS for every
    registry outside 127.0.0.0/8 unless insecure-registries names it. The wordings seen across
    versions: `http: server gave HTTP response to HTTPS client` (Go 1.8+), `tls: oversized record
    received with length 20527` and `tls: first record does not look like a TLS handshake` (older
    Go, other clients), and docker 1.x's `Get https://HOST:PORT/v1/_ping: EOF`.

    How to fix: preferred, serve the registry over TLS and trust its CA in
    /etc/docker/certs.d/HOST:PORT/ca.crt. The named alternative is insecure-registries (DD101 has
    the exact edit for this host's configuration); it turns TLS off for that registry.

    Example:
        Get "https://10.0.0.5:5000/v2/": http: server gave HTTP response to HTTPS client
    """
    for addr, rep in each_target(target_registries, endpoint_probes, docker_journal):
        if trusted(addr, effective_config):
            continue
        ev = probe_or_journal("DD203", addr, rep, journal_hits,
                              lambda r: f"a TLS ClientHello got an HTTP answer; GET /v2/ over HTTP -> {r.http_status}"
                              if r.scheme == "http" else None)
        if not ev:
            continue
        planned = planned_entry(addr, effective_config)
        if planned is not None:
            yield _entry_pending(addr, planned, ev)
            continue
        yield finding(
            "DD203", f"{addr} speaks plain HTTP",
            f"{addr} serves plain HTTP, and this daemon only speaks HTTPS to it (it is not in "
            "insecure-registries), so every push and pull fails.",
            evidence=ev,
            fix=trust_fix(addr, effective_config, True, verify_by_probe=False),
            params=registry_params(addr),
        )


def _entry_pending(addr: HostPort, planned: str, ev: list[Evidence]) -> Finding:
    """The files already trust addr; the running daemon started before that (DD107's case). Saying "it is not
    in insecure-registries" would contradict the file, and adding it again fixes nothing."""
    return finding(
        "DD203", f"{addr} speaks plain HTTP, and the running daemon does not use its entry yet",
        f"{addr} serves plain HTTP. {planned} lists it as insecure, but the running dockerd started with "
        "an older configuration and still speaks HTTPS to it (see DD107), so every push and pull fails "
        "until dockerd re-reads its configuration.",
        evidence=ev,
        fix=reload_fix("Reload dockerd so it uses the insecure-registries entry it already has"),
        params=registry_params(addr, pending=True),
    )


# ============================================================================ DD207


def _v1_only(rep: EndpointReport) -> str | None:
    """What the probe saw of a v1-only registry; None when it speaks v2 (or nothing)."""
    if rep.registry_api != "v1":
        return None
    ver = ""
    for ans in (rep.v1, rep.v2):
        if ans is not None and ans.header("x-docker-registry-version"):
            ver = ans.header("x-docker-registry-version") or ""
    return (f"GET /v2/ -> {rep.v2.status if rep.v2 else None}; GET /v1/_ping -> {rep.v1.status if rep.v1 else None}"
            + (f"; X-Docker-Registry-Version: {ver}" if ver else ""))


@rule("DD207", "registry-legacy", category="endpoint", severity=Severity.ERROR,
      title="The registry only speaks the removed v1 API")
def registry_legacy(target_registries: list[TargetRegistry], endpoint_probes: EndpointProbes | None = None,
                    docker_journal: Journal | None = None,
                    journal_hits: JournalHits | None = None) -> Iterator[Finding]:
    """The endpoint answers `/v1/_ping` like the old python docker-registry (0.x), but not the
    v2 API (`/v2/`), or it serves only schema1 manifests.

    Why it happens: an old `registry:0.9` container, or a mirror that was never migrated. Docker
    17.06 disabled v1 push/pull by default and 20.10 removed it, so dockerd asks only `/v2/`, and
    the push ends with a 404 on /v2/ or `not found`. Schema1 manifests were removed from pulls in
    docker 20.10 (`[DEPRECATION NOTICE] ... schema1`).

    How to fix: run a v2 registry (`registry:2`, distribution) and move the images into it
    (with an old docker client that still speaks v1: pull from the old, push to the new).

    Example:
        GET /v2/ -> 404, GET /v1/_ping -> 200 "true" with X-Docker-Registry-Version: 0.9.1
    """
    yield from seen("DD207", SEEN["DD207"], target_registries, endpoint_probes, docker_journal, journal_hits)


# ============================================================================ DD208


@rule("DD208", "auth-required", category="endpoint", severity=Severity.ERROR,
      title="The registry requires login, and there are no usable credentials for it")
def auth_required(target_registries: list[TargetRegistry], endpoint_probes: EndpointProbes | None = None,
                  docker_journal: Journal | None = None, journal_hits: JournalHits | None = None) -> Iterator[Finding]:
    """The registry answers /v2/ with 401, and the docker client configuration has no
    credentials for exactly that HOST:PORT (or the registry rejects them).

    Why it happens: `docker login` was never run for this registry, or it was run for another
    spelling: the CLI matches the key exactly, so credentials stored for `HOST` or
    `https://HOST:OTHERPORT` do not count for `HOST:PORT`. With credHelpers/credsStore, the helper
    binary (`docker-credential-NAME`) must be installed and hold the entry. Credentials live with
    the user who runs `docker` (`sudo docker` reads root's ~/.docker/config.json).

    How to fix: `docker login HOST:PORT` as the user who pushes. dockerdoctor reports the
    credential source (auths, credHelpers or credsStore) and never prints a secret.

    Example:
        unauthorized: authentication required
        no basic auth credentials
    """
    for addr, rep in each_target(target_registries, endpoint_probes, docker_journal):
        ev: list[Evidence] = []
        why = "has no credentials for it"
        if rep is not None:
            if rep.http_status != 401 or rep.registry_api != "v2":
                continue
            creds = rep.credentials
            if creds is not None and creds.found and rep.credentials_valid is not False:
                continue
            ev.append(rep.evidence(f"GET /v2/ -> 401, WWW-Authenticate: {rep.auth_challenge or '?'}"
                                   + (f' realm="{rep.auth_realm}"' if rep.auth_realm else "")))
            if creds is not None:
                why, said = _credentials_say(addr, creds)
                ev.append(said)
        else:
            ev = journal_evidence(journal_hits, "DD208", addr)
            if not ev:
                continue
        yield finding(
            "DD208", f"{addr} requires login",
            f"{addr} answers 401 (authentication required), and the docker client configuration {why}.",
            evidence=ev,
            fix=login_fix(addr),
            params=registry_params(addr),
        )


def _credentials_say(addr: HostPort, creds: CredentialInfo) -> tuple[str, Evidence]:
    """(what the client configuration lacks, its evidence) for a registry that answers 401."""
    if not creds.config_exists:
        return "has no credentials for it", creds.evidence("does not exist (never logged in as this user)")
    if creds.found:
        return "has credentials the registry rejects", creds.evidence(
            f"credentials for {addr} from {creds.source}"
            + (f" ({creds.helper})" if creds.helper else "") + (f", user {creds.username}" if creds.username else "")
            + ": rejected with 401")
    if creds.helper_missing:
        return (f"uses {creds.helper}, which is not installed",
                creds.evidence(f"{creds.source} names {creds.helper}; not on PATH"))
    text = f"no entry for exactly {addr}"
    if creds.near_misses:
        text += f"; entries for other spellings: {', '.join(creds.near_misses)}"
    if creds.helper:
        text += f"; {creds.helper} holds none"
    return "has no credentials for it", creds.evidence(text)


# ============================================================================ DD210


def _not_a_registry(rep: EndpointReport) -> list[str] | None:
    """What answers on the port when it is not a registry; None when it is one (or nothing answers)."""
    if rep.tcp != "open" or rep.registry_api is not None or rep.certs_dir_error:
        return None
    if rep.scheme == "https" and rep.tls_error and rep.tls_error != "handshake":
        return None  # a TLS server with a bad certificate is DD204-DD206 first
    if rep.scheme is None:
        return [f"TLS handshake: {rep.tls_detail}"]
    ans = rep.v2
    got = (f"{ans.status}" + (f" ({ans.header('content-type')})" if ans.header("content-type") else "")
           if ans and ans.status is not None else (ans.error if ans else "nothing"))
    v1 = rep.v1.status if rep.v1 and rep.v1.status is not None else (rep.v1.error if rep.v1 else "-")
    out = [f"{rep.scheme.upper()} GET /v2/ -> {got}; GET /v1/_ping -> {v1}"]
    server = ans.header("server") if ans else None
    return out + [f"Server: {server}"] if server else out


@rule("DD210", "not-a-registry", category="endpoint", severity=Severity.ERROR,
      title="Something answers on the port, but not as a registry")
def not_a_registry(target_registries: list[TargetRegistry], endpoint_probes: EndpointProbes | None = None,
                   docker_journal: Journal | None = None, journal_hits: JournalHits | None = None) -> Iterator[Finding]:
    """A server accepts the connection, but speaks neither TLS nor HTTP, or answers HTTP without
    the registry API (`/v2/` is neither 200 nor 401, and `/v1/_ping` does not answer either).

    Why it happens: the port belongs to another service (SSH, a web server, a database), a
    proxy or load balancer has no backend, or the registry container maps the wrong port
    (`-p 5000:80`). What dockerd prints depends on the server: `Get "https://HOST:PORT/v2/": EOF`
    (reads, then closes), `read: connection reset by peer`, `tls: first record does not look
    like a TLS handshake` (SSH banner), `net/http: TLS handshake timeout` (silent, after 10 s),
    or a 404 on /v2/.

    How to fix: on the registry host, find what owns the port (`ss -ltnp 'sport = :PORT'`) and
    point clients at the registry's real port, or fix the registry's port mapping.

    Example:
        Get "https://10.0.0.5:5000/v2/": EOF
    """
    yield from seen("DD210", SEEN["DD210"], target_registries, endpoint_probes, docker_journal, journal_hits)


# ============================================================================ DD211


@rule("DD211", "upload-too-large", category="endpoint", severity=Severity.ERROR,
      title="A proxy in front of the registry rejects large uploads (413)")
def upload_too_large(target_registries: list[TargetRegistry], e2e_results: dict[str, E2EResult] | None = None,
                     docker_journal: Journal | None = None,
                     journal_hits: JournalHits | None = None) -> Iterator[Finding]:
    """A reverse proxy in front of the registry answers `413 Request Entity Too Large` to a layer
    upload: small blobs and manifests go through, big layers do not.

    Why it happens: nginx's `client_max_body_size` defaults to 1m, and docker sends each layer as
    one PATCH body. The push stalls and retries ("Retrying in 5 seconds"), then ends with
    `error parsing HTTP 413 response body: invalid character '<' looking for beginning of value:
    "<html>\\r\\n<head><title>413 Request Entity Too Large</title>..."`.

    How to fix: in the proxy's server block for the registry: `client_max_body_size 0;` (no
    limit), plus `chunked_transfer_encoding on;` and `proxy_request_buffering off;`; then
    `nginx -s reload`. Other proxies have the same knob (HAProxy, a load balancer's body limit).
    Found by `check --e2e`, which pushes a 2 MiB blob, or from the journal.

    Example:
        error parsing HTTP 413 response body: invalid character '<' looking for beginning of value
    """
    addrs = targets(target_registries)
    if e2e_results is None and docker_journal is None:
        raise Skip("run with --e2e (a real test push) to check upload limits, or give a docker journal")
    if e2e_results is None and not any(mentioned(docker_journal, None, a) for a in addrs):
        raise Skip(f"no test push ran (--e2e) and no docker journal line names {', '.join(map(str, addrs))}")
    for addr in addrs:
        if (e2e_results or {}).get(str(addr)) is not None:
            passed_on(f"{addr}: a real test push (--e2e) got no 413")
        elif mentioned(docker_journal, None, addr):
            passed_on(f"{addr}: the docker journal names it, with no 413 from a proxy")
        res = (e2e_results or {}).get(str(addr))
        ev = _got_413(addr, res) if res is not None else journal_evidence(journal_hits, "DD211", addr)
        if not ev:
            continue
        yield finding(
            "DD211", f"A proxy in front of {addr} rejects large uploads",
            f"Uploads to {addr} above a size limit get 413 Request Entity Too Large from a proxy in front of "
            "the registry, so layers larger than the limit never push.",
            evidence=ev,
            fix=upload_limit_fix(),
            params=registry_params(addr),
        )


def _got_413(addr: HostPort, res: E2EResult) -> list[Evidence]:
    """The test push's step that got 413 (and the server that answered), or []."""
    step = next((s for s in res.steps if s.status == 413), None)
    if step is None:
        return []
    ev = [Evidence(f"e2e push to {addr}", f"{step.name}: {step.detail}")]
    if res.server_header:
        ev.append(Evidence(f"e2e push to {addr}", f"Server: {res.server_header}"))
    return ev


# ============================================================================ DD212


@rule("DD212", "registry-name-unresolved", category="endpoint", severity=Severity.ERROR,
      title="The registry's host name does not resolve")
def registry_name_unresolved(target_registries: list[TargetRegistry], endpoint_probes: EndpointProbes | None = None,
                             docker_journal: Journal | None = None,
                             journal_hits: JournalHits | None = None) -> Iterator[Finding]:
    """The registry's name has no address in this host's resolver (DNS, /etc/hosts).

    Why it happens: an internal name that only some hosts know, a typo in the image tag, or a
    resolver that dockerd sees differently (systemd-resolved stub, a proxy that resolves instead).

    How to fix: add the name to DNS or /etc/hosts on this host, or tag images with the IP and a
    matching certificate SAN (DD205).

    Example:
        Get "https://registry.internal:5000/v2/": dial tcp: lookup registry.internal on 127.0.0.53:53: no such host
    """
    yield from seen("DD212", SEEN["DD212"], target_registries, endpoint_probes, docker_journal, journal_hits)


# ============================================================================ DD213 (--e2e)


@rule("DD213", "e2e-roundtrip-failed", category="endpoint", severity=Severity.ERROR,
      title="A real push / pull round trip to the registry fails")
def e2e_roundtrip_failed(target_registries: list[TargetRegistry], e2e_results: dict,
                         endpoint_probes: EndpointProbes | None = None, docker_journal: Journal | None = None,
                         journal_hits: JournalHits | None = None,
                         effective_config: EffectiveConfig | None = None) -> Iterator[Finding]:
    """`check --e2e` pushed a tiny generated image (a blob monolithically, one in chunks, a 2 MiB
    one in a single PATCH, a manifest), pulled it back and verified every digest, then deleted it.
    This rule reports the first step that failed, with the registry's answer.

    It also tells a server fault from a client fault: when the round trip works but this host's
    daemon cannot push (the probe or the docker journal shows a TLS or plain-HTTP problem), the
    registry is fine and the daemon's configuration is at fault (info). Deletes that the registry
    refuses (405 UNSUPPORTED) are reported as DD406, info: the probe image then stays behind under
    the probe repository (`--e2e-repo`).

    Why it happens: storage that cannot be written (DD405), a registry in read-only or
    maintenance mode, an authorization proxy that allows pulls only, a load balancer without a
    shared secret (DD407), or a proxy body limit (DD211, reported there).

    How to fix: follow the failing step's answer; the registry's own log has the request id.

    Example:
        layer 96 KiB (chunked): PATCH chunk 1 -> 500 Internal Server Error: {"errors":[{"code":"UNKNOWN"...
    """
    for addr in targets(target_registries):
        res = e2e_results.get(str(addr))
        if res is None:
            continue
        where = f"e2e round trip to {addr} (repository {res.repo}, {res.seconds:.2f} s)"
        if not res.ok:
            yield from _server_fault(addr, res, where)
            continue
        if res.delete == "unsupported":
            yield _deletes_disabled(addr, res, where)
        client_fault = _client_fault(addr, (endpoint_probes or {}).get(str(addr)), effective_config, journal_hits)
        if client_fault:
            yield finding(
                "DD213", f"{addr} accepts pushes; the daemon's configuration is at fault",
                f"A real push and pull from this host to {addr} work, so the registry is healthy; the daemon "
                f"fails because {client_fault}.",
                severity=Severity.INFO,
                evidence=[Evidence(where, "push, pull back and digest checks passed")],
                params={"registry": str(addr), "fault": "client"},
            )


def _deletes_disabled(addr: HostPort, res: E2EResult, where: str) -> Finding:
    """DD406 as the round trip sees it (its own rule reads the registry's log)."""
    return Finding(
        "DD406", Severity.INFO, f"{addr}: deletes are disabled",
        f"The registry refused to delete the probe image (405 UNSUPPORTED); it stays under "
        f"{res.repo}:{res.tag}. Enable deletes (REGISTRY_STORAGE_DELETE_ENABLED=true) to clean up, "
        "and delete by digest.",
        evidence=[Evidence(where, next((s.detail for s in res.steps if "DELETE" in s.name), ""))],
        params={"registry": str(addr), "repository": res.repo, "tag": res.tag},
    )


def _client_fault(addr: HostPort, rep: EndpointReport | None, cfg: EffectiveConfig | None,
                  hits: JournalHits | None) -> str | None:
    """Why this daemon fails against a registry that a real round trip shows healthy, or None."""
    if isinstance(rep, EndpointReport) and insecure_entry(addr, cfg) is None:
        if rep.scheme == "http":
            return "it speaks plain HTTP and the daemon expects HTTPS (DD203)"
        if rep.scheme == "https" and rep.tls_error:
            return f"the daemon would reject its certificate: {rep.tls_detail}"
    for hit in reversed(hits.hits if hits is not None else []):
        if hit.params.get("host") == addr.host and hit.params.get("port") in (None, addr.port):
            return f"the docker journal shows: {short(hit.line, 160)}"
    return None


def _server_fault(addr: HostPort, res: E2EResult, where: str) -> Iterator[Finding]:
    step = res.failed_step
    if step is not None and step.status in (401, 413):
        return  # DD208 (no usable credentials) and DD211 (body limit) report these
    detail = f"{step.name} -> {step.detail}" if step else (res.error or "failed")
    yield finding(
        "DD213", f"A real push to {addr} fails at: {step.name if step else 'connecting'}",
        f"The end-to-end round trip to {addr} failed: {detail}. The fault is on the registry's side "
        "(or between), not in this daemon's configuration.",
        evidence=[Evidence(where, short(detail, 300))]
        + ([Evidence(where, f"Server: {res.server_header}")] if res.server_header else []),
        params={"registry": str(addr), "step": step.name if step else None,
                "status": step.status if step else None, "fault": "server"},
    )
