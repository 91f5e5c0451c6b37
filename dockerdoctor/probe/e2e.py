"""`check --e2e`: a real round trip against a registry, with requests.

It pushes a tiny generated image under its own repository (``--e2e-repo``, default
``dockerdoctor-probe``) and a unique tag: the config blob monolithically (POST + PUT), a layer in
chunks (POST + PATCH + PATCH + PUT), a 2 MiB layer as one PATCH the way dockerd sends layers (a
proxy with a small body limit answers 413 here: DD211), and a schema2 manifest. It pulls the
manifest and every blob back and verifies each digest, then deletes the manifest and blobs where
the registry allows deletes; where it does not (405 UNSUPPORTED), that is reported (DD406, info).

The probe talks to the registry directly (never through this process's proxy variables), and
uses the credentials the docker client config holds for exactly HOST:PORT (never printed).
Whether it succeeds tells a server fault from a client fault: when this host's daemon cannot push
but the round trip works, the daemon's configuration is at fault.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import secrets
import tarfile
import time
import urllib.parse
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from dockerdoctor import __version__
from dockerdoctor.net import HostPort
from dockerdoctor.probe.report import Scheme

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_V1 = "application/vnd.docker.container.image.v1+json"
LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
BIG = 2 * 1024 * 1024  # exposes proxies with small body limits (nginx's default is 1m)


@dataclass
class Step:
    name: str
    ok: bool
    status: int | None = None
    detail: str = ""
    seconds: float = 0.0


DeleteOutcome = Literal["deleted", "unsupported", "failed", "not tried"]


@dataclass
class E2EResult:
    address: HostPort
    repo: str
    tag: str = ""
    scheme: Scheme = "https"
    verified_tls: bool = True
    ok: bool = False  # pushed, pulled back and every digest matched
    steps: list[Step] = field(default_factory=list)
    server_header: str | None = None
    delete: DeleteOutcome = "not tried"  # unsupported: DD406
    cleaned_up: bool = False
    error: str | None = None
    seconds: float = 0.0

    @property
    def failed_step(self) -> Step | None:
        return next((s for s in self.steps if not s.ok), None)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["address"] = str(self.address)
        return d


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer(size: int, seed: bytes) -> bytes:
    """A gzip'd tar with one file of ``size`` incompressible bytes (so the blob really is that big)."""
    payload = seed + secrets.token_bytes(max(0, size - len(seed)))
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("dockerdoctor-probe/data")
        info.size = len(payload)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(payload))
    return gzip.compress(raw.getvalue(), compresslevel=1, mtime=0)


class _Client:
    def __init__(self, base: str, repo: str, timeout: float, verify: bool | str,
                 secret: tuple[str, str] | None) -> None:
        import requests

        self.s = requests.Session()
        self.s.trust_env = False  # the registry itself, not this process's proxy
        self.s.headers["User-Agent"] = f"dockerdoctor/{__version__} (e2e probe)"
        self.base, self.repo, self.timeout, self.verify, self.secret = base, repo, timeout, verify, secret
        self.token: str | None = None
        self.server: str | None = None

    def url(self, path: str) -> str:
        return urllib.parse.urljoin(self.base, path)

    def req(self, method: str, url: str, **kw: Any) -> Any:
        url = self.url(url)
        for _ in range(2):
            headers = dict(kw.pop("headers", {}) or {})
            if self.token:
                headers["Authorization"] = self.token
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = self.s.request(method, url, headers=headers, timeout=self.timeout, verify=self.verify,
                                   allow_redirects=True, **kw)
            self.server = self.server or r.headers.get("Server")
            if r.status_code == 401 and self._authenticate(r.headers.get("WWW-Authenticate", "")):
                kw["headers"] = headers
                continue
            return r
        return r

    def _authenticate(self, challenge: str) -> bool:
        if self.token is not None or self.secret is None:
            return False
        user, pw = self.secret
        basic = "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()
        scheme, _, rest = challenge.partition(" ")
        if scheme.lower() == "basic":
            self.token = basic
            return True
        if scheme.lower() == "bearer":
            params = dict(p.split("=", 1) for p in rest.replace('"', "").split(",") if "=" in p)
            q = {"service": params.get("service", ""),
                 "scope": f"repository:{self.repo}:pull,push,delete", "account": user}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = self.s.get(params.get("realm", ""), params=q, headers={"Authorization": basic},
                               timeout=self.timeout, verify=self.verify)
            if r.status_code != 200:
                return False
            tok = r.json().get("token") or r.json().get("access_token")
            if tok:
                self.token = f"Bearer {tok}"
                return True
        return False


