"""Fix recipes for containerd's registry configuration (DD602-DD607): data only.

Each recipe returns a Fix whose operations are the existing ones (ReplaceFileContent with the new
bytes, RunCommand, ServiceAction), so `fix` shows them and `fix --apply` runs them through the
transaction in fixes/apply.py (backup, atomic write, verify, rollback). The new contents are computed
here from the current text the facts read: hosts.toml and config.toml edits go through tomlkit and
registries.yaml edits through ruamel.yaml, both imported only when such a fix is built, so they keep
comments, order and quoting.

hosts.toml is read on every pull: writing it needs no restart. config.toml (config_path, the legacy
tables) is read when containerd starts: a restart of containerd. registries.yaml is rendered by k3s
when it starts: a restart of k3s.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from dockerdoctor.fixes.registry_side import serve_tls_command
from dockerdoctor.model import Fix, ReplaceFileContent, RunCommand, ServiceAction
from dockerdoctor.runtimes.containerd_config import ContainerdConfig
from dockerdoctor.runtimes.toml_edits import (
    UneditableToml,
    add_config_path,
    edit_hosts_toml,
    hosts_toml_text,
    remove_legacy_registry,
)

HTTP_COST = ("An http:// host entry sends every pull in clear text: anyone on the path can read and alter "
             "images. Prefer TLS on the registry with its CA in the hosts.toml (`ca = ...`).")
SKIP_VERIFY_COST = ("skip_verify accepts any certificate for this host: a man in the middle is not noticed. "
                    "Prefer installing the registry's CA (`ca = ...`).")
NO_RESTART = "hosts.toml is read on every pull: no containerd restart"
CONTAINERD_UNIT = "containerd.service"
K3S_UNIT = "k3s.service"


def _repair_first(build: Callable[..., Fix]) -> Callable[..., Fix]:
    """A fix that edits a TOML file tomlkit cannot take (truncated, binary, odd shape) becomes advice:
    repair the file first. A rule that builds it never crashes on the file."""

    @functools.wraps(build)
    def wrapper(*args: Any, **kwargs: Any) -> Fix:
        try:
            return build(*args, **kwargs)
        except UneditableToml as exc:
            return Fix(f"Repair the TOML file first ({exc}; DD601 names the file and line), then run "
                       "dockerdoctor fix again")

    return wrapper


def _hosts_op(path: str, current: str | None, host: str, *, scheme: str, ca: str | None = None,
              skip_verify: bool = False, note: str = "") -> ReplaceFileContent:
    if current is None or not current.strip():
        text = hosts_toml_text(host, scheme=scheme, ca=ca, skip_verify=skip_verify, note=note)
    else:
        text = edit_hosts_toml(current, host, scheme=scheme, ca=ca, skip_verify=skip_verify)
    return ReplaceFileContent(path, text, 0o644)


def hosts_path(root: str, host: str) -> str:
    return os.path.join(root, host, "hosts.toml")


@_repair_first
def trust_http(root: str, host: str, current: str | None, runtime: str) -> Fix:
    """A plain-HTTP registry: the http:// host entry, with the TLS fix as the alternative."""
    path = hosts_path(root, host)
    op = _hosts_op(path, current, host, scheme="http", note=f"{runtime}: {host} speaks plain HTTP (dockerdoctor)")
    tls = trust_ca(root, host, current, runtime, plain=True)
    return Fix(f"Write {path} with [host.\"http://{host}\"] ({NO_RESTART})", (op,), warnings=(HTTP_COST,),
               alternatives=(tls,))


@_repair_first
def trust_ca(root: str, host: str, current: str | None, runtime: str, *, plain: bool = False) -> Fix:
    """TLS with the registry's CA next to the hosts.toml; skip_verify for this one host as the alternative."""
    path = hosts_path(root, host)
    ca = os.path.join(root, host, "ca.crt")
    ops: list = []
    if plain:
        ops.append(serve_tls_command(host, "on the registry host: serve TLS (or put TLS on the existing registry)"))
    ops.append(RunCommand(("install", "-D", "-m", "0644", "ca.crt", ca), "on this host: install the registry's CA"))
    ops.append(_hosts_op(path, current, host, scheme="https", ca=ca, note=f"{runtime}: {host} over TLS (dockerdoctor)"))
    alts: tuple[Fix, ...] = ()
    if not plain:
        alts = (Fix(f"Write {path} with skip_verify = true for {host} only ({NO_RESTART})",
                    (_hosts_op(path, current, host, scheme="https", skip_verify=True),),
                    warnings=(SKIP_VERIFY_COST,)),)
    return Fix(f"Use TLS: the registry's CA in {ca}, named by {path} ({NO_RESTART})", tuple(ops), alternatives=alts)


