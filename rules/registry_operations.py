"""The registry in operation: deleting images (DD406: deletes disabled, by tag, garbage collection while
live) and several replicas behind one name without a shared secret (DD407)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from dockerdoctor.rules.registry_evidence import need_containers, need_logs

from dockerdoctor.engine import finding, rule
from dockerdoctor.facts.containers import ContainerInfo
from dockerdoctor.facts.registry_containers import RegistryContainer, mount_covering
from dockerdoctor.fixes.recipes import docker_run_argv
from dockerdoctor.fixes.recipes.container import delete_by_digest_fix, offline_gc_fix, recreate_fix, shared_secret_fix
from dockerdoctor.model import Finding, Severity

DELETE_UNSUPPORTED = re.compile(r"UNSUPPORTED|The operation is unsupported|405 Method Not Allowed", re.I)
DELETE_REQUEST = re.compile(r'(?:http\.request\.method=DELETE|"DELETE |method=DELETE|DELETE /v2/)')
DELETE_BY_TAG = re.compile(r"DELETE\s*\S*?/v2/(?P<repo>[^ \"]+?)/manifests/(?P<ref>[^ \"?]+)")
DELETE_BY_TAG_URI = re.compile(r"http\.request\.uri=\"?/v2/(?P<repo>[^ \"]+?)/manifests/(?P<ref>[^ \"?]+)")
GC_LINE = re.compile(r"garbage-collect|blob eligible for deletion|marking (manifest|blob)", re.I)
NO_SECRET = re.compile(r"No HTTP secret provided")


# ============================================================================ DD406


@rule("DD406", "registry-delete", category="registry", severity=Severity.WARNING,
      title="Image deletion is disabled or misused")
def registry_delete(registry_containers: list[RegistryContainer]) -> Iterator[Finding]:
    """Deleting images from the registry fails or does not free space: deletes are disabled
    (`405 Method Not Allowed`, code UNSUPPORTED), a manifest is deleted by tag instead of by
    digest, or garbage collection runs while the registry accepts pushes.

    Why it happens: registry 2 disables DELETE unless storage.delete.enabled is true
    (REGISTRY_STORAGE_DELETE_ENABLED=true). The API deletes manifests by digest only
    (`DELETE /v2/NAME/manifests/sha256:...`). `registry garbage-collect` on a live registry can
    delete blobs that an upload in flight still needs.

    How to fix: set REGISTRY_STORAGE_DELETE_ENABLED=true (recreate the container); delete by the
    digest from the `Docker-Content-Digest` header; run garbage-collect with the registry stopped
    or in read-only mode (REGISTRY_STORAGE_MAINTENANCE_READONLY='{"enabled": true}').

    Example:
        level=error msg="response completed with error" err.code=unsupported
        err.message="The operation is unsupported." http.request.method=DELETE
    """
    need_logs(registry_containers)
    for rc in registry_containers:
        if rc.version == "v0":
            continue
        yield from _deletes_disabled(rc)
        yield from _deleted_by_tag(rc.container)
        yield from _gc_while_live(rc.container)


def _deletes_enabled(rc: RegistryContainer) -> bool:
    if rc.container.env.get("REGISTRY_STORAGE_DELETE_ENABLED", "").lower() == "true":
        return True
    try:
        return bool((rc.config or {})["storage"]["delete"]["enabled"])
    except (KeyError, TypeError):
        return False


def _deletes_disabled(rc: RegistryContainer) -> Iterator[Finding]:
    c = rc.container
    disabled = [h for h in c.log_grep(DELETE_UNSUPPORTED) if DELETE_REQUEST.search(h[1])]
    if disabled and not _deletes_enabled(rc):
        run = docker_run_argv(c, set_env={"REGISTRY_STORAGE_DELETE_ENABLED": "true"})
        yield finding(
            "DD406", f"Deletes are disabled on registry {c.name}",
            f"{c.name} answered a DELETE with UNSUPPORTED (405): storage.delete.enabled is not set.",
            evidence=[c.log_evidence(*disabled[-1]),
                      c.evidence("REGISTRY_STORAGE_DELETE_ENABLED is not set")],
            fix=recreate_fix(c, run, f"Recreate {c.name} with REGISTRY_STORAGE_DELETE_ENABLED=true",
                             "the same container, with deletes enabled"),
            params={"container": c.name, "problem": "delete-disabled"},
        )


def _deleted_by_tag(c: ContainerInfo) -> Iterator[Finding]:
    by_tag = []
    for lineno, line in c.log_grep(re.compile(r"DELETE")):
        m = DELETE_BY_TAG.search(line) or DELETE_BY_TAG_URI.search(line)
        if m and not m.group("ref").startswith("sha256:"):
            by_tag.append((lineno, line, m.group("repo"), m.group("ref")))
    if by_tag:
        lineno, line, repo, ref = by_tag[-1]
        yield finding(
            "DD406", f"A manifest is deleted by tag on registry {c.name}",
            f"A client sent DELETE /v2/{repo}/manifests/{ref}: the API deletes manifests by digest only. "
            "Read the digest from the Docker-Content-Digest header of a HEAD request, then delete that.",
            evidence=[c.log_evidence(lineno, line)],
            fix=delete_by_digest_fix(repo, ref),
            params={"container": c.name, "problem": "delete-by-tag", "repository": repo, "tag": ref},
        )


def _gc_while_live(c: ContainerInfo) -> Iterator[Finding]:
    gc = c.log_grep(GC_LINE)
    readonly = "REGISTRY_STORAGE_MAINTENANCE_READONLY" in c.env and "true" in \
        c.env["REGISTRY_STORAGE_MAINTENANCE_READONLY"].lower()
    if gc and c.running and not readonly:
        yield finding(
            "DD406", f"Garbage collection ran while registry {c.name} was live",
            f"{c.name}'s log shows garbage collection while the registry accepts writes; blobs of uploads in "
            "flight can be deleted. Stop the registry (or make it read-only) for garbage-collect.",
            evidence=[c.log_evidence(*gc[-1])],
            fix=offline_gc_fix(c),
            params={"container": c.name, "problem": "gc-while-live"},
        )


# ============================================================================ DD407


def _secret(rc: RegistryContainer) -> str | None:
    v = rc.container.env.get("REGISTRY_HTTP_SECRET")
    if v:
        return v
    try:
        s = (rc.config or {})["http"]["secret"]
        return str(s) if s else None
    except (KeyError, TypeError):
        return None


def _storage_key(rc: RegistryContainer) -> str:
    m = mount_covering(rc.container, rc.data_dir) if rc.data_dir else None
    if m is not None and m.type in ("bind", "volume"):
        return f"{m.type}:{m.source or m.name}"
    return f"image:{rc.container.image_repo}"


@rule("DD407", "registry-http-secret-missing", category="registry", severity=Severity.ERROR,
      title="Registry replicas have no shared HTTP secret")
def registry_http_secret_missing(registry_containers: list[RegistryContainer]) -> Iterator[Finding]:
    """Several registry replicas serve the same storage, but they do not share one
    REGISTRY_HTTP_SECRET, so an upload started on one replica fails on another
    (`blob upload invalid`, `BLOB_UPLOAD_INVALID`, or 404 on the PATCH/PUT).

    Why it happens: each registry signs its upload state with http.secret; when it is unset, each
    replica generates its own at start (it logs `No HTTP secret provided - generated random
    secret`). Behind a load balancer, the chunks of one push land on different replicas.

    How to fix: generate one secret (`openssl rand -hex 32`) and give it to every replica as
    REGISTRY_HTTP_SECRET (recreate each container), or set http.secret in the shared config.yml.
    `dockerdoctor serve-registry` replicas read the same variable and key (or --http-secret); they
    answer 400 BLOB_UPLOAD_INVALID naming --http-secret when the secrets differ or one lacks it.

    Example:
        level=warning msg="No HTTP secret provided - generated random secret. This may cause problems
        with uploads if multiple registries are behind a load-balancer. ..."
    """
    need_containers(registry_containers)
    groups: dict[str, list[RegistryContainer]] = {}
    for rc in registry_containers:
        if rc.version == "v0" or not rc.container.running:
            continue
        groups.setdefault(_storage_key(rc), []).append(rc)
    for key, members in groups.items():
        if len(members) < 2:
            continue
        secrets = {_secret(rc) for rc in members}
        if len(secrets) == 1 and None not in secrets:
            continue
        ev = []
        for rc in members:
            s = _secret(rc)
            ev.append(rc.evidence(f"{rc.name}: REGISTRY_HTTP_SECRET {'set' if s else 'not set'}"))
            hits = rc.container.log_grep(NO_SECRET)
            if hits:
                ev.append(rc.container.log_evidence(*hits[-1]))
        names = ", ".join(rc.name for rc in members)
        yield finding(
            "DD407", f"Registry replicas {names} do not share an HTTP secret",
            f"{len(members)} running registries share storage ({key.split(':', 1)[1]}), but "
            + ("none sets REGISTRY_HTTP_SECRET" if secrets == {None} else "their REGISTRY_HTTP_SECRET differs")
            + ", so uploads spread over them fail.",
            evidence=ev,
            fix=shared_secret_fix([rc.container for rc in members]),
            params={"containers": [rc.name for rc in members]},
        )


