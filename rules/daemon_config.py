"""Daemon configuration: does the daemon trust the registry, and what do its files say (DD101-DD105)?
daemon.json's own validity (DD106) is in daemon_json.py, whether the configuration takes effect
(DD107-DD110) in daemon_unit.py."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from dockerdoctor.engine import finding, rule
from dockerdoctor.errors import Skip
from dockerdoctor.facts.daemon import (
    ConfigValue,
    DaemonJson,
    EffectiveConfig,
    EnvFileInfo,
    check_insecure_entry,
    trusted_as_insecure,
)
from dockerdoctor.facts.dockerd_cli import (
    RHEL_FORK_FLAGS,
    ParsedCommandLine,
    json_key,
    parse_dockerd_argv,
)
from dockerdoctor.facts.host import CertsDir, Journal, TargetRegistry
from dockerdoctor.facts.systemd import EnvAssignment, ExecLine, ExpandedCommand, UnitModel, split_command_line
from dockerdoctor.fixes.recipes import (
    exec_dropin_ops,
    trust_fix,
)
from dockerdoctor.fixes.recipes.daemon import expand_var_fix, flag_to_file_fix, move_insecure_fix, split_insecure_fix
from dockerdoctor.model import (
    Evidence,
    Finding,
    Fix,
    Severity,
)
from dockerdoctor.net import HostPort
from dockerdoctor.probe.report import EndpointProbes, EndpointReport
from dockerdoctor.safetext import short

# Variables of the stock env files that carry dockerd options.
OPTION_VARS = ("OPTIONS", "DOCKER_OPTS", "INSECURE_REGISTRY", "ADD_REGISTRY", "BLOCK_REGISTRY",
               "DOCKER_STORAGE_OPTIONS", "DOCKER_NETWORK_OPTIONS", "OTHER_ARGS", "REGISTRIES")

PLAIN_HTTP = re.compile(r"server gave HTTP response to HTTPS client|tls: oversized record received|"
                        r"first record does not look like a TLS handshake|/v1/_ping: EOF")
UNKNOWN_CA = re.compile(r"x509: certificate signed by unknown authority")


def _option_words(value: str) -> list[str]:
    return [w for w in split_command_line(value) if w.startswith("-")]


# ============================================================================ DD101


@rule("DD101", "registry-not-trusted", category="daemon", severity=Severity.ERROR,
      title="The daemon does not trust the registry")
def registry_not_trusted(target_registries: list[TargetRegistry], effective_config: EffectiveConfig,
                         endpoint_probes: EndpointProbes | None = None, docker_journal: Journal | None = None,
                         certs_d: dict[str, CertsDir] | None = None) -> Iterator[Finding]:
    """The registry speaks plain HTTP, or TLS with a certificate the daemon does not trust, and
    the effective configuration neither lists it as insecure nor holds its CA.

    Why it happens: dockerd talks HTTPS to every registry outside 127.0.0.0/8 and verifies the
    certificate against the system store plus /etc/docker/certs.d/HOST:PORT/*.crt. A registry
    started the quick way (`docker run -p 5000:5000 registry:2`) speaks plain HTTP, so every
    other host sees `http: server gave HTTP response to HTTPS client` (docker 1.x printed
    `Get https://HOST:PORT/v1/_ping: EOF`).

    How to fix: preferred, serve the registry over TLS and install its CA as
    /etc/docker/certs.d/HOST:PORT/ca.crt on each client (read on every push; no restart). The
    named alternative is insecure-registries in daemon.json (or wherever this daemon already takes
    them), applied with a reload (SIGHUP); it weakens the host (CIS Docker Benchmark 2.4).

    Example:
        $ docker push 10.0.0.5:5000/app:1
        Get "https://10.0.0.5:5000/v2/": http: server gave HTTP response to HTTPS client
        $ dockerdoctor check --registry 10.0.0.5:5000
    """
    if not target_registries:
        raise Skip("no registry to check: name one with --registry HOST:PORT")
    cfg = effective_config
    values = [v.value for v in cfg.insecure_planned] + [v.value for v in (cfg.insecure_running or [])]
    unknown: list[str] = []
    for t in target_registries:
        addr = t.address
        name = str(addr)
        plain, evidence = _untrusted_scheme(name, (endpoint_probes or {}).get(name), docker_journal)
        if plain is None:
            if not trusted_as_insecure(addr, values):  # trusted whatever it speaks; else: not judged
                unknown.append(name)
            continue
        if trusted_as_insecure(addr, values):
            continue
        if plain is False and certs_d and name in certs_d and any(f.endswith(".crt") for f in certs_d[name].files):
            continue  # a CA is installed; whether it is the right one is an endpoint question (DD204)
        yield _not_trusted(addr, cfg, values, plain, evidence)
    if unknown and len(unknown) == len(target_registries):
        raise Skip(f"{', '.join(unknown)}: not probed and no docker journal line names it, so whether it speaks "
                   "plain HTTP or TLS is unknown (see DD2xx)")


def _not_trusted(addr: HostPort, cfg: EffectiveConfig, values: list[str], plain: bool,
                 evidence: list[Evidence]) -> Finding:
    name = str(addr)
    where = cfg.daemon_json.path if cfg.daemon_json.exists else "no daemon.json"
    listed = ", ".join(sorted(set(values))) or "none"
    evidence.append(Evidence("effective configuration",
                             f"insecure-registries: {listed} ({where}); no certs.d/{name}/ca.crt"))
    what = "speaks plain HTTP" if plain else "uses a certificate from an unknown CA"
    return finding(
        "DD101", f"{name} is not trusted by the daemon",
        f"{name} {what}, and the daemon neither lists it in insecure-registries nor has its CA "
        f"in /etc/docker/certs.d/{name}/ca.crt, so every push and pull fails.",
        evidence=evidence, fix=trust_fix(addr, cfg, bool(plain)),
        params={"registry": name, "host": addr.host, "port": addr.port, "plain_http": bool(plain)},
    )


def _untrusted_scheme(name: str, probe: EndpointReport | None, docker_journal: Journal | None
                      ) -> tuple[bool | None, list[Evidence]]:
    """(plain HTTP?, evidence): True for plain HTTP, False for a certificate from an unknown CA, None when
    neither the probe nor the docker journal shows either."""
    if probe is not None:
        if probe.scheme == "http":
            return True, [Evidence(f"probe {name}", "answers plain HTTP to a TLS ClientHello")]
        if probe.scheme == "https" and probe.tls_error == "unknown-authority":
            return False, [Evidence(f"probe {name}", f"TLS: {probe.tls_detail}")]
    if docker_journal is not None:
        for plain, pattern in ((True, PLAIN_HTTP), (False, UNKNOWN_CA)):
            for lineno, line in reversed(docker_journal.grep(pattern)):
                if name in line:
                    return plain, [docker_journal.evidence(short(line, 300), lineno)]
    return None, []


# ============================================================================ DD102


@rule("DD102", "env-file-not-loaded", category="daemon", severity=Severity.ERROR,
      title="Options in an environment file are ignored",
      validates_config=True, repair_order=5)
def env_file_not_loaded(env_files: dict[str, EnvFileInfo], docker_unit: UnitModel,
                        daemon_json: DaemonJson | None = None) -> Iterator[Finding]:
    """Options sit in /etc/sysconfig/docker or /etc/default/docker, but docker.service loads no
    such EnvironmentFile, so dockerd never sees them.

    Why it happens: the distribution packages (CentOS/RHEL `docker`, Debian `docker.io`) ship a
    unit that reads these files. docker-ce, and docker installed from a tarball or script, ship a
    unit without EnvironmentFile=; old guides still say "edit /etc/sysconfig/docker".

    How to fix: move the options into /etc/docker/daemon.json (insecure-registries becomes a
    JSON list) and reload; or add a drop-in that loads the file and expands the variable.

    Example:
        /etc/sysconfig/docker:4  INSECURE_REGISTRY='--insecure-registry 10.0.0.5:5000'
        /usr/lib/systemd/system/docker.service has no EnvironmentFile=
    """
    for path, info in env_files.items():
        if info.loaded or path.startswith("/run/containers"):
            continue
        for a in info.parsed.assignments:
            words = _option_words(a.value)
            if not words or (a.name not in OPTION_VARS and not a.name.endswith("_OPTS")):
                continue
            parsed = parse_dockerd_argv(["dockerd", *split_command_line(a.value)])
            insecure = [f.value for f in parsed.values("insecure-registry") if f.value]
            evidence = [Evidence(path, f"{a.name}={a.value}", a.line),
                        Evidence(docker_unit.fragment or "docker.service",
                                 "EnvironmentFile: " + (", ".join(r.path for r in docker_unit.environment_files)
                                                        or "none"))]
            message = (f"{a.name} is set in {path}:{a.line}, but docker.service ({docker_unit.fragment}) loads no "
                       f"EnvironmentFile={path}, so dockerd never gets {short(' '.join(words), 80)}.")
            fix = _move_options_fix(path, a.name, parsed, insecure,
                                    daemon_json.path if daemon_json else "/etc/docker/daemon.json")
            yield finding(
                "DD102", f"{a.name} in {path} is never read", message,
                severity=Severity.ERROR if insecure else Severity.WARNING,
                evidence=evidence, fix=fix, params={"file": path, "variable": a.name},
            )


def _move_options_fix(path: str, variable: str, parsed: ParsedCommandLine, insecure: list[str], dj_path: str) -> Fix:
    if insecure and not [f for f in parsed.flags + parsed.unknown if f.name != "insecure-registry"]:
        # Move: the registries into daemon.json, the variable emptied so nothing is set twice.
        return move_insecure_fix(path, variable, dj_path, insecure)
    # Loading a distribution's old options into another engine can stop it from starting
    # (--signature-verification and --add-registry exist only in Red Hat's fork): advice only.
    fork_only = sorted({f.name for f in parsed.flags + parsed.unknown if f.name in RHEL_FORK_FLAGS})
    drop = (f"; {', '.join('--' + n for n in fork_only)} existed only in Red Hat's docker: drop "
            f"{'it' if len(fork_only) == 1 else 'them'}") if fork_only else ""
    return Fix(f"Move the options you still want from {path} into {dj_path} (daemon.json keys), then "
               f"empty {variable}; they were never in effect{drop}")


# ============================================================================ DD103


@rule("DD103", "env-var-not-used", category="daemon", severity=Severity.ERROR,
      title="A loaded variable never reaches dockerd's command line",
      validates_config=True, repair_order=4)
def env_var_not_used(env_files: dict[str, EnvFileInfo], docker_unit: UnitModel,
                     planned_command: ExpandedCommand) -> Iterator[Finding]:
    """The unit loads the EnvironmentFile, but ExecStart does not expand the variable that holds
    the option, or expands it as `${VAR}`, which systemd passes as ONE argument.

    Why it happens: a drop-in or a newer package replaced ExecStart and dropped `$INSECURE_REGISTRY`
    (or `$OPTIONS`, `$DOCKER_OPTS`). With `${VAR}`, "--insecure-registry host:port" reaches
    dockerd as one word and it fails with `unknown flag: --insecure-registry host:port`.

    How to fix: expand the variable as a separate word `$VAR` in ExecStart (a drop-in with
    `ExecStart=` then the full line), daemon-reload and restart; or move the option to daemon.json.

    Example:
        /etc/sysconfig/docker:12  INSECURE_REGISTRY='--insecure-registry 10.0.0.5:5000'
        /etc/systemd/system/docker.service.d/10-exec.conf:3  ExecStart=/usr/bin/dockerd-current $OPTIONS
    """
    exec_line = docker_unit.exec_start[-1] if docker_unit.exec_start else None
    if exec_line is None:
        raise Skip("docker.service has no ExecStart")
    for ref in docker_unit.environment_files:
        info = env_files.get(ref.path)
        if info is None:
            continue
        for a in info.parsed.as_dict().values():
            words = _option_words(a.value)
            if not words:
                continue
            braced = planned_command.referenced.get(a.name)
            if braced is None:
                if a.name in OPTION_VARS or a.name.endswith(("_OPTS", "_OPTIONS", "_REGISTRY")):
                    yield _never_expanded(a, exec_line, words, docker_unit)
            elif braced and len(split_command_line(a.value)) > 1:
                yield _braced(a, exec_line)


def _never_expanded(a: EnvAssignment, exec_line: ExecLine, words: list[str], unit: UnitModel) -> Finding:
    return finding(
        "DD103", f"${a.name} is loaded but never used",
        f"{a.name} is set in {a.path}:{a.line}, but ExecStart in {exec_line.path}:{exec_line.line} "
        f"never expands ${a.name}, so dockerd never gets {short(' '.join(words), 80)}.",
        evidence=[a.evidence(), exec_line.evidence()],
        fix=expand_var_fix(unit, a.name),
        params={"file": a.path, "variable": a.name},
    )


def _braced(a: EnvAssignment, exec_line: ExecLine) -> Finding:
    """${VAR} in ExecStart: systemd passes the whole value as one argument."""
    command = exec_line.command.replace(f"${{{a.name}}}", f"${a.name}")
    return finding(
        "DD103", f"${{{a.name}}} reaches dockerd as one word",
        f"ExecStart in {exec_line.path}:{exec_line.line} uses ${{{a.name}}}, which systemd passes as a "
        f"single argument \"{short(a.value, 60)}\"; dockerd fails with 'unknown flag'. Use ${a.name}.",
        evidence=[a.evidence(), exec_line.evidence()],
        fix=Fix(f"Use ${a.name} (word-splitting) instead of ${{{a.name}}}",
                exec_dropin_ops("20-expand-vars.conf", command)),
        params={"file": a.path, "variable": a.name},
    )


# ============================================================================ DD104


@rule("DD104", "flag-and-file-conflict", category="daemon", severity=Severity.ERROR,
      title="The same option is set as a flag and in daemon.json",
      validates_config=True, repair_order=3)
def flag_and_file_conflict(effective_config: EffectiveConfig,
                           docker_journal: Journal | None = None) -> Iterator[Finding]:
    """A directive is given both on dockerd's command line and in daemon.json, so dockerd refuses
    to start: `the following directives are specified both as a flag and in the configuration
    file: insecure-registries: (from flag: [...], from file: [...])`. Even equal values conflict.

    Why it happens: an old guide's `--insecure-registry` in /etc/sysconfig/docker or a unit,
    plus a newer guide's daemon.json. On Debian and Ubuntu the unit passes `-H fd://`, so a
    daemon.json `"hosts"` key always conflicts.

    How to fix: keep each option in one place. The fix merges the flag's values into daemon.json
    and removes the flag (from the env file, or with a drop-in that resets ExecStart).

    Example:
        dockerd: unable to configure the Docker daemon with file /etc/docker/daemon.json: the following
        directives are specified both as a flag and in the configuration file: hosts: (from flag: [fd://],
        from file: [unix:///var/run/docker.sock])
    """
    cfg = effective_config
    dj = cfg.daemon_json
    if not dj.data:
        raise Skip("daemon.json is absent or does not parse")
    argv = cfg.planned
    if argv is None:
        raise Skip("dockerd's command line is unknown")
    refused = _refused_line(docker_journal)
    seen: set[str] = set()
    for use in argv.flags:
        key = json_key(use.name)
        if key not in dj.data or key in seen:
            continue
        seen.add(key)
        uses = argv.values(use.name)
        origin = cfg.expanded.origins[use.index] if cfg.expanded and use.index < len(cfg.expanded.origins) else None
        ev = ([origin.evidence(f"flag {use.raw} ({origin.describe()})")] if origin is not None else []) \
            + [dj.evidence(f'"{key}": {json.dumps(dj.data[key])}', dj.line_of(key))] + refused
        yield finding(
            "DD104", f"{key} is set as a flag and in {dj.path}",
            f"--{use.name} is on dockerd's command line and \"{key}\" is in {dj.path}; dockerd refuses to "
            f"start when a directive is in both (even with equal values).",
            evidence=ev,
            fix=flag_to_file_fix(cfg, key, use.name, uses, origin),
            params={"key": key, "flag": use.name},
        )


def _no_port(v: ConfigValue, host: str, targets: list[HostPort]) -> Finding:
    """An insecure-registries entry without a port covers HOST:443 only."""
    needed = [t for t in targets if t.host == host.lower() and t.port not in (None, 443)]
    return finding(
        "DD105", f"insecure registry {v.value!r} has no port",
        f"{v.value!r} ({v.where()}) covers only {host}:443; "
        + (f"pushes to {', '.join(map(str, needed))} still fail." if needed else
           "a registry on another port is still treated as secure."),
        severity=Severity.ERROR if needed else Severity.WARNING,
        evidence=[v.evidence()],
        fix=Fix("Add the port: " + ", ".join(str(t) for t in needed) if needed else
                f"Write {host}:PORT with the registry's port"),
        params={"value": v.value},
    )


def _refused_line(journal: Journal | None) -> list[Evidence]:
    """dockerd's last "specified both as a flag and in the configuration file" line in the journal."""
    hits = journal.grep(re.compile(r"specified both as a flag and in the configuration file")) if journal else []
    return [journal.evidence(short(hits[-1][1], 300), hits[-1][0])] if journal and hits else []


# ============================================================================ DD105


@rule("DD105", "insecure-registry-malformed", category="daemon", severity=Severity.ERROR,
      title="An insecure-registries value is malformed",
      validates_config=True, repair_order=2)
def insecure_registry_malformed(effective_config: EffectiveConfig,
                                target_registries: list[TargetRegistry] | None = None) -> Iterator[Finding]:
    """An insecure-registries value that dockerd rejects or silently ignores.

    Why it happens: `--insecure-registry=[a:5000,b:5000]` (a bracket list, from an old guide),
    `a:5000,b:5000` or `"a:5000 b:5000"` in one value, literal quotes, or a path: dockerd 20.10
    refuses to start with `insecure registry ... is not valid: invalid host`. A host without its
    port (`10.0.0.5`) is accepted but only covers port 443, so pushes to 10.0.0.5:5000 still fail.
    A scheme (`http://`) is stripped with a warning and works.

    How to fix: one host:port per value: repeat the flag (`--insecure-registry a:5000
    --insecure-registry b:5000`) or list each in daemon.json's "insecure-registries".

    Example:
        dockerd: failed to start daemon: insecure registry [10.0.0.5:5000,10.0.0.6:5000] is not valid:
        invalid host "[10.0.0.5:5000,10.0.0.6:5000]"
    """
    targets = [t.address for t in (target_registries or [])]
    for v in effective_config.insecure_planned:
        chk = check_insecure_entry(v.value)
        if chk.fatal:
            parts = [p for p in re.split(r"[\[\],; '\"]+", v.value) if p]
            yield finding(
                "DD105", f"insecure registry {v.value!r} is not valid",
                f"{v.value!r} ({v.where()}) is {chk.problem}.", evidence=[v.evidence()],
                fix=split_insecure_fix(effective_config.daemon_json if v.via == "daemon.json" else None,
                                       v.value, parts),
                params={"value": v.value},
            )
        elif chk.normalized and not chk.is_cidr and ":" not in chk.normalized.strip("[]").split("]")[-1]:
            yield _no_port(v, chk.normalized, targets)
        elif chk.problem:
            yield finding(
                "DD105", f"insecure registry {v.value!r} has a scheme",
                f"{v.value!r} ({v.where()}) {chk.problem}; write {chk.normalized}.",
                severity=Severity.INFO, evidence=[v.evidence()], params={"value": v.value},
            )
