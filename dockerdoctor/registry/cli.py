"""serve-registry and registry subcommands. `register(app)` adds them to the main CLI."""

from __future__ import annotations

import json
import os
import re
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    from dockerdoctor.registry.client import RegistryClient

GC_HELP = (
    "The manifest is gone, but its layers still take disk space until garbage collection runs:\n"
    "  serve-registry:  dockerdoctor registry gc --root DIR   (stop the server, or run it with --read-only)\n"
    "  registry:2:      registry garbage-collect /etc/docker/registry/config.yml\n"
    "                   (with the registry stopped or in read-only maintenance mode; never while pushes run)"
)

DELETE_DISABLED_HELP = (
    "this registry does not allow deletes (405 UNSUPPORTED). For registry:2 set "
    "REGISTRY_STORAGE_DELETE_ENABLED=true (storage: delete: enabled: true) and restart it; "
    "for serve-registry drop --no-delete and --read-only."
)

def _fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr, with the prefix every dockerdoctor command uses, control characters escaped."""
    from dockerdoctor.safetext import printable

    typer.echo(f"dockerdoctor: error: {printable(' '.join(str(message).split()))}", err=True)
    raise typer.Exit(code)


def _target(text: str | None, registry: str):  # type: ignore[no-untyped-def]
    """TARGET/IMAGE with its registry part checked: HOST[:PORT], nothing else (one clear line, exit 2)."""
    from dockerdoctor.net import parse_registry_arg
    from dockerdoctor.registry.client import parse_target

    try:
        parse_registry_arg(registry, need_port=False)
    except ValueError as exc:
        _fail(f"--registry {exc}")
    if text is None:
        return parse_target(text, registry)
    shown = ascii(text) if not text.isprintable() else repr(text)
    if not text.strip():
        _fail("the argument is empty: give HOST:PORT or [HOST:PORT/]REPO[:TAG]")
    if any(c.isspace() or not c.isprintable() for c in text):
        _fail(f"{shown} contains a space or control character: give HOST:PORT or [HOST:PORT/]REPO[:TAG]")
    if "://" in text:
        _fail(f"{shown}: give HOST:PORT without a scheme (--plain-http speaks http://), e.g. "
              f"{text.split('://', 1)[1].split('/', 1)[0] or '10.0.0.5:5000'}")
    t = parse_target(text, registry)
    if t.registry != registry:
        try:
            parse_registry_arg(t.registry, need_port=False)
        except ValueError as exc:
            _fail(f"the registry in {shown}: {str(exc).split(': ', 1)[-1] if t.registry == text else exc}")
    return t


DEFAULT_REGISTRY = "localhost:5000"


def client_hint(msg: str, registry: str, named: bool, user: str | None, plain_http: bool) -> str:
    """A failed registry call's message, with the hint that fits (`named`: the user named the registry)."""
    if "cannot reach" in msg and not named:
        return msg + f" (no registry was named, so {registry} was tried: give HOST:PORT)"
    if "closed the connection without an answer" in msg and plain_http:
        return msg + " (it may speak TLS: drop --plain-http)"
    if re.search(r"\bHTTP 401\b|UNAUTHORIZED", msg) and not user:
        return msg + " (give credentials with -u USER[:PASSWORD], or `docker login` first)"
    return msg


def _client_failed(e: Exception, t, arg: str | None, registry: str, user: str | None,  # type: ignore[no-untyped-def]
                   plain_http: bool) -> NoReturn:
    named = registry != DEFAULT_REGISTRY or (arg is not None and t.registry != registry)
    _fail(client_hint(str(e), t.registry, named, user, plain_http))


_SELF_SIGNED_OPT = typer.Option(
    None,
    "--tls-self-signed",
    metavar="NAME",
    help="Make a CA and a server certificate for these host names/IPs (repeat, or comma-separate).",
)


_S3_ENV = "REGISTRY_STORAGE_S3_"


