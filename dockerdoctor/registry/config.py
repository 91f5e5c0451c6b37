"""`serve-registry --config config.yml`: read the CNCF registry's (distribution's) configuration file.

The same file that `registry serve config.yml` reads, with the same `REGISTRY_*` environment
overrides (`REGISTRY_HTTP_ADDR`, `REGISTRY_STORAGE_DELETE_ENABLED`, ...: the key path in upper
case joined by `_`, the value parsed as YAML), and distribution's defaults where they differ
from serve-registry's own (deletes are off unless `storage.delete.enabled: true`; upload purging
is on, 168h/24h). Command-line options win over both.

Every key serve-registry does not act on is named at start. Keys whose absence would change
what the registry protects or stores (another storage driver, token auth, a pull-through proxy,
client-certificate auth) stop the start instead: serving without them would be a different
registry from the one the file describes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from dockerdoctor.errors import DoctorError


class ConfigError(DoctorError, ValueError):
    """The configuration file cannot be used as it is."""


#: keys read, as dotted paths (lower case, as distribution matches them)
SUPPORTED = {
    "version",
    "log.level",
    "log.formatter",
    "log.accesslog.disabled",
    "storage.filesystem.rootdirectory",
    "storage.delete.enabled",
    "storage.maintenance.uploadpurging.enabled",
    "storage.maintenance.uploadpurging.age",
    "storage.maintenance.uploadpurging.interval",
    "storage.maintenance.uploadpurging.dryrun",
    "storage.maintenance.readonly.enabled",
    "storage.cache.blobdescriptor",  # serve-registry always caches manifests in memory: nothing to choose
    "storage.redirect.disable",  # the filesystem driver never redirects; s3 does unless disabled
    "storage.s3",
    "storage.s3.bucket",
    "storage.s3.region",
    "storage.s3.regionendpoint",
    "storage.s3.rootdirectory",
    "storage.s3.forcepathstyle",
    "storage.s3.chunksize",
    "storage.s3.accesskey",
    "storage.s3.secretkey",
    "storage.s3.secure",
    "storage.s3.v4auth",  # always signature v4
    "storage.s3.encrypt",  # false only (true is refused below)
    "storage.s3.multipartcopythresholdsize",
    "storage.s3.multipartcopychunksize",
    "storage.s3.multipartcopymaxconcurrency",
    "http.addr",
    "http.secret",  # --http-secret: signs upload URLs
    "http.tls.certificate",
    "http.tls.key",
    "http.headers",
    "http.draintimeout",
    "auth.htpasswd.realm",
    "auth.htpasswd.path",
}
#: keys (prefixes) that stop the start
FATAL = {
    "storage.s3.keyid": "KMS encryption (storage.s3.keyid) is not supported",
    "storage.s3.sessiontoken": "storage.s3.sessiontoken is not supported (use AWS_SESSION_TOKEN)",
    "storage.azure": "the Azure storage driver is not supported",
    "storage.gcs": "the GCS storage driver is not supported",
    "storage.swift": "the Swift storage driver is not supported",
    "storage.oss": "the OSS storage driver is not supported",
    "storage.inmemory": "the in-memory storage driver is not supported (use a tmpfs directory)",
    "auth.token": "token authentication is not supported (only auth.htpasswd)",
    "auth.silly": "silly authentication is not supported (only auth.htpasswd)",
    "proxy": "pull-through cache (proxy) mode is not supported",
    "http.tls.clientcas": "client-certificate authentication (http.tls.clientcas) is not supported",
    "http.tls.letsencrypt": "Let's Encrypt (http.tls.letsencrypt) is not supported; give certificate and key",
}


@dataclass
class RegistryConfig:
    """What the file (plus environment) says, in serve-registry's terms; None = not set."""

    root: str | None = None
    host: str | None = None
    port: int | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    htpasswd: str | None = None
    realm: str | None = None
    allow_delete: bool = False  # distribution's default
    read_only: bool = False
    purge: bool = True
    upload_ttl: float = 168 * 3600.0
    purge_interval: float = 24 * 3600.0
    access_log: bool = True
    log_level: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    drain_timeout: float | None = None
    http_secret: str | None = None
    s3: dict[str, Any] | None = None  # S3Options fields, when the file names `storage.s3`
    ignored: list[str] = field(default_factory=list)  # named at start
    warnings: list[str] = field(default_factory=list)  # printed at start
    sources: dict[str, str] = field(default_factory=dict)  # dotted key -> "file" or the env var


