"""Daemon configuration: does the daemon trust the registry, and does each setting take effect?"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator

from dockerdoctor.engine import finding, rule
from dockerdoctor.errors import Skip
from dockerdoctor.facts.daemon import (
    DaemonJson,
    DockerdProcess,
    DockerInfo,
    EffectiveConfig,
    EnvFileInfo,
    check_insecure_entry,
    trusted_as_insecure,
)
from dockerdoctor.facts.daemon_json_schema import ADDED_IN, DAEMON_JSON_KEYS, REMOVED_JSON_KEYS
from dockerdoctor.facts.dockerd_cli import (
    REMOVED_FLAGS,
    RHEL_FORK_FLAGS,
    flag_table,
    json_key,
    parse_dockerd_argv,
)
from dockerdoctor.facts.host import CertsDir, Journal, TargetRegistry
from dockerdoctor.facts.systemd import ExpandedCommand, SystemdUnitState, UnitModel, split_command_line
from dockerdoctor.fixes.recipes import (
    CIS_WARNING,
    DROPIN_DIR,
    RESTART_WARNING,
    dropin_text,
    exec_dropin,
    exec_dropin_ops,
    trust_fix,
)
from dockerdoctor.model import (
    EnvFileSet,
    Evidence,
    Finding,
    Fix,
    JsonListAdd,
    JsonRemoveKey,
    JsonRenameKey,
    JsonSetKey,
    ReplaceFileContent,
    ServiceAction,
    Severity,
)
from dockerdoctor.net import no_proxy_match
from dockerdoctor.probe.report import EndpointProbes
from dockerdoctor.rules_support import json_evidence, origin_evidence, short, value_evidence
from dockerdoctor.safetext import loads_json

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
    for t in target_registries:
        addr = t.address
        name = str(addr)
        evidence: list[Evidence] = []
        plain: bool | None = None
        probe = (endpoint_probes or {}).get(name)
        if probe is not None:
            if probe.scheme == "http":
                plain = True
                evidence.append(Evidence(f"probe {name}", "answers plain HTTP to a TLS ClientHello"))
            elif probe.scheme == "https" and probe.tls_error == "unknown-authority":
                plain = False
                evidence.append(Evidence(f"probe {name}", f"TLS: {probe.tls_detail}"))
        if plain is None and docker_journal is not None:
            for lineno, line in reversed(docker_journal.grep(PLAIN_HTTP)):
                if name in line:
                    plain = True
                    evidence.append(Evidence(docker_journal.source, short(line, 300), lineno))
                    break
            else:
                for lineno, line in reversed(docker_journal.grep(UNKNOWN_CA)):
                    if name in line:
                        plain = False
                        evidence.append(Evidence(docker_journal.source, short(line, 300), lineno))
                        break
        if plain is None:
            continue
        if trusted_as_insecure(addr, values):
            continue
        if plain is False and certs_d and name in certs_d and any(f.endswith(".crt") for f in certs_d[name].files):
            continue  # a CA is installed; whether it is the right one is an endpoint question (DD204)
        where = cfg.daemon_json.path if cfg.daemon_json.exists else "no daemon.json"
        listed = ", ".join(sorted(set(values))) or "none"
        evidence.append(Evidence("effective configuration",
                                 f"insecure-registries: {listed} ({where}); no certs.d/{name}/ca.crt"))
        what = "speaks plain HTTP" if plain else "uses a certificate from an unknown CA"
        yield finding(
            "DD101", f"{name} is not trusted by the daemon",
            f"{name} {what}, and the daemon neither lists it in insecure-registries nor has its CA "
            f"in /etc/docker/certs.d/{name}/ca.crt, so every push and pull fails.",
            evidence=evidence, fix=trust_fix(addr, cfg, bool(plain)),
            params={"registry": name, "host": addr.host, "port": addr.port, "plain_http": bool(plain)},
        )


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
            others = [f.raw for f in parsed.flags + parsed.unknown if f.name != "insecure-registry"]
            dj_path = daemon_json.path if daemon_json else "/etc/docker/daemon.json"
            evidence = [Evidence(path, f"{a.name}={a.value}", a.line),
                        Evidence(docker_unit.fragment or "docker.service",
                                 "EnvironmentFile: " + (", ".join(r.path for r in docker_unit.environment_files)
                                                        or "none"))]
            message = (f"{a.name} is set in {path}:{a.line}, but docker.service ({docker_unit.fragment}) loads no "
                       f"EnvironmentFile={path}, so dockerd never gets {short(' '.join(words), 80)}.")
            if insecure and not others:
                # Move: the registries into daemon.json, the variable emptied so nothing is set twice.
                fix = Fix(f"Move the insecure registries from {path} into {dj_path} and reload dockerd",
                          (*[JsonListAdd(dj_path, "insecure-registries", v) for v in insecure],
                           EnvFileSet(path, a.name, ""), ServiceAction("reload")),
                          warnings=(CIS_WARNING,))
            else:
                # Loading a distribution's old options into another engine can stop it from starting
                # (--signature-verification and --add-registry exist only in Red Hat's fork): advice only.
                fork_only = sorted({f.name for f in parsed.flags + parsed.unknown if f.name in RHEL_FORK_FLAGS})
                drop = (f"; {', '.join('--' + n for n in fork_only)} existed only in Red Hat's docker: drop "
                        f"{'it' if len(fork_only) == 1 else 'them'}") if fork_only else ""
                fix = Fix(f"Move the options you still want from {path} into {dj_path} (daemon.json keys), then "
                          f"empty {a.name}; they were never in effect{drop}")
            yield finding(
                "DD102", f"{a.name} in {path} is never read", message,
                severity=Severity.ERROR if insecure else Severity.WARNING,
                evidence=evidence, fix=fix, params={"file": path, "variable": a.name},
            )


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
                if a.name not in OPTION_VARS and not a.name.endswith(("_OPTS", "_OPTIONS", "_REGISTRY")):
                    continue
                yield finding(
                    "DD103", f"${a.name} is loaded but never used",
                    f"{a.name} is set in {a.path}:{a.line}, but ExecStart in {exec_line.path}:{exec_line.line} "
                    f"never expands ${a.name}, so dockerd never gets {short(' '.join(words), 80)}.",
                    evidence=[Evidence(a.path, f"{a.name}={a.value}", a.line),
                              Evidence(exec_line.path, f"ExecStart={exec_line.command}", exec_line.line)],
                    fix=Fix(f"Expand ${a.name} in ExecStart with a drop-in, then daemon-reload and restart",
                            (ReplaceFileContent(f"{DROPIN_DIR}/20-expand-vars.conf",
                                                exec_dropin(docker_unit, [f"${a.name}"])),
                             ServiceAction("daemon-reload"), ServiceAction("restart")),
                            warnings=(RESTART_WARNING,)),
                    params={"file": a.path, "variable": a.name},
                )
            elif braced and len(split_command_line(a.value)) > 1:
                command = exec_line.command.replace(f"${{{a.name}}}", f"${a.name}")
                yield finding(
                    "DD103", f"${{{a.name}}} reaches dockerd as one word",
                    f"ExecStart in {exec_line.path}:{exec_line.line} uses ${{{a.name}}}, which systemd passes as a "
                    f"single argument \"{short(a.value, 60)}\"; dockerd fails with 'unknown flag'. Use ${a.name}.",
                    evidence=[Evidence(a.path, f"{a.name}={a.value}", a.line),
                              Evidence(exec_line.path, f"ExecStart={exec_line.command}", exec_line.line)],
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
    journal_line = None
    if docker_journal is not None:
        hits = docker_journal.grep(re.compile(r"specified both as a flag and in the configuration file"))
        if hits:
            journal_line = hits[-1]
    seen: set[str] = set()
    for use in argv.flags:
        key = json_key(use.name)
        if key not in dj.data or key in seen:
            continue
        seen.add(key)
        uses = argv.values(use.name)
        origin = cfg.expanded.origins[use.index] if cfg.expanded and use.index < len(cfg.expanded.origins) else None
        flag_vals = [u.value for u in uses]
        ev = [json_evidence(dj, key, f'"{key}": {json.dumps(dj.data[key])}')]
        if origin is not None:
            ev.insert(0, origin_evidence(origin, f"flag {use.raw} ({origin.describe()})"))
        if journal_line:
            ev.append(Evidence(docker_journal.source if docker_journal else "journal", short(journal_line[1], 300),
                               journal_line[0]))
        ops: list = []
        file_val = dj.data[key]
        if isinstance(file_val, list):
            for v in flag_vals:
                if v is not None and v not in file_val:
                    ops.append(JsonListAdd(dj.path, key, v))
        if origin is not None and origin.variable and origin.var_path:
            ops.append(EnvFileSet(origin.var_path, origin.variable,
                                  _remove_flag_words(cfg, origin.variable, use.name)))
            ops += [ServiceAction("restart")]
        else:
            drop = {u.index for u in uses} | {u.index + 1 for u in uses if " " in u.raw}
            exec_words = cfg.expanded.argv if cfg.expanded else []
            line = " ".join(w for i, w in enumerate(exec_words) if i not in drop)
            ops += exec_dropin_ops("10-no-conflict.conf", line)
        yield finding(
            "DD104", f"{key} is set as a flag and in {dj.path}",
            f"--{use.name} is on dockerd's command line and \"{key}\" is in {dj.path}; dockerd refuses to "
            f"start when a directive is in both (even with equal values).",
            evidence=ev,
            fix=Fix(f"Keep {key} only in {dj.path}", tuple(ops),
                    warnings=(RESTART_WARNING,)),
            params={"key": key, "flag": use.name},
        )


def _remove_flag_words(cfg: EffectiveConfig, variable: str, flag: str) -> str:
    """The variable's value with every use of --flag removed."""
    origin_values = [o for o in (cfg.expanded.origins if cfg.expanded else []) if o.variable == variable]
    if not origin_values or cfg.expanded is None:
        return ""
    words = [w for w, o in zip(cfg.expanded.argv, cfg.expanded.origins, strict=False) if o.variable == variable]
    out: list[str] = []
    skip = False
    for w in words:
        if skip:
            skip = False
            continue
        if w == f"--{flag}" or (flag == "host" and w == "-H"):
            skip = True
            continue
        if w.startswith(f"--{flag}="):
            continue
        out.append(w)
    return " ".join(out)


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
            if v.via == "daemon.json":
                dj = effective_config.daemon_json
                current = dj.data.get("insecure-registries", []) if dj.data else []
                new = [x for x in current if x != v.value] + [p for p in parts if p not in current]
                fix = Fix("List each registry as its own element",
                          (JsonSetKey(dj.path, "insecure-registries", new), ServiceAction("restart")))
            else:
                fix = Fix("Give one host:port per flag: " + " ".join(f"--insecure-registry={p}" for p in parts))
            yield finding(
                "DD105", f"insecure registry {v.value!r} is not valid",
                f"{v.value!r} ({v.where()}) is {chk.problem}.", evidence=[value_evidence(v)], fix=fix,
                params={"value": v.value},
            )
        elif chk.normalized and not chk.is_cidr and ":" not in chk.normalized.strip("[]").split("]")[-1]:
            host = chk.normalized
            needed = [t for t in targets if t.host == host.lower() and t.port not in (None, 443)]
            yield finding(
                "DD105", f"insecure registry {v.value!r} has no port",
                f"{v.value!r} ({v.where()}) covers only {host}:443; "
                + (f"pushes to {', '.join(map(str, needed))} still fail." if needed else
                   "a registry on another port is still treated as secure."),
                severity=Severity.ERROR if needed else Severity.WARNING,
                evidence=[value_evidence(v)],
                fix=Fix("Add the port: " + ", ".join(str(t) for t in needed) if needed else
                        f"Write {host}:PORT with the registry's port"),
                params={"value": v.value},
            )
        elif chk.problem:
            yield finding(
                "DD105", f"insecure registry {v.value!r} has a scheme",
                f"{v.value!r} ({v.where()}) {chk.problem}; write {chk.normalized}.",
                severity=Severity.INFO, evidence=[value_evidence(v)], params={"value": v.value},
            )