def _s3_options(
    ctx: typer.Context | None, from_file: dict[str, Any] | None, cli: dict[str, Any]
) -> Any:
    """S3Options from config.yml's storage.s3 (and REGISTRY_STORAGE_S3_*), with the --s3-* options on top."""
    from dockerdoctor.registry.s3 import S3Options

    fields: dict[str, Any] = dict(from_file or {})
    for name, value in cli.items():
        src = ctx.get_parameter_source(name) if ctx is not None else None
        if src is not None and src.name not in ("DEFAULT", "DEFAULT_MAP"):
            fields[name.removeprefix("s3_")] = value
    if not fields.get("bucket"):
        return None
    for key in ("accesskey", "secretkey"):  # keys stay out of the command line
        if key not in fields and os.environ.get(_S3_ENV + key.upper()):
            fields[key] = os.environ[_S3_ENV + key.upper()]
    try:
        opts = S3Options(**fields)
        opts.check()
    except (TypeError, ValueError) as e:
        _fail(str(e))
    return opts


def serve_registry(
    ctx: typer.Context,
    config: str | None = typer.Option(
        None,
        "--config",
        help="Read distribution's config.yml (and REGISTRY_* variables); options given here win.",
    ),
    host: str = typer.Option("0.0.0.0", "--host", help="Address to listen on."),
    port: int = typer.Option(5000, "--port", help="Port to listen on (0 picks a free one)."),
    root: str = typer.Option(
        "/var/lib/registry",
        "--root",
        help="Storage directory (same layout as registry:2's filesystem driver).",
    ),
    tls_cert: str | None = typer.Option(None, "--tls-cert", help="PEM certificate (chain) for HTTPS."),
    tls_key: str | None = typer.Option(None, "--tls-key", help="PEM private key for --tls-cert."),
    tls_self_signed: list[str] | None = _SELF_SIGNED_OPT,
    tls_dir: str | None = typer.Option(
        None,
        "--tls-dir",
        help="Where --tls-self-signed keeps its CA, keys and certificate, outside ROOT [default: ROOT.tls].",
    ),
    htpasswd: str | None = typer.Option(None, "--htpasswd", help="Require Basic auth from this bcrypt htpasswd file."),
    realm: str = typer.Option("dockerdoctor", "--realm", help="Basic-auth realm."),
    read_only: bool = typer.Option(False, "--read-only", help="Serve pulls only; writes get 405 UNSUPPORTED."),
    no_delete: bool = typer.Option(
        False, "--no-delete", help="Refuse DELETE of manifests and blobs (405 UNSUPPORTED)."
    ),
    workers: int = typer.Option(1, "--workers", min=1, max=64, help="Worker processes sharing the port."),
    max_upload_size: str | None = typer.Option(
        None, "--max-upload-size", help="Largest blob accepted, e.g. 5G (larger gets 413)."
    ),
    upload_ttl: str = typer.Option(
        "24h", "--upload-ttl", help="Purge upload sessions older than this (e.g. 30m, 24h, 7d; 0 turns purging off)."
    ),
    access_log: str = typer.Option("-", "--access-log", help="Access log file, '-' for stderr."),
    no_access_log: bool = typer.Option(False, "--no-access-log", help="Do not write an access log."),
    fsync: bool = typer.Option(False, "--fsync", help="fsync blobs before they become visible (slower)."),
    max_connections: int = typer.Option(
        0, "--max-connections", min=0, help="Connections per worker [default: what the open-file limit allows]."
    ),
    header_timeout: str = typer.Option("30s", "--header-timeout", help="Close a connection whose request head is "
                                       "not complete after this long."),
    body_timeout: str = typer.Option("60s", "--body-timeout", help="Close a request whose body, or a response "
                                     "the client reads, makes no progress for this long."),
    idle_timeout: str = typer.Option("90s", "--idle-timeout", help="Close a keep-alive connection idle this long."),
    http_secret: str | None = typer.Option(
        None,
        "--http-secret",
        envvar="REGISTRY_HTTP_SECRET",
        show_envvar=True,
        help="Sign upload URLs; replicas behind one load balancer need the same (openssl rand -hex 32).",
    ),
    s3_bucket: str | None = typer.Option(
        None, "--s3-bucket", envvar=_S3_ENV + "BUCKET", help="Store in this S3 bucket instead of --root (extra s3)."
    ),
    s3_regionendpoint: str | None = typer.Option(
        None, "--s3-endpoint", envvar=_S3_ENV + "REGIONENDPOINT", help="S3-compatible endpoint URL (MinIO, Ceph RGW)."
    ),
    s3_region: str = typer.Option("us-east-1", "--s3-region", envvar=_S3_ENV + "REGION", help="S3 region."),
    s3_rootdirectory: str = typer.Option(
        "", "--s3-root", envvar=_S3_ENV + "ROOTDIRECTORY", help="Key prefix in the bucket (storage.s3.rootdirectory)."
    ),
    s3_forcepathstyle: bool = typer.Option(
        False,
        "--s3-path-style/--s3-virtual-hosted",
        help="Path-style (most S3-compatible servers) or virtual-hosted (BUCKET.HOST) bucket addressing "
        "[default: path style with --s3-endpoint, else virtual-hosted].",
        show_default=False,
    ),
    s3_chunksize: int = typer.Option(
        10 << 20, "--s3-chunk-size", min=5 << 20, help="Multipart part size in bytes (at least 5 MiB)."
    ),
    s3_redirect: bool = typer.Option(False, "--s3-redirect", help="Redirect blob GETs to pre-signed S3 URLs."),
) -> None:
    """Run an OCI distribution-spec registry (Docker media types included) on --root.

    Examples:

    \b
      dockerdoctor serve-registry --root /var/lib/registry --tls-self-signed registry.lan
      dockerdoctor serve-registry --config /etc/docker/registry/config.yml   # the CNCF registry's file

    More: docs/serve-registry.md (config.yml keys, replicas behind nginx, limits and timeouts).
    """
    from dockerdoctor.registry import tls as tlsmod
    from dockerdoctor.registry.app import Settings
    from dockerdoctor.registry.auth import Htpasswd, HtpasswdError
    from dockerdoctor.registry.common import parse_duration, parse_size
    from dockerdoctor.registry.guard import Limits
    from dockerdoctor.registry.server import ServeConfig, ServeError, serve

    notes: list[str] = []
    s3_file: dict[str, Any] | None = None
    upload_interval = 3600.0
    headers: dict[str, str] = {}
    drain: float | None = None
    if config:
        from dockerdoctor.registry.config import ConfigError, load

        try:
            rc = load(config)
        except ConfigError as e:
            _fail(str(e))

        def unset(name: str) -> bool:
            src = ctx.get_parameter_source(name)
            return src is None or src.name in ("DEFAULT", "DEFAULT_MAP")

        if rc.root is not None and unset("root"):
            root = rc.root
        s3_file = rc.s3
        if rc.host is not None and unset("host"):
            host = rc.host
        if rc.port is not None and unset("port"):
            port = rc.port
        if rc.tls_cert and unset("tls_cert") and unset("tls_self_signed"):
            tls_cert, tls_key = rc.tls_cert, rc.tls_key
        if rc.htpasswd and unset("htpasswd"):
            htpasswd = rc.htpasswd
            if unset("realm") and rc.realm:
                realm = rc.realm
        if unset("no_delete"):
            no_delete = not rc.allow_delete
        if unset("read_only"):
            read_only = rc.read_only
        if unset("upload_ttl"):
            upload_ttl = f"{rc.upload_ttl}s" if rc.purge else "0s"
        if unset("no_access_log") and not rc.access_log:
            no_access_log = True
        upload_interval = rc.purge_interval
        headers = rc.headers
        drain = rc.drain_timeout
        if rc.http_secret and unset("http_secret"):
            http_secret = rc.http_secret
        if rc.log_level:
            import logging

            logging.getLogger("dockerdoctor.registry").setLevel(
                {"warn": "WARNING", "error": "ERROR", "info": "INFO", "debug": "DEBUG"}[rc.log_level]
            )
        if not rc.purge:
            notes.append("upload purging is off (storage.maintenance.uploadpurging)")
        notes.extend(f"{config}: {w}" for w in rc.warnings)
        for key in rc.ignored:
            notes.append(f"{config}: {key}: not supported by serve-registry, ignored")
    if port < 0 or port > 65535:
        _fail(f"--port {port} is out of range")
    try:
        limit = parse_size(max_upload_size) if max_upload_size else None
        ttl = parse_duration(upload_ttl)
        limits = Limits(
            max_connections=max_connections,
            header_timeout=parse_duration(header_timeout),
            body_timeout=parse_duration(body_timeout),
            idle_timeout=parse_duration(idle_timeout),
        )
    except ValueError as e:
        _fail(str(e))
    if (tls_cert is None) != (tls_key is None):
        _fail("--tls-cert and --tls-key go together")
    if tls_cert and tls_self_signed:
        _fail("use either --tls-cert/--tls-key or --tls-self-signed, not both")
    s3 = _s3_options(ctx, s3_file, {
        "s3_bucket": s3_bucket, "s3_regionendpoint": s3_regionendpoint, "s3_region": s3_region,
        "s3_rootdirectory": s3_rootdirectory, "s3_forcepathstyle": s3_forcepathstyle, "s3_chunksize": s3_chunksize,
        "s3_redirect": s3_redirect,
    })  # fmt: skip
    root = os.path.abspath(root)
    if s3 is None:
        try:
            os.makedirs(root, exist_ok=True)
        except OSError as e:
            _fail(f"cannot create storage root {root}: {e.strerror}")
    elif fsync:
        notes.append("--fsync has no meaning on S3 (an object is durable once stored)")
    settings = Settings(
        read_only=read_only,
        allow_delete=not no_delete,
        max_upload=limit,
        upload_max_age=ttl if ttl > 0 else float("inf"),
        purge=ttl > 0,
        purge_interval=upload_interval,
        headers=headers,
        http_secret=http_secret.encode() if http_secret else None,
    )
    if htpasswd:
        try:
            settings.htpasswd = Htpasswd.load(htpasswd)
        except HtpasswdError as e:
            _fail(str(e))
        settings.realm = realm
    ssl_context = None
    self_signed: tuple[str, list[str]] | None = None
    names = tlsmod.split_names(tls_self_signed or [])
    try:
        if names:
            directory = os.path.abspath(tls_dir) if tls_dir else tlsmod.default_dir(root)
            if tlsmod.inside(directory, root):
                _fail(f"--tls-dir {directory} is inside the storage root {root}: keep private keys out of it")
            moved = tlsmod.adopt_legacy(root, directory)
            if moved:
                notes.append(moved)
            made = tlsmod.ensure_self_signed(directory, names)
            ssl_context = tlsmod.server_context(made.cert, made.key)
            self_signed = (made.ca_cert, names)
        elif tls_cert and tls_key:
            ssl_context = tlsmod.server_context(tls_cert, tls_key)
    except tlsmod.TLSSetupError as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"cannot write TLS files: {e.strerror}")
    cfg = ServeConfig(
        root=root,
        host=host,
        port=port,
        workers=workers,
        ssl_context=ssl_context,
        settings=settings,
        access_log=None if no_access_log else access_log,
        fsync=fsync,
        self_signed=self_signed,
        limits=limits,
        warnings=notes,
        s3=s3,
    )
    if drain is not None:
        cfg.shutdown_timeout = drain
    try:
        code = serve(cfg)
    except ServeError as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"cannot serve: {e.strerror or e}")
    raise typer.Exit(code)