_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(value: Any, key: str) -> float:
    """Seconds from a Go duration (`168h`, `1h30m`, `500ms`); a bare number is nanoseconds, as in Go."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a duration like 24h, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value) / 1e9
    text = str(value).strip()
    pos, total = 0, 0.0
    for m in _GO_DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ConfigError(f"{key}: invalid duration {value!r} (examples: 168h, 24h, 1h30m)")
    return total


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(tree, Mapping) and not (prefix == "http.headers"):
        for k, v in tree.items():
            key = f"{prefix}.{str(k).lower()}" if prefix else str(k).lower()
            if isinstance(v, Mapping) and v and key != "http.headers":
                out.update(_flatten(v, key))
            else:
                out[key] = v
    else:
        out[prefix] = tree
    return out


def _bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfigError(f"{key}: expected true or false, got {value!r}")


def split_addr(addr: str) -> tuple[str, int]:
    """`:5000`, `0.0.0.0:5000`, `[::1]:5000` -> (host, port)."""
    m = re.fullmatch(r"(\[[^\]]+\]|[^:]*):(\d{1,5})", addr.strip())
    if m is None or int(m.group(2)) > 65535:
        raise ConfigError(f"http.addr: expected HOST:PORT or :PORT, got {addr!r}")
    host = m.group(1).strip("[]") or "0.0.0.0"
    return host, int(m.group(2))


_DRIVERS = ("filesystem", "s3", "azure", "gcs", "swift", "oss", "inmemory")


def k_driver(key: str) -> str:
    """`storage.s3.bucket` -> `s3`."""
    return key.split(".")[1]


def _s3(flat: Mapping[str, Any], path: str) -> dict[str, Any]:
    g = flat.get
    out: dict[str, Any] = {}
    bucket = g("storage.s3.bucket")
    if not bucket:
        raise ConfigError(f"{path}: storage.s3 needs a bucket")
    out["bucket"] = str(bucket)
    for key in ("region", "regionendpoint", "rootdirectory", "accesskey", "secretkey"):
        if g(f"storage.s3.{key}") not in (None, ""):
            out[key] = str(g(f"storage.s3.{key}"))
    for key in ("forcepathstyle", "secure"):
        if g(f"storage.s3.{key}") is not None:
            out[key] = _bool(g(f"storage.s3.{key}"), f"storage.s3.{key}")
    if g("storage.s3.encrypt") is not None and _bool(g("storage.s3.encrypt"), "storage.s3.encrypt"):
        raise ConfigError(f"{path}: storage.s3.encrypt: true is not supported (server-side encryption)")
    if g("storage.s3.v4auth") is not None and not _bool(g("storage.s3.v4auth"), "storage.s3.v4auth"):
        raise ConfigError(f"{path}: storage.s3.v4auth: false is not supported (signature v2)")
    for key in ("chunksize", "multipartcopythresholdsize", "multipartcopychunksize", "multipartcopymaxconcurrency"):
        value = g(f"storage.s3.{key}")
        if value is None:
            continue
        if isinstance(value, bool) or not re.fullmatch(r"[0-9]+", str(value).strip()):
            raise ConfigError(f"{path}: storage.s3.{key} must be a whole number, got {value!r}")
        out[key] = int(str(value).strip())
    disable = g("storage.redirect.disable")
    out["redirect"] = not (disable is not None and _bool(disable, "storage.redirect.disable"))
    return out


def load(path: str, environ: Mapping[str, str] | None = None) -> RegistryConfig:
    environ = os.environ if environ is None else environ
    try:
        with open(path, encoding="utf-8") as f:
            tree = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    if tree is None:
        tree = {}
    if not isinstance(tree, Mapping):
        raise ConfigError(f"{path}: expected a YAML mapping at the top")
    flat = _flatten(tree)
    sources = {k: "file" for k in flat}
    for var, raw in sorted(environ.items()):
        if not var.startswith("REGISTRY_") or var == "REGISTRY_CONFIGURATION_PATH":
            continue
        key = var[len("REGISTRY_") :].lower().replace("_", ".")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        if key == "storage" and isinstance(value, str):
            # REGISTRY_STORAGE=s3 picks the driver: the other drivers' keys go, delete/maintenance stay
            for old in [k for k in flat if k.split(".")[1:2] and k.split(".")[1] in _DRIVERS]:
                if k_driver(old) != value.lower():
                    del flat[old]
            flat.setdefault(f"storage.{value.lower()}", {})
            sources.setdefault(f"storage.{value.lower()}", var)
            continue
        # an override of a whole section (REGISTRY_STORAGE_DELETE={"enabled": true}) replaces it
        for old in [k for k in flat if k.startswith(key + ".")]:
            del flat[old]
        if isinstance(value, Mapping):
            for k, v in _flatten(value, key).items():
                flat[k], sources[k] = v, var
        else:
            flat[key], sources[key] = value, var
    version = flat.get("version")
    if str(version) != "0.1":
        raise ConfigError(f"{path}: version must be 0.1 (distribution's format), got {version!r}")
    cfg = RegistryConfig(sources=sources)
    for key in sorted(flat):
        reason = next((r for p, r in FATAL.items() if key == p or key.startswith(p + ".")), None)
        if reason:
            raise ConfigError(f"{path}: {key} ({sources.get(key, 'file')}): {reason}")
    for key in flat:
        if key in SUPPORTED:
            continue
        cfg.ignored.append(f"{key} ({sources.get(key, 'file')})")
    g = flat.get
    drivers = sorted({k_driver(k) for k in flat if k.startswith("storage.") and k_driver(k) in _DRIVERS})
    if len(drivers) > 1:
        raise ConfigError(f"{path}: storage names more than one driver ({', '.join(drivers)}); keep one")
    if "s3" in drivers:
        cfg.s3 = _s3(flat, path)
    if g("storage.filesystem.rootdirectory") is not None:
        cfg.root = str(g("storage.filesystem.rootdirectory"))
    if g("storage.delete.enabled") is not None:
        cfg.allow_delete = _bool(g("storage.delete.enabled"), "storage.delete.enabled")
    if g("storage.maintenance.readonly.enabled") is not None:
        cfg.read_only = _bool(g("storage.maintenance.readonly.enabled"), "storage.maintenance.readonly.enabled")
    purging = [k for k in flat if k.startswith("storage.maintenance.uploadpurging.")]
    needed = ("enabled", "age", "interval", "dryrun")
    missing = [k for k in needed if f"storage.maintenance.uploadpurging.{k}" not in flat]
    if purging and missing:
        cfg.warnings.append(
            f"storage.maintenance.uploadpurging lacks {', '.join(missing)}: distribution 2.8 refuses to start "
            "with this file (it needs all four of enabled, age, interval and dryrun)"
        )
    if g("storage.maintenance.uploadpurging.enabled") is not None:
        cfg.purge = _bool(g("storage.maintenance.uploadpurging.enabled"), "storage.maintenance.uploadpurging.enabled")
    if g("storage.maintenance.uploadpurging.dryrun") is not None and _bool(
        g("storage.maintenance.uploadpurging.dryrun"), "storage.maintenance.uploadpurging.dryrun"
    ):
        cfg.purge = False  # a dry run deletes nothing; serve-registry has no report of it
        cfg.ignored.append("storage.maintenance.uploadpurging.dryrun (purging turned off instead)")
    if g("storage.maintenance.uploadpurging.age") is not None:
        cfg.upload_ttl = go_duration(g("storage.maintenance.uploadpurging.age"), "uploadpurging.age")
    if g("storage.maintenance.uploadpurging.interval") is not None:
        cfg.purge_interval = go_duration(g("storage.maintenance.uploadpurging.interval"), "uploadpurging.interval")
    if g("http.addr") is not None:
        cfg.host, cfg.port = split_addr(str(g("http.addr")))
    if g("http.tls.certificate") is not None or g("http.tls.key") is not None:
        if g("http.tls.certificate") is None or g("http.tls.key") is None:
            raise ConfigError(f"{path}: http.tls needs both certificate and key")
        cfg.tls_cert, cfg.tls_key = str(g("http.tls.certificate")), str(g("http.tls.key"))
    if g("auth.htpasswd.path") is not None:
        cfg.htpasswd = str(g("auth.htpasswd.path"))
        cfg.realm = str(g("auth.htpasswd.realm") or "basic-realm")
    elif g("auth.htpasswd.realm") is not None:
        raise ConfigError(f"{path}: auth.htpasswd needs a path")
    if g("log.accesslog.disabled") is not None:
        cfg.access_log = not _bool(g("log.accesslog.disabled"), "log.accesslog.disabled")
    if g("log.level") is not None:
        level = str(g("log.level")).lower()
        if level not in ("error", "warn", "info", "debug"):
            raise ConfigError(f"{path}: log.level must be error, warn, info or debug, got {level!r}")
        cfg.log_level = level
    headers = g("http.headers")
    if headers is not None:
        if not isinstance(headers, Mapping):
            raise ConfigError(f"{path}: http.headers must map header names to lists of values")
        for name, values in headers.items():
            vals = values if isinstance(values, list) else [values]
            cfg.headers[str(name)] = ", ".join(str(v) for v in vals)
    if g("http.secret"):
        cfg.http_secret = str(g("http.secret"))
    if g("http.draintimeout") is not None:
        cfg.drain_timeout = go_duration(g("http.draintimeout"), "http.draintimeout")
    return cfg