# ============================================================================ DD106


def _type_ok(kind: str, value: object) -> bool:
    if kind == "list":
        return isinstance(value, list) and all(isinstance(x, str) for x in value)
    if kind == "list-any":
        return isinstance(value, list)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "object":
        return isinstance(value, dict)
    return True


def repair_json(text: str) -> str | None:
    """Best-effort repair of the usual hand-edit mistakes: trailing commas and // comments."""
    fixed = re.sub(r"^\s*//.*$", "", text, flags=re.MULTILINE)
    fixed = re.sub(r",(\s*[}\]])", r"\1", fixed)
    try:
        data = loads_json(fixed)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return json.dumps(data, indent=2) + "\n"


@rule("DD106", "daemon-json-invalid", category="daemon", severity=Severity.ERROR,
      title="daemon.json is invalid",
      validates_config=True, repair_order=1)
def daemon_json_invalid(daemon_json: DaemonJson, engine_version: tuple[int, int, int] | None = None
                        ) -> Iterator[Finding]:
    """daemon.json does not parse, has an unknown or misspelled key, a value of the wrong type, or
    an option the engine removed. dockerd refuses to start (or, on SIGHUP, keeps its old config).

    Why it happens: hand edits. A trailing comma gives `invalid character '}' looking for
    beginning of object key string`; a string where a list belongs gives `cannot unmarshal string
    into Go struct field Config.insecure-registries of type []string`; a typo gives `the following
    directives don't match any configuration option`. The singular key "insecure-registry" (the
    flag's name) is worse: dockerd accepts it and silently ignores it.

    How to fix: the plan shows the corrected file as a diff; unknown keys are renamed to the key
    they were meant to be, strings become one-element lists.

    Example:
        unable to configure the Docker daemon with file /etc/docker/daemon.json: invalid character '}'
        looking for beginning of object key string
    """
    dj = daemon_json
    if not dj.exists:
        raise Skip(f"{dj.path} does not exist")
    if dj.error:
        yield _json_parse_error(dj)
        return
    if dj.bom and (engine_version is None or engine_version < (23, 0, 0)):
        # moby 23.0 strips a UTF-8 byte-order mark (moby/moby#44777); 20.10 stops at the first byte.
        known = f"engine {'.'.join(map(str, engine_version))}" if engine_version else "the engine version is unknown"
        yield finding(
            "DD106", f"{dj.path} starts with an invisible UTF-8 byte-order mark",
            f"{dj.path} begins with the bytes EF BB BF (a UTF-8 byte-order mark, added by some Windows editors). "
            "dockerd before 23.0 refuses such a file (invalid character 'ï' looking for beginning of value) and "
            f"does not start; 23.0 and later ignore the mark ({known}).",
            severity=Severity.ERROR if engine_version else Severity.WARNING,
            evidence=[Evidence(dj.path, "bytes 1-3: EF BB BF (byte-order mark)", 1)],
            fix=Fix("Save the file without the byte-order mark",
                    (ReplaceFileContent(dj.path, (dj.text or "").removeprefix("\ufeff")),)),
            params={"key": None, "bom": True})
    data = dj.data or {}
    flags = flag_table()
    for key, value in data.items():
        ev = [Evidence(dj.path, f'"{key}": {short(json.dumps(value), 120)}', dj.line_of(key))]
        if key == "insecure-registry" or (key not in DAEMON_JSON_KEYS and key in flags):
            yield _flag_named_key(dj, key, data, ev)
        elif key not in DAEMON_JSON_KEYS:
            yield _unknown_key(key, ev)
        elif not _type_ok(DAEMON_JSON_KEYS[key], value):
            yield _wrong_type(dj, key, value, ev)
        elif engine_version is not None:
            yield from _engine_version_keys(key, engine_version, ev)
    for key in dj.duplicate_keys:
        yield finding("DD106", f'"{key}" appears twice', f'"{key}" appears more than once in {dj.path}; only '
                      "the last one counts.", severity=Severity.WARNING,
                      evidence=[Evidence(dj.path, f'"{key}"', dj.line_of(key))], params={"key": key})