registry_app = typer.Typer(
    name="registry",
    help="List and delete images in any registry; garbage-collect serve-registry storage.",
    no_args_is_help=True,
)


def _client(
    target_registry: str, user: str | None, insecure: bool, ca_cert: str | None, plain_http: bool
) -> RegistryClient:
    from dockerdoctor.registry.client import RegistryClient

    password = None
    if user and ":" in user:
        user, password = user.split(":", 1)
    elif user:
        password = os.environ.get("DOCKERDOCTOR_REGISTRY_PASSWORD", "")
    return RegistryClient(
        target_registry,
        user=user,
        password=password,
        insecure=insecure,
        ca_cert=ca_cert,
        scheme="http" if plain_http else None,
    )


_REGISTRY_OPT = typer.Option(DEFAULT_REGISTRY, "--registry", metavar="HOST:PORT",
                             help="Registry used when the argument names none.")
_USER_OPT = typer.Option(None, "--user", "-u", help="USER[:PASSWORD] (else ~/.docker/config.json).")
_INSECURE_OPT = typer.Option(False, "--insecure", help="Do not verify the TLS certificate.")
_CA_OPT = typer.Option(None, "--ca-cert", help="CA file [default: /etc/docker/certs.d/HOST:PORT/ca.crt].")
_PLAIN_OPT = typer.Option(False, "--plain-http", help="Use http:// without trying https first.")


