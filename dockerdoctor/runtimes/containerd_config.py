"""containerd's config.toml, the parts a registry client depends on: the CRI registry section
(config_path, the legacy mirrors/configs tables), disabled_plugins and imports, with file:line provenance.

Pure: text in, data out (merge_imports reads the imported files through the callables it is given).
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from typing import Any

from dockerdoctor.runtimes.base import Origin
from dockerdoctor.runtimes.toml_scan import Problem, dig, load_toml, toml_lines, unparsed

V3_CONFIG_SINCE = (2, 0)  # config.toml version = 3, plugins."io.containerd.cri.v1.images"
LEGACY_MIRRORS_REMOVED = (2, 0)  # `mirrors`/`configs.*.tls` refused since 2.0 (containerd/containerd#9766)
DEFAULT_CONFIG_PATH_SINCE = (2, 2)  # 2.2: config_path defaults to /etc/containerd/certs.d:/etc/docker/certs.d
DEFAULT_CONFIG_PATH_22 = ("/etc/containerd/certs.d", "/etc/docker/certs.d")

# The CRI registry section, per config.toml version.
CRI_REGISTRY_TABLES: dict[int, tuple[str, ...]] = {
    1: ("plugins", "cri", "registry"),
    2: ("plugins", "io.containerd.grpc.v1.cri", "registry"),
    3: ("plugins", "io.containerd.cri.v1.images", "registry"),
}



@dataclass
class ContainerdConfig:
    """The parts of containerd's config.toml a registry client depends on."""

    path: str
    exists: bool = True
    version: int = 1
    version_line: int | None = None
    error: str | None = None
    error_line: int | None = None
    registry_table: tuple[str, ...] = ()
    config_path: tuple[str, ...] = ()  # directories, in order
    config_path_line: int | None = None
    mirrors: dict[str, list[str]] = field(default_factory=dict)  # legacy registry.mirrors
    mirror_lines: dict[str, int] = field(default_factory=dict)
    configs_tls: dict[str, dict[str, Any]] = field(default_factory=dict)  # legacy registry.configs.*.tls
    configs_auth: dict[str, int] = field(default_factory=dict)  # host -> line (never the secret)
    config_lines: dict[str, int] = field(default_factory=dict)
    registry_line: int | None = None
    imports: tuple[str, ...] = ()
    problems: list[Problem] = field(default_factory=list)
    text: str | None = None
    imported: list[str] = field(default_factory=list)  # files merged in through `imports`
    origins: dict[str, str] = field(default_factory=dict)  # key -> the imported file that set it
    has_cri_plugin: bool = False  # this file has a [plugins."<CRI plugin>"] table (imports replace it whole)
    # disabled_plugins names the CRI plugin: this containerd serves no kubelet (docker-ce's containerd.io
    # package ships `disabled_plugins = ["cri"]`; dockerd's own managed containerd disables it too)
    cri_disabled: bool = False

    def where(self, line: int | None) -> Origin:
        return Origin(self.path, line)

    def file_of(self, key: str) -> str:
        """The file that set `key` ("config_path", "mirrors.HOST", "configs.HOST"): an import, or this file."""
        return self.origins.get(key, self.path)

    @property
    def legacy_conflict(self) -> list[tuple[str, str, int | None]]:
        """What the CRI plugin refuses next to config_path: non-empty `mirrors`, `configs.*.tls` (what, file, line)."""
        out: list[tuple[str, str, int | None]] = []
        for host in self.mirrors:
            out.append((f"mirrors.\"{host}\"", self.file_of(f"mirrors.{host}"), self.mirror_lines.get(host)))
        for host in self.configs_tls:
            out.append((f"configs.\"{host}\".tls", self.file_of(f"configs.{host}"), self.config_lines.get(host)))
        return out


# Plugin ids under which disabled_plugins turns the CRI (and with it kubelet's image pulls) off.
CRI_PLUGIN_IDS = frozenset({"cri", "io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images"})