def _json_parse_error(dj: DaemonJson) -> Finding:
    repaired = repair_json(dj.text or "")
    fix = (Fix("Replace it with the repaired file", (ReplaceFileContent(dj.path, repaired),))
           if repaired else Fix("Correct the JSON" + (f" at line {dj.error_line}, column {dj.error_col}"
                                                      if dj.error_line else "")))
    snippet = ""
    if dj.text and dj.error_line:
        lines = dj.text.splitlines()
        if 0 < dj.error_line <= len(lines):
            snippet = lines[dj.error_line - 1]
    return finding("DD106", f"{dj.path} does not parse",
                   f"{dj.path} is not valid JSON: {dj.error}" +
                   (f" (line {dj.error_line}, column {dj.error_col})" if dj.error_line else "") +
                   "; dockerd will not start with it.",
                   evidence=[Evidence(dj.path, short(snippet, 200) or (dj.error or ""), dj.error_line)], fix=fix)


def _flag_named_key(dj: DaemonJson, key: str, data: dict[str, object], ev: list[Evidence]) -> Finding:
    target = json_key(key)
    return finding(
        "DD106", f'"{key}" is silently ignored',
        f'"{key}" is the flag\'s name, not a daemon.json key: dockerd accepts it and ignores it. '
        f'The key is "{target}".',
        severity=Severity.WARNING if target not in ("insecure-registries",) else Severity.ERROR,
        evidence=ev,
        fix=Fix(f'Rename "{key}" to "{target}"',
                (JsonRenameKey(dj.path, key, target) if target not in data
                 else JsonRemoveKey(dj.path, key), ServiceAction("reload"))),
        params={"key": key},
    )


