"""Runtime adapters: every client of the registry on a host, in one shape (see base.py).

ADAPTERS lists the facts that yield adapters (a Runtime, a list or dict of them, or None when the client
is not on the host); the ``runtimes`` fact gathers them all. Another adapter registers with one line here
and its module in FACT_MODULES (dockerdoctor/facts/__init__.py).

CONTAINERS_PATHS is the data list of every path the containers/image and CRI-O facts read: the live path
and where a sosreport keeps it (sos's crio plugin copies /etc/containers and /etc/crio whole, its podman
plugin runs `podman info`/`podman version` and lists /etc/containers). `collect` copies the same list.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from typing import Any

from dockerdoctor.errors import FactUnavailable
from dockerdoctor.facts import Facts, fact
from dockerdoctor.runtimes.base import Origin, Runtime

# containerd family (issue 14, dockerdoctor/runtimes/containerd.py): facts whose value is a Runtime or None
CONTAINERD_FAMILY = ("containerd_cri", "dockerd_containerd_store", "dockerd_classic", "nerdctl_runtime", "k3s_runtime")

# Facts whose values are adapters (a Runtime, a list or dict of them, or None), in the order `resolve` prints
# them. A fact not registered (its module not in FACT_MODULES yet) is passed over.
ADAPTERS: list[str] = [
    *CONTAINERD_FAMILY,
    "containers_runtimes",  # podman, buildah, skopeo (containers_image.py)
    "crio_runtime",  # CRI-O (crio.py)
]


@dataclass(frozen=True)
class PathSpec:
    live: str  # the path on the host ("~" = the home directory of the user the clients run as)
    sos: tuple[str, ...]  # where a sosreport has it, relative to its root
    kind: str  # "file" | "dir" (its entries) | "tree" (certs.d: directories of files)
    secret: bool = False  # auth files: only the registry keys are ever read, never collected


CONTAINERS_PATHS: list[PathSpec] = [
    PathSpec("/etc/containers/registries.conf", ("etc/containers/registries.conf",), "file"),
    PathSpec("/etc/containers/registries.conf.d", ("etc/containers/registries.conf.d",), "dir"),
    PathSpec("~/.config/containers/registries.conf", ("root/.config/containers/registries.conf",), "file"),
    PathSpec("~/.config/containers/registries.conf.d", ("root/.config/containers/registries.conf.d",), "dir"),
    PathSpec("~/.config/containers/certs.d", ("root/.config/containers/certs.d",), "tree"),
    PathSpec("/etc/containers/certs.d", ("etc/containers/certs.d",), "tree"),
    PathSpec("/etc/docker/certs.d", ("etc/docker/certs.d",), "tree"),
    PathSpec("/etc/crio/crio.conf", ("etc/crio/crio.conf",), "file"),
    PathSpec("/etc/crio/crio.conf.d", ("etc/crio/crio.conf.d",), "dir"),
    PathSpec("{xdg}/containers/auth.json", ("run/containers/0/auth.json",), "file", secret=True),
    PathSpec("~/.config/containers/auth.json", ("root/.config/containers/auth.json",), "file", secret=True),
    PathSpec("~/.docker/config.json", ("root/.docker/config.json",), "file", secret=True),
]
CLIENT_BINARIES = {"podman": "podman", "buildah": "buildah", "skopeo": "skopeo", "cri-o": "crio"}
# Where a snapshot shows a client is installed: its binary, or the output of its sos plugin.
SNAPSHOT_MARKERS = {
    "podman": ("/usr/bin/podman", "/sos_commands/podman"),
    "buildah": ("/usr/bin/buildah", "/sos_commands/buildah"),
    "skopeo": ("/usr/bin/skopeo",),
    "cri-o": ("/usr/bin/crio", "/sos_commands/crio", "/etc/crio/crio.conf"),
}


def _home(facts: Facts) -> str:
    if facts.live:
        return os.environ.get("HOME") or "/root"
    return "/root"


def _env(facts: Facts) -> dict[str, str]:
    if not facts.live:
        return {}
    keys = ("CONTAINERS_REGISTRIES_CONF", "REGISTRIES_CONFIG_PATH", "XDG_RUNTIME_DIR", "HTTP_PROXY", "HTTPS_PROXY",
            "NO_PROXY", "http_proxy",
            "https_proxy", "no_proxy")
    return {k: os.environ[k] for k in keys if os.environ.get(k)}


def _auth_keys(text: str | None) -> set[str]:
    """The registry keys of an auth.json / config.json; the secrets are dropped at once."""
    if not text:
        return set()
    try:
        data = json.loads(text)
    except ValueError:
        return set()
    auths = data.get("auths") if isinstance(data, dict) else None
    keys = set(auths) if isinstance(auths, dict) else set()
    helpers = data.get("credHelpers") if isinstance(data, dict) else None
    if isinstance(helpers, dict):
        keys |= set(helpers)
    return keys


@fact()
def containers_input(facts: Facts) -> Any:
    """Every file containers/image would read for registries, as texts (ConfigInput)."""
    from dockerdoctor.runtimes.containers_image import (
        SYSTEM_CONF,
        SYSTEM_DIR,
        USER_CONF,
        USER_DIR,
        ConfigInput,
        auth_paths,
    )

    src = facts.source
    home = _home(facts)
    env = _env(facts)
    files: dict[str, str | None] = {}
    dirs: dict[str, list[str]] = {}
    extra = [env[k] for k in ("CONTAINERS_REGISTRIES_CONF", "REGISTRIES_CONFIG_PATH") if env.get(k)]
    for path in [SYSTEM_CONF, f"{home}/{USER_CONF}", *extra]:
        files[path] = src.read_text(path, limit=1024 * 1024)
    for d in (SYSTEM_DIR, f"{home}/{USER_DIR}"):
        names = src.listdir(d)
        if names:
            dirs[d] = names
            for n in names:
                if n.endswith(".conf"):
                    files[f"{d}/{n}"] = src.read_text(f"{d}/{n}", limit=1024 * 1024)
    for base in (f"{home}/.config/containers/certs.d", "/etc/containers/certs.d", "/etc/docker/certs.d"):
        for host in src.listdir(base):
            dirs[f"{base}/{host}"] = src.listdir(f"{base}/{host}")
    auth: dict[str, set[str]] = {}
    for p in auth_paths(home, env.get("XDG_RUNTIME_DIR")):
        keys = _auth_keys(src.read_text(p, limit=1024 * 1024))
        if keys:
            auth[p] = keys
    return ConfigInput(files, dirs, home, env, auth)


def _installed(facts: Facts, client: str) -> str | None:
    """How the client was found on the host, or None."""
    if facts.live:
        path = shutil.which(CLIENT_BINARIES[client])
        return path
    for marker in SNAPSHOT_MARKERS[client]:
        if facts.source.exists(marker):
            return marker
    return None


def env_proxy(env: dict[str, str]) -> Any:
    """Go's ProxyFromEnvironment for a client that runs with env: (host, scheme) -> proxy URL or None.
    Credentials in the proxy URL are never shown."""
    from urllib.parse import urlsplit

    from dockerdoctor.facts.proxy import no_proxy_match

    def get(*names: str) -> str:
        return next((env[n] for n in names if env.get(n)), "")

    def proxy_for(host: str, scheme: str) -> str | None:
        proxy = get("HTTPS_PROXY", "https_proxy") if scheme == "https" else get("HTTP_PROXY", "http_proxy")
        if not proxy:
            return None
        h, _, port = host.rpartition(":") if ":" in host and not host.endswith("]") else (host, "", "")
        if no_proxy_match(get("NO_PROXY", "no_proxy"), h or host, int(port) if port.isdigit() else
                          (443 if scheme == "https" else 80)):
            return None
        u = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        return f"{u.scheme}://{u.hostname}" + (f":{u.port}" if u.port else "")

    return proxy_for


@fact()
def containers_runtimes(facts: Facts) -> dict[str, Any]:
    """podman, buildah and skopeo as installed here: name -> ContainersRuntime ({} when none is)."""
    from dockerdoctor.runtimes.containers_image import CLIENTS, ContainersRuntime, load

    inp = facts.get("containers_input")
    out: dict[str, Any] = {}
    for name, traits in CLIENTS.items():
        found = _installed(facts, name)
        if found is None:
            continue
        cfg = load(inp, name)
        out[name] = ContainersRuntime(name, traits.display, cfg, inp.dirs, inp.auth,
                                      Origin(found, None, f"{name} found at {found}"), None, inp.env,
                                      proxy_for=env_proxy(inp.env))
    return out


@fact()
def containers_configs(facts: Facts) -> dict[str, Any]:
    """The registries.conf configuration each installed client loads (name -> ContainersConfig)."""
    rts = facts.get("containers_runtimes")
    crio = facts.optional("crio_runtime")
    out = {name: rt.config for name, rt in rts.items()}
    if crio is not None:
        out["cri-o"] = crio.config
    if not out:
        raise FactUnavailable("no podman, buildah, skopeo or CRI-O on this host")
    return out


@fact()
def crio_conf(facts: Facts) -> Any:
    """CRI-O's crio.conf and drop-ins (CrioConf); FactUnavailable when CRI-O is not on the host."""
    from dockerdoctor.runtimes.crio import CRIO_CONF, CRIO_DIR, parse_crio

    if _installed(facts, "cri-o") is None:
        raise FactUnavailable("CRI-O is not installed here")
    texts: dict[str, str] = {}
    t = facts.source.read_text(CRIO_CONF, limit=1024 * 1024)
    if t is not None:
        texts[CRIO_CONF] = t
    for n in facts.source.listdir(CRIO_DIR):
        if n.endswith(".conf"):
            t = facts.source.read_text(f"{CRIO_DIR}/{n}", limit=1024 * 1024)
            if t is not None:
                texts[f"{CRIO_DIR}/{n}"] = t
    return parse_crio(texts)