@registry_app.command("ls")
def registry_ls(
    target: str | None = typer.Argument(None, help="HOST:PORT, REPO or HOST:PORT/REPO."),
    registry: str = _REGISTRY_OPT,
    user: str | None = _USER_OPT,
    insecure: bool = _INSECURE_OPT,
    ca_cert: str | None = _CA_OPT,
    plain_http: bool = _PLAIN_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List repositories and their tags (or the tags of one REPO).

    Examples:

      dockerdoctor registry ls 10.0.0.5:5000                 (every repository and its tags)

      dockerdoctor registry ls 10.0.0.5:5000/app             (the tags of one repository)

      dockerdoctor registry ls 10.0.0.5:5443 --ca-cert ca.crt -u admin

      dockerdoctor registry ls 10.0.0.5:5000 --plain-http --json
    """
    from dockerdoctor.registry.client import ClientError

    t = _target(target, registry)
    c = _client(t.registry, user, insecure, ca_cert, plain_http)
    try:
        repos = [t.repo] if t.repo else c.catalog()
        listing = {repo: sorted(c.tags(repo)) for repo in repos}
    except ClientError as e:
        _client_failed(e, t, target, registry, user, plain_http)
    if as_json:
        typer.echo(json.dumps({"registry": t.registry, "repositories": listing}, indent=2))
        return
    if t.repo:
        for tag in listing[t.repo]:
            typer.echo(tag)
        return
    if not listing:
        typer.echo(f"{t.registry}: no repositories", err=True)
    for repo, tags in listing.items():
        typer.echo(f"{t.registry}/{repo}: {' '.join(tags) if tags else '(no tags)'}")


@registry_app.command("rm")
def registry_rm(
    image: str = typer.Argument(..., help="[HOST:PORT/]REPO:TAG or REPO@DIGEST."),
    registry: str = _REGISTRY_OPT,
    user: str | None = _USER_OPT,
    insecure: bool = _INSECURE_OPT,
    ca_cert: str | None = _CA_OPT,
    plain_http: bool = _PLAIN_OPT,
    dry_run: bool = typer.Option(False, "--dry-run", help="Resolve and explain, delete nothing."),
) -> None:
    """Delete an image the right way: resolve the tag to its digest, then DELETE by digest.

    Deleting by digest removes every tag of that digest (they are named first). The blobs stay on disk
    until the registry's garbage collection runs (`registry gc` for serve-registry).

    Examples:

      dockerdoctor registry rm 10.0.0.5:5000/app:1 --dry-run   (which digest, which other tags)

      dockerdoctor registry rm 10.0.0.5:5000/app:1

      dockerdoctor registry rm 10.0.0.5:5000/app@sha256:0123...   (by digest)
    """
    from dockerdoctor.registry.client import ClientError, describe_error

    t = _target(image, registry)
    if not t.repo or not t.ref:
        _fail(f"{image!r}: give REPO:TAG or REPO@DIGEST (deleting a whole repository is not a registry operation)")
    c = _client(t.registry, user, insecure, ca_cert, plain_http)
    try:
        digest = t.ref if ":" in t.ref else c.resolve(t.repo, t.ref)
        others: list[str] = []
        if ":" not in t.ref:
            tags = c.tags(t.repo)
            if len(tags) <= 200:
                others = [x for x in tags if x != t.ref and c.resolve(t.repo, x) == digest]
        typer.echo(f"{t.registry}/{t.repo}:{t.ref} is {digest}" if ":" not in t.ref else f"deleting {digest}")
        if others:
            typer.echo(f"note: deleting by digest also removes the tags {', '.join(others)} (same digest)")
        if dry_run:
            typer.echo("dry run: nothing deleted")
            return
        r = c.delete_manifest(t.repo, digest)
    except ClientError as e:
        _client_failed(e, t, image, registry, user, plain_http)
    if r.status_code == 405:
        _fail(DELETE_DISABLED_HELP)
    if r.status_code == 404:
        _fail(f"{t.repo}@{digest}: {describe_error(r)}")
    if r.status_code >= 300:
        _fail(f"DELETE {t.repo}@{digest}: {describe_error(r)}")
    typer.echo(f"deleted {t.registry}/{t.repo}@{digest}")
    typer.echo(GC_HELP)


@registry_app.command("gc")
def registry_gc(
    root: str = typer.Option("/var/lib/registry", "--root", help="serve-registry (or registry:2) storage root."),
    config: str | None = typer.Option(
        None, "--config", help="Take the storage (filesystem or s3) from distribution's config.yml (and REGISTRY_*)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Report what would be deleted."),
    delete_untagged: bool = typer.Option(False, "--delete-untagged", help="Also delete manifests no tag reaches."),
    force: bool = typer.Option(False, "--force", help="Run even if a writable serve-registry uses ROOT."),
) -> None:
    """Offline mark-and-sweep over registry storage: delete blobs that no manifest references.

    It reads the storage itself, not a registry over the network: a local root (serve-registry's, or
    registry:2's filesystem driver), or the S3 bucket a --config names. Stop the servers first, or run
    serve-registry with --read-only (a CNCF registry: storage.maintenance.readonly.enabled). For a local
    root it refuses while a writable serve-registry or registry on this host serves ROOT; a bucket has no
    such check (replicas elsewhere may write to it), so with S3 stopping them is up to you.

    Examples:

      dockerdoctor registry gc --root /var/lib/registry --dry-run

      dockerdoctor registry gc --root /var/lib/registry --delete-untagged
    """
    from dockerdoctor.registry.gc import collect, distribution_using
    from dockerdoctor.registry.server import storage_in_use
    from dockerdoctor.registry.storage import FilesystemDriver

    s3 = None
    if config:
        from dockerdoctor.registry.config import ConfigError, load

        try:
            rc = load(config)
        except ConfigError as e:
            _fail(str(e))
        if rc.root is not None:
            root = rc.root
        s3 = _s3_options(None, rc.s3, {})
    driver: Any
    if s3 is not None:
        from dockerdoctor.registry.s3 import S3Driver, S3Unavailable

        try:
            driver = S3Driver(s3)
        except S3Unavailable as e:
            _fail(str(e))
        where = s3.describe()
        # a bucket has no lock a live server holds: like distribution's gc, run it with the registries
        # stopped or read-only
        typer.echo(f"warning: {where}: no check for running registries on S3; stop or --read-only them all",
                   err=True)  # fmt: skip
    else:
        driver = FilesystemDriver(root)
        where = root
        if not os.path.isdir(driver.base):
            _fail(f"{root} holds no registry storage (no {driver.base})")
        if not dry_run and not force and storage_in_use(driver.root):
            _fail(
                f"a writable serve-registry is using {root}; stop it (or restart it with --read-only) "
                "before gc, or pushes in flight lose blobs"
            )
        other = None if dry_run or force else distribution_using(driver.root)
        if other:
            _fail(f"{other}, the same storage as {root}; stop it (or set storage.maintenance.readonly.enabled) "
                  "before gc, or pushes in flight lose blobs (--force runs anyway)")
    try:
        result = collect(driver, dry_run=dry_run, delete_untagged=delete_untagged)
    except OSError as e:
        _fail(f"gc stopped: {e.strerror or e}: {e.filename or where}")
    except Exception as e:  # botocore's errors (no such bucket, access denied)
        if s3 is None:
            raise
        _fail(f"gc stopped: {where}: {e}")
    finally:
        if s3 is not None:
            driver.close()
    verb = "would delete" if dry_run else "deleted"
    for w in result.warnings:
        typer.echo(f"warning: {w}", err=True)
    for repo, d in result.deleted_manifests:
        typer.echo(f"{verb} manifest {repo}@{d}")
    for d, size in result.deleted_blobs:
        typer.echo(f"{verb} blob {d} ({size} bytes)")
    typer.echo(
        f"{verb} {len(result.deleted_blobs)} blob(s), {result.freed} bytes; "
        f"kept {result.kept_blobs}; {len(result.deleted_manifests)} manifest(s); "
        f"{len(result.dangling_links)} dangling link(s)"
    )


def register(app: typer.Typer) -> None:
    """Attach `serve-registry` and `registry` to the main typer app."""
    app.command("serve-registry")(serve_registry)
    app.add_typer(registry_app, name="registry")


def main() -> None:  # pragma: no cover - `python -m dockerdoctor.registry.cli`
    app = typer.Typer(pretty_exceptions_enable=False)
    register(app)
    app(sys.argv[1:])