def _unknown_key(key: str, ev: list[Evidence]) -> Finding:
    path = ev[0].source
    guess = difflib.get_close_matches(key, list(DAEMON_JSON_KEYS), n=1, cutoff=0.75)
    return finding(
        "DD106", f'unknown key "{key}"',
        f'"{key}" is not a daemon.json option; dockerd refuses to start: "the following directives '
        f'don\'t match any configuration option: {key}".' + (f' Did you mean "{guess[0]}"?' if guess else ""),
        evidence=ev,
        fix=Fix(f'Rename "{key}" to "{guess[0]}"', (JsonRenameKey(path, key, guess[0]),))
        if guess else Fix(f'Remove "{key}"', (JsonRemoveKey(path, key),)),
        params={"key": key},
    )


def _wrong_type(dj: DaemonJson, key: str, value: object, ev: list[Evidence]) -> Finding:
    kind = DAEMON_JSON_KEYS[key]
    new: object | None = [value] if kind == "list" and isinstance(value, str) else None
    return finding(
        "DD106", f'"{key}" has the wrong type',
        f'"{key}" must be a JSON {kind.replace("list", "list of strings")}, not {type(value).__name__}; '
        f"dockerd refuses to start (json: cannot unmarshal).",
        evidence=ev,
        fix=Fix(f'Make "{key}" a list', (JsonSetKey(dj.path, key, new),)) if new is not None else None,
        params={"key": key},
    )


