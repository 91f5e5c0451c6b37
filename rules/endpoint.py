"""Registry endpoint: what HOST:PORT actually answers (DD201-DD212).

Each rule reads the layered live probe (fact ``endpoint_probes``, see dockerdoctor.probe.endpoint).
On a snapshot, or when the probe is off, the same rules read the docker journal through the error
knowledge base (dockerdoctor.knowledge), so a push error logged by dockerd is found offline too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from dockerdoctor.engine import finding, passed_on, rule
from dockerdoctor.errors import Skip
from dockerdoctor.facts import HostPort, is_ip
from dockerdoctor.facts.containers import RegistryContainer
from dockerdoctor.facts.daemon import EffectiveConfig
from dockerdoctor.facts.host import CertsDir, Journal, TargetRegistry
from dockerdoctor.model import Evidence, Finding, Fix, RunCommand, Severity, Trust
from dockerdoctor.probe.report import EndpointProbes, EndpointReport

if TYPE_CHECKING:
    from dockerdoctor.probe.e2e import E2EResult
from dockerdoctor.rules.endpoint_evidence import (
    container_hits,
    each_target,
    insecure_entry,
    journal_hits,
    kb_hits,
    mentioned,
    probe_evidence,
    probe_or_journal,
    registry_params,
    targets,
)

from dockerdoctor.fixes.recipes import insecure_fix, listen_fix, remote_open_port_fix, resolve_fix, tls_fix
from dockerdoctor.rules_support import short

# ============================================================================ DD201


@rule("DD201", "registry-refused", category="endpoint", severity=Severity.ERROR,
      title="Nothing accepts connections on the registry's port")
def registry_refused(target_registries: list[TargetRegistry], endpoint_probes: EndpointProbes | None = None,
                     docker_journal: Journal | None = None) -> Iterator[Finding]:
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
    for addr, rep in each_target(target_registries, endpoint_probes, docker_journal):
        ev = probe_or_journal("DD201", addr, rep, docker_journal,
                              lambda r, a=addr: f"TCP connect to {a}: connection refused"
                              if r.tcp == "refused" else None)
        if ev:
            yield finding(
                "DD201", f"{addr} refuses connections",
                f"Nothing accepts TCP connections on {addr}: the registry is down, listens elsewhere, or "
                "its port is not published.",
                evidence=ev, fix=listen_fix(addr), params=registry_params(addr))


# ============================================================================ DD202


@rule("DD202", "registry-filtered", category="endpoint", severity=Severity.ERROR,
      title="A firewall drops or rejects the registry's traffic")
def registry_filtered(target_registries: list[TargetRegistry], endpoint_probes: EndpointProbes | None = None,
                      docker_journal: Journal | None = None) -> Iterator[Finding]:
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
        ev = probe_or_journal("DD202", addr, rep, docker_journal,
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
                        docker_journal: Journal | None = None,
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
        if insecure_entry(addr, effective_config) is not None:
            continue
        ev = probe_or_journal("DD203", addr, rep, docker_journal,
                              lambda r: f"a TLS ClientHello got an HTTP answer; GET /v2/ over HTTP -> {r.http_status}"
                              if r.scheme == "http" else None)
        if not ev:
            continue
        tls = tls_fix(addr, True)
        yield finding(
            "DD203", f"{addr} speaks plain HTTP",
            f"{addr} serves plain HTTP, and this daemon only speaks HTTPS to it (it is not in "
            "insecure-registries), so every push and pull fails.",
            evidence=ev,
            fix=Fix(tls.summary, tls.operations, alternatives=(insecure_fix(addr, effective_config),),
                    trust=Trust(str(addr), plain_http=True)),
            params=registry_params(addr),
        )


# ============================================================================ DD204-DD206


def _tls_rule(rule_id: str, kind: str, target_registries: list[TargetRegistry], endpoint_probes: EndpointProbes | None,
              docker_journal: Journal | None, effective_config: EffectiveConfig | None,
              registry_containers: list[Any] | None = None
              ) -> Iterator[tuple[HostPort, EndpointReport | None, list[Evidence]]]:
    for addr, rep in each_target(target_registries, endpoint_probes, docker_journal, registry_containers):
        if insecure_entry(addr, effective_config) is not None:
            continue  # insecure-registries turns verification off; these certificates are accepted
        ev: list[Evidence] = []
        if rep is not None:
            if rep.scheme != "https" or rep.tls_error != kind:
                continue
            ev.append(probe_evidence(rep, rep.tls_detail))
            if rep.leaf:
                lf = rep.leaf
                sans = ", ".join(lf["dns_names"] + lf["ip_addresses"]) or "none"
                ev.append(probe_evidence(rep, f"server certificate: CN={lf['subject_cn']}, SANs: {sans}, valid "
                                         f"{lf['not_before']} to {lf['not_after']}, issuer {lf['issuer']}"))
        else:
            ev = journal_hits(docker_journal, rule_id, addr) or container_hits(registry_containers, rule_id, addr)
            if not ev:
                continue
        yield addr, rep, ev


@rule("DD204", "tls-unknown-authority", category="endpoint", severity=Severity.ERROR,
      title="The registry's certificate is not signed by a CA the daemon trusts")
def tls_unknown_authority(target_registries: list[TargetRegistry], endpoint_probes: EndpointProbes | None = None,
                          docker_journal: Journal | None = None,
                          effective_config: EffectiveConfig | None = None,
                          registry_containers: list[RegistryContainer] | None = None) -> Iterator[Finding]:
    """The registry's certificate chain does not end in a CA that dockerd trusts: neither the
    system store nor /etc/docker/certs.d/HOST:PORT/*.crt holds it.

    Why it happens: a self-signed certificate or a private CA, whose certificate was not copied to
    this host; or it was copied under a name dockerd ignores (ca.pem, a folder without the port:
    DD209); or the file holds the wrong CA. dockerd reads certs.d on every push: no restart needed.

    Offline, the registry container's own log shows the other side of it: `http: TLS handshake
    error from CLIENT: remote error: tls: bad certificate` (reported as a warning: an unknown CA,
    a name or an expiry read the same from there).

    How to fix: copy the CA certificate (not the server's key!) to
    /etc/docker/certs.d/HOST:PORT/ca.crt. For a self-signed server certificate, that certificate
    itself is the CA. Check what you copy: `openssl x509 -noout -subject -fingerprint -in ca.crt`.

    Example:
        Get "https://10.0.0.5:5000/v2/": x509: certificate signed by unknown authority
    """
    for addr, rep, ev in _tls_rule("DD204", "unknown-authority", target_registries, endpoint_probes,
                                   docker_journal, effective_config, registry_containers):
        ca_path = f"/etc/docker/certs.d/{addr}/ca.crt"
        have = rep.ca_files if rep is not None else []
        server_side = rep is None and all(e.source.startswith("docker logs ") for e in ev)
        msg = (f"{addr} presents a certificate that no CA trusted by this daemon signed"
               + (f"; certs.d/{addr} has {', '.join(have)}, which is not its CA" if have else
                  f"; there is no {ca_path}") + ".")
        if server_side:
            msg = (f"The log of the registry behind {addr} shows clients rejecting its certificate (an unknown CA "
                   "is the usual cause; a name not in the SANs or an expired certificate read the same from this "
                   f"side). Run `dockerdoctor check --registry {addr}` on a client to tell which.")
        yield finding(
            "DD204", f"{addr}: certificate signed by an unknown authority" if not server_side
            else f"{addr}: clients reject the registry's certificate", msg,
            severity=Severity.WARNING if server_side else Severity.ERROR,
            evidence=ev,
            fix=Fix(f"Install the registry's CA certificate as {ca_path} (read on every push; no restart)",
                    (RunCommand(("install", "-D", "-m", "0644", "ca.crt", ca_path),
                                "ca.crt: the CA that signed the registry's certificate (from the registry's "
                                "admin, not fetched blindly from the server)"),),
                    alternatives=(insecure_fix(addr, effective_config),), trust=Trust(str(addr))),
            params={**registry_params(addr), "file": ca_path},
        )


@rule("DD205", "tls-name-mismatch", category="endpoint", severity=Severity.ERROR,
      title="The registry's certificate does not cover the name or IP used")
def tls_name_mismatch(target_registries: list[TargetRegistry], endpoint_probes: EndpointProbes | None = None,
                      docker_journal: Journal | None = None,
                      effective_config: EffectiveConfig | None = None) -> Iterator[Finding]:
    """The certificate's subjectAltName list does not contain the host name or IP address that
    images are tagged with, or the certificate has no SANs at all (CN only).

    Why it happens: Go (dockerd 20.10 is built with Go 1.15+) ignores the Common Name; a
    certificate made with `openssl req -subj /CN=10.0.0.5` and no `subjectAltName` fails with
    `x509: certificate relies on legacy Common Name field, use SANs instead`, even when its CA is
    trusted. An IP must be an IP SAN (`IP:10.0.0.5`), not a DNS SAN. Pushing by IP to a
    certificate made for a name (or the reverse) fails with `x509: certificate is valid for A, not B`
    or `x509: cannot validate certificate for 10.0.0.5 because it doesn't contain any IP SANs`.

    How to fix: reissue the certificate with every name and IP clients use, e.g.
    `openssl req ... -addext "subjectAltName=DNS:registry.example,IP:10.0.0.5"`, or
    `dockerdoctor serve-registry --tls-self-signed NAME`; or tag images with a name the
    certificate already covers.

    Example:
        Get "https://10.0.0.5:5000/v2/": x509: certificate relies on legacy Common Name field, use SANs instead
    """
    for addr, rep, ev in _tls_rule("DD205", "name-mismatch", target_registries, endpoint_probes,
                                   docker_journal, effective_config):
        covered = ""
        cn_only = False
        if rep is not None and rep.leaf:
            names = rep.leaf["dns_names"] + rep.leaf["ip_addresses"]
            cn_only = not names
            covered = ", ".join(names)
        elif any("legacy Common Name" in e.text for e in ev):
            cn_only = True
        kind = "IP" if is_ip(addr.host) else "DNS"
        what = ("has no subjectAltName (CN only), which Go no longer accepts" if cn_only
                else f"covers {covered or 'other names'}, not {addr.host}")
        yield finding(
            "DD205", f"{addr}: the certificate does not cover {addr.host}",
            f"The certificate of {addr} {what}.",
            evidence=ev,
            fix=Fix(f"Reissue the certificate with subjectAltName {kind}:{addr.host}",
                    (RunCommand(("openssl", "req", "-x509", "-newkey", "rsa:4096", "-nodes", "-days", "365",
                                 "-keyout", "domain.key", "-out", "domain.crt", "-subj", f"/CN={addr.host}",
                                 "-addext", f"subjectAltName={kind}:{addr.host}"),
                                "on the registry host: a self-signed certificate with the right SAN (or have your "
                                "CA sign a CSR with it); then restart the registry and install the new ca.crt"),)),
            params={**registry_params(addr), "cn_only": cn_only},
        )


@rule("DD206", "tls-expired", category="endpoint", severity=Severity.ERROR,
      title="The registry's certificate is expired or not yet valid")
def tls_expired(target_registries: list[TargetRegistry], endpoint_probes: EndpointProbes | None = None,
                docker_journal: Journal | None = None,
                effective_config: EffectiveConfig | None = None) -> Iterator[Finding]:
    """The registry's certificate (or a CA in its chain) is outside its validity period as seen by
    this host's clock.

    Why it happens: the certificate expired (self-signed ones made with `-days 365` a year ago), or
    one of the two clocks is wrong: "is before" means this host's clock is behind the certificate's
    notBefore, typical of a VM restored from a snapshot or a host without NTP.

    How to fix: renew the certificate on the registry and restart it; when the text says
    "current time ... is before ...", fix this host's clock first (`timedatectl`, chrony/NTP).

    Example:
        x509: certificate has expired or is not yet valid:
            current time 2026-11-27T22:23:43Z is after 2026-11-26T22:23:38Z
    """
    for addr, _rep, ev in _tls_rule("DD206", "expired", target_registries, endpoint_probes,
                                   docker_journal, effective_config):
        before = any(" is before " in e.text for e in ev)
        yield finding(
            "DD206", f"{addr}: certificate {'not yet valid' if before else 'expired'}",
            (f"The certificate of {addr} is not valid yet by this host's clock: check the clock first."
             if before else f"The certificate of {addr} has expired."),
            evidence=ev,
            fix=Fix("Check this host's clock, then renew the registry's certificate" if before
                    else "Renew the registry's certificate and restart the registry",
                    (RunCommand(("timedatectl",), "is the clock right and synchronised?"),
                     RunCommand(("openssl", "x509", "-noout", "-dates", "-in", "domain.crt"),
                                "on the registry host: the certificate's validity"))),
            params={"registry": str(addr), "host": addr.host, "port": addr.port,
                    "not_yet_valid": before},
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
                    docker_journal: Journal | None = None) -> Iterator[Finding]:
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
    for addr, rep in each_target(target_registries, endpoint_probes, docker_journal):
        ev = probe_or_journal("DD207", addr, rep, docker_journal, _v1_only)
        if not ev:
            continue
        yield finding(
            "DD207", f"{addr} is a v1-only registry",
            f"{addr} speaks only the v1 registry API, which this docker no longer uses.",
            evidence=ev,
            fix=Fix("Replace it with a v2 registry (registry:2) and move the images over",
                    (RunCommand(("docker", "run", "-d", "--restart=always", "--name", "registry2",
                                 "-p", f"{addr.port}:5000", "-v", "/var/lib/registry:/var/lib/registry", "registry:2"),
                                "on the registry host, after stopping the old registry"),)),
            params=registry_params(addr),
        )


# ============================================================================ DD208


@rule("DD208", "auth-required", category="endpoint", severity=Severity.ERROR,
      title="The registry requires login, and there are no usable credentials for it")
def auth_required(target_registries: list[TargetRegistry], endpoint_probes: EndpointProbes | None = None,
                  docker_journal: Journal | None = None) -> Iterator[Finding]:
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
            ev.append(probe_evidence(rep, f"GET /v2/ -> 401, WWW-Authenticate: {rep.auth_challenge or '?'}"
                                     + (f' realm="{rep.auth_realm}"' if rep.auth_realm else "")))
            if creds is not None:
                if not creds.config_exists:
                    ev.append(Evidence(creds.config_path, "does not exist (never logged in as this user)"))
                elif creds.found:
                    why = "has credentials the registry rejects"
                    ev.append(Evidence(creds.config_path, f"credentials for {addr} from {creds.source}"
                                       + (f" ({creds.helper})" if creds.helper else "")
                                       + (f", user {creds.username}" if creds.username else "")
                                       + ": rejected with 401"))
                elif creds.helper_missing:
                    why = f"uses {creds.helper}, which is not installed"
                    ev.append(Evidence(creds.config_path, f"{creds.source} names {creds.helper}; not on PATH"))
                else:
                    text = f"no entry for exactly {addr}"
                    if creds.near_misses:
                        text += f"; entries for other spellings: {', '.join(creds.near_misses)}"
                    if creds.helper:
                        text += f"; {creds.helper} holds none"
                    ev.append(Evidence(creds.config_path, text))
        else:
            ev = journal_hits(docker_journal, "DD208", addr)
            if not ev:
                continue
        yield finding(
            "DD208", f"{addr} requires login",
            f"{addr} answers 401 (authentication required), and the docker client configuration {why}.",
            evidence=ev,
            fix=Fix(f"Log in as the user who pushes: docker login {addr}",
                    (RunCommand(("docker", "login", str(addr)), "stores the credentials under exactly this key"),)),
            params=registry_params(addr),
        )


# ============================================================================ DD209


def _near_miss(name: str, addr: HostPort) -> str | None:
    """Why a certs.d entry looks meant for addr but is not read for it, or None."""
    n = name.strip().lower()
    want = str(addr).lower()
    if n == want:
        return None
    for scheme in ("https:", "http:"):
        if n.startswith(scheme):
            return f"has a scheme ({name}): the folder must be named {want}"
    try:
        hp = HostPort.parse(n)
    except ValueError:
        return None
    if hp.host != addr.host:
        return None
    if hp.port is None:
        return f"has no port: dockerd looks only in certs.d/{want}"
    if hp.port != addr.port:
        return f"names port {hp.port}, not {addr.port}"
    return None


@rule("DD209", "certs-dir-misplaced", category="endpoint", severity=Severity.WARNING,
      title="A certs.d folder or file has a name dockerd does not read")
def certs_dir_misplaced(target_registries: list[TargetRegistry], certs_d: dict[str, CertsDir],
                        endpoint_probes: EndpointProbes | None = None) -> Iterator[Finding]:
    """/etc/docker/certs.d holds a folder or file meant for the registry under a name dockerd never
    reads, so the CA or client certificate in it has no effect.

    Why it happens: dockerd looks only in /etc/docker/certs.d/HOST:PORT/ (exactly as images are
    tagged), and in it reads only `*.crt` (CAs) and `NAME.cert` + `NAME.key` (client pairs).
    A folder without the port, with a scheme (`https:/HOST:PORT` from `mkdir -p
    certs.d/https://...`), or with another port is ignored; so is `ca.pem` or `ca.cer`. A
    `client.cert` without `client.key` (or the reverse) is worse: every push fails with
    `missing key client.key for client certificate client.cert. Note that CA certificates should
    use the extension .crt`. A registry that requires client certificates (mutual TLS) and gets
    none it accepts refuses the handshake: `remote error: tls: bad certificate`.

    How to fix: rename to /etc/docker/certs.d/HOST:PORT/ca.crt (and NAME.cert + NAME.key pairs;
    a client certificate needs the clientAuth usage and a CA the registry trusts).
    No restart: certs.d is read on every push.

    Example:
        /etc/docker/certs.d/10.0.0.5/ca.crt      (no port: ignored)
        /etc/docker/certs.d/10.0.0.5:5000/ca.pem (wrong extension: ignored)
    """
    addrs = targets(target_registries)
    for addr in addrs:
        want = str(addr)
        target_dir = f"/etc/docker/certs.d/{want}"
        for name, cd in sorted(certs_d.items()):
            why = _near_miss(name, addr)
            if why is None:
                continue
            has_certs = [f for f in cd.files if f.endswith((".crt", ".pem", ".cer", ".cert", ".key"))]
            if name.lower().startswith(("https:", "http:")):
                has_certs = has_certs or ["(nested folder)"]
            if not has_certs and not cd.files:
                continue
            src = f"/etc/docker/certs.d/{name}"
            yield finding(
                "DD209", f"certs.d/{name} is not read for {want}",
                f"/etc/docker/certs.d/{name} {why}; dockerd ignores it for {want}.",
                evidence=[Evidence(src, f"files: {', '.join(cd.files) or '(none)'}")],
                fix=Fix(f"Move it to {target_dir}",
                        (RunCommand(("mv", "-T", src, target_dir), "no restart needed"),)),
                params={"registry": want, "folder": src, "file": src},
            )
        own = certs_d.get(want)
        rep = (endpoint_probes or {}).get(want)
        if isinstance(rep, EndpointReport) and rep.tls_error == "client-certificate" and not rep.certs_dir_error:
            yield finding(
                "DD209", f"{want} requires a client certificate that certs.d does not provide",
                f"The registry at {want} refused the TLS handshake over the client certificate (mutual TLS): "
                f"{rep.tls_detail}.",
                severity=Severity.ERROR,
                evidence=[probe_evidence(rep, rep.tls_detail)],
                fix=Fix(f"Install a client certificate the registry accepts as {target_dir}/client.cert + client.key",
                        (RunCommand(("install", "-D", "-m", "0600", "client.key", f"{target_dir}/client.key"),
                                    "the key first; then client.cert (signed by a CA the registry trusts, "
                                    "with the clientAuth extended key usage)"),)),
                params={"registry": want, "file": target_dir},
            )
        if own is None:
            continue
        error = rep.certs_dir_error if isinstance(rep, EndpointReport) else _pair_error(own.files)
        if error:
            yield finding(
                "DD209", f"certs.d/{want}: {error.split('.')[0]}",
                f"dockerd fails every push and pull to {want} with: {error}",
                severity=Severity.ERROR,
                evidence=[Evidence(target_dir, f"files: {', '.join(own.files)}")],
                fix=Fix("Give each NAME.cert its NAME.key (client certificates), and name CA files *.crt",
                        (RunCommand(("ls", "-l", target_dir), "a CA certificate must end in .crt, not .cert"),)),
                params={"registry": want, "file": target_dir},
            )
        for f in own.files:
            if f.endswith((".pem", ".cer", ".ca", ".crt.txt", ".der")) and not f.endswith(".crt"):
                yield finding(
                    "DD209", f"certs.d/{want}/{f} is never read",
                    f"dockerd reads only *.crt files as CAs; {target_dir}/{f} is ignored.",
                    evidence=[Evidence(f"{target_dir}/{f}", "ignored file name")],
                    fix=Fix(f"Rename it to {target_dir}/ca.crt (PEM format)",
                            (RunCommand(("mv", f"{target_dir}/{f}", f"{target_dir}/ca.crt"),
                                        "for a DER file: openssl x509 -inform der -in F -out ca.crt"),)),
                    params={"registry": want, "file": f"{target_dir}/{f}"},
                )


def _pair_error(files: list[str]) -> str | None:
    for f in files:
        if f.endswith(".cert") and f[:-5] + ".key" not in files:
            return (f"missing key {f[:-5]}.key for client certificate {f}. "
                    "Note that CA certificates should use the extension .crt")
        if f.endswith(".key") and f[:-4] + ".cert" not in files:
            return f"Missing client certificate {f[:-4]}.cert for key {f}"
    return None


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
                   docker_journal: Journal | None = None) -> Iterator[Finding]:
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
    for addr, rep in each_target(target_registries, endpoint_probes, docker_journal):
        ev = probe_or_journal("DD210", addr, rep, docker_journal, _not_a_registry)
        if not ev:
            continue
        yield finding(
            "DD210", f"{addr} is not a registry",
            f"Something accepts connections on {addr}, but it does not answer as a docker registry.",
            evidence=ev,
            fix=Fix("Find what owns the port on the registry host, and use the registry's real port",
                    (RunCommand(("ss", "-ltnp", f"sport = :{addr.port}"), "on the registry host"),)),
            params=registry_params(addr),
        )


# ============================================================================ DD211


@rule("DD211", "upload-too-large", category="endpoint", severity=Severity.ERROR,
      title="A proxy in front of the registry rejects large uploads (413)")
def upload_too_large(target_registries: list[TargetRegistry], e2e_results: dict[str, E2EResult] | None = None,
                     docker_journal: Journal | None = None) -> Iterator[Finding]:
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
        ev: list[Evidence] = []
        res = (e2e_results or {}).get(str(addr))
        if res is not None:
            step = next((s for s in res.steps if s.status == 413), None)
            if step is None:
                continue
            ev.append(Evidence(f"e2e push to {addr}", f"{step.name}: {step.detail}"))
            if res.server_header:
                ev.append(Evidence(f"e2e push to {addr}", f"Server: {res.server_header}"))
        else:
            ev = journal_hits(docker_journal, "DD211", addr)
            if not ev:
                continue
        yield finding(
            "DD211", f"A proxy in front of {addr} rejects large uploads",
            f"Uploads to {addr} above a size limit get 413 Request Entity Too Large from a proxy in front of "
            "the registry, so layers larger than the limit never push.",
            evidence=ev,
            fix=Fix("Lift the proxy's body size limit for the registry (nginx: client_max_body_size 0;)",
                    (RunCommand(("nginx", "-s", "reload"),
                                "after setting client_max_body_size 0; chunked_transfer_encoding on; "
                                "proxy_request_buffering off; in the registry's server block"),)),
            params=registry_params(addr),
        )


# ============================================================================ DD212


@rule("DD212", "registry-name-unresolved", category="endpoint", severity=Severity.ERROR,
      title="The registry's host name does not resolve")
def registry_name_unresolved(target_registries: list[TargetRegistry], endpoint_probes: EndpointProbes | None = None,
                             docker_journal: Journal | None = None) -> Iterator[Finding]:
    """The registry's name has no address in this host's resolver (DNS, /etc/hosts).

    Why it happens: an internal name that only some hosts know, a typo in the image tag, or a
    resolver that dockerd sees differently (systemd-resolved stub, a proxy that resolves instead).

    How to fix: add the name to DNS or /etc/hosts on this host, or tag images with the IP and a
    matching certificate SAN (DD205).

    Example:
        Get "https://registry.internal:5000/v2/": dial tcp: lookup registry.internal on 127.0.0.53:53: no such host
    """
    for addr, rep in each_target(target_registries, endpoint_probes, docker_journal):
        ev = probe_or_journal("DD212", addr, rep, docker_journal, lambda r: r.tcp_error if r.tcp == "dns" else None)
        if ev:
            yield finding("DD212", f"{addr.host} does not resolve", f"This host cannot resolve {addr.host}.",
                          evidence=ev, fix=resolve_fix(addr.host), params={"registry": str(addr), "host": addr.host})


# ============================================================================ DD213 (--e2e)


@rule("DD213", "e2e-roundtrip-failed", category="endpoint", severity=Severity.ERROR,
      title="A real push / pull round trip to the registry fails")
def e2e_roundtrip_failed(target_registries: list[TargetRegistry], e2e_results: dict,
                         endpoint_probes: EndpointProbes | None = None, docker_journal: Journal | None = None,
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
    addrs = targets(target_registries)
    for addr in addrs:
        res = e2e_results.get(str(addr))
        if res is None:
            continue
        where = f"e2e round trip to {addr} (repository {res.repo}, {res.seconds:.2f} s)"
        if res.ok:
            if res.delete == "unsupported":
                yield Finding(
                    "DD406", Severity.INFO, f"{addr}: deletes are disabled",
                    f"The registry refused to delete the probe image (405 UNSUPPORTED); it stays under "
                    f"{res.repo}:{res.tag}. Enable deletes (REGISTRY_STORAGE_DELETE_ENABLED=true) to clean up, "
                    "and delete by digest.",
                    evidence=[Evidence(where, next((s.detail for s in res.steps if "DELETE" in s.name), ""))],
                    params={"registry": str(addr), "repository": res.repo, "tag": res.tag},
                )
            rep = (endpoint_probes or {}).get(str(addr))
            client_fault = None
            if isinstance(rep, EndpointReport) and insecure_entry(addr, effective_config) is None:
                if rep.scheme == "http":
                    client_fault = "it speaks plain HTTP and the daemon expects HTTPS (DD203)"
                elif rep.scheme == "https" and rep.tls_error:
                    client_fault = f"the daemon would reject its certificate: {rep.tls_detail}"
            if client_fault is None and docker_journal is not None:
                for hit in reversed(kb_hits(docker_journal)):
                    if hit.params.get("host") == addr.host and hit.params.get("port") in (None, addr.port):
                        client_fault = f"the docker journal shows: {short(hit.line, 160)}"
                        break
            if client_fault:
                yield finding(
                    "DD213", f"{addr} accepts pushes; the daemon's configuration is at fault",
                    f"A real push and pull from this host to {addr} work, so the registry is healthy; the daemon "
                    f"fails because {client_fault}.",
                    severity=Severity.INFO,
                    evidence=[Evidence(where, "push, pull back and digest checks passed")],
                    params={"registry": str(addr), "fault": "client"},
                )
            continue
        step = res.failed_step
        if step is not None and step.status in (401, 413):
            continue  # DD208 (no usable credentials) and DD211 (body limit) report these
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
