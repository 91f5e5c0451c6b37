"""What every part of the registry's HTTP side shares: media types, limits, errors, settings.

Also the two input checks that bad clients aim at: `parse_int` (ASCII digits only, so `?n=²`
is a 400 and not a crash in `int()`) and `load_json` (bounded nesting, so a small manifest
nested a thousand deep is MANIFEST_INVALID and not a RecursionError).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from dockerdoctor.registry.auth import Htpasswd

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
IMAGE_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MAX_MANIFEST = 4 * 1024 * 1024
MAX_JSON_DEPTH = 64  # real manifests nest 4 deep; Python's parser recurses and dies near 1,000
MAX_PAGE = 100_000  # largest `n` honoured on _catalog and tags/list

# request storage key: "close the connection after this response" (typed key on aiohttp >= 3.12)
CLOSE_KEY: Any = web.RequestKey("ddreg_close", bool) if hasattr(web, "RequestKey") else "ddreg_close"

STATUS = {
    "BLOB_UNKNOWN": 404,
    "BLOB_UPLOAD_INVALID": 400,
    "BLOB_UPLOAD_UNKNOWN": 404,
    "DIGEST_INVALID": 400,
    "MANIFEST_BLOB_UNKNOWN": 400,
    "MANIFEST_INVALID": 400,
    "MANIFEST_UNKNOWN": 404,
    "NAME_INVALID": 400,
    "NAME_UNKNOWN": 404,
    "SIZE_INVALID": 400,
    "UNAUTHORIZED": 401,
    "DENIED": 403,
    "UNSUPPORTED": 405,
    "TOOMANYREQUESTS": 429,
    "PAGINATION_NUMBER_INVALID": 400,
}


class RegistryError(Exception):
    def __init__(
        self,
        code: str,
        message: str,
        detail: Any = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail
        self.status = status or STATUS[code]
        self.headers = headers or {}


def error_response(err: RegistryError) -> web.Response:
    body = {"errors": [{"code": err.code, "message": err.message, "detail": err.detail}]}
    headers = {"Docker-Distribution-API-Version": "registry/2.0", **err.headers}
    return web.json_response(body, status=err.status, headers=headers)


@dataclass
class Settings:
    read_only: bool = False
    allow_delete: bool = True
    max_upload: int | None = None  # bytes per blob
    upload_max_age: float = 24 * 3600.0
    purge_interval: float = 3600.0
    purge: bool = True
    htpasswd: Htpasswd | None = None
    realm: str = "dockerdoctor"
    auth_threads: int = 2  # bcrypt runs here, never in the storage pool
    auth_failures: int = 10  # failed logins per client address before 429 ...
    auth_window: float = 60.0  # ... within this many seconds
    sweep_before: float | None = None  # at start, remove `.tmp-*` files older than this (unix time)
    headers: dict[str, str] = field(default_factory=dict)  # added to every response (config.yml http.headers)
    http_secret: bytes | None = None  # signs upload state; replicas behind one load balancer share it


_DIGITS = re.compile(r"[0-9]{1,12}")


def parse_int(value: str | None, what: str) -> int | None:
    """A query integer: ASCII digits only (str.isdigit() also accepts '²', which int() refuses)."""
    if value is None or value == "":
        return None
    if _DIGITS.fullmatch(value) is None:
        raise RegistryError("PAGINATION_NUMBER_INVALID", f"invalid {what}", {what: value[:64]})
    return int(value)


_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def json_depth_ok(data: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True if no array/object in `data` nests deeper than `limit` (strings are skipped)."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return True
    depth = 0
    for m in _JSON_TOKEN.finditer(data):
        c = m.group()
        if c in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return False
        elif c in (b"]", b"}"):
            depth -= 1
    return True


def load_json(data: bytes) -> Any:
    """json.loads with bounded nesting; raises ValueError for too deep as for malformed."""
    if not json_depth_ok(data):
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(data)
    except RecursionError:  # pragma: no cover - json_depth_ok stops it first
        raise ValueError("nested too deep") from None