def _engine_version_keys(key: str, engine_version: tuple[int, int, int], ev: list[Evidence]) -> Iterator[Finding]:
    removed = REMOVED_JSON_KEYS.get(key)
    if removed and engine_version[:2] >= removed[0]:
        yield finding(
            "DD106", f'"{key}" was removed in engine {removed[0][0]}.{removed[0][1]}',
            f'"{key}" no longer exists in engine {".".join(map(str, engine_version))}; use {removed[1]}.',
            evidence=ev, params={"key": key},
        )
    added = ADDED_IN.get(key)
    if added and engine_version[:2] < added:
        yield finding(
            "DD106", f'"{key}" needs engine {added[0]}.{added[1]} or newer',
            f'engine {".".join(map(str, engine_version))} does not know "{key}" and refuses to start.',
            evidence=ev, params={"key": key},
        )


# ============================================================================ DD107


def _norm_set(values: list[str]) -> set[str]:
    out = set()
    for v in values:
        chk = check_insecure_entry(v)
        if chk.normalized and chk.normalized != "127.0.0.0/8":
            out.add(chk.normalized.lower())
    return out


@rule("DD107", "restart-pending", category="daemon", severity=Severity.WARNING,
      title="The configuration changed after dockerd started")
def restart_pending(effective_config: EffectiveConfig, dockerd_process: DockerdProcess | None,
                    env_files: dict[str, EnvFileInfo] | None = None,
                    systemd_state: SystemdUnitState | None = None) -> Iterator[Finding]:
    """The config files changed after the running dockerd started, and what it runs with differs
    from them. Nobody restarted (or reloaded) the daemon.

    Why it happens: daemon.json and the env files are read at start; only a few daemon.json
    keys (insecure-registries, registry-mirrors, labels, debug, ...) are re-read on SIGHUP.

    How to fix: for insecure-registries in daemon.json, `systemctl reload docker` (SIGHUP, no
    container stops); for flags in an env file, `systemctl restart docker`.

    Example:
        /etc/docker/daemon.json changed at 10:02, dockerd started at 09:15;
        docker info lists no 10.0.0.5:5000
    """
    cfg = effective_config
    if dockerd_process is None:
        raise Skip("dockerd is not running")
    if cfg.insecure_running is None:
        raise Skip("what the running daemon uses is unknown (no docker info)")
    if cfg.daemon_json.error:
        raise Skip("daemon.json does not parse, so what it configures is unknown (see DD106)")
    if systemd_state is not None and systemd_state.need_daemon_reload:
        raise Skip("systemd has not reloaded the unit yet (DD108); compare after a daemon-reload")
    planned = _norm_set([v.value for v in cfg.insecure_planned])
    running = _norm_set([v.value for v in cfg.insecure_running])
    if planned == running:
        return
    added, removed = sorted(planned - running), sorted(running - planned)
    start = dockerd_process.start_time
    evidence = [Evidence(cfg.insecure_running[0].source if cfg.insecure_running else "docker info",
                         "running with insecure registries: " + (", ".join(sorted(running)) or "none"))]
    changed: list[str] = []
    files = [(cfg.daemon_json.path, cfg.daemon_json.mtime)] + [
        (p, i.mtime) for p, i in (env_files or {}).items() if i.loaded]
    for path, mtime in files:
        if mtime and start and mtime > start:
            changed.append(path)
            evidence.append(Evidence(path, f"modified after dockerd started (mtime {mtime:.0f} > start {start:.0f})"))
    for v in cfg.insecure_planned:
        evidence.append(value_evidence(v, f"configured: {v.value}"))
    added_set = set(added)  # a list here is quadratic on a daemon.json of 200,000 entries
    only_json = all(v.via == "daemon.json" for v in cfg.insecure_planned
                    if check_insecure_entry(v.value).normalized in added_set)
    action = ServiceAction("reload") if only_json else ServiceAction("restart")
    yield finding(
        "DD107", "dockerd runs with an older configuration",
        "The files configure insecure registries that the running daemon does not use"
        + (f" (missing: {', '.join(added)})" if added else "")
        + (f" (still using: {', '.join(removed)})" if removed else "")
        + (f"; {', '.join(changed)} changed after it started." if changed else "."),
        evidence=evidence,
        fix=Fix("Reload dockerd (SIGHUP re-reads insecure-registries)" if only_json else "Restart dockerd",
                (action,), warnings=() if only_json else
                (RESTART_WARNING,)),
        params={"missing": added, "extra": removed},
    )


