"""Manifest documents: parse and validate pushed bytes once, remember what matters.

Used by the HTTP side (PUT checks, GET media types, referrers) and by `registry gc`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dockerdoctor.registry import digests as dg
from dockerdoctor.registry.common import (
    DOCKER_SCHEMA1,
    IMAGE_TYPES,
    INDEX_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    RegistryError,
    load_json,
)


@dataclass
class ManifestInfo:
    """What we learn once from a manifest's bytes (immutable, so cached by digest)."""

    data: bytes
    media_type: str
    subject: str | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    refs: list[str] = field(default_factory=list)  # blobs and child manifests it needs


def describe_manifest(data: bytes, content_type: str | None) -> ManifestInfo:
    """Parse and validate manifest bytes; raise MANIFEST_INVALID with the reason."""
    try:
        doc = load_json(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise RegistryError("MANIFEST_INVALID", "manifest invalid", f"not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise RegistryError("MANIFEST_INVALID", "manifest invalid", "not a JSON object")
    body_type = doc.get("mediaType")
    ct = (content_type or "").split(";")[0].strip()
    if ct in ("", "application/octet-stream", "application/json"):
        ct = ""
    if body_type is not None and not isinstance(body_type, str):
        raise RegistryError("MANIFEST_INVALID", "manifest invalid", "mediaType is not a string")
    if ct and body_type and ct != body_type:
        raise RegistryError(
            "MANIFEST_INVALID", "manifest invalid", f"Content-Type {ct} differs from mediaType {body_type}"
        )
    media_type = ct or body_type or ""
    if not media_type:
        media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    if media_type in DOCKER_SCHEMA1 or doc.get("schemaVersion") == 1:
        raise RegistryError("MANIFEST_INVALID", "manifest invalid", "schema1 manifests are not supported")
    info = ManifestInfo(data=data, media_type=media_type)

    def descriptor(d: Any, where: str) -> str:
        if not isinstance(d, dict) or not isinstance(d.get("digest"), str):
            raise RegistryError("MANIFEST_INVALID", "manifest invalid", f"{where}: not a descriptor")
        try:
            dg.parse_digest(d["digest"])
        except dg.InvalidDigest as e:
            raise RegistryError("DIGEST_INVALID", "invalid digest in manifest", {"digest": d["digest"]}) from e
        size = d.get("size")
        if size is not None and (not isinstance(size, int) or size < 0):
            raise RegistryError("MANIFEST_INVALID", "manifest invalid", f"{where}: bad size")
        return str(d["digest"])

    if media_type in IMAGE_TYPES or media_type in INDEX_TYPES:
        if doc.get("schemaVersion") != 2:
            raise RegistryError("MANIFEST_INVALID", "manifest invalid", "schemaVersion must be 2")
    if media_type in IMAGE_TYPES:
        if "config" not in doc:
            raise RegistryError("MANIFEST_INVALID", "manifest invalid", "missing config")
        info.refs.append(descriptor(doc["config"], "config"))
        layers = doc.get("layers", [])
        if not isinstance(layers, list):
            raise RegistryError("MANIFEST_INVALID", "manifest invalid", "layers is not a list")
        for i, layer in enumerate(layers):
            d = descriptor(layer, f"layers[{i}]")
            if not layer.get("urls"):  # foreign layers live elsewhere
                info.refs.append(d)
        cfg_type = doc["config"].get("mediaType")
        info.artifact_type = doc.get("artifactType") or cfg_type
    elif media_type in INDEX_TYPES:
        children = doc.get("manifests", [])
        if not isinstance(children, list):
            raise RegistryError("MANIFEST_INVALID", "manifest invalid", "manifests is not a list")
        for i, child in enumerate(children):
            info.refs.append(descriptor(child, f"manifests[{i}]"))
        info.artifact_type = doc.get("artifactType")
    else:
        info.artifact_type = doc.get("artifactType")
    if "subject" in doc and doc["subject"] is not None:
        info.subject = descriptor(doc["subject"], "subject")
    ann = doc.get("annotations")
    if isinstance(ann, dict):
        info.annotations = ann
    return info


def stored_media_type(data: bytes) -> str:
    """Media type of stored bytes we would not accept today (say, schema1 that registry:2 kept)."""
    try:
        doc = load_json(data)
    except (ValueError, UnicodeDecodeError):
        return "application/octet-stream"
    if not isinstance(doc, dict):
        return "application/octet-stream"
    if doc.get("schemaVersion") == 1:
        return DOCKER_SCHEMA1[1] if "signatures" in doc else DOCKER_SCHEMA1[0]
    media_type = doc.get("mediaType")
    return media_type if isinstance(media_type, str) and media_type else OCI_MANIFEST
