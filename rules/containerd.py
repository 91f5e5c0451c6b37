"""containerd's hosts.toml family: containerd CRI, nerdctl, k3s, dockerd's containerd image store (DD601-DD607)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from dockerdoctor.engine import finding, rule
from dockerdoctor.errors import Skip
from dockerdoctor.fixes import containerd_recipes as trust_recipes
from dockerdoctor.fixes import hosts_toml as recipes
from dockerdoctor.model import Evidence, Finding, Severity
from dockerdoctor.runtimes.containerd import CONTAINERD_CERTS_D, DOCKER_CERTS_D, K3S_CERTS_D
from dockerdoctor.runtimes.containerd_config import cri_refusal
from dockerdoctor.runtimes.hosts_toml import near_misses
from dockerdoctor.runtimes.rootless import rootless_roots, unread_user_dirs
from dockerdoctor.safetext import short

PLAIN = re.compile(r"server gave HTTP response to HTTPS client")
CRI_NOT_LOADED = re.compile(r"failed to load plugin io\.containerd\.grpc\.v1\.cri")
UNKNOWN_CA = re.compile(r"x509: certificate signed by unknown authority|failed to verify certificate")


def _ev(p) -> Evidence:
    return Evidence(p.path, p.text, p.line)


# ============================================================================ DD601


@rule("DD601", "hosts-toml-invalid", category="runtime", severity=Severity.ERROR,
      title="A hosts.toml or config.toml that containerd rejects or ignores")
def hosts_toml_invalid(containerd_hosts_files: dict, containerd_config=None, containerd_version=None,
                       containerd_rootless=None, nerdctl_runtime=None, nerdctl_rootless=None) -> Iterator[Finding]:
    """A hosts.toml or containerd config.toml does not parse, or has a shape this containerd rejects or
    silently ignores (an unknown key, a `[host]` without scheme, root fields on 1.6). Rootless containerd's
    ~/.config/containerd/config.toml and the per-user hosts.toml directories of rootless containerd and
    nerdctl are read too, and nerdctl.toml (rootful and per user) for a file that does not parse; with no
    config.toml and no hosts.toml at all the rule is skipped.

    Why it happens: containerd logs `failed to decode hosts.toml` without saying which file
    (containerd/containerd#10144) and then pulls with its defaults, as if the file were not there
    (measured on 1.6.20). Root-level `server`, `ca` and `skip_verify` are ignored by 1.6.20 (measured);
    only `[host."URL"]` tables count there.

    How to fix: correct the line named. For 1.6, move root settings into a `[host."https://HOST"]`
    table. hosts.toml changes take effect on the next pull, without a restart.

    Example:
        $ ctr image pull --hosts-dir /etc/containerd/certs.d 10.0.0.5:5000/app:1
        level=error msg="failed to decode hosts.toml" error="failed to parse TOML: (1, 2): ..."
    """
    clients = [*(containerd_rootless or []), *([nerdctl_runtime] if nerdctl_runtime else []), *(nerdctl_rootless or [])]
    configs = [c for c in [containerd_config, *(rt.config for rt in clients)] if c is not None]
    if not configs and not containerd_hosts_files:
        raise Skip("no containerd config.toml and no hosts.toml on this host")
    for cfg in configs:
        for p in cfg.problems:
            sev = Severity.ERROR if p.severity == "error" else Severity.WARNING
            yield finding("DD601", f"{cfg.path}: {short(p.text, 90)}", f"{p.where()}: {p.text}", evidence=[_ev(p)],
                          severity=sev, params={"file": cfg.path})
    for path, hf in sorted(containerd_hosts_files.items()):
        probs = list(hf.problems)
        if containerd_version is not None and containerd_version < (1, 7) and hf.server is not None and not hf.error:
            s = hf.server
            # the ignored root server matters only when no [host] table stands in for it
            root = [k for k, v in (("server", hf.server_set and not hf.hosts), ("ca", s.ca),
                                   ("skip_verify", s.skip_verify), ("client", s.client)) if v]
            if root:
                from dockerdoctor.runtimes.toml_scan import Problem

                probs.append(Problem(path, hf.server.line, f"root-level {', '.join(root)}: containerd "
                                     f"{containerd_version[0]}.{containerd_version[1]} ignores them (measured on "
                                     "1.6.20); use a [host.\"URL\"] table", "ignored"))
        for p in probs:
            sev = Severity.ERROR if p.severity == "error" else Severity.WARNING
            yield finding("DD601", f"{path}: {short(p.text, 90)}",
                          f"{p.where()}: {p.text}" + (" containerd logs `failed to decode hosts.toml` without the "
                                                      "path and pulls as if the file were absent." if hf.error else ""),
                          evidence=[_ev(p)], severity=sev, params={"file": path})


# ============================================================================ DD602


@rule("DD602", "hosts-dir-unused", category="runtime", severity=Severity.WARNING,
      title="hosts.toml or certificates that the runtime which pulls never reads")
def hosts_dir_unused(containerd_hosts_files: dict, containerd_cri=None, dockerd_image_store=None,
                     containerd_config=None, k3s_registries=None, nerdctl_runtime=None, containerd_rootless=None,
                     nerdctl_rootless=None) -> Iterator[Finding]:
    """A hosts.toml exists for a registry, but the runtime that pulls does not read that directory: the CRI
    has no `config_path` (or another one), dockerd on its classic store (which reads certs.d `*.crt`, never
    hosts.toml), or a hand-made file in k3s's generated directory (k3s rewrites it from registries.yaml).

    How to fix: point the CRI at the directory (`config_path`, then restart containerd: config.toml is
    read at start; hosts.toml itself never needs a restart), or put the setting where that runtime reads
    it (registries.yaml for k3s, then restart k3s). The per-user directories of rootless containerd and
    nerdctl (~/.config/containerd/certs.d) are theirs, not the rootful CRI's; but when a user's nerdctl.toml
    sets `hosts_dir`, nerdctl reads only those directories, so a hosts.toml left in her default
    ~/.config/containerd/certs.d (or ~/.config/docker/certs.d) that no rootless containerd reads either is
    named with the nerdctl.toml line: move it under a hosts_dir directory, or add its directory to hosts_dir.

    Example:
        /etc/containerd/certs.d/10.0.0.5:5000/hosts.toml exists, config.toml has no config_path:
        kubelet: failed to do request: Head "https://10.0.0.5:5000/v2/...":
          http: server gave HTTP response to HTTPS client
    """
    if not containerd_hosts_files:
        raise Skip("no hosts.toml on this host")
    rootless = [*(containerd_rootless or []), *(nerdctl_rootless or [])]
    per_user, replaced = rootless_roots(rootless), unread_user_dirs(rootless)
    for path, hf in sorted(containerd_hosts_files.items()):
        root = os.path.dirname(os.path.dirname(path))
        f: Finding | None
        if root in replaced:
            f = _replaced_by_hosts_dir(path, root, replaced[root])
        elif root in per_user:
            continue  # read by a rootless client, not by the rootful CRI
        elif root == K3S_CERTS_D:
            f = _k3s_hand_made(path, hf, k3s_registries)
        elif root == DOCKER_CERTS_D:
            f = _classic_store_hosts_toml(path, dockerd_image_store, containerd_cri, nerdctl_runtime)
        else:
            f = _not_under_config_path(path, root, containerd_cri, containerd_config, nerdctl_runtime)
        if f is not None:
            yield f


def _replaced_by_hosts_dir(path: str, root: str, nerdctl) -> Finding:
    nc = nerdctl.config
    dirs = ", ".join(nerdctl.roots) or "nothing"
    return finding("DD602", f"{path} is not read by {nerdctl.display} (its hosts_dir replaces {root})",
                   f"{nc.path}:{nc.line or '?'} sets hosts_dir to {dirs}; nerdctl reads those instead of its default "
                   f"{root}, and no rootless containerd of {nerdctl.owner} reads {root}, so {path} is never used.",
                   evidence=[Evidence(path, "hosts.toml for " + os.path.basename(os.path.dirname(path))),
                             Evidence(nc.path, f"hosts_dir = {list(nerdctl.roots)!r}", nc.line)],
                   params={"file": path, "runtime": nerdctl.name})


def _k3s_hand_made(path: str, hf, k3s_registries) -> Finding | None:
    host = os.path.basename(os.path.dirname(path))
    mirrors = k3s_registries.mirrors if k3s_registries is not None else {}
    if host in mirrors or host.replace("_", ":").rstrip(":") in mirrors or hf.generated_by == "k3s":
        return None
    return finding("DD602", f"{path} is in k3s's generated directory",
                   f"k3s renders {K3S_CERTS_D} from registries.yaml each time it starts; {path} is not "
                   "from registries.yaml and is replaced or removed at the next restart.",
                   evidence=[Evidence(path, "not generated from registries.yaml")], params={"file": path})


def _classic_store_hosts_toml(path: str, store, cri, nerdctl) -> Finding | None:
    if store is None or store.store != "classic" or (cri is not None and DOCKER_CERTS_D in cri.roots) or \
            nerdctl is not None:
        return None
    return finding("DD602", f"{path}: dockerd's classic store never reads hosts.toml",
                   f"dockerd on its classic image store reads only *.crt, *.cert and *.key in "
                   f"{os.path.dirname(path)}; the hosts.toml is ignored ({store.why}).",
                   evidence=[Evidence(path, "hosts.toml"), store.origin.evidence(store.why)], params={"file": path})


def _not_under_config_path(path: str, root: str, cri, cfg, nerdctl) -> Finding | None:
    if cri is None or root in cri.roots:
        return None
    if root == CONTAINERD_CERTS_D and nerdctl is not None and root in nerdctl.roots and not cri.roots and cfg is None:
        return None  # nerdctl's own directory, and no CRI config to compare it with
    where = f"config_path = {':'.join(cri.roots)!r}" if cri.roots else "no config_path"
    ev = [Evidence(path, "hosts.toml for " + os.path.basename(os.path.dirname(path)))]
    if cfg is not None:
        ev.append(Evidence(cfg.file_of("config_path"), where, cfg.config_path_line or cfg.registry_line))
    return finding("DD602", f"{path} is not read by the CRI ({where})",
                   "containerd's CRI plugin reads hosts.toml only under config_path; "
                   f"{cfg.path if cfg else 'config.toml'} has {where}, so kubelet's pulls ignore {path}.",
                   evidence=ev, fix=trust_recipes.config_path_fix(cfg, root, cri.roots), params={"file": path})


# ============================================================================ DD603


@rule("DD603", "cri-registry-config-conflict", category="runtime", severity=Severity.ERROR,
      title="config_path together with the legacy registry tables: the CRI plugin does not load")
def cri_registry_config_conflict(containerd_config, containerd_version=None,
                                 containerd_journal=None) -> Iterator[Finding]:
    """containerd's config.toml sets `config_path` and a non-empty legacy `mirrors` table or `configs.*.tls`
    (or has the legacy tables on containerd 2.x). containerd then refuses to load its CRI plugin, and
    kubelet has no runtime at all.

    Measured on 1.6.20: `failed to load plugin io.containerd.grpc.v1.cri` error="invalid plugin config:
    `mirrors` cannot be set when `config_path` is provided" (and the same for `configs.tls`); `configs.*.auth`
    (which k3s writes) and the empty tables of `containerd config default` are accepted. 2.x: "`mirrors` is
    no longer supported since containerd v2.0, please use `config_path` instead" (containerd/containerd#9766).

    How to fix: move each mirror and TLS setting into `<config_path>/<host>/hosts.toml`, delete the legacy
    tables, restart containerd.

    Example:
        $ crictl info
        ... unknown service runtime.v1.RuntimeService
    """
    cfg = containerd_config
    if cfg is None:
        raise Skip("no containerd config.toml")
    msg = cri_refusal(cfg, containerd_version)
    if msg is None:
        return
    ev = [Evidence(cfg.file_of("config_path"), f"config_path = {':'.join(cfg.config_path)!r}", cfg.config_path_line)] \
        if cfg.config_path else []
    ev += [Evidence(path, what, line) for what, path, line in cfg.legacy_conflict]
    if containerd_journal is not None:
        for no, line in reversed(containerd_journal.grep(CRI_NOT_LOADED)):
            ev.append(Evidence(containerd_journal.source, short(line, 300), no))
            break
    text = cfg.text
    own = all(path == cfg.path for _what, path, _line in cfg.legacy_conflict)
    fix = recipes.move_legacy_fix(cfg, text) if text is not None and own else None
    yield finding("DD603", f"{cfg.path}: the CRI plugin refuses this registry section",
                  f"containerd does not load its CRI plugin: {msg}. kubelet cannot pull or run anything.",
                  evidence=ev, fix=fix, params={"file": cfg.path})


# ============================================================================ DD604


@rule("DD604", "runtime-registry-not-trusted", category="runtime", severity=Severity.ERROR,
      title="A containerd-family runtime does not trust the registry")
def runtime_registry_not_trusted(target_registries: list, containerd_runtimes: list, containerd_probes=None,
                                 containerd_journal=None) -> Iterator[Finding]:
    """DD101 for each runtime that reads hosts.toml: the endpoints this runtime resolves for the registry
    speak HTTPS where the registry speaks plain HTTP, or verify a certificate whose CA it does not have.

    How to fix: preferred, TLS on the registry and its CA named by `ca = ...` in the runtime's
    hosts.toml. The named alternative for a plain-HTTP registry is a `[host."http://HOST:PORT"]` table
    (clear text on the wire); for an unknown CA, `skip_verify = true` for that one host (no
    verification). Never a blanket skip_verify in `_default`. No restart: hosts.toml is read per pull.

    Example:
        failed to do request: Head "https://10.0.0.5:5000/v2/app/manifests/1":
          http: server gave HTTP response to HTTPS client
    """
    if not target_registries:
        raise Skip("no registry to check: name one with --registry HOST:PORT")
    if not containerd_runtimes:
        raise Skip("no containerd-family runtime on this host")
    if all(rt.name == "dockerd" for rt in containerd_runtimes):
        raise Skip("only dockerd's classic image store here (DD101 judges it)")
    names = [str(t.address) for t in target_registries]
    speaks = {n: _registry_speaks(n, (containerd_probes or {}).get(n), containerd_journal) for n in names}
    if all(plain is None for plain, _ev in speaks.values()):
        raise Skip(f"{', '.join(names)}: not probed and no containerd journal line names it, so whether it "
                   "speaks plain HTTP or TLS is unknown")
    for name, (plain, evidence) in speaks.items():
        if plain is None:
            continue
        for rt in containerd_runtimes:
            if rt.name == "dockerd":
                continue  # the classic store is DD101's
            res = rt.resolve(trust_recipes.probe_ref(name))
            mine = [e for e in res.endpoints if e.host == name]
            if trust_recipes.trusts(mine, plain) or (not mine and res.endpoints):
                continue  # trusted, or every pull goes to a mirror on another host
            what = "speaks plain HTTP" if plain else "uses a certificate from an unknown CA"
            yield finding("DD604", f"{rt.display} does not trust {name}",
                          f"{name} {what}, and {rt.display} would contact it as "
                          f"{', '.join(e.url for e in mine) or 'https://' + name}"
                          f"{'' if plain else ' without its CA'}: every pull fails.",
                          evidence=evidence + _tried(rt, name, mine, res.notes),
                          fix=trust_recipes.trust_fix(rt, name, plain),
                          params={"registry": name, "runtime": rt.name, "plain_http": plain})


def _registry_speaks(name: str, probe, journal) -> tuple[bool | None, list[Evidence]]:
    """Whether the registry speaks plain HTTP (True) or TLS with an unknown CA (False), and what says so: the
    probe from containerd's namespace, else containerd's journal. None: nothing says."""
    if probe is not None and probe.scheme == "http":
        return True, [Evidence(f"probe {name}", "answers plain HTTP to a TLS ClientHello")]
    if probe is not None and probe.scheme == "https" and probe.tls_error == "unknown-authority":
        return False, [Evidence(f"probe {name}", f"TLS: {probe.tls_detail}")]
    for rx, val in ((PLAIN, True), (UNKNOWN_CA, False)) if journal is not None else ():
        hit = next(((n, ln) for n, ln in reversed(journal.grep(rx)) if name in ln), None)
        if hit:
            return val, [Evidence(journal.source, short(hit[1], 300), hit[0])]
    return None, []


def _tried(rt, name: str, mine, notes) -> list[Evidence]:
    """What the runtime would try for the registry, with the file:line behind each endpoint."""
    ev = []
    for e in mine:
        src = e.origin if e.origin.source != "default" else rt.origin
        ev.append(Evidence(src.source, f"{rt.display} tries {e.url}" + ("" if e.tls.ca_files else " with no CA for it"),
                           src.line))
    ev += [Evidence(rt.display, n) for n in notes]
    match = rt.host_dir(name) if getattr(rt, "roots", ()) else None
    if match is not None and match.hosts_toml is not None and match.hosts_toml.error:
        ev.append(Evidence(match.hosts_toml.path, "does not parse: fix DD601 first", match.hosts_toml.error_line))
    return ev


# ============================================================================ DD605


@rule("DD605", "hosts-dir-name-mismatch", category="runtime", severity=Severity.WARNING,
      title="A hosts.toml directory whose name containerd never looks up")
def hosts_dir_name_mismatch(target_registries: list, containerd_runtimes: list) -> Iterator[Finding]:
    """The directory meant for a registry is named differently from what containerd looks up: the port is
    missing, the scheme is in the name, half of the `host_port_` spelling, or `default` for `_default`.
    containerd tries `<host>_<port>_`, then `<host>:<port>`, then `_default` (measured on 1.6.20).

    How to fix: rename the directory to `HOST:PORT` (or `HOST_PORT_`). No restart.

    Example:
        /etc/containerd/certs.d/10.0.0.5/hosts.toml exists, the image is 10.0.0.5:5000/app:1:
        failed to do request: Head "https://10.0.0.5:5000/v2/app/manifests/1": http: server gave HTTP ...
    """
    if not target_registries:
        raise Skip("no registry to check: name one with --registry HOST:PORT")
    if not any(rt.listdir(r) for rt in containerd_runtimes for r in getattr(rt, "roots", ())):
        raise Skip("no hosts directory (certs.d) with anything in it on this host")
    seen: set[str] = set()
    for rt in containerd_runtimes:
        roots = getattr(rt, "roots", ())
        if not roots:
            continue
        for t in target_registries:
            name = str(t.address)
            match = rt.host_dir(name)
            if match is not None and not match.is_default:
                continue
            for path, why in near_misses(roots, name, rt.listdir):
                if path in seen:
                    continue
                seen.add(path)
                text = rt.read(os.path.join(path, "hosts.toml"))
                dst = os.path.join(os.path.dirname(path), name, "hosts.toml")
                fix = trust_recipes.for_owner(recipes.copy_to_right_name(os.path.join(path, "hosts.toml"), text, dst),
                                              rt, os.path.dirname(dst)) if text else None
                yield finding("DD605", f"{path} is never looked up for {name}",
                              f"{rt.display} looks for {name} in {os.path.dirname(path)}/{name} (or "
                              f"{name.replace(':', '_')}_, then _default); {path}: {why}.",
                              evidence=[Evidence(path, why)], fix=fix, params={"registry": name, "file": path})


# ============================================================================ DD606


@rule("DD606", "docker-containerd-store-insecure-ignored", category="runtime", severity=Severity.WARNING,
      title="dockerd on the containerd store: insecure-registries without a hosts.toml")
def docker_containerd_store_insecure_ignored(dockerd_containerd_store, effective_config=None,
                                             dockerd_rootless=None) -> Iterator[Finding]:
    """dockerd runs on the containerd image store, lists a registry in insecure-registries (or
    registry-mirrors), and /etc/docker/certs.d has no hosts.toml for it. On that store dockerd resolves
    through hosts.toml and merges the legacy settings only in some cases: `docker info` lists the
    registry as insecure while pushes still fail with x509 or HTTPS errors (docker/cli#6748). A rootless
    dockerd (a user's, on the containerd store by her ~/.config/docker/daemon.json) is judged the same way
    against her ~/.config/docker/certs.d.

    How to fix: write /etc/docker/certs.d/HOST:PORT/hosts.toml (TLS with `ca` preferred; a
    `[host."http://HOST:PORT"]` table as the named alternative); for a rootless dockerd, under
    ~/.config/docker/certs.d. Read per pull: no restart.

    Example:
        $ docker info | grep -A2 "Insecure Registries"      # lists 10.0.0.5:5000
        $ docker push 10.0.0.5:5000/app:1     # still fails with an HTTPS or x509 error (docker/cli#6748)
    """
    planned = effective_config.insecure_planned if effective_config is not None else []
    daemons = [(rt, [Evidence(v.source, v.value.strip(), v.line) for v in planned])
               for rt in [dockerd_containerd_store] if rt is not None]
    daemons += [(rt, [Evidence(rt.config.path, v, rt.config.line_of("insecure-registries")) for v in rt.insecure])
                for rt in dockerd_rootless or []]
    if not daemons:
        raise Skip("dockerd does not use the containerd image store")
    for rt, values in daemons:
        certs_d = rt.roots[0]
        for v in values:
            value = v.text
            if "/" in value or ":" not in value or rt.host_dir(value) is not None:
                continue  # a CIDR or a bare name (hosts.toml cannot name it), or it has its hosts.toml
            fix = trust_recipes.for_owner(recipes.trust_http(certs_d, value, None, rt.display), rt,
                                          os.path.join(certs_d, value))
            yield finding("DD606", f"{value}: insecure-registries without a hosts.toml on the containerd store",
                          f"{rt.display} ({rt.origin.where()}): {value} is in "
                          f"insecure-registries ({v.location()}) but {certs_d}/{value}/hosts.toml does not "
                          "exist, so pushes and pulls may still use HTTPS with verification.",
                          evidence=[Evidence(v.source, f"insecure-registries: {value}", v.line),
                                    rt.origin.evidence(rt.origin.detail or "containerd image store")],
                          fix=fix, params={"registry": value, "runtime": rt.name})


# ============================================================================ DD607


@rule("DD607", "k3s-registries-yaml-invalid", category="runtime", severity=Severity.ERROR,
      title="k3s registries.yaml is misshaped")
def k3s_registries_yaml_invalid(k3s_registries) -> Iterator[Finding]:
    """registries.yaml has `configs:` indented under `mirrors:` (silently nothing, k3s-io/k3s#10135), an
    endpoint without a scheme, an unknown key, or a tls file that does not exist.

    How to fix: correct it on every node that has it (servers too), then restart k3s (or k3s-agent):
    k3s renders it into containerd's hosts.toml when it starts.

    Example:
        mirrors:
          "10.0.0.5:5000":
            endpoint: ["https://10.0.0.5:5000"]
          configs:                       # under mirrors: k3s reads a mirror named "configs"
            "10.0.0.5:5000": {tls: {insecure_skip_verify: true}}
    """
    reg = k3s_registries
    if reg is None:
        raise Skip("no /etc/rancher/k3s/registries.yaml")
    for p in reg.problems:
        # the fix (ruamel.yaml, imported only then) for the one shape it can repair by itself
        fix = recipes.registries_yaml_fix(reg.path, reg.text) if reg.text and "indented under" in p.text else None
        yield finding("DD607", f"{reg.path}: {short(p.text, 90)}", f"{p.where()}: {p.text}",
                      evidence=[_ev(p)], fix=fix, params={"file": reg.path})
