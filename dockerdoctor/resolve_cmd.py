"""`dockerdoctor resolve IMAGE`: what every runtime on this host would try for one image, and why.

For each adapter of the ``runtimes`` fact (dockerdoctor.runtimes): the endpoints in the order the client
tries them, with scheme, TLS material, credentials source (never the secret), proxy and the file:line
behind each. ``--probe`` asks each endpoint what it answers, with the layered probe
(dockerdoctor.probe.endpoint), from the runtime's network namespace. ``--format json`` is documented in
docs/resolve.schema.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from dockerdoctor.errors import InputError
from dockerdoctor.runtimes.base import Endpoint, ImageRef, Origin, Resolution

SCHEMA_VERSION = 1


def _origin(o: Origin | None) -> dict[str, Any] | None:
    if o is None:
        return None
    return {"source": o.source, "line": o.line, "detail": o.detail}


def _endpoint(ep: Endpoint) -> dict[str, Any]:
    return {
        "url": ep.url, "scheme": ep.scheme, "host": ep.host, "role": ep.role,
        "capabilities": list(ep.capabilities),
        "tls": {"ca_files": list(ep.tls.ca_files), "client_pairs": [list(p) for p in ep.tls.client_pairs],
                "skip_verify": ep.tls.skip_verify, "system_roots": ep.tls.system_roots,
                "origin": _origin(ep.tls.origin)} if ep.scheme == "https" else None,
        "http_fallback": ep.http_fallback, "origin": _origin(ep.origin), "notes": list(ep.notes),
    }


def resolution_dict(rt: Any, res: Resolution) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": rt.name, "display": getattr(rt, "display", rt.name), "found": _origin(getattr(rt, "origin", None)),
        "netns": getattr(rt, "netns", None),
        "endpoints": [_endpoint(e) for e in res.endpoints],
        "credentials": {"source": res.credentials.source, "helper": res.credentials.helper,
                        "origin": _origin(res.credentials.origin)} if res.credentials else None,
        "proxy": res.proxy, "blocked": _origin(res.blocked), "rewritten": res.rewritten, "notes": list(res.notes),
    }
    cfg = getattr(rt, "config", None)
    if cfg is not None and hasattr(cfg, "chosen_by"):
        out["config"] = {
            "main": cfg.main, "chosen_by": cfg.chosen_by,
            "files": [{"path": f.path, "role": f.role, "version": f.version} for f in cfg.files],
            "ignored_files": list(cfg.ignored_files),
            "problems": [{"path": p.path, "line": p.line, "severity": p.severity, "message": p.message}
                         for p in cfg.problems],
        }
    return out


def _probe(rt: Any, res: Resolution, timeout: float) -> dict[str, Any]:
    """host -> the layered probe's answer, from the runtime's network namespace."""
    from dockerdoctor.net import HostPort
    from dockerdoctor.probe.endpoint import probe_endpoint
    from dockerdoctor.probe.netns import ProbeOrigin, probe_pool

    hosts: dict[str, str | None] = {}
    for ep in res.endpoints:
        if ep.host not in hosts:
            cas = ep.tls.ca_files
            hosts[ep.host] = cas[0].rsplit("/", 1)[0] if cas else None
    origin = ProbeOrigin(rt.netns, rt.netns or "own") if getattr(rt, "netns", None) else None
    out: dict[str, Any] = {}
    with probe_pool(origin, max(1, min(8, len(hosts)))) as pool:
        futs = {}
        for host, certs in hosts.items():
            try:
                hp = HostPort.parse(host)
            except ValueError:
                continue
            if hp.port is None:
                hp = HostPort(hp.host, 443)
            futs[host] = pool.submit(probe_endpoint, hp, timeout, certs, check_auth=False)
        for host, fut in futs.items():
            rep = fut.result()
            out[host] = {"tcp": rep.tcp, "scheme": rep.scheme, "tls_error": rep.tls_error,
                         "tls_detail": rep.tls_detail, "http_status": rep.http_status, "layer": rep.layer,
                         "seconds": round(rep.seconds, 3)}
    return out


def build(facts: Any, image: str, push: bool = False, probe: bool = False, timeout: float = 2.0) -> dict[str, Any]:
    try:
        ref = ImageRef.parse(image)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    runtimes = facts.get("runtimes")
    rows = []
    for rt in runtimes:
        res = rt.resolve(ref, push=push)
        row = resolution_dict(rt, res)
        if probe:
            row["probe"] = _probe(rt, res, timeout) if facts.live else None
        rows.append(row)
    return {"schema_version": SCHEMA_VERSION, "image": str(ref), "input": image, "qualified": ref.qualified,
            "operation": "push" if push else "pull", "source": facts.source.description, "runtimes": rows,
            "skipped": list(facts.optional("runtimes_skipped") or [])}


def render_text(doc: dict[str, Any]) -> str:
    lines = [f"{doc['image']} ({doc['operation']}), {len(doc['runtimes'])} runtime(s) on {doc['source']}", ""]
    if not doc["runtimes"]:
        lines.append("No registry client found on this host.")
    for row in doc["runtimes"]:
        head = f"{row['display']}"
        cfg = row.get("config")
        if cfg:
            head += f"  [{cfg['main']} ({cfg['chosen_by']})]"
        lines.append(head)
        if row["blocked"]:
            b = row["blocked"]
            lines.append(f"  BLOCKED by {b['source']}:{b['line']}" if b["line"] else f"  BLOCKED by {b['source']}")
        if row["rewritten"]:
            lines.append(f"  pulls {row['rewritten']}")
        if not row["endpoints"] and not row["blocked"]:
            lines.append("  (no endpoint)")
        for i, ep in enumerate(row["endpoints"], 1):
            o = ep["origin"] or {}
            where = f"{o.get('source')}:{o['line']}" if o.get("line") else (o.get("source") or "")
            tls = ""
            if ep["tls"] is not None:
                t = ep["tls"]
                tls = "TLS not verified" if t["skip_verify"] else (
                    "CA " + ", ".join(t["ca_files"]) if t["ca_files"] else "system CAs")
                if ep["http_fallback"]:
                    tls += ", then plain HTTP"
            else:
                tls = "no TLS"
            probe = (row.get("probe") or {}).get(ep["host"])
            ans = ""
            if probe:
                ans = f"  -> {probe['scheme'] or probe['tcp']}" + (f" ({probe['tls_error']})" if probe["tls_error"]
                                                                    else "") + (
                    f" /v2/ {probe['http_status']}" if probe["http_status"] else "")
            lines.append(f"  {i}. {ep['role']:<8} {ep['url']:<40} {tls:<32} {where}{ans}")
            for n in ep["notes"]:
                lines.append(f"       {n}")
        cred = row.get("credentials")
        if cred:
            lines.append(f"  credentials: {cred['source']}")
        lines.append(f"  proxy: {row['proxy'] or 'none'}")
        for n in row["notes"]:
            lines.append(f"  note: {n}")
        if cfg:
            for p in cfg["problems"]:
                lines.append(f"  {p['severity']}: {p['path']}" + (f":{p['line']}" if p["line"] else "")
                             + f": {p['message']}")
        lines.append("")
    for s in doc["skipped"]:
        lines.append(f"not looked at: {s}")
    return "\n".join(lines).rstrip() + "\n"


def register(app: Any) -> None:
    @app.command("resolve")
    def resolve_cmd(
        image: Annotated[str, typer.Argument(help="Image reference, e.g. 10.0.0.5:5000/team/app:1.2 or alpine.")],
        root: Annotated[Path | None, typer.Option("--root", metavar="DIR", help="A snapshot (sosreport or host "
                                                                                 "root) instead of this host.")] = None,
        fmt: Annotated[str, typer.Option("--format", "-f", help="text or json (docs/resolve.schema.json).")
                       ] = "text",
        push: Annotated[bool, typer.Option("--push", help="Resolve for a push (no mirrors, no rewrites).")] = False,
        probe: Annotated[bool, typer.Option("--probe", help="Also ask each endpoint what it answers (live "
                                                            "only), from the runtime's network namespace.")
                         ] = False,
        timeout: Annotated[float, typer.Option("--timeout", help="Seconds per probe.")] = 2.0,
        containerd_config: Annotated[str | None, typer.Option(
            "--containerd-config", metavar="FILE", help="Which containerd (its config.toml) the containerd adapters "
                                                        "describe, when several run.")] = None,
    ) -> None:
        """For one image reference, the endpoints every runtime on this host would try, in order, with
        scheme, TLS material, credentials source, proxy and the file:line behind each.

        Examples:

          dockerdoctor resolve 10.0.0.5:5000/team/app:1.2

          dockerdoctor resolve alpine --format json

          dockerdoctor resolve 10.0.0.5:5000/team/app:1.2 --probe

          dockerdoctor resolve 10.0.0.5:5000/app --root ./sosreport
        """
        from dockerdoctor.facts import CheckOptions, Facts

        if fmt not in ("text", "json"):
            raise InputError(f"--format {fmt!r}: use text or json")
        if root is not None:
            from dockerdoctor.sources.snapshot import SnapshotSource

            source: Any = SnapshotSource(root)
        else:
            from dockerdoctor.sources.live import LiveSource

            source = LiveSource()
        try:
            options = CheckOptions(network=root is None, timeout=timeout)
            if containerd_config:
                options.containerd_config = containerd_config  # type: ignore[attr-defined]  # issue 14's field
            facts = Facts(source, options)
            doc = build(facts, image, push=push, probe=probe and root is None, timeout=timeout)
        finally:
            close = getattr(source, "close", None)
            if close:
                close()
        if fmt == "json":
            sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        else:
            sys.stdout.write(render_text(doc))
