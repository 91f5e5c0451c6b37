"""Writing containerd's TOML files for a fix: a new hosts.toml, or an edit of one (or of config.toml)
through tomlkit, which keeps comments, order and formatting. tomlkit is imported only when a fix is built.

hosts.toml is read on every pull (no restart); config.toml is read when containerd starts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dockerdoctor.runtimes.containerd_config import CRI_REGISTRY_TABLES, ContainerdConfig


def hosts_toml_text(host: str, *, scheme: str, server: str | None = None, ca: str | None = None,
                    skip_verify: bool = False, capabilities: tuple[str, ...] = ("pull", "resolve", "push"),
                    note: str = "") -> str:
    """A new hosts.toml for `host` (written by a fix)."""
    url = f"{scheme}://{host}"
    out = [f"# {note or 'written by dockerdoctor'}", f'server = "{server or url}"', "", f'[host."{url}"]',
           "  capabilities = [" + ", ".join(f'"{c}"' for c in capabilities) + "]"]
    if ca:
        out.append(f'  ca = "{ca}"')
    if skip_verify:
        out.append("  skip_verify = true")
    return "\n".join(out) + "\n"


class UneditableToml(ValueError):
    """A TOML file the style-preserving editor cannot take (it does not parse, or has an odd shape)."""


def _tomlkit_edit(edit: Callable[[], str]) -> str:
    import tomlkit.exceptions

    try:
        return edit()
    except (tomlkit.exceptions.TOMLKitError, ValueError, TypeError, AttributeError, KeyError) as exc:
        raise UneditableToml(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


def _edit_hosts_toml(current: str, host: str, *, scheme: str, ca: str | None = None, skip_verify: bool = False,
                     capabilities: tuple[str, ...] = ("pull", "resolve", "push")) -> str:
    """Add or update the ``[host."scheme://host"]`` table of an existing hosts.toml, keeping its comments,
    order and formatting (tomlkit, imported only here)."""
    import tomlkit

    doc = tomlkit.parse(current)
    url = f"{scheme}://{host}"
    hosts = doc.get("host")
    if hosts is None:
        hosts = tomlkit.table(is_super_table=True)
        doc["host"] = hosts
    entry = hosts.get(url)  # type: ignore[union-attr]
    if entry is None:
        entry = tomlkit.table()
        hosts[url] = entry  # type: ignore[index]
    entry["capabilities"] = list(capabilities)
    if ca:
        entry["ca"] = ca
    if skip_verify:
        entry["skip_verify"] = True
    return tomlkit.dumps(doc)


def _add_config_path(current: str, cfg: ContainerdConfig, directory: str) -> str:
    """config.toml with config_path set in the CRI registry section (tomlkit keeps the rest as it was)."""
    import tomlkit

    doc = tomlkit.parse(current) if current.strip() else tomlkit.document()
    if not current.strip():
        doc["version"] = 2
    table_path = cfg.registry_table or CRI_REGISTRY_TABLES[2]
    cur: Any = doc
    for part in table_path:
        nxt = cur.get(part)
        if nxt is None:
            nxt = tomlkit.table(is_super_table=part != table_path[-1])
            cur[part] = nxt
        cur = nxt
    cur["config_path"] = directory
    return tomlkit.dumps(doc)


def _remove_legacy_registry(current: str, cfg: ContainerdConfig) -> str:
    """config.toml without the legacy `mirrors` and `configs.*.tls` tables (auth stays)."""
    import tomlkit

    doc = tomlkit.parse(current)
    cur: Any = doc
    for part in cfg.registry_table:
        cur = cur.get(part)
        if cur is None:
            return current
    if "mirrors" in cur:
        del cur["mirrors"]
    configs = cur.get("configs")
    if configs is not None:
        for host in list(configs):
            if "tls" in configs[host]:
                del configs[host]["tls"]
            if not configs[host]:
                del configs[host]
        if not configs:
            del cur["configs"]
    return tomlkit.dumps(doc)


# The editors as fixes call them: a file tomlkit cannot take raises UneditableToml, never tomlkit's own errors.
def edit_hosts_toml(current: str, host: str, *, scheme: str, ca: str | None = None, skip_verify: bool = False,
                    capabilities: tuple[str, ...] = ("pull", "resolve", "push")) -> str:
    return _tomlkit_edit(lambda: _edit_hosts_toml(current, host, scheme=scheme, ca=ca, skip_verify=skip_verify,
                                                  capabilities=capabilities))


def add_config_path(current: str, cfg: ContainerdConfig, directory: str) -> str:
    return _tomlkit_edit(lambda: _add_config_path(current, cfg, directory))


def remove_legacy_registry(current: str, cfg: ContainerdConfig) -> str:
    return _tomlkit_edit(lambda: _remove_legacy_registry(current, cfg))
