"""The result of probing one registry endpoint. Kept free of network imports (ssl, http.client),
so that rules can use it without slowing every start of the CLI."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from dockerdoctor.model import Provenance
from dockerdoctor.net import HostPort

if TYPE_CHECKING:
    from dockerdoctor.probe.auth import CredentialInfo

# The probe's verdicts, as types: a misspelt comparison in a rule (`rep.tcp == "refsued"`) fails mypy.
TcpState = Literal["unknown", "open", "refused", "timeout", "unreachable", "dns", "error"]
Scheme = Literal["https", "http"]
TlsError = Literal["unknown-authority", "name-mismatch", "expired", "handshake", "client-certificate"]
Layer = Literal["tcp", "tls", "http", "auth", "ok"]
Handshake = Literal["eof", "reset", "timeout", "not-tls", "http"]
RegistryApi = Literal["v2", "v1"]


@dataclass
class HttpAnswer:
    path: str
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: str = ""  # the first 512 characters
    error: str | None = None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class EndpointReport:
    address: HostPort
    tcp: TcpState = "unknown"
    tcp_error: str = ""
    scheme: Scheme | None = None  # None: neither
    tls_error: TlsError | None = None  # client-certificate: mutual TLS
    tls_detail: str = ""  # Go's text for the failure (what dockerd prints)
    http_status: int | None = None  # of GET /v2/
    api_version_header: str | None = None
    seconds: float = 0.0
    # --- richer layers
    layer: Layer = "ok"  # the first that breaks
    handshake: Handshake | None = None  # how a non-TLS server answered
    leaf: dict[str, Any] | None = None  # subject CN, SANs, validity of the server certificate
    certs_dir: str | None = None
    certs_dir_error: str | None = None  # what dockerd fails every push with (client.cert without .key)
    certs_dir_ignored: list[str] = field(default_factory=list)
    certs_dir_bad_ca: list[str] = field(default_factory=list)
    ca_files: list[str] = field(default_factory=list)
    v2: HttpAnswer | None = None
    v1: HttpAnswer | None = None
    registry_api: RegistryApi | None = None
    auth_challenge: str | None = None  # Basic | Bearer (scheme of WWW-Authenticate)
    auth_realm: str | None = None
    credentials: CredentialInfo | None = None
    credentials_valid: bool | None = None  # checked against the registry when the secret is at hand
    proxy: str | None = None  # the proxy dockerd would use (no credentials in it)
    proxy_variable: str | None = None
    proxy_result: str | None = None  # what the proxy did with a CONNECT
    proxy_ok: bool | None = None
    docker_text: str | None = None  # what `docker push` would most likely print for the first failure

    def evidence(self, text: str = "", line: int | None = None) -> Provenance:
        return Provenance(f"probe {self.address} ({self.seconds * 1000:.0f} ms)", text, line)

    @property
    def summary(self) -> str:
        if self.tcp != "open":
            return f"TCP {self.tcp}: {self.tcp_error}"
        if self.certs_dir_error:
            return f"certs.d: {self.certs_dir_error}"
        if self.scheme == "http" and self.registry_api is None:
            return "plain HTTP, but not a registry"
        if self.scheme == "http":
            return f"plain HTTP (no TLS), registry API {self.registry_api}"
        if self.scheme == "https" and self.tls_error:
            return f"TLS {self.tls_error}: {self.tls_detail}"
        if self.scheme is None:
            return f"neither TLS nor HTTP: {self.tls_detail or self.handshake}"
        if self.registry_api is None:
            st = self.v2.status if self.v2 else None
            return f"TLS verified, but /v2/ answered {st if st is not None else 'nothing'}: not a registry"
        return f"TLS verified, registry API {self.registry_api}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["address"] = str(self.address)
        d["credentials"] = self.credentials.to_dict() if self.credentials else None
        d["summary"] = self.summary
        return d


# The endpoint_probes fact: one report per target registry, by "HOST:PORT".
EndpointProbes = dict[str, EndpointReport]
