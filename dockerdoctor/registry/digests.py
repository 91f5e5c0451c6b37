"""Names, references and digests of the OCI distribution spec, checked before they touch storage.

Every value that ends up in a filesystem path passes through one of these checks first, so a
name, tag, digest or upload id can never contain `..`, a slash where none belongs, or a NUL.
"""

from __future__ import annotations

import hashlib
import re

# The repository name grammar of the distribution spec: path components of lower-case
# alphanumerics joined by `.`, `_`, `__` or runs of `-`, separated by `/`.
NAME_RE = re.compile(r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*")
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
DIGEST_RE = re.compile(r"([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")
UPLOAD_ID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

#: Algorithms we can verify, with the length of their lower-case hex encoding.
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
MAX_NAME_LENGTH = 255


class InvalidDigest(ValueError):
    """The string is not a digest, or uses an algorithm we do not support."""


def valid_name(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and NAME_RE.fullmatch(name) is not None


def valid_tag(tag: str) -> bool:
    return TAG_RE.fullmatch(tag) is not None


def valid_upload_id(upload_id: str) -> bool:
    return UPLOAD_ID_RE.fullmatch(upload_id) is not None


def looks_like_digest(ref: str) -> bool:
    """True if a manifest reference is meant as a digest (tags cannot contain ':')."""
    return ":" in ref


def parse_digest(digest: str) -> tuple[str, str]:
    """Split `alg:hex` and check it strictly; raise InvalidDigest otherwise."""
    m = DIGEST_RE.fullmatch(digest)
    if m is None:
        raise InvalidDigest(f"malformed digest {digest!r}")
    alg, enc = m.group(1), m.group(2)
    if alg not in ALGORITHMS:
        raise InvalidDigest(f"unsupported digest algorithm {alg!r} (use sha256 or sha512)")
    if len(enc) != ALGORITHMS[alg] or re.fullmatch(r"[0-9a-f]+", enc) is None:
        raise InvalidDigest(f"malformed {alg} digest {digest!r}")
    return alg, enc


def new_hash(alg: str) -> hashlib._Hash:
    return hashlib.new(alg)


def digest_of(data: bytes, alg: str = "sha256") -> str:
    return f"{alg}:{hashlib.new(alg, data).hexdigest()}"