@_repair_first
def add_config_path_fix(cfg: ContainerdConfig, current: str, directory: str = "/etc/containerd/certs.d") -> Fix:
    new = add_config_path(current, cfg, directory)
    return Fix(f"Set config_path = \"{directory}\" in {cfg.path}, then restart containerd",
               (ReplaceFileContent(cfg.path, new, 0o644), ServiceAction("restart", CONTAINERD_UNIT)),
               warnings=("config.toml is read only when containerd starts: a restart is needed (running "
                         "containers keep running; kubelet sees the CRI go away for a moment). Later "
                         "hosts.toml changes need none.",))


@_repair_first
def move_legacy_fix(cfg: ContainerdConfig, current: str, directory: str | None = None) -> Fix:
    """Legacy mirrors/configs.tls -> one hosts.toml per host in the config_path directory."""
    root = directory or (cfg.config_path[0] if cfg.config_path else "/etc/containerd/certs.d")
    ops: list = []
    hosts = sorted(set(cfg.mirrors) | set(cfg.configs_tls))
    for host in hosts:
        lines = [f"# moved from the legacy registry section of {cfg.path} by dockerdoctor"]
        server = "https://registry-1.docker.io" if host == "docker.io" else f"https://{host}"
        lines.append(f'server = "{server}"')
        tls = cfg.configs_tls.get(host, {})
        for ep in cfg.mirrors.get(host, []):
            url = ep if "://" in ep else f"https://{ep}"
            lines += ["", f'[host."{url.rstrip("/")}"]', '  capabilities = ["pull", "resolve"]']
            ep_tls = cfg.configs_tls.get(url.split("://", 1)[1].split("/", 1)[0], {})
            lines += _tls_lines(ep_tls)
        if tls and not cfg.mirrors.get(host):
            lines += ["", f'[host."{server}"]', '  capabilities = ["pull", "resolve", "push"]'] + _tls_lines(tls)
        name = "_default" if host == "*" else host
        ops.append(ReplaceFileContent(os.path.join(root, name, "hosts.toml"), "\n".join(lines) + "\n", 0o644))
    new = remove_legacy_registry(current, cfg)
    if not cfg.config_path:
        new = add_config_path(new, cfg, root)
    ops.append(ReplaceFileContent(cfg.path, new, 0o644))
    ops.append(ServiceAction("restart", CONTAINERD_UNIT))
    return Fix(f"Move the legacy mirrors/configs.tls of {cfg.path} into hosts.toml under {root}, then restart "
               "containerd", tuple(ops),
               warnings=("containerd must be restarted to load the CRI plugin with the new config.toml.",))


def _tls_lines(tls: dict) -> list[str]:
    out = []
    if tls.get("ca_file"):
        out.append(f'  ca = "{tls["ca_file"]}"')
    if tls.get("cert_file") and tls.get("key_file"):
        out.append(f'  client = [["{tls["cert_file"]}", "{tls["key_file"]}"]]')
    if tls.get("insecure_skip_verify"):
        out.append("  skip_verify = true")
    return out


def copy_to_right_name(src: str, text: str, dst: str) -> Fix:
    return Fix(f"Put the hosts.toml where containerd looks: {dst} ({NO_RESTART})",
               (ReplaceFileContent(dst, text, 0o644),),
               warnings=(f"Then remove {os.path.dirname(src)} (and move any certificate files it holds): "
                         "a second copy is easy to edit by mistake.",))