def _short(r: Any) -> str:
    body = (r.text or "")[:200].replace("\r", " ").replace("\n", " ")
    return f"{r.status_code} {r.reason}" + (f": {body}" if body and r.status_code >= 400 else "")


def run_e2e(address: HostPort, *, repo: str = "dockerdoctor-probe", timeout: float = 5.0, probe: Any = None,
            docker_config: str | None = None, certs_dir: str | None = None, scheme: Scheme | None = None,
            big: int = BIG) -> E2EResult:
    """Push, pull back, verify and delete a tiny image; never raises for registry trouble."""
    import requests

    start = time.monotonic()
    if scheme is None:
        scheme = "http" if getattr(probe, "scheme", None) == "http" else "https"
    res = E2EResult(address, repo, tag=f"probe-{int(time.time())}-{secrets.token_hex(3)}", scheme=scheme)
    verify: bool | str = True
    if scheme == "https":
        ca = os.path.join(certs_dir, "ca.crt") if certs_dir else None
        if getattr(probe, "tls_error", None):
            verify, res.verified_tls = False, False  # test the server anyway; the TLS finding stands apart
        elif ca and os.path.isfile(ca):
            verify = ca
    from dockerdoctor.probe.auth import find_credentials

    creds = find_credentials(address, docker_config)
    c = _Client(f"{scheme}://{address}/", repo, timeout, verify, creds._secret)
    pushed: list[str] = []
    try:
        _round_trip(c, res, pushed, big)
    except requests.RequestException as exc:
        res.error = f"{exc.__class__.__name__}: {str(exc)[:200]}"
        res.steps.append(Step("connection", False, None, res.error))
    finally:
        res.server_header = c.server
        res.seconds = time.monotonic() - start
    return res


def _step(res: E2EResult, name: str, r: Any, ok_codes: tuple[int, ...], t0: float, detail: str = "") -> bool:
    ok = r.status_code in ok_codes
    res.steps.append(Step(name, ok, r.status_code, detail or _short(r), round(time.monotonic() - t0, 4)))
    return ok


