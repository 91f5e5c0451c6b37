"""Fix recipes for containers/image clients (podman, buildah, skopeo, CRI-O): registries.conf and certs.d.

A recipe returns the existing Fix data (dockerdoctor.model): the edit of registries.conf is computed here,
with tomlkit, on the file the client really reads (the main file in effect, or the table that decides),
and carried as a ReplaceFileContent of the whole new text. tomlkit keeps every comment, blank line and the
order of keys, so the stock Fedora/RHEL registries.conf (mostly comments) keeps its comments; the
transaction (fixes/apply.py) backs the file up, writes it atomically and keeps its mode.

tomlkit is imported only here, and only when a fix edits a file.

Least privilege: the CA in /etc/containers/certs.d/HOST:PORT/ca.crt comes first (podman, buildah, skopeo
and CRI-O read it on every pull: no restart); ``insecure = true`` is the named alternative, with its cost.
"""

from __future__ import annotations

from typing import Any

from dockerdoctor.fixes.registry_side import serve_tls_command
from dockerdoctor.model import Fix, ReplaceFileContent, RunCommand, Trust

INSECURE_COST = (
    "insecure = true lets podman, buildah, skopeo and CRI-O talk plain HTTP to this registry and accept any "
    "certificate from it: anyone on the path can read and alter images. Prefer TLS with the CA in "
    "/etc/containers/certs.d."
)


class EditError(ValueError):
    """The file cannot be edited safely (it does not parse)."""


def ca_path(host: str) -> str:
    return f"/etc/containers/certs.d/{host}/ca.crt"


def set_insecure(text: str | None, host: str, prefix: str | None = None) -> str:
    """registries.conf with ``insecure = true`` for ``prefix`` (default: host), comments and layout kept.

    An existing [[registry]] table with that prefix (or, without a prefix, that location) is edited in
    place; otherwise a new table is appended. A v1 file gets the host in [registries.insecure].
    """
    import tomlkit

    try:
        doc = tomlkit.parse(text or "")
    except Exception as exc:  # tomlkit raises its own ParseError family
        raise EditError(f"registries.conf does not parse: {exc}") from None
    want = prefix or host
    v1 = doc.get("registries")
    if v1 is not None and "registry" not in doc:
        ins = v1.get("insecure")
        if ins is None:
            ins = tomlkit.table()
            ins["registries"] = tomlkit.array()
            v1["insecure"] = ins
        regs = ins.get("registries")
        if regs is None:
            regs = tomlkit.array()
            ins["registries"] = regs
        if host not in [str(r) for r in regs]:
            regs.append(host)
        return tomlkit.dumps(doc)
    tables = doc.get("registry")
    if tables is not None:
        for t in tables:
            p = str(t.get("prefix", "") or t.get("location", "")).rstrip("/")
            if p == want:
                t["insecure"] = True
                return tomlkit.dumps(doc)
    new = tomlkit.table()
    new["prefix"] = want
    new["location"] = want
    new["insecure"] = True
    out = tomlkit.dumps(doc)
    if tables is None:
        aot = tomlkit.aot()
        aot.append(new)
        doc.append("registry", aot)
        out = tomlkit.dumps(doc)
    else:
        tables.append(new)
        out = tomlkit.dumps(doc)
    return out if out.endswith("\n") else out + "\n"


def _target_file(cfg: Any, host: str) -> tuple[str, str | None, str | None]:
    """(path, its text, prefix to edit): the file and table that decide for host in this client's configuration."""
    table = cfg.table_for(host)
    if table is not None and not table.v1:
        return table.origin.source, None, table.prefix
    return cfg.main, None, None


def insecure_fix(cfg: Any, host: str, texts: dict[str, str | None]) -> Fix:
    """Mark host insecure in the registries.conf each client reads (the table in effect, else its main file).

    ``cfg`` is one ContainersConfig or a list of them (the clients that do not trust host): clients that load
    different files (CONTAINERS_REGISTRIES_CONF for podman, the system file for skopeo) get one edit each."""
    cfgs = cfg if isinstance(cfg, (list, tuple)) else [cfg]
    ops: list[Any] = []
    where: list[str] = []
    for c in cfgs:
        path, _, prefix = _target_file(c, host)
        if path in where:
            continue
        try:
            new = set_insecure(texts.get(path), host, prefix)
        except EditError as exc:
            return Fix(f"Repair {path} first ({exc}), then set insecure = true for {host}", (),
                       warnings=(INSECURE_COST,))
        ops.append(ReplaceFileContent(path, new, 0o644))
        where.append(path)
    return Fix(
        f"Set insecure = true for {host} in {' and '.join(where)} (read on every pull: no restart)",
        tuple(ops),
        warnings=(INSECURE_COST,),
    )


def trust_fix(cfg: Any, host: str, plain_http: bool, texts: dict[str, str | None]) -> Fix:
    """The preferred repair (TLS with the CA in /etc/containers/certs.d), insecure = true the named alternative."""
    path = ca_path(host)
    ops: list[Any] = []
    if plain_http:
        ops.append(serve_tls_command(host, "on the registry host: serve TLS (or put TLS on the existing registry); "
                                           "it prints the CA to copy"))
    ops.append(RunCommand(("install", "-D", "-m", "0644", "ca.crt", path),
                          "on this host: trust the registry's CA; podman, buildah, skopeo and CRI-O read certs.d on "
                          "every pull, no restart"))
    # fix --apply picks TLS (--ca writes the CA to `path`) or the insecure alternative, as for dockerd
    return Fix(f"Use TLS: trust the registry's CA in {path}", tuple(ops),
               alternatives=(insecure_fix(cfg, host, texts),),
               trust=Trust(host, plain_http=plain_http, ca_path=path))

