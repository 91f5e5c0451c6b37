"""A small distribution-API client for `dockerdoctor registry ls/rm`, usable against any registry.

It speaks HTTPS first and falls back to plain HTTP when the server answers in plain HTTP
(as docker does for an insecure registry), trusts `/etc/docker/certs.d/HOST:PORT/ca.crt`
like docker, and handles both Basic and Bearer-token challenges.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass
from typing import Any

import requests

from dockerdoctor.errors import DoctorError

MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


class ClientError(DoctorError):
    """A one-line, user-facing failure."""


@dataclass
class Target:
    registry: str  # host[:port]
    repo: str | None = None
    ref: str | None = None  # tag or digest


def _is_registry(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost"


def parse_target(text: str | None, default_registry: str) -> Target:
    """`HOST:PORT/REPO:TAG`, `REPO@DIGEST`, `HOST:PORT` or `REPO` (docker's rule for the host part)."""
    if not text:
        return Target(default_registry)
    text = text.strip()
    for prefix in ("https://", "http://"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    first, sep, rest = text.partition("/")
    if not sep:  # one component: `host:port`/`host.name` is a registry, `repo[:tag]` is not
        if "@" in first:
            is_host = False
        elif ":" in first:
            is_host = first.rsplit(":", 1)[1].isdigit()  # host:port, else repo:tag
        else:
            is_host = "." in first or first == "localhost"
    else:
        is_host = _is_registry(first)
    if is_host:
        registry, remainder = first, rest
    else:
        registry, remainder = default_registry, text
    remainder = remainder.strip("/")
    if not remainder:
        return Target(registry)
    ref = None
    if "@" in remainder:
        remainder, ref = remainder.split("@", 1)
    else:
        last = remainder.rsplit("/", 1)[-1]
        if ":" in last:
            remainder, ref = remainder.rsplit(":", 1)
    return Target(registry, remainder, ref)


def _docker_config_auth(registry: str) -> tuple[str, str] | None:
    path = os.path.join(os.environ.get("DOCKER_CONFIG", os.path.expanduser("~/.docker")), "config.json")
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError):
        return None
    for key, entry in (cfg.get("auths") or {}).items():
        host = re.sub(r"^https?://", "", key).split("/")[0]
        if host == registry and isinstance(entry, dict) and entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            return user, password
    return None


class RegistryClient:
    def __init__(
        self,
        registry: str,
        user: str | None = None,
        password: str | None = None,
        insecure: bool = False,
        ca_cert: str | None = None,
        scheme: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.registry = registry
        self.session = requests.Session()
        self.timeout = timeout
        self.creds = (user, password or "") if user else _docker_config_auth(registry)
        if insecure:
            self.session.verify = False
            requests.packages.urllib3.disable_warnings()  # type: ignore[attr-defined]
        else:
            certs_d = os.path.join("/etc/docker/certs.d", registry, "ca.crt")
            if ca_cert:
                self.session.verify = ca_cert
            elif os.path.exists(certs_d):
                self.session.verify = certs_d
        self.scheme = scheme
        self.token: str | None = None
        # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override session.verify; an explicit
        # verify= on each request wins over the environment, so --insecure and --ca-cert do too.
        self.verify = self.session.verify

    def _get(self, url: str, **kw: Any) -> requests.Response:
        return self.session.get(url, timeout=self.timeout, verify=self.verify, **kw)

    # ---- transport
    def _base(self) -> str:
        if self.scheme is None:
            self.scheme = self._detect_scheme()
        return f"{self.scheme}://{self.registry}"

    def _detect_scheme(self) -> str:
        try:
            self._get(f"https://{self.registry}/v2/")
            return "https"
        except requests.exceptions.SSLError as e:
            try:
                self._get(f"http://{self.registry}/v2/")
                return "http"
            except requests.RequestException:
                raise ClientError(f"TLS to {self.registry} failed: {_short(e)}") from None
        except requests.ConnectionError as e:
            try:
                self._get(f"http://{self.registry}/v2/")
                return "http"
            except requests.RequestException:
                pass
            raise ClientError(f"cannot reach {self.registry}: {_short(e)}") from None
        except requests.RequestException as e:
            raise ClientError(f"cannot reach {self.registry}: {_short(e)}") from None

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        url = path if path.startswith("http") else self._base() + path
        headers = dict(kw.pop("headers", {}) or {})
        for attempt in range(2):
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            elif self.creds and attempt:
                headers["Authorization"] = "Basic " + base64.b64encode(":".join(self.creds).encode()).decode()
            try:
                r = self.session.request(method, url, headers=headers, timeout=self.timeout, verify=self.verify, **kw)
            except requests.RequestException as e:
                raise ClientError(f"{method} {url} failed: {_short(e)}") from None
            if r.status_code != 401 or attempt:
                return r
            if not self._authenticate(r):
                return r
        return r

    def _authenticate(self, r: requests.Response) -> bool:
        challenge = r.headers.get("WWW-Authenticate", "")
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            return self.creds is not None
        if scheme.lower() != "bearer":
            return False
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        realm = fields.pop("realm", None)
        if not realm:
            return False
        auth = self.creds if self.creds else None
        try:
            t = self._get(realm, params=fields, auth=auth)
        except requests.RequestException as e:
            raise ClientError(f"token request to {realm} failed: {_short(e)}") from None
        if t.status_code != 200:
            return False
        body = _json_object(t, f"token from {realm}")
        token = body.get("token") or body.get("access_token")
        self.token = token if isinstance(token, str) else None
        return bool(self.token)

    def _check(self, r: requests.Response, what: str) -> requests.Response:
        if r.status_code < 300:
            return r
        raise ClientError(f"{what}: {describe_error(r)}")

    # ---- API
    def _paged(self, path: str, key: str) -> list[str]:
        items: list[str] = []
        url: str | None = path
        while url:
            r = self._check(self.request("GET", url), f"GET {url}")
            got = _json_object(r, f"GET {url}").get(key) or []
            if not isinstance(got, list) or not all(isinstance(x, str) for x in got):
                raise ClientError(f"GET {url}: {key!r} is not a list of names")
            items.extend(got)
            link = r.headers.get("Link", "")
            m = re.search(r"<([^>]+)>", link)
            url = m.group(1) if m else None
        return items

    def catalog(self) -> list[str]:
        return self._paged("/v2/_catalog?n=1000", "repositories")

    def tags(self, repo: str) -> list[str]:
        return self._paged(f"/v2/{repo}/tags/list?n=1000", "tags")

    def resolve(self, repo: str, ref: str) -> str:
        headers = {"Accept": MANIFEST_ACCEPT}
        r = self.request("HEAD", f"/v2/{repo}/manifests/{ref}", headers=headers)
        if r.status_code == 200 and r.headers.get("Docker-Content-Digest"):
            return r.headers["Docker-Content-Digest"]
        r = self._check(self.request("GET", f"/v2/{repo}/manifests/{ref}", headers=headers), f"{repo}:{ref}")
        return r.headers.get("Docker-Content-Digest") or "sha256:" + hashlib.sha256(r.content).hexdigest()

    def delete_manifest(self, repo: str, digest: str) -> requests.Response:
        return self.request("DELETE", f"/v2/{repo}/manifests/{digest}")


def _json_object(r: requests.Response, what: str) -> dict[str, Any]:
    """The response body as a JSON object, or one clear error (a hostile or broken server)."""
    try:
        body = r.json()
    except ValueError:
        raise ClientError(f"{what}: the answer is not JSON (HTTP {r.status_code}, "
                          f"{r.headers.get('Content-Type') or 'no content type'})") from None
    if not isinstance(body, dict):
        raise ClientError(f"{what}: the answer is JSON, but not an object")
    return body


def describe_error(r: requests.Response) -> str:
    try:
        errors = r.json().get("errors") or []
        first = errors[0]
        text = f"{first.get('code')}: {first.get('message')}"
    except (ValueError, AttributeError, IndexError, KeyError, TypeError):
        text = (r.text or "").strip().splitlines()[0][:200] if r.text else ""
    return f"HTTP {r.status_code} {text}".strip()


def _short(e: Exception) -> str:
    """The reason of a requests/urllib3 error in words, without its Python reprs."""
    text = str(e)
    if "RemoteDisconnected" in text or "Connection aborted" in text:
        return "the server closed the connection without an answer"
    m = re.search(r"\[Errno -?\d+\] ([^)'\"]+)", text)  # Connection refused, Name or service not known
    if m is None:
        m = re.search(r"\] (.+?)(?:\s*\(_ssl|'\)|\"\)|$)", text)
    out = (m.group(1) if m else text).strip()
    while out.endswith(")") and out.count(")") > out.count("("):
        out = out[:-1]
    return out[:300]