@fact()
def crio_runtime(facts: Facts) -> Any:
    from dockerdoctor.runtimes.containers_image import ConfigInput, load
    from dockerdoctor.runtimes.crio import CrioRuntime

    crio = facts.optional("crio_conf")
    if crio is None:
        return None
    inp = facts.get("containers_input")
    # CRI-O is a system service: the system registries.conf, no CONTAINERS_REGISTRIES_CONF from this shell
    sys_inp = ConfigInput(inp.files, inp.dirs, "/root", {}, inp.auth)
    cfg = load(sys_inp, "cri-o")
    return CrioRuntime(cfg, crio, inp.dirs, inp.auth,
                       Origin(crio.files[0] if crio.files else "crio", None, "CRI-O configuration"))


def _flatten(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, dict):
        return [v for v in value.values() if v is not None]
    if isinstance(value, (list, tuple)):
        return [v for v in value if v is not None]
    return [value]


@fact()
def runtimes(facts: Facts) -> list[Runtime]:
    """Every client of the registry detected on this host, each as a Runtime adapter."""
    out: list[Runtime] = []
    skipped: list[str] = []
    for name in ADAPTERS:
        try:
            out += _flatten(facts.get(name))
        except FactUnavailable as exc:
            skipped.append(f"{name}: {exc.reason}")
        except KeyError:  # an adapter listed before its module landed
            continue
    if not any(getattr(r, "name", "") == "dockerd" for r in out):
        interim = facts.optional("dockerd_runtime_interim")
        if interim is not None:
            out.insert(0, interim)
    facts.__dict__.setdefault("_runtimes_skipped", skipped)
    return out


@fact()
def dockerd_runtime_interim(facts: Facts) -> Any:
    """dockerd's classic store from the existing daemon facts, until issue 14's adapter is registered."""
    from dockerdoctor.runtimes.dockerd_interim import from_facts

    return from_facts(facts)


@fact()
def checked_images(facts: Facts) -> list[Any]:
    """The image references of `check --image REF` (ImageRef), [] when none was given."""
    from dockerdoctor.runtimes.base import ImageRef

    return [ImageRef.parse(t) for t in getattr(facts.options, "images", []) or []]


@fact()
def containers_texts(facts: Facts) -> dict[str, str | None]:
    """The registries.conf texts the containers/image facts read (path -> text), for the fix recipes."""
    return dict(facts.get("containers_input").files)
