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


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


def json_depth_ok(data: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True if no array/object in `data` nests deeper than `limit` (brackets in strings do not count).

    C-speed passes only (a 4 MiB hostile body must not hold the event loop): strip the strings, keep
    the brackets, then peel the innermost `[]`/`{}` pairs once per level.
    """
    if data.count(b"[") + data.count(b"{") <= limit:
        return True
    skeleton = _JSON_STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        shorter = skeleton.replace(b"[]", b"").replace(b"{}", b"")
        if not shorter or len(shorter) == len(skeleton):
            return True  # balanced within the limit, or malformed: json.loads says which
        skeleton = shorter
    return False


def load_json(data: bytes) -> Any:
    """json.loads with bounded nesting; raises ValueError for too deep as for malformed."""
    if not json_depth_ok(data):
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(data)
    except RecursionError:  # unbalanced and deep ("[" x 5000): json_depth_ok leaves those to the parser
        raise ValueError("nested too deep") from None


_SIZE_RE = re.compile(r"(?i)\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*")
_DURATION_RE = re.compile(r"(?i)\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*")


def parse_size(text: str) -> int:
    """A size for the command line: 1048576, 500M, 10G, 10MiB (binary units)."""
    m = _SIZE_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"invalid size {text!r} (examples: 500M, 10G, 1048576)")
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2).lower()]
    return int(float(m.group(1)) * scale)


def parse_duration(text: str) -> float:
    """Seconds from 15, 30m, 24h, 7d."""
    m = _DURATION_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"invalid duration {text!r} (examples: 30m, 24h, 7d)")
    scale = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2).lower()]
    return float(m.group(1)) * scale
