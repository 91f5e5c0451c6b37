"""Recipes for TLS material: a registry's CA in certs.d, certificates to reissue or renew, certs.d folders and
files under the names dockerd reads."""

from __future__ import annotations

from dockerdoctor.model import Fix, RunCommand, Trust
from dockerdoctor.net import HostPort


def install_ca_fix(addr: HostPort, ca_path: str, insecure: Fix) -> Fix:
    """Trust the registry's CA in certs.d; `insecure` (insecure-registries) as the alternative."""
    return Fix(f"Install the registry's CA certificate as {ca_path} (read on every push; no restart)",
               (RunCommand(("install", "-D", "-m", "0644", "ca.crt", ca_path),
                           "ca.crt: the CA that signed the registry's certificate (from the registry's "
                           "admin, not fetched blindly from the server)"),),
               alternatives=(insecure,), trust=Trust(str(addr)))


def reissue_cert_fix(host: str, kind: str) -> Fix:
    """A certificate whose subjectAltName covers `host` (kind: IP or DNS)."""
    return Fix(f"Reissue the certificate with subjectAltName {kind}:{host}",
               (RunCommand(("openssl", "req", "-x509", "-newkey", "rsa:4096", "-nodes", "-days", "365",
                            "-keyout", "domain.key", "-out", "domain.crt", "-subj", f"/CN={host}",
                            "-addext", f"subjectAltName={kind}:{host}"),
                           "on the registry host: a self-signed certificate with the right SAN (or have your "
                           "CA sign a CSR with it); then restart the registry and install the new ca.crt"),))


def renew_cert_fix(not_yet_valid: bool) -> Fix:
    return Fix("Check this host's clock, then renew the registry's certificate" if not_yet_valid
               else "Renew the registry's certificate and restart the registry",
               (RunCommand(("timedatectl",), "is the clock right and synchronised?"),
                RunCommand(("openssl", "x509", "-noout", "-dates", "-in", "domain.crt"),
                           "on the registry host: the certificate's validity")))


def move_certs_dir_fix(src: str, target_dir: str) -> Fix:
    return Fix(f"Move it to {target_dir}", (RunCommand(("mv", "-T", src, target_dir), "no restart needed"),))


def client_cert_fix(target_dir: str) -> Fix:
    return Fix(f"Install a client certificate the registry accepts as {target_dir}/client.cert + client.key",
               (RunCommand(("install", "-D", "-m", "0600", "client.key", f"{target_dir}/client.key"),
                           "the key first; then client.cert (signed by a CA the registry trusts, "
                           "with the clientAuth extended key usage)"),))


def cert_pairs_fix(target_dir: str) -> Fix:
    return Fix("Give each NAME.cert its NAME.key (client certificates), and name CA files *.crt",
               (RunCommand(("ls", "-l", target_dir), "a CA certificate must end in .crt, not .cert"),))


def rename_ca_fix(target_dir: str, name: str) -> Fix:
    return Fix(f"Rename it to {target_dir}/ca.crt (PEM format)",
               (RunCommand(("mv", f"{target_dir}/{name}", f"{target_dir}/ca.crt"),
                           "for a DER file: openssl x509 -inform der -in F -out ca.crt"),))
