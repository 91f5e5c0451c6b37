"""Registry endpoint, TLS: the certificate the registry presents (DD204 unknown authority, DD205 name
mismatch, DD206 expired) and the certs.d folder the daemon reads it with (DD209)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from dockerdoctor.engine import finding, rule
from dockerdoctor.facts import HostPort, is_ip
from dockerdoctor.facts.daemon import EffectiveConfig
from dockerdoctor.facts.host import CertsDir, Journal, TargetRegistry
from dockerdoctor.facts.registry_containers import RegistryContainer
from dockerdoctor.knowledge.journal import JournalHits
from dockerdoctor.model import Evidence, Finding, Severity
from dockerdoctor.probe.report import EndpointProbes, EndpointReport

if TYPE_CHECKING:
    pass
from dockerdoctor.rules.endpoint_evidence import (
    container_hits,
    each_target,
    journal_evidence,
    registry_params,
    targets,
    trusted,
)

from dockerdoctor.fixes.recipes import insecure_fix
from dockerdoctor.fixes.recipes.certs import (
    cert_pairs_fix,
    client_cert_fix,
    install_ca_fix,
    move_certs_dir_fix,
    reissue_cert_fix,
    rename_ca_fix,
    renew_cert_fix,
)

# ============================================================================ DD204-DD206


def _tls_rule(rule_id: str, kind: str, target_registries: list[TargetRegistry], endpoint_probes: EndpointProbes | None,
              docker_journal: Journal | None, journal_hits: JournalHits | None,
              effective_config: EffectiveConfig | None, registry_containers: list[Any] | None = None
              ) -> Iterator[tuple[HostPort, EndpointReport | None, list[Evidence]]]:
    for addr, rep in each_target(target_registries, endpoint_probes, docker_journal, registry_containers):
        if trusted(addr, effective_config):
            continue  # insecure-registries turns verification off; these certificates are accepted
        ev: list[Evidence] = []
        if rep is not None:
            if rep.scheme != "https" or rep.tls_error != kind:
                continue
            ev.append(rep.evidence(rep.tls_detail))
            if rep.leaf:
                lf = rep.leaf
                sans = ", ".join(lf["dns_names"] + lf["ip_addresses"]) or "none"
                ev.append(rep.evidence(f"server certificate: CN={lf['subject_cn']}, SANs: {sans}, valid "
                                         f"{lf['not_before']} to {lf['not_after']}, issuer {lf['issuer']}"))
        else:
            ev = journal_evidence(journal_hits, rule_id, addr) or container_hits(registry_containers, rule_id, addr)
            if not ev:
                continue
        yield addr, rep, ev


@rule("DD204", "tls-unknown-authority", category="endpoint", severity=Severity.ERROR,
      title="The registry's certificate is not signed by a CA the daemon trusts")
def tls_unknown_authority(target_registries: list[TargetRegistry], endpoint_probes: EndpointProbes | None = None,
                          docker_journal: Journal | None = None, journal_hits: JournalHits | None = None,
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
                                   docker_journal, journal_hits, effective_config, registry_containers):
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
            fix=install_ca_fix(addr, ca_path, insecure_fix(addr, effective_config)),
            params={**registry_params(addr), "file": ca_path},
        )


@rule("DD205", "tls-name-mismatch", category="endpoint", severity=Severity.ERROR,
      title="The registry's certificate does not cover the name or IP used")
def tls_name_mismatch(target_registries: list[TargetRegistry], endpoint_probes: EndpointProbes | None = None,
                      docker_journal: Journal | None = None, journal_hits: JournalHits | None = None,
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
                                   docker_journal, journal_hits, effective_config):
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
            fix=reissue_cert_fix(addr.host, kind),
            params={**registry_params(addr), "cn_only": cn_only},
        )


@rule("DD206", "tls-expired", category="endpoint", severity=Severity.ERROR,
      title="The registry's certificate is expired or not yet valid")
def tls_expired(target_registries: list[TargetRegistry], endpoint_probes: EndpointProbes | None = None,
                docker_journal: Journal | None = None, journal_hits: JournalHits | None = None,
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
                                   docker_journal, journal_hits, effective_config):
        before = any(" is before " in e.text for e in ev)
        yield finding(
            "DD206", f"{addr}: certificate {'not yet valid' if before else 'expired'}",
            (f"The certificate of {addr} is not valid yet by this host's clock: check the clock first."
             if before else f"The certificate of {addr} has expired."),
            evidence=ev,
            fix=renew_cert_fix(before),
            params={"registry": str(addr), "host": addr.host, "port": addr.port,
                    "not_yet_valid": before},
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
    for addr in targets(target_registries):
        rep = (endpoint_probes or {}).get(str(addr))
        rep = rep if isinstance(rep, EndpointReport) else None
        yield from _misplaced_dirs(addr, certs_d)
        if rep is not None and rep.tls_error == "client-certificate" and not rep.certs_dir_error:
            yield _client_cert_missing(addr, rep)
        own = certs_d.get(str(addr))
        if own is not None:
            yield from _own_dir_problems(addr, own, rep)


def _misplaced_dirs(addr: HostPort, certs_d: dict[str, CertsDir]) -> Iterator[Finding]:
    """certs.d folders meant for addr under a name dockerd does not read for it."""
    want = str(addr)
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
            fix=move_certs_dir_fix(src, f"/etc/docker/certs.d/{want}"),
            params={"registry": want, "folder": src, "file": src},
        )


def _client_cert_missing(addr: HostPort, rep: EndpointReport) -> Finding:
    want, target_dir = str(addr), f"/etc/docker/certs.d/{addr}"
    return finding(
        "DD209", f"{want} requires a client certificate that certs.d does not provide",
        f"The registry at {want} refused the TLS handshake over the client certificate (mutual TLS): "
        f"{rep.tls_detail}.",
        severity=Severity.ERROR,
        evidence=[rep.evidence(rep.tls_detail)],
        fix=client_cert_fix(target_dir),
        params={"registry": want, "file": target_dir},
    )


def _own_dir_problems(addr: HostPort, own: CertsDir, rep: EndpointReport | None) -> Iterator[Finding]:
    """certs.d/HOST:PORT itself: a client pair dockerd refuses, and CA files under names it never reads."""
    want, target_dir = str(addr), f"/etc/docker/certs.d/{addr}"
    error = rep.certs_dir_error if rep is not None else own.pair_error()
    if error:
        yield finding(
            "DD209", f"certs.d/{want}: {error.split('.')[0]}",
            f"dockerd fails every push and pull to {want} with: {error}",
            severity=Severity.ERROR,
            evidence=[Evidence(target_dir, f"files: {', '.join(own.files)}")],
            fix=cert_pairs_fix(target_dir),
            params={"registry": want, "file": target_dir},
        )
    for f in own.files:
        if f.endswith((".pem", ".cer", ".ca", ".crt.txt", ".der")) and not f.endswith(".crt"):
            yield finding(
                "DD209", f"certs.d/{want}/{f} is never read",
                f"dockerd reads only *.crt files as CAs; {target_dir}/{f} is ignored.",
                evidence=[Evidence(f"{target_dir}/{f}", "ignored file name")],
                fix=rename_ca_fix(target_dir, f),
                params={"registry": want, "file": f"{target_dir}/{f}"},
            )