# ============================================================================ DD108


@rule("DD108", "daemon-reload-pending", category="daemon", severity=Severity.WARNING,
      title="systemd has not reloaded the changed unit")
def daemon_reload_pending(systemd_state: SystemdUnitState, docker_unit: UnitModel | None = None
                          ) -> Iterator[Finding]:
    """docker.service or one of its drop-ins changed on disk, and systemd still runs the old
    definition (NeedDaemonReload=yes). A restart alone would start dockerd the old way.

    How to fix: `systemctl daemon-reload`, then `systemctl restart docker`.

    Example:
        Warning: The unit file, source configuration file or drop-ins of docker.service changed on disk.
        Run 'systemctl daemon-reload' to reload units.
    """
    if systemd_state.need_daemon_reload is None:
        raise Skip("systemd does not say whether docker.service needs a daemon-reload")
    if not systemd_state.need_daemon_reload:
        return
    files = docker_unit.files if docker_unit else []
    yield finding(
        "DD108", "docker.service changed on disk; systemd has not reloaded it",
        "systemd reports NeedDaemonReload=yes for docker.service: the unit or a drop-in changed since the "
        "last daemon-reload, so systemd still uses the old ExecStart/EnvironmentFile.",
        evidence=[Evidence(systemd_state.source, "NeedDaemonReload=yes")] +
        [Evidence(f, "unit file") for f in files],
        fix=Fix("Reload systemd, then restart docker", (ServiceAction("daemon-reload"), ServiceAction("restart")),
                warnings=(RESTART_WARNING,)),
    )