def _upload(c: _Client, res: E2EResult, name: str, data: bytes, mode: str) -> str | None:
    t0 = time.monotonic()
    digest = _digest(data)
    r = c.req("POST", f"/v2/{c.repo}/blobs/uploads/")
    if not _step(res, f"{name}: start upload", r, (202,), t0):
        return None
    loc = r.headers.get("Location", "")
    t0 = time.monotonic()
    if mode == "monolithic":
        r = c.req("PUT", _with_digest(loc, digest), data=data,
                  headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))})
        return digest if _step(res, f"{name}: PUT {len(data)} bytes", r, (201,), t0) else None
    chunks = [data[: len(data) // 2], data[len(data) // 2:]] if mode == "chunked" else [data]
    offset = 0
    for i, chunk in enumerate(chunks, 1):
        r = c.req("PATCH", loc, data=chunk, headers={
            "Content-Type": "application/octet-stream", "Content-Length": str(len(chunk)),
            "Content-Range": f"{offset}-{offset + len(chunk) - 1}"})
        part = f"chunk {i}, " if mode == "chunked" else ""
        label = f"{name}: PATCH {part}{len(chunk)} bytes"
        if not _step(res, label, r, (202,), t0):
            return None
        offset += len(chunk)
        loc = r.headers.get("Location", loc)
        t0 = time.monotonic()
    r = c.req("PUT", _with_digest(loc, digest), headers={"Content-Length": "0"})
    return digest if _step(res, f"{name}: PUT ?digest", r, (201,), t0) else None


def _with_digest(loc: str, digest: str) -> str:
    return loc + ("&" if "?" in loc else "?") + urllib.parse.urlencode({"digest": digest})


def _round_trip(c: _Client, res: E2EResult, pushed: list[str], big: int) -> None:
    t0 = time.monotonic()
    r = c.req("GET", "/v2/")
    if not _step(res, "GET /v2/", r, (200,), t0):
        return
    nonce = secrets.token_hex(8)
    small = _layer(1024, nonce.encode())
    chunky = _layer(96 * 1024, nonce.encode())
    large = _layer(big, nonce.encode())
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {"Labels": {"dockerdoctor.probe": nonce}},
        "rootfs": {"type": "layers", "diff_ids": [_digest(gzip.decompress(b)) for b in (small, chunky, large)]},
        "history": [{"created_by": "dockerdoctor --e2e"}] * 3,
    }, sort_keys=True).encode()
    blobs = [("config blob (monolithic)", config, "monolithic"), ("layer 1 KiB (monolithic)", small, "monolithic"),
             ("layer 96 KiB (chunked)", chunky, "chunked"),
             (f"layer {len(large) // 1024} KiB (one PATCH)", large, "stream")]
    descs = []
    for name, data, mode in blobs:
        d = _upload(c, res, name, data, mode)
        if d is None:
            return
        pushed.append(d)
        descs.append((d, len(data)))
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST_V2,
        "config": {"mediaType": CONFIG_V1, "size": descs[0][1], "digest": descs[0][0]},
        "layers": [{"mediaType": LAYER, "size": s, "digest": d} for d, s in descs[1:]],
    }, indent=3).encode()
    mdigest = _digest(manifest)
    t0 = time.monotonic()
    r = c.req("PUT", f"/v2/{c.repo}/manifests/{res.tag}", data=manifest, headers={"Content-Type": MANIFEST_V2})
    if not _step(res, "manifest: PUT", r, (201,), t0):
        return
    got = r.headers.get("Docker-Content-Digest")
    if got and got != mdigest:
        res.steps.append(Step("manifest: digest", False, r.status_code, f"server says {got}, expected {mdigest}"))
        return
    # ---- pull back and verify
    t0 = time.monotonic()
    r = c.req("GET", f"/v2/{c.repo}/manifests/{res.tag}", headers={"Accept": MANIFEST_V2})
    if not _step(res, "manifest: GET by tag", r, (200,), t0):
        return
    if _digest(r.content) != mdigest:
        ctype = r.headers.get("Content-Type")
        res.steps.append(Step("manifest: verify", False, r.status_code,
                              f"pulled {_digest(r.content)}, pushed {mdigest} (content type {ctype})"))
        return
    for (name, _data, _), (d, _size) in zip(blobs, descs, strict=True):
        t0 = time.monotonic()
        r = c.req("GET", f"/v2/{c.repo}/blobs/{d}")
        if not _step(res, f"{name.split(' (')[0]}: GET", r, (200,), t0, f"{r.status_code}, {len(r.content)} bytes"):
            return
        if _digest(r.content) != d:
            res.steps.append(Step(f"{name}: verify", False, 200, f"pulled {_digest(r.content)}, pushed {d}"))
            return
    res.ok = True
    # ---- delete (by digest), then the blobs
    t0 = time.monotonic()
    r = c.req("DELETE", f"/v2/{c.repo}/manifests/{mdigest}")
    if r.status_code == 202:
        res.delete = "deleted"
        res.steps.append(Step("manifest: DELETE by digest", True, 202, "deleted", round(time.monotonic() - t0, 4)))
        ok = True
        for d in pushed:
            rb = c.req("DELETE", f"/v2/{c.repo}/blobs/{d}")
            ok = ok and rb.status_code in (202, 404)
        res.cleaned_up = ok
    elif r.status_code == 405 or "UNSUPPORTED" in (r.text or ""):
        res.delete = "unsupported"
        res.steps.append(Step("manifest: DELETE by digest", True, r.status_code,
                              "deletes are disabled on this registry (DD406); the probe image stays under "
                              f"{c.repo}:{res.tag}", round(time.monotonic() - t0, 4)))
    else:
        res.delete = "failed"
        res.steps.append(Step("manifest: DELETE by digest", True, r.status_code, _short(r),
                              round(time.monotonic() - t0, 4)))