def parse_containerd_config(text: str, path: str, default_version: int = 1) -> ContainerdConfig:
    cfg = ContainerdConfig(path=path, text=text)
    data, bad = load_toml(text, path)
    if data is None:
        return unparsed(cfg, bad)
    lines = toml_lines(text)
    version = data.get("version", default_version)
    cfg.version = version if isinstance(version, int) else default_version
    cfg.version_line = lines.get(("version",))
    disabled = data.get("disabled_plugins")
    if isinstance(disabled, list):
        cfg.cri_disabled = any(str(p) in CRI_PLUGIN_IDS for p in disabled)
    imports = data.get("imports")
    if isinstance(imports, list):
        cfg.imports = tuple(str(i) for i in imports)
    table = CRI_REGISTRY_TABLES.get(cfg.version, CRI_REGISTRY_TABLES[2])
    cfg.registry_table = table
    reg = dig(data, table)
    cfg.has_cri_plugin = isinstance(dig(data, table[:2]), dict)
    cfg.registry_line = lines.get(table)
    # a registry section under another version's name is silently ignored
    for v, other in CRI_REGISTRY_TABLES.items():
        if other != table and isinstance(dig(data, other), dict):
            cfg.problems.append(Problem(
                path, lines.get(other),
                f"[{_fmt(other)}] is the version {v} name of the CRI registry section, but this file says "
                f"version = {cfg.version}: containerd ignores it", "ignored"))
    if not isinstance(reg, dict):
        return cfg
    cp = reg.get("config_path")
    if isinstance(cp, str) and cp.strip():
        cfg.config_path = tuple(d for d in cp.split(":") if d)
        cfg.config_path_line = lines.get(table + ("config_path",))
    mirrors = reg.get("mirrors")
    if isinstance(mirrors, dict):
        for host, m in mirrors.items():
            eps = m.get("endpoint") if isinstance(m, dict) else None
            cfg.mirrors[host] = [str(e) for e in eps] if isinstance(eps, list) else []
            cfg.mirror_lines[host] = lines.get(table + ("mirrors", host)) or lines.get(
                table + ("mirrors", host, "endpoint")) or cfg.registry_line or 0
    configs = reg.get("configs")
    if isinstance(configs, dict):
        for host, c in configs.items():
            if not isinstance(c, dict):
                continue
            line = lines.get(table + ("configs", host)) or lines.get(table + ("configs", host, "tls")) \
                or lines.get(table + ("configs", host, "auth"))
            cfg.config_lines[host] = line or 0
            tls = c.get("tls")
            if isinstance(tls, dict) and tls:
                cfg.configs_tls[host] = dict(tls)
                cfg.config_lines[host] = lines.get(table + ("configs", host, "tls")) or line or 0
            if isinstance(c.get("auth"), dict) and c.get("auth"):
                cfg.configs_auth[host] = lines.get(table + ("configs", host, "auth")) or line or 0
    return cfg


def _fmt(path: tuple[str, ...]) -> str:
    return ".".join(p if re.fullmatch(r"[A-Za-z0-9_-]+", p) else f'"{p}"' for p in path)


def cri_refusal(cfg: ContainerdConfig, version: tuple[int, int] | None) -> str | None:
    """The message containerd logs when it refuses to load the CRI plugin for this registry section,
    or None when it loads it. Measured on 1.6.20 (tests/runtimes/test_lab_containerd.py), 2.x from
    containerd/containerd#9766."""
    if version is not None and version >= LEGACY_MIRRORS_REMOVED and (cfg.mirrors or cfg.configs_tls):
        return "`mirrors` is no longer supported since containerd v2.0, please use `config_path` instead" \
            if cfg.mirrors else "`configs.tls` is no longer supported since containerd v2.0, please use " \
            "`config_path` instead"
    # 1.6.20 (measured): `failed to load plugin io.containerd.grpc.v1.cri` error="invalid plugin config: ...";
    # newer releases say "invalid cri image config: ..." (containerd/containerd#12612)
    prefix = "invalid plugin config" if version is not None and version < (1, 7) else "invalid cri image config"
    if cfg.config_path and cfg.mirrors:
        return f"{prefix}: `mirrors` cannot be set when `config_path` is provided"
    if cfg.config_path and cfg.configs_tls:
        return f"{prefix}: `configs.tls` cannot be set when `config_path` is provided"
    return None



def merge_imports(cfg: ContainerdConfig, listdir: Any, read: Any) -> ContainerdConfig:
    """containerd reads the files named by `imports` (globs allowed, in order) after config.toml. Measured on
    1.6.20: a plugin's table in an imported file REPLACES that plugin's table of config.toml whole, so a conf.d
    file with any [plugins."io.containerd.grpc.v1.cri"...] table drops config.toml's config_path. The merged
    view keeps each value's own file and line."""
    for pattern in cfg.imports:
        pattern = pattern if os.path.isabs(pattern) else os.path.join(os.path.dirname(cfg.path), pattern)
        d, name = os.path.split(pattern)
        names = sorted(n for n in (listdir(d) or []) if fnmatch.fnmatchcase(n, name)) if any(
            c in name for c in "*?[") else [name]
        for n in names:
            p = os.path.join(d, n)
            text = read(p)
            if text is None:
                continue
            sub = parse_containerd_config(text, p, cfg.version)
            cfg.problems += sub.problems
            if sub.has_cri_plugin:
                if cfg.config_path and not sub.config_path:
                    cfg.problems.append(Problem(
                        p, sub.registry_line or 1,
                        f"this file's CRI plugin table replaces the one in {cfg.file_of('config_path')} whole "
                        f"(containerd merges imports per plugin), so config_path = "
                        f"{':'.join(cfg.config_path)!r} from there is dropped", "ignored"))
                cfg.config_path, cfg.config_path_line = (), None
                cfg.mirrors, cfg.mirror_lines, cfg.configs_tls, cfg.configs_auth, cfg.config_lines = {}, {}, {}, {}, {}
                cfg.origins = {}
            if sub.config_path:
                cfg.config_path, cfg.config_path_line = sub.config_path, sub.config_path_line
                cfg.origins["config_path"] = p
            for host, eps in sub.mirrors.items():
                cfg.mirrors[host] = eps
                cfg.mirror_lines[host] = sub.mirror_lines.get(host, 0)
                cfg.origins[f"mirrors.{host}"] = p
            for host in sub.config_lines:
                cfg.origins[f"configs.{host}"] = p
            cfg.configs_tls.update(sub.configs_tls)
            cfg.configs_auth.update(sub.configs_auth)
            cfg.config_lines.update(sub.config_lines)
            cfg.imported.append(p)
    return cfg