# ============================================================================ DD109


@rule("DD109", "unit-exec-invalid", category="daemon", severity=Severity.ERROR,
      title="ExecStart cannot work with this engine",
      validates_config=True, repair_order=6)
def unit_exec_invalid(docker_unit: UnitModel, planned_command: ExpandedCommand, docker_socket_unit: bool,
                      engine_version: tuple[int, int, int] | None = None) -> Iterator[Finding]:
    """ExecStart uses `docker daemon` or `docker -d` (removed in 17.12 and 1.13), `-H fd://`
    without a docker.socket unit (dockerd: "no sockets found via socket activation"), or a flag
    the engine does not have (removed, or only in Red Hat's docker 1.13 fork such as
    `--add-registry`), so dockerd does not start.

    How to fix: a drop-in that resets ExecStart (`ExecStart=` then `ExecStart=/usr/bin/dockerd ...`)
    with current flags; daemon-reload and restart.

    Example:
        ExecStart=/usr/bin/docker daemon -H fd://   on docker-ce 20.10
        -> dockerd: unknown command "daemon"
    """
    line = docker_unit.exec_start[-1]
    parsed = parse_dockerd_argv(planned_command.argv)
    ev = Evidence(line.path, f"ExecStart={line.command}", line.line)
    fix_base = Fix("Reset ExecStart in a drop-in with a valid dockerd command line, then daemon-reload and restart",
                   (ServiceAction("daemon-reload"), ServiceAction("restart")))
    if parsed.mode in ("docker daemon", "docker -d") and (engine_version is None or engine_version >= (17, 12, 0)):
        new_words = ["/usr/bin/dockerd", *planned_command.argv[2 if parsed.mode == "docker daemon" else 1:]]
        new_words = [w for w in new_words if w != "-d"]
        yield finding("DD109", f"ExecStart runs `{parsed.mode}`",
                      f"`{parsed.mode}` was removed; engine "
                      f"{'.'.join(map(str, engine_version)) if engine_version else 'of this host'} starts as dockerd.",
                      evidence=[ev],
                      fix=Fix("Start /usr/bin/dockerd instead",
                              (ReplaceFileContent(f"{DROPIN_DIR}/10-exec.conf", dropin_text(" ".join(new_words))),
                               *fix_base.operations)))
    if any((f.value or "").startswith("fd://") for f in parsed.values("host")) and not docker_socket_unit:
        yield finding("DD109", "-H fd:// without docker.socket",
                      "ExecStart passes -H fd://, which needs socket activation, but there is no docker.socket "
                      "unit; dockerd fails with 'no sockets found via socket activation'.",
                      evidence=[ev], fix=Fix("Install/enable docker.socket, or replace -H fd:// with "
                                             "-H unix:///var/run/docker.sock in a drop-in"))
    for use in parsed.flags + parsed.unknown:
        name = use.name
        if " " in name or "=" in name:
            continue  # a ${VAR} glued several words: DD103 reports it
        removed = REMOVED_FLAGS.get(name)
        if removed and (engine_version is None or engine_version[:2] >= removed.removed_in):
            yield finding("DD109", f"--{name} was removed",
                          f"--{name} was removed in engine {removed.removed_in[0]}.{removed.removed_in[1]}; use "
                          f"{removed.replacement}.", evidence=[ev], fix=fix_base, params={"flag": name})
        elif name in RHEL_FORK_FLAGS or (not use.known and name not in REMOVED_FLAGS):
            if name in RHEL_FORK_FLAGS and (engine_version is None or engine_version < (17, 0, 0)):
                continue  # Red Hat's docker 1.13 has these (and an unknown engine may be it)
            if not use.known and engine_version is not None and engine_version < (20, 0, 0) \
                    and name not in RHEL_FORK_FLAGS:
                continue  # our flag table is 20.10's; older engines had others
            yield finding("DD109", f"unknown flag --{name}",
                          f"dockerd has no --{name}" + (" (it exists only in Red Hat's docker 1.13 fork)"
                                                        if name in RHEL_FORK_FLAGS else "") +
                          "; dockerd exits with 'unknown flag'.", evidence=[ev], fix=fix_base,
                          params={"flag": name})


