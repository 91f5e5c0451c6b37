"""k3s and rke2 as clients of the registry: registries.yaml (read with line numbers), what k3s renders from
it, and the hosts.toml directory k3s generates under its agent directory."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dockerdoctor.facts import Facts, fact
from dockerdoctor.runtimes.base import DEFAULT, Endpoint, ImageRef, Origin, Resolution, TlsMaterial
from dockerdoctor.runtimes.containerd import K3S_CERTS_D, K3S_CONTAINERD_DIR, source_lister, source_reader
from dockerdoctor.runtimes.hosts_toml import HostsDirRuntime
from dockerdoctor.runtimes.toml_scan import Problem
from dockerdoctor.sources.specs import read_first


@dataclass
class K3sMirror:
    host: str
    endpoints: list[str]
    line: int | None
    rewrite: bool = False


@dataclass
class K3sConfig:
    host: str
    line: int | None
    tls: dict[str, Any] = field(default_factory=dict)
    tls_lines: dict[str, int] = field(default_factory=dict)
    auth: bool = False


@dataclass
class K3sRegistries:
    path: str
    mirrors: dict[str, K3sMirror] = field(default_factory=dict)
    configs: dict[str, K3sConfig] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    error: str | None = None
    text: str | None = None

    def effective(self) -> dict[str, list[str]]:
        """What k3s renders: host -> endpoints in order (the default https://host last)."""
        return {h: m.endpoints + [f"https://{h}"] for h, m in self.mirrors.items()}


_K3S_TOP = {"mirrors", "configs"}
_K3S_MIRROR = {"endpoint", "rewrite"}
_K3S_CONFIG = {"auth", "tls"}
_K3S_TLS = {"ca_file", "cert_file", "key_file", "insecure_skip_verify"}
_K3S_AUTH = {"username", "password", "auth", "identity_token"}


def parse_registries_yaml(text: str, path: str, exists=lambda p: True) -> K3sRegistries:
    """k3s's registries.yaml with line numbers (PyYAML's node tree keeps them)."""
    import yaml

    reg = K3sRegistries(path, text=text)
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reg.error = str(exc).splitlines()[0]
        reg.problems.append(Problem(path, line, f"does not parse: {reg.error}"))
        return reg
    if root is None:
        return reg
    if not isinstance(root, yaml.MappingNode):
        reg.problems.append(Problem(path, root.start_mark.line + 1, "the top level must be a mapping"))
        return reg

    def items(node):
        return [(k.value, v, k.start_mark.line + 1) for k, v in node.value] if isinstance(node, yaml.MappingNode) \
            else []

    for key, val, line in items(root):
        if key not in _K3S_TOP:
            reg.problems.append(Problem(path, line, f"unknown top-level key {key!r}: k3s ignores it"))
            continue
        if key == "mirrors":
            for host, m, hline in items(val):
                if host in _K3S_TOP:
                    reg.problems.append(Problem(
                        path, hline, f"`{host}:` is indented under `mirrors:`, so k3s reads it as a mirror named "
                        f"{host!r} and the {host} do nothing (k3s-io/k3s#10135)"))
                    continue
                eps: list[str] = []
                rewrite = False
                for mk, mv, mline in items(m):
                    if mk == "endpoint":
                        seq = mv.value if isinstance(mv, yaml.SequenceNode) else [mv]
                        for e in seq:
                            ev = str(getattr(e, "value", ""))
                            if "://" not in ev:
                                reg.problems.append(Problem(
                                    path, e.start_mark.line + 1,
                                    f"endpoint {ev!r} of mirror {host!r} has no scheme: write https://{ev} "
                                    f"or http://{ev}"))
                            eps.append(ev)
                    elif mk == "rewrite":
                        rewrite = True
                    else:
                        reg.problems.append(Problem(path, mline, f"unknown key {mk!r} in mirror {host!r}"))
                reg.mirrors[host] = K3sMirror(host, eps, hline, rewrite)
        else:
            for host, c, hline in items(val):
                kc = K3sConfig(host, hline)
                for ck, cv, cline in items(c):
                    if ck not in _K3S_CONFIG:
                        reg.problems.append(Problem(path, cline, f"unknown key {ck!r} in configs {host!r}"))
                    elif ck == "tls":
                        for tk, tv, tline in items(cv):
                            if tk not in _K3S_TLS:
                                reg.problems.append(Problem(path, tline, f"unknown tls key {tk!r} in configs {host!r}"))
                                continue
                            kc.tls[tk] = _scalar(tv)
                            kc.tls_lines[tk] = tline
                            if tk.endswith("_file") and tv.value and not exists(tv.value):
                                reg.problems.append(Problem(path, tline, f"{tk} {tv.value} does not exist"))
                    else:
                        kc.auth = True
                        for ak, _av, aline in items(cv):
                            if ak not in _K3S_AUTH:
                                reg.problems.append(Problem(path, aline,
                                                            f"unknown auth key {ak!r} in configs {host!r}"))
                reg.configs[host] = kc
    return reg


def _scalar(node: Any) -> Any:
    value = getattr(node, "value", None)
    tag = getattr(node, "tag", "")
    if tag.endswith(":bool") and isinstance(value, str):
        return value.lower() in ("true", "yes", "on")
    if tag.endswith(":int") and isinstance(value, str) and value.isdigit():
        return int(value)
    return value


@fact()
def k3s_registries(facts: Facts) -> K3sRegistries | None:
    found = read_first(facts.source, "k3s_registries_yaml")
    if found is None:
        return None
    return parse_registries_yaml(found[1], found[0], facts.source.exists)


@dataclass
class K3sRuntime:
    registries: K3sRegistries | None
    generated: HostsDirRuntime | None
    name: str = "k3s"
    display: str = "k3s (registries.yaml)"
    netns: str | None = None
    origin: Origin = DEFAULT

    def resolve(self, ref: ImageRef, *, push: bool = False) -> Resolution:
        """What k3s renders from registries.yaml (the generated hosts.toml follows it after a restart)."""
        reg = self.registries
        host = ref.registry
        if reg is None:
            return Resolution(self.name, ref, (Endpoint(f"https://{host}/v2", "https", host, "registry"),))
        mirror = reg.mirrors.get(host) or reg.mirrors.get("*")
        eps: list[Endpoint] = []
        if mirror is not None:
            for e in mirror.endpoints:
                url = e if "://" in e else f"https://{e}"
                hp = url.split("://", 1)[1].split("/", 1)[0]
                eps.append(self._ep(url, hp, "mirror", Origin(reg.path, mirror.line, f"mirrors.{mirror.host}")))
        if not any(e.host == host for e in eps):
            eps.append(self._ep(f"https://{host}", host, "registry", DEFAULT))
        return Resolution(self.name, ref, tuple(eps))

    def _ep(self, url: str, hp: str, role: str, origin: Origin) -> Endpoint:
        reg = self.registries
        c = reg.configs.get(hp) if reg else None
        tls = TlsMaterial(origin=origin)
        if c is not None and c.tls:
            ca = c.tls.get("ca_file")
            pair = (c.tls.get("cert_file"), c.tls.get("key_file"))
            tls = TlsMaterial((ca,) if ca else (), (pair,) if all(pair) else (),  # type: ignore[arg-type]
                              bool(c.tls.get("insecure_skip_verify")), True, Origin(reg.path, c.line))  # type: ignore[union-attr]
        scheme = "http" if url.startswith("http://") else "https"
        return Endpoint(url.rstrip("/") + "/v2", scheme, hp, role, tls=tls, origin=origin)  # type: ignore[arg-type]


@fact()
def k3s_runtime(facts: Facts) -> K3sRuntime | None:
    reg = facts.optional("k3s_registries")
    have_dir = facts.source.stat(K3S_CERTS_D) is not None or read_first(facts.source, "k3s_containerd_config")
    if reg is None and not have_dir:
        return None
    gen = HostsDirRuntime("k3s-containerd", "k3s's containerd", (K3S_CERTS_D,), source_lister(facts),
                          source_reader(facts))
    return K3sRuntime(reg, gen, origin=Origin(reg.path if reg else K3S_CONTAINERD_DIR))
