"""Helpers that rules share: evidence from provenance, and the fixes for trusting a registry."""

from __future__ import annotations

import re

from dockerdoctor.facts.daemon import ConfigValue, DaemonJson, EffectiveConfig
from dockerdoctor.facts.systemd import ArgOrigin
from dockerdoctor.model import (
    EnvFileSet,
    Evidence,
    Fix,
    JsonListAdd,
    RunCommand,
    ServiceAction,
)
from dockerdoctor.net import HostPort

CIS_WARNING = (
    "insecure-registries turns off TLS for this registry on this host: anyone on the path can read "
    "and alter images (CIS Docker Benchmark 2.4). Prefer TLS with the CA in certs.d."
)


def value_evidence(v: ConfigValue, text: str | None = None) -> Evidence:
    return Evidence(v.source, text if text is not None else (v.detail or f"{v.via}: {v.value}"), v.line)


def origin_evidence(origin: ArgOrigin, text: str) -> Evidence:
    if origin.var_path:
        return Evidence(origin.var_path, text, origin.var_line)
    return Evidence(origin.exec_path, text, origin.exec_line)


def tls_fix(target: HostPort, plain_http: bool) -> Fix:
    ca_path = f"/etc/docker/certs.d/{target}/ca.crt"
    ops: list = []
    if plain_http:
        ops.append(RunCommand(
            ("dockerdoctor", "serve-registry", "--port", str(target.port or 443), "--tls-self-signed", target.host),
            "on the registry host: serve TLS (or put TLS on the existing registry); it prints the CA to copy",
        ))
    ops.append(RunCommand(("install", "-D", "-m", "0644", "ca.crt", ca_path),
                          "on this host: trust the registry's CA; dockerd reads certs.d on every push, no restart"))
    return Fix(f"Use TLS: trust the registry's CA in {ca_path}", tuple(ops))


def insecure_fix(target: HostPort, cfg: EffectiveConfig | None) -> Fix:
    """Add the registry to insecure-registries in the one place the daemon reads it.

    If the daemon already gets insecure registries as flags, the entry goes next to them (a new
    daemon.json key would make dockerd refuse to start, DD104); otherwise into daemon.json.
    """
    flag_values = [v for v in (cfg.insecure_planned if cfg else []) if v.via == "flag"]
    if cfg is not None and flag_values and cfg.expanded is not None:
        var_origin = next(
            (o for o in cfg.expanded.origins if o.variable and o.var_path
             and any(v.source == o.var_path and v.line == o.var_line for v in flag_values)),
            None,
        )
        if var_origin is not None and var_origin.variable and var_origin.var_path:
            return Fix(
                f"Add {target} to insecure-registries in {var_origin.var_path} (where the others are), then restart",
                (
                    EnvFileSet(var_origin.var_path, var_origin.variable, f"--insecure-registry={target}", append=True),
                    ServiceAction("restart"),
                ),
                warnings=(CIS_WARNING, "A restart stops running containers unless live-restore is on."),
            )
    path = cfg.daemon_json.path if cfg else "/etc/docker/daemon.json"
    return Fix(
        f"Add {target} to insecure-registries in {path}, then reload dockerd (SIGHUP, no restart)",
        (JsonListAdd(path, "insecure-registries", str(target)), ServiceAction("reload")),
        warnings=(CIS_WARNING,),
    )


def trust_fix(target: HostPort, cfg: EffectiveConfig | None, plain_http: bool) -> Fix:
    tls = tls_fix(target, plain_http)
    return Fix(tls.summary, tls.operations, tls.warnings, alternatives=(insecure_fix(target, cfg),))


def json_evidence(dj: DaemonJson, key: str, text: str) -> Evidence:
    return Evidence(dj.path, text, dj.line_of(key))


_WS = re.compile(r"\s+")


def short(text: str, limit: int = 200) -> str:
    text = _WS.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"
