"""podman, buildah and skopeo: containers/image's registries.conf, certs.d and auth.json, with provenance.

What is modelled (containers-registries.conf(5), containers-registries.conf.d(5), containers-certs.d(5),
containers-auth.json(5) as installed with containers-common on Debian 12; checked against the real
podman 4.3.1, buildah 1.28 and skopeo 1.9.3 in tests/lab_containers.py):

* the main file is ``$HOME/.config/containers/registries.conf`` when it exists (it *replaces*
  ``/etc/containers/registries.conf``), else the system file; ``CONTAINERS_REGISTRIES_CONF`` (or a
  client's ``--registries-conf``) names another one, but only for clients that read it (CLIENTS);
* drop-ins: ``/etc/containers/registries.conf.d/*.conf`` then ``$HOME/.config/containers/registries.conf.d/*.conf``,
  each in name order; with the user main file only the user drop-in directory is read. A drop-in must be
  v2; a ``[[registry]]`` with the same prefix replaces the earlier one, scalar settings are overwritten;
* v1 (``[registries.search|insecure|block] registries = [...]``) is converted; mixing v1 and v2 in one
  file is an error the clients refuse to run with;
* one ``[[registry]]`` table applies: the longest prefix (``*.example.com`` matches subdomains);
  ``location`` rewrites the reference (not for a wildcard prefix); mirrors come first, for pulls only;
  ``insecure = true`` allows plain HTTP *and* unverified TLS (HTTPS is still tried first);
  ``blocked = true`` refuses the pull;
* TLS material: the FIRST existing directory of ``$HOME/.config/containers/certs.d/HOST:PORT``,
  ``/etc/containers/certs.d/HOST:PORT``, ``/etc/docker/certs.d/HOST:PORT`` is used (``*.crt`` CAs,
  ``*.cert``/``*.key`` pairs); an empty directory in the first place hides the others;
* credentials: ``${XDG_RUNTIME_DIR}/containers/auth.json``, then ``~/.config/containers/auth.json``,
  ``~/.docker/config.json``, ``~/.dockercfg`` (only the file and the key are named, never the secret).

Everything here is pure: a :class:`ConfigInput` of file texts goes in, a :class:`ContainersConfig` comes
out. dockerdoctor.runtimes.__init__ reads the files through the Source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from dockerdoctor.runtimes.base import (
    DEFAULT,
    Credentials,
    Endpoint,
    ImageRef,
    Origin,
    Resolution,
    TlsMaterial,
)
from dockerdoctor.runtimes.registries_conf import ConfFile, Problem, RegistryTable, parse_conf

SYSTEM_CONF = "/etc/containers/registries.conf"
SYSTEM_DIR = "/etc/containers/registries.conf.d"
USER_CONF = ".config/containers/registries.conf"  # under $HOME
USER_DIR = ".config/containers/registries.conf.d"
USER_CERTS = ".config/containers/certs.d"
SYSTEM_CERTS = ("/etc/containers/certs.d", "/etc/docker/certs.d")
ENV_VAR = "CONTAINERS_REGISTRIES_CONF"
LEGACY_ENV_VAR = "REGISTRIES_CONFIG_PATH"  # older name; podman and buildah still read it, the new one wins


@dataclass(frozen=True)
class ClientTraits:
    """What one containers/image client does differently (measured on Debian 12, see runtimes.md §5)."""

    name: str
    display: str
    reads_env: bool  # honours CONTAINERS_REGISTRIES_CONF (and REGISTRIES_CONFIG_PATH, which it overrides)
    short_names: bool  # resolves short names through aliases / unqualified-search-registries
    flag: str | None = "--registries-conf"  # the command-line override, when there is one
    notes: tuple[str, ...] = ()


CLIENTS: dict[str, ClientTraits] = {
    "podman": ClientTraits("podman", "podman", True, True),
    "buildah": ClientTraits("buildah", "buildah", True, True),
    "skopeo": ClientTraits(
        "skopeo", "skopeo", False, False,
        notes=("skopeo 1.9 does not read CONTAINERS_REGISTRIES_CONF or REGISTRIES_CONFIG_PATH (use --registries-conf "
               "FILE)",
               "skopeo takes a short name as docker.io/library/NAME (no unqualified-search-registries)"),
    ),
}


# --------------------------------------------------------------------------- the loaded configuration


@dataclass(frozen=True)
class ConfigInput:
    """What a client would read, as texts: path -> content (None when absent)."""

    files: dict[str, str | None]  # every path that was looked at
    dirs: dict[str, list[str]]  # directory -> its entry names
    home: str = "/root"
    env: dict[str, str] = field(default_factory=dict)  # CONTAINERS_REGISTRIES_CONF, XDG_RUNTIME_DIR ...
    auth: dict[str, set[str]] = field(default_factory=dict)  # auth file -> its registry keys (never secrets)

    def text(self, path: str) -> str | None:
        return self.files.get(path)


@dataclass
class Shadow:
    """A table or file that is read but does not decide (DD703)."""

    what: str  # "user-file" | "env" | "drop-in" | "duplicate-prefix"
    hidden: Origin  # the setting that is not in effect
    by: Origin  # what wins instead
    message: str


@dataclass
class ContainersConfig:
    client: str
    main: str  # the main file's path
    chosen_by: str  # why this file: "system file" | "user file" | "CONTAINERS_REGISTRIES_CONF" | "--registries-conf"
    files: list[ConfFile]  # in load order: main, then drop-ins
    registries: list[RegistryTable]  # after merging
    search: list[str] | None
    search_origin: Origin | None
    aliases: dict[str, tuple[str, Origin]]
    short_name_mode: str | None
    shadows: list[Shadow]
    ignored_files: list[str]  # read by nobody for this client (the system file when a user file exists)
    home: str = "/root"
    dirs: dict[str, list[str]] = field(default_factory=dict)  # directory -> entries (certs.d, drop-in dirs)

    @property
    def problems(self) -> list[Problem]:
        return [p for f in self.files for p in f.problems]

    @property
    def valid(self) -> bool:
        return all(f.valid for f in self.files)

    def table_for(self, name: str) -> RegistryTable | None:
        best: RegistryTable | None = None
        for r in self.registries:
            if r.matches(name) and (best is None or len(r.prefix) > len(best.prefix)):
                best = r
        return best


def load(inp: ConfigInput, client: str = "podman", conf_override: str | None = None) -> ContainersConfig:
    """The configuration ``client`` ends up with, in its lookup order."""
    traits = CLIENTS.get(client)
    home = inp.home.rstrip("/") or "/"
    user_conf = f"{home}/{USER_CONF}"
    user_dir = f"{home}/{USER_DIR}"
    env_name = next((v for v in (ENV_VAR, LEGACY_ENV_VAR) if inp.env.get(v)), None) \
        if traits is None or traits.reads_env else None
    env_conf = inp.env.get(env_name) if env_name else None
    shadows: list[Shadow] = []
    ignored: list[str] = []
    dirs: list[str]
    if conf_override:
        main, chosen_by, dirs = conf_override, "--registries-conf", [SYSTEM_DIR, user_dir]
    elif env_conf and env_name:
        main, chosen_by, dirs = env_conf, env_name, [SYSTEM_DIR, user_dir]
    elif inp.text(user_conf) is not None:
        main, chosen_by, dirs = user_conf, "user file", [user_dir]
        if inp.text(SYSTEM_CONF) is not None:
            ignored.append(SYSTEM_CONF)
        ignored += [f"{SYSTEM_DIR}/{n}" for n in inp.dirs.get(SYSTEM_DIR, []) if n.endswith(".conf")]
    else:
        main, chosen_by, dirs = SYSTEM_CONF, "system file", [SYSTEM_DIR, user_dir]
    if (env_conf or conf_override) and inp.text(SYSTEM_CONF) is not None and main != SYSTEM_CONF:
        ignored.append(SYSTEM_CONF)
    files: list[ConfFile] = []
    text = inp.text(main)
    if text is not None:
        files.append(parse_conf(main, text, "main"))
    elif chosen_by in (ENV_VAR, LEGACY_ENV_VAR, "--registries-conf"):
        f = ConfFile(main, "main")
        f.problems.append(Problem(main, None, f"{main} (from {chosen_by}) does not exist: the clients refuse to run"))
        files.append(f)
    for d in dirs:
        for name in sorted(inp.dirs.get(d, [])):
            if not name.endswith(".conf"):
                continue
            p = f"{d}/{name}"
            t = inp.text(p)
            if t is not None:
                files.append(parse_conf(p, t, "drop-in"))
    merged: list[RegistryTable] = []
    search: list[str] | None = None
    search_origin: Origin | None = None
    aliases: dict[str, tuple[str, Origin]] = {}
    mode: str | None = None
    for f in files:
        if not f.valid:
            continue
        for r in f.registries:
            for k, old in enumerate(merged):
                if old.prefix == r.prefix:
                    if old.origin.source == r.origin.source:
                        shadows.append(Shadow("duplicate-prefix", old.origin, r.origin,
                                              f"prefix {r.prefix!r} appears twice in {r.origin.source}; the later "
                                              "table wins"))
                    else:
                        shadows.append(Shadow("drop-in", old.origin, r.origin,
                                              f"prefix {r.prefix!r} from {old.origin.where()} is replaced by the "
                                              f"drop-in table at {r.origin.where()}"))
                    merged[k] = r
                    break
            else:
                merged.append(r)
        if f.search is not None:
            if search_origin is not None and f.role == "drop-in":
                shadows.append(Shadow("drop-in", search_origin, f.search_origin or Origin(f.path),
                                      f"unqualified-search-registries from {search_origin.where()} is replaced by "
                                      f"{f.path}"))
            search, search_origin = f.search, f.search_origin
        for name, (value, o) in f.aliases.items():
            if value:
                aliases[name] = (value, o)
            else:
                aliases.pop(name, None)
        if f.short_name_mode is not None:
            mode = f.short_name_mode
    for path in ignored:
        t = inp.text(path)
        by = Origin(main, None, chosen_by)
        if t is None:
            continue
        hidden = parse_conf(path, t, "main" if path == SYSTEM_CONF else "drop-in")
        if hidden.registries or hidden.search:
            first = hidden.registries[0].origin if hidden.registries else (hidden.search_origin or Origin(path))
            why = {"user file": f"{user_conf} exists and replaces it",
                   ENV_VAR: f"{ENV_VAR}={main} replaces it",
                   LEGACY_ENV_VAR: f"{LEGACY_ENV_VAR}={main} replaces it",
                   "--registries-conf": f"--registries-conf {main} replaces it"}[chosen_by]
            shadows.append(Shadow("user-file" if chosen_by == "user file" else "env", first, by,
                                  f"{path} is not read by {client}: {why}"))
    for var in (ENV_VAR, LEGACY_ENV_VAR):
        if traits is not None and not traits.reads_env and inp.env.get(var) and not conf_override:
            env_path = inp.env[var]
            shadows.append(Shadow("env", Origin(env_path, None, f"{var}={env_path}"), Origin(main, None, chosen_by),
                                  f"{client} does not read {var}; it loads {main} (give it --registries-conf "
                                  f"{env_path})"))
            break
    return ContainersConfig(client, main, chosen_by, files, merged, search, search_origin, aliases, mode, shadows,
                            ignored, home, inp.dirs)


# --------------------------------------------------------------------------- certs.d and auth.json


@dataclass(frozen=True)
class CertsChoice:
    directory: str | None  # the one directory the client uses for HOST:PORT
    files: tuple[str, ...]
    hidden: tuple[str, ...]  # later directories for the same host that are never read
    origin: Origin = DEFAULT

    def tls(self, skip_verify: bool, insecure_origin: Origin | None = None) -> TlsMaterial:
        d = self.directory or ""
        cas = tuple(f"{d}/{f}" for f in self.files if f.endswith(".crt"))
        pairs = tuple((f"{d}/{f}", f"{d}/{f[:-5]}.key") for f in self.files
                      if f.endswith(".cert") and f"{f[:-5]}.key" in self.files)
        return TlsMaterial(cas, pairs, skip_verify, True, insecure_origin if skip_verify and insecure_origin
                           else (self.origin if self.directory else DEFAULT))


def certs_for(host: str, dirs: dict[str, list[str]], home: str = "/root") -> CertsChoice:
    candidates = [f"{home.rstrip('/')}/{USER_CERTS}/{host}"] + [f"{b}/{host}" for b in SYSTEM_CERTS]
    present = [c for c in candidates if c in dirs]
    if not present:
        return CertsChoice(None, (), ())
    first = present[0]
    return CertsChoice(first, tuple(sorted(dirs[first])), tuple(present[1:]), Origin(first, None, "certs.d"))


AUTH_FILES = ("{xdg}/containers/auth.json", "{home}/.config/containers/auth.json", "{home}/.docker/config.json",
              "{home}/.dockercfg")


def auth_paths(home: str = "/root", xdg_runtime_dir: str | None = None) -> list[str]:
    out = [p.format(xdg=(xdg_runtime_dir or "").rstrip("/"), home=home.rstrip("/")) for p in AUTH_FILES]
    if not xdg_runtime_dir:  # root without XDG_RUNTIME_DIR: /run/containers/0/auth.json (containers-auth.json(5))
        out[0] = "/run/containers/0/auth.json"
    return out


def credentials_for(image: str, auth: dict[str, set[str]], home: str = "/root",
                    xdg_runtime_dir: str | None = None) -> Credentials:
    """The first auth file and key that has an entry for the image (most specific key first)."""
    parts = image.split("/")
    keys = ["/".join(parts[:i]) for i in range(len(parts), 0, -1)]
    for path in auth_paths(home, xdg_runtime_dir):
        entries = auth.get(path)
        if not entries:
            continue
        for k in keys:
            for variant in (k, f"https://{k}", f"http://{k}", f"https://{k}/v1/", f"https://{k}/v2/"):
                if variant in entries:
                    return Credentials(path, None, Origin(path, None, f"key {variant!r}"))
    return Credentials("none")


# --------------------------------------------------------------------------- resolution


def _split(name: str) -> tuple[str, str]:
    host, _, rest = name.partition("/")
    return host, rest


def _qualified_name(ref: ImageRef) -> str:
    tail = f":{ref.tag}" if ref.tag else ""
    tail += f"@{ref.digest}" if ref.digest else ""
    return f"{ref.registry}/{ref.repository}{tail}"


def _short_name(ref: ImageRef) -> str:
    repo = ref.repository
    raw = ref.text.split("@", 1)[0]
    if repo.startswith("library/") and not raw.startswith("library/"):
        repo = repo[len("library/"):]
    return repo


@dataclass
class Candidate:
    """One fully qualified name the client tries for a reference (several for a short name)."""

    name: str
    origin: Origin  # why this name (the search list, an alias, or the reference itself)


def candidates(ref: ImageRef, cfg: ContainersConfig) -> tuple[list[Candidate], list[str]]:
    """The qualified names tried for ref, in order, and notes (short-name handling)."""
    traits = CLIENTS.get(cfg.client)
    if ref.qualified or (traits is not None and not traits.short_names):
        notes = []
        if not ref.qualified:
            notes.append(f"{cfg.client} takes the short name as {ref.registry}/{ref.repository}")
        return [Candidate(_qualified_name(ref), Origin("image reference", None, str(ref)))], notes
    short = _short_name(ref)
    tail = (f":{ref.tag}" if ref.tag else "") + (f"@{ref.digest}" if ref.digest else "")
    if short in cfg.aliases:
        value, o = cfg.aliases[short]
        return [Candidate(value + tail, o)], [f"short name {short!r} is an alias ({o.where()})"]
    if not cfg.search:
        return [], [f"short name {short!r}: no alias and no unqualified-search-registries, so {cfg.client} "
                    "cannot resolve it"]
    out = []
    for reg in cfg.search:
        repo = short if reg != "docker.io" or "/" in short else f"library/{short}"
        out.append(Candidate(f"{reg}/{repo}{tail}", cfg.search_origin or DEFAULT))
    notes = []
    mode = cfg.short_name_mode or "permissive"
    if len(cfg.search) > 1 and mode == "enforcing":
        notes.append("short-name-mode enforcing with several search registries: without a terminal the pull fails")
    return out, notes


def _host_of(location: str) -> str:
    return location.split("/", 1)[0]


def resolve(ref: ImageRef, cfg: ContainersConfig, dirs: dict[str, list[str]], auth: dict[str, set[str]],
            *, push: bool = False, env: dict[str, str] | None = None,
            proxy_for: Callable[[str, str], str | None] | None = None) -> Resolution:
    """The endpoints ``cfg.client`` tries for ref, in order, each with its scheme, TLS material and file:line."""
    traits = CLIENTS.get(cfg.client)
    notes: list[str] = list(traits.notes) if traits else []
    if not cfg.valid:
        bad = next(p for p in cfg.problems if p.severity == "error")
        return Resolution(cfg.client, ref, (), None, None, None,
                          tuple(notes + [f"{cfg.client} refuses to run: {bad.message} ({bad.origin().where()})"]))
    cands, cnotes = candidates(ref, cfg)
    notes += cnotes
    endpoints: list[Endpoint] = []
    blocked: Origin | None = None
    rewritten: str | None = None
    creds: Credentials | None = None
    first_name = None
    for cand in cands:
        table = cfg.table_for(cand.name)
        if table is not None and table.blocked:
            blocked = blocked or table.blocked_origin or table.origin
            notes.append(f"{cand.name} is blocked by {(table.blocked_origin or table.origin).where()}")
            continue
        host, rest = _split(cand.name)
        primary = cand.name
        if table is not None and not table.wildcard and table.location != table.prefix and not push:
            primary = table.location + cand.name[len(table.prefix):]
            if rewritten is None:
                rewritten = primary
        elif table is not None and not table.wildcard and table.location != table.prefix and push:
            notes.append(f"location rewrite of {table.origin.where()} does not apply to pushes")
        if first_name is None:
            first_name = primary
            creds = credentials_for(primary.split("@")[0].rsplit(":", 1)[0] if ":" in primary.split("/")[-1]
                                    else primary.split("@")[0], auth, cfg.home, (env or {}).get("XDG_RUNTIME_DIR"))
        sources: list[tuple[str, bool, Literal["mirror", "registry"], Origin]] = []
        if table is not None and not push:
            is_digest = ref.digest is not None
            for m in table.mirrors:
                use = m.pull_from_mirror
                if table.mirror_by_digest_only:
                    use = "digest-only"
                if (use == "digest-only" and not is_digest) or (use == "tag-only" and is_digest):
                    notes.append(f"mirror {m.location} ({m.origin.where()}) is {use}: not used for this reference")
                    continue
                name = m.location + cand.name[len(table.prefix):] if not table.wildcard else \
                    m.location + "/" + rest
                sources.append((name, m.insecure, "mirror", m.origin))
        elif table is not None and push and table.mirrors:
            notes.append(f"mirrors of {table.origin.where()} are for pulls only")
        insecure = table.insecure if table is not None else False
        sources.append((primary, insecure, "registry", table.origin if table is not None else cand.origin))
        for name, ins, role, origin in sources:
            h = _host_of(name)
            certs = certs_for(h, dirs, cfg.home)
            ins_origin = (table.insecure_origin if table is not None and role == "registry" else origin) if ins \
                else None
            tls = certs.tls(ins, ins_origin)
            enotes: list[str] = []
            if certs.hidden:
                enotes.append(f"{certs.directory} is used; {', '.join(certs.hidden)} is not read")
            if ins:
                enotes.append(f"insecure ({(ins_origin or origin).where()}): HTTPS without verification, then "
                              "plain HTTP")
            proxy = proxy_for(h, "https") if proxy_for else None
            if proxy:
                enotes.append(f"through proxy {proxy}")
            endpoints.append(Endpoint(f"https://{h}/v2/", "https", h, role,
                                      ("pull", "resolve") if role == "mirror" else ("pull", "resolve", "push"),
                                      tls, ins, False, origin, tuple(enotes)))
    proxy = None
    if endpoints and proxy_for:
        proxy = proxy_for(endpoints[0].host, endpoints[0].scheme)
    return Resolution(cfg.client, ref, tuple(endpoints), creds, proxy, blocked if not endpoints else None,
                      tuple(notes), rewritten)


@dataclass
class ContainersRuntime:
    """The Runtime (base.py) for one containers/image client on this host."""

    name: str
    display: str
    config: ContainersConfig
    dirs: dict[str, list[str]]
    auth: dict[str, set[str]]
    origin: Origin
    netns: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    version: str | None = None
    proxy_for: Callable[[str, str], str | None] | None = None

    def resolve(self, ref: ImageRef, *, push: bool = False) -> Resolution:
        return resolve(ref, self.config, self.dirs, self.auth, push=push, env=self.env, proxy_for=self.proxy_for)