# ============================================================================ DD110


@rule("DD110", "proxy-catches-registry", category="daemon", severity=Severity.ERROR,
      title="The daemon's proxy would carry the registry's traffic")
def proxy_catches_registry(effective_config: EffectiveConfig, target_registries: list[TargetRegistry],
                           docker_info: DockerInfo | None = None,
                           endpoint_probes: EndpointProbes | None = None) -> Iterator[Finding]:
    """dockerd has HTTP_PROXY/HTTPS_PROXY (from the unit's Environment=, an EnvironmentFile or
    daemon.json "proxies"), and NO_PROXY does not exempt the registry, so pushes go to the proxy,
    which cannot reach an internal registry (or rejects large uploads).

    Matching is Go's: NO_PROXY entries are domains (matching subdomains too), `.suffix`, IPs,
    CIDRs, optionally with a port; `*` matches all; loopback is never proxied.

    How to fix: add the registry's host to NO_PROXY where HTTP(S)_PROXY is set, then
    daemon-reload and restart.

    Example:
        /etc/systemd/system/docker.service.d/http-proxy.conf:2 Environment="HTTPS_PROXY=http://proxy:3128"
        NO_PROXY=localhost,127.0.0.1   (no 10.0.0.5)
    """
    proxies = dict(effective_config.proxies)
    if docker_info is not None:
        for key, val in (("HTTP_PROXY", docker_info.http_proxy), ("HTTPS_PROXY", docker_info.https_proxy),
                         ("NO_PROXY", docker_info.no_proxy)):
            if val and key not in proxies:
                from dockerdoctor.facts.daemon import ConfigValue

                proxies[key] = ConfigValue(val, "docker info", docker_info.source, None)
    if "HTTP_PROXY" not in proxies and "HTTPS_PROXY" not in proxies:
        return
    if not target_registries:
        raise Skip("no registry to check: name one with --registry HOST:PORT")
    no_proxy = proxies.get("NO_PROXY")
    for t in target_registries:
        addr = t.address
        if no_proxy and no_proxy_match(no_proxy.value, addr.host, addr.port or 443):
            continue
        if trusted_as_insecure(addr, []) is not None:
            continue  # loopback: never proxied
        proxy = proxies.get("HTTPS_PROXY") or proxies.get("HTTP_PROXY")
        assert proxy is not None
        ev = [value_evidence(proxy, f"proxy {proxy.value}")]
        if no_proxy:
            ev.append(value_evidence(no_proxy, f"NO_PROXY={no_proxy.value}"))
        probe = (endpoint_probes or {}).get(str(addr))
        if probe is not None and probe.proxy_result:
            # live: the probe asked the proxy for a tunnel to the registry, as dockerd would
            verdict = "the proxy carries it" if probe.proxy_ok else "the proxy cannot reach it"
            ev.append(Evidence(f"probe {addr} via proxy", f"{verdict}: {probe.proxy_result}"))
        new_no_proxy = ",".join(x for x in [no_proxy.value if no_proxy else "", addr.host] if x)
        ops: list = []
        if no_proxy and no_proxy.via == "environment":
            ops.append(EnvFileSet(no_proxy.source, "NO_PROXY", new_no_proxy))
        elif no_proxy is None and proxy.via == "environment":
            ops.append(ReplaceFileContent(f"{DROPIN_DIR}/20-no-proxy.conf",
                                          f'[Service]\nEnvironment="NO_PROXY={new_no_proxy}"\n'))
        yield finding(
            "DD110", f"{addr} would go through the proxy {proxy.value}",
            f"dockerd uses {proxy.value} ({proxy.where()}) and NO_PROXY "
            f"{'(' + no_proxy.value + ')' if no_proxy else '(unset)'} does not exempt {addr.host}.",
            evidence=ev,
            fix=Fix(f"Add {addr.host} to NO_PROXY, then daemon-reload and restart",
                    (*ops, ServiceAction("daemon-reload"), ServiceAction("restart"))),
            params={"registry": str(addr), "proxy": proxy.value},
        )
