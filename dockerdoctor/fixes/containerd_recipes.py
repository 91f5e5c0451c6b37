"""Which containerd-family fix a finding gets, by the shape of the runtime that pulls (DD602, DD604).

The recipes themselves (the file contents, through tomlkit and ruamel.yaml) are in fixes/hosts_toml.py;
this module only chooses among them from what the adapter shows: a hosts.toml directory (write or edit the
registry's hosts.toml), k3s (registries.yaml), a CRI without config_path (config_path, plus the hosts.toml
unless the one already there would do), or a hosts.toml that does not parse (no fix: DD601 first).
"""

from __future__ import annotations

import os
from typing import Any

from dockerdoctor.fixes import hosts_toml as recipes
from dockerdoctor.model import Fix
from dockerdoctor.runtimes.base import ImageRef
from dockerdoctor.runtimes.containerd import CONTAINERD_CERTS_D, K3S_REGISTRIES


def probe_ref(name: str) -> ImageRef:
    """The reference the rules resolve for a registry (any repository would do)."""
    return ImageRef.parse(f"{name}/dockerdoctor/probe:latest")


def trusts(endpoints: Any, plain: bool) -> bool:
    """Whether any of these endpoints reaches the registry as it is: plain HTTP, or TLS with a CA / skip_verify."""
    if plain:
        return any(e.scheme == "http" or e.http_fallback for e in endpoints)
    return any(e.scheme == "https" and (e.tls.ca_files or e.tls.skip_verify) for e in endpoints)


def trust_fix(rt: Any, name: str, plain: bool) -> Fix | None:
    """DD604's fix for runtime `rt` and registry `name` (None: nothing this run can write, e.g. a hosts.toml
    that does not parse, which DD601 names first)."""
    roots = getattr(rt, "roots", ())
    if roots:
        match = rt.host_dir(name)
        if match is not None and match.hosts_toml is not None and match.hosts_toml.error:
            return None
        current = match.hosts_toml.text if match and match.hosts_toml and not match.is_default else None
        root = match.root if match and not match.is_default else roots[0]
        fix = recipes.trust_http(root, name, current, rt.display) if plain else \
            recipes.trust_ca(root, name, current, rt.display)
        return for_owner(fix, rt, os.path.join(root, name))
    if rt.name == "k3s":
        reg = rt.registries
        return recipes.k3s_trust(reg.path if reg else K3S_REGISTRIES, reg.text if reg else None, name, plain)
    legacy = getattr(rt, "legacy", None)
    if legacy is not None and legacy.text and not legacy.mirrors and not legacy.configs_tls:
        return _with_config_path(rt, name, plain)  # no config_path: a hosts.toml alone would be ignored (DD602)
    return None


def for_owner(fix: Fix, rt: Any, directory: str) -> Fix:
    """`fix` as it must be for runtime `rt`: when rt's directories are in a user's home, the fix writes nothing
    that resolves outside that home (a folder linked to /etc/containerd/certs.d is refused, in the plan and
    again when applying), and the directories and files it creates are given to that user afterwards, one by
    one without following any link (fixes/apply.py; never a `chown -R` through a link)."""
    owner = getattr(rt, "owner", None)
    if not owner:
        return fix
    home = getattr(rt, "home", None) or os.path.dirname(directory)
    return _given_to(fix, (owner, home))


def _given_to(fix: Fix, owner: tuple[str, str]) -> Fix:
    """A fix that writes into a user's home (rootless containerd, nerdctl), as root: confined to that home,
    and what it creates given back to that user so it stays theirs to edit."""
    user, home = owner
    note = (f"writes only inside {home} (refused if a link leads out of it); the folders and files it creates "
            f"are given to {user}")
    return Fix(fix.summary, fix.operations, (*fix.warnings, note),
               tuple(_given_to(a, owner) for a in fix.alternatives), fix.trust, owner)


def _with_config_path(rt: Any, name: str, plain: bool) -> Fix:
    """A CRI without config_path: config_path, plus the hosts.toml unless the one already there would do."""
    from dockerdoctor.runtimes.hosts_toml import HostsDirRuntime

    existing = None
    if rt.listdir is not None:
        with_dir = HostsDirRuntime(rt.name, rt.display, (CONTAINERD_CERTS_D,), rt.listdir, rt.read, rt.version)
        eps = [e for e in with_dir.resolve(probe_ref(name)).endpoints if e.host == name]
        if trusts(eps, plain):
            return recipes.add_config_path_fix(rt.legacy, rt.legacy.text, CONTAINERD_CERTS_D)
        match = with_dir.host_dir(name)
        if match is not None and match.hosts_toml is not None and not match.is_default and not match.hosts_toml.error:
            existing = match.hosts_toml.text
    return recipes.with_config_path(rt.legacy, CONTAINERD_CERTS_D, name, plain, existing)


def config_path_fix(cfg: Any, root: str, cri_roots: tuple[str, ...]) -> Fix | None:
    """DD602's fix: config_path for a CRI that reads no directory and has no legacy tables that would clash."""
    if cfg is None or not cfg.exists or cri_roots or cfg.mirrors or cfg.configs_tls or cfg.text is None:
        return None
    return recipes.add_config_path_fix(cfg, cfg.text, root)