def registries_yaml_fix(path: str, current: str) -> Fix | None:
    """Lift `configs:` out from under `mirrors:` (k3s-io/k3s#10135), keeping the rest (ruamel.yaml)."""
    import io

    from ruamel.yaml import YAML

    y = YAML()
    y.preserve_quotes = True
    try:
        doc = y.load(current)
    except Exception:
        return None
    mirrors: Any = doc.get("mirrors") if hasattr(doc, "get") else None
    if mirrors is None or not hasattr(mirrors, "get") or "configs" not in mirrors:
        return None
    configs = mirrors.pop("configs")
    if "configs" in doc and hasattr(doc["configs"], "update"):
        doc["configs"].update(configs)
    else:
        doc["configs"] = configs
    buf = io.StringIO()
    y.dump(doc, buf)
    return Fix(f"Move `configs:` to the top level of {path}, then restart k3s",
               (ReplaceFileContent(path, buf.getvalue(), 0o600), ServiceAction("restart", K3S_UNIT)),
               warnings=("k3s renders registries.yaml into containerd's hosts.toml when it starts: restart k3s "
                         "(k3s-agent on agents) on every node that has the file.",))


@_repair_first
def with_config_path(cfg: ContainerdConfig, root: str, host: str, plain: bool, current: str | None = None) -> Fix:
    """The CRI reads no hosts.toml yet: the trust fix for `host` (editing the hosts.toml already there, if
    any) plus config_path, then a containerd restart."""
    trust = trust_http(root, host, current, "containerd CRI") if plain else \
        trust_ca(root, host, current, "containerd CRI")
    cp = add_config_path_fix(cfg, cfg.text or "", root)

    def combined(f: Fix) -> Fix:
        return Fix(f"{f.summary}; and set config_path = \"{root}\" in {cfg.path}, then restart containerd",
                   f.operations + cp.operations, f.warnings + cp.warnings,
                   tuple(combined(a) for a in f.alternatives))

    return combined(trust)


def k3s_trust(path: str, current: str | None, host: str, plain: bool) -> Fix:
    """k3s: the registry's own entry in registries.yaml (an http:// endpoint for a plain-HTTP registry; for an
    unknown CA, configs.<host>.tls.ca_file with insecure_skip_verify as the alternative), then restart k3s."""
    import io

    from ruamel.yaml import YAML

    y = YAML()
    y.preserve_quotes = True
    doc = (y.load(current) if current and current.strip() else None) or {}

    def dump(d) -> str:
        buf = io.StringIO()
        y.dump(d, buf)
        return buf.getvalue()

    warn = ("k3s renders registries.yaml into containerd's hosts.toml when it starts: restart k3s (k3s-agent on "
            "agents) on every node that pulls from the registry.",)
    if plain:
        mirrors = doc.setdefault("mirrors", {})
        entry = mirrors.setdefault(host, {})
        eps = entry.setdefault("endpoint", [])
        url = f"http://{host}"
        if url not in eps:
            eps.insert(0, url)
        return Fix(f"Add endpoint {url} for {host} to {path}, then restart k3s",
                   (ReplaceFileContent(path, dump(doc), 0o600), ServiceAction("restart", K3S_UNIT)),
                   warnings=(HTTP_COST,) + warn)
    ca = f"/etc/rancher/k3s/certs/{host.replace(':', '_')}-ca.crt"
    tls = doc.setdefault("configs", {}).setdefault(host, {}).setdefault("tls", {})
    tls["ca_file"] = ca
    main = Fix(f"Trust the registry's CA for {host}: configs.{host}.tls.ca_file = {ca} in {path}, then restart k3s",
               (RunCommand(("install", "-D", "-m", "0644", "ca.crt", ca), "on this host: install the registry's CA"),
                ReplaceFileContent(path, dump(doc), 0o600), ServiceAction("restart", K3S_UNIT)), warnings=warn)
    del tls["ca_file"]
    tls["insecure_skip_verify"] = True
    alt = Fix(f"configs.{host}.tls.insecure_skip_verify = true in {path} for {host} only, then restart k3s",
              (ReplaceFileContent(path, dump(doc), 0o600), ServiceAction("restart", K3S_UNIT)),
              warnings=(SKIP_VERIFY_COST,) + warn)
    return Fix(main.summary, main.operations, main.warnings, (alt,))
