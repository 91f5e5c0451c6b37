"""Runtime adapters: every client of the registry on a host, in one shape (see base.py).

ADAPTERS lists the facts that yield adapters (a Runtime, a list or dict of them, or None when the client
is not on the host); the ``runtimes`` fact gathers them all. Another adapter registers with one line here
and its module in FACT_MODULES (dockerdoctor/facts/__init__.py).

The paths the containers/image and CRI-O facts read are rows of the spec table (dockerdoctor/sources/specs.py:
SPEC_FILES, SPEC_DIRS and the *_version commands below), so `collect` gathers them; sos's crio plugin copies
/etc/containers and /etc/crio whole, its podman plugin runs `podman version`.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from dockerdoctor.errors import FactUnavailable
from dockerdoctor.facts import Facts, fact
from dockerdoctor.runtimes.base import Origin, Runtime

# containerd family (issue 14, dockerdoctor/runtimes/containerd.py): facts whose value is a Runtime or None
CONTAINERD_FAMILY = ("containerd_cri", "dockerd_containerd_store", "dockerd_classic", "nerdctl_runtime", "k3s_runtime",
                     "containerd_rootless", "nerdctl_rootless", "dockerd_rootless")

# Facts whose values are adapters (a Runtime, a list or dict of them, or None), in the order `resolve` prints
# them. A fact not registered (its module not in FACT_MODULES yet) is passed over.
ADAPTERS: list[str] = [
    *CONTAINERD_FAMILY,
    "containers_runtimes",  # podman, buildah, skopeo (containers_image.py)
    "crio_runtime",  # CRI-O (crio.py)
]


# Where a snapshot shows a client is installed: the output of its version command (sos's podman plugin
# runs `podman version`, its crio plugin `crio config`), and for CRI-O its crio.conf.
CLIENT_COMMANDS = {"podman": "podman_version", "buildah": "buildah_version", "skopeo": "skopeo_version",
                   "cri-o": "crio_config"}
CLIENT_BINARIES = {"podman": "podman", "buildah": "buildah", "skopeo": "skopeo", "cri-o": "crio"}
# The spec-table keys (dockerdoctor/sources/specs.py) the containers/image facts read. Root's paths are
# the table's; live, for another $HOME, the same paths under that home are read.
SPEC_FILES = ("registries_conf", "containers_user_registries_conf", "containers_auth", "crio_conf")
SPEC_DIRS = ("containers_registries_d", "containers_user_registries_d", "containers_certs_d", "certs_d",
             "crio_conf_d")
ROOT_HOME = "/root"


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


def _rehome(path: str, home: str) -> str:
    return home.rstrip("/") + path[len(ROOT_HOME):] if home != ROOT_HOME and path.startswith(ROOT_HOME + "/") else path


@fact()
def containers_input(facts: Facts) -> Any:
    """Every file containers/image would read for registries, as texts (ConfigInput), by spec-table key."""
    from dockerdoctor.runtimes.containers_image import ConfigInput
    from dockerdoctor.sources.specs import FILES, dir_paths

    src = facts.source
    home = _home(facts)
    env = _env(facts)
    files: dict[str, str | None] = {}
    dirs: dict[str, list[str]] = {}
    limit = 1024 * 1024
    for key in ("registries_conf", "containers_user_registries_conf"):
        for p in FILES[key].paths:
            files[_rehome(p, home)] = src.read_text(_rehome(p, home), limit=limit)
    if facts.live:  # named by the environment of this shell, so never in a snapshot
        for k in ("CONTAINERS_REGISTRIES_CONF", "REGISTRIES_CONFIG_PATH"):
            if env.get(k):
                files[env[k]] = src.read_text(env[k], limit=limit)
    for key in ("containers_registries_d", "containers_user_registries_d"):
        for d in (_rehome(p, home) for p in dir_paths(key)):
            names = src.listdir(d)
            if names:
                dirs[d] = names
                for n in names:
                    if n.endswith(".conf"):
                        files[f"{d}/{n}"] = src.read_text(f"{d}/{n}", limit=limit)
    for key in ("containers_certs_d", "certs_d"):
        for base in (_rehome(p, home) for p in dir_paths(key)):
            for host in src.listdir(base):
                dirs[f"{base}/{host}"] = src.listdir(f"{base}/{host}")
    auth: dict[str, set[str]] = {}
    if facts.live:  # credentials files: live only, and only their registry names
        from dockerdoctor.runtimes.containers_image import auth_paths

        for p in auth_paths(home, env.get("XDG_RUNTIME_DIR")):
            keys = _auth_keys(src.read_text(p, limit=limit))
            if keys:
                auth[p] = keys
    return ConfigInput(files, dirs, home, env, auth)


def _installed(facts: Facts, client: str) -> str | None:
    """How the client was found on the host, or None."""
    if facts.live:
        return shutil.which(CLIENT_BINARIES[client])
    key = CLIENT_COMMANDS[client]
    if facts.source.command(key) is not None:
        return facts.source.command_source(key)
    if client == "cri-o":
        from dockerdoctor.sources.specs import read_first

        got = read_first(facts.source, "crio_conf")
        return got[0] if got else None
    return None


def env_proxy(env: dict[str, str]) -> Any:
    """Go's ProxyFromEnvironment for a client that runs with env: (host, scheme) -> proxy URL or None.
    Credentials in the proxy URL are never shown."""
    from urllib.parse import urlsplit

    from dockerdoctor.net import no_proxy_match

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
    from dockerdoctor.runtimes.crio import parse_crio
    from dockerdoctor.sources.specs import dir_paths, read_first

    if _installed(facts, "cri-o") is None:
        raise FactUnavailable("CRI-O is not installed here")
    texts: dict[str, str] = {}
    got = read_first(facts.source, "crio_conf", limit=1024 * 1024)
    if got is not None:
        texts[got[0]] = got[1]
    for d in dir_paths("crio_conf_d"):
        for n in facts.source.listdir(d):
            if n.endswith(".conf"):
                t = facts.source.read_text(f"{d}/{n}", limit=1024 * 1024)
                if t is not None:
                    texts[f"{d}/{n}"] = t
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
    for name in ADAPTERS:
        try:
            out += _flatten(facts.get(name))
        except (FactUnavailable, KeyError):  # could not look (runtimes_skipped says why), or not registered yet
            continue
    if not any(getattr(r, "name", "") == "dockerd" for r in out):
        interim = facts.optional("dockerd_runtime_interim")
        if interim is not None:
            out.insert(0, interim)
    return out


@fact()
def runtimes_skipped(facts: Facts) -> list[str]:
    """The adapters that could not look, each with its reason (resolve prints them)."""
    out: list[str] = []
    for name in ADAPTERS:
        try:
            facts.get(name)
        except FactUnavailable as exc:
            out.append(f"{name}: {exc.reason}")
        except KeyError:
            continue
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
