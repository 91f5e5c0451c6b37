"""Unit tests: names and digests, the filesystem driver, gc, TLS files, the client's target parsing."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from dockerdoctor.registry import digests as dg
from dockerdoctor.registry.app import Registry, Settings
from dockerdoctor.registry.blobs import Unsatisfiable, parse_range
from dockerdoctor.registry.client import parse_target
from dockerdoctor.registry.common import parse_duration, parse_size
from dockerdoctor.registry.gc import collect
from dockerdoctor.registry.storage import FilesystemDriver
from dockerdoctor.registry.tls import TLSSetupError, certs_d_path, ensure_self_signed, server_context, split_names


@pytest.fixture()
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    d = str(tmp_path_factory.mktemp("dd-reg-unit"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def d256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------ names and digests
@pytest.mark.parametrize("name", ["a", "library/ubuntu", "a.b_c__d---e/f", "x/y/z/w", "0"])
def test_valid_names(name: str) -> None:
    assert dg.valid_name(name)


@pytest.mark.parametrize("name", ["", "A", "a/", "/a", "a//b", "..", "a/../b", "a/./b", "_a", "a-", "a__-b", "a\x00"])
def test_invalid_names(name: str) -> None:
    assert not dg.valid_name(name)


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=60))
def test_accepted_names_stay_inside_the_repositories_dir(name: str) -> None:
    if not dg.valid_name(name):
        return
    base = "/srv/registry/docker/registry/v2/repositories"
    path = os.path.normpath(os.path.join(base, name))
    assert path.startswith(base + "/")
    assert ".." not in name.split("/") and "\x00" not in name


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=0, max_size=140))
def test_digest_parser_never_lets_slashes_or_dots_through(text: str) -> None:
    try:
        alg, enc = dg.parse_digest(text)
    except dg.InvalidDigest:
        return
    assert alg in dg.ALGORITHMS and len(enc) == dg.ALGORITHMS[alg]
    assert set(enc) <= set("0123456789abcdef")


def test_tags_and_upload_ids() -> None:
    assert dg.valid_tag("v1.0_rc-1") and dg.valid_tag("_x") and not dg.valid_tag(".x") and not dg.valid_tag("a" * 129)
    assert dg.valid_upload_id("0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b")
    assert not dg.valid_upload_id("../../x") and not dg.valid_upload_id("0F1E2D3C-4B5A-6978-8A9B-0C1D2E3F4A5B")


# ------------------------------------------------------------------ filesystem driver
def test_layout_matches_distribution(root: str) -> None:
    drv = FilesystemDriver(root)
    drv.ensure()
    data = b"hello"
    d = d256(data)
    hexd = d.split(":")[1]
    drv.write_blob(d, data)
    drv.link_layer("lib/app", d)
    drv.link_revision("lib/app", d)
    drv.set_tag("lib/app", "v1", d)
    v2 = os.path.join(root, "docker", "registry", "v2")
    assert Path(f"{v2}/blobs/sha256/{hexd[:2]}/{hexd}/data").read_bytes() == data
    repo = f"{v2}/repositories/lib/app"
    for link in (
        f"{repo}/_layers/sha256/{hexd}/link",
        f"{repo}/_manifests/revisions/sha256/{hexd}/link",
        f"{repo}/_manifests/tags/v1/current/link",
        f"{repo}/_manifests/tags/v1/index/sha256/{hexd}/link",
    ):
        assert Path(link).read_text() == d  # no newline, exactly like distribution
    assert drv.list_repos() == ["lib/app"]
    assert drv.list_tags("lib/app") == ["v1"] and drv.get_tag("lib/app", "v1") == d
    assert list(drv.iter_blobs()) == [d]
    # no temp files are left next to what readers see
    for dirpath, _dirs, files in os.walk(v2):
        assert not [f for f in files if f.startswith(".tmp-")], dirpath


def test_upload_commit_and_delete(root: str) -> None:
    drv = FilesystemDriver(root)
    drv.ensure()
    uid = drv.new_upload("x")
    assert dg.valid_upload_id(uid)
    with open(drv.upload_data_path("x", uid), "ab") as f:
        f.write(b"abc")
    assert drv.upload_size("x", uid) == 3
    drv.commit_upload("x", uid, d256(b"abc"))
    assert drv.upload_size("x", uid) is None
    assert drv.blob_size(d256(b"abc")) == 3 and drv.has_layer("x", d256(b"abc"))
    # committing the same content again (a concurrent push) is harmless
    uid2 = drv.new_upload("y")
    with open(drv.upload_data_path("y", uid2), "ab") as f:
        f.write(b"abc")
    drv.commit_upload("y", uid2, d256(b"abc"))
    assert drv.read_blob(d256(b"abc")) == b"abc"
    assert drv.unlink_layer("x", d256(b"abc")) and not drv.has_layer("x", d256(b"abc"))
    assert not drv.unlink_layer("x", d256(b"abc"))


def test_purge_reads_distribution_timestamps(root: str) -> None:
    drv = FilesystemDriver(root)
    drv.ensure()
    old, new, slow = drv.new_upload("p"), drv.new_upload("p"), drv.new_upload("p")
    for uid in (old, slow):
        with open(os.path.join(os.path.dirname(drv.upload_data_path("p", uid)), "startedat"), "w") as f:
            f.write("2021-03-04T05:06:07.123456789Z")
    os.utime(drv.upload_data_path("p", old), (1614834367, 1614834367))  # never written since
    ups = {u.upload_id: u for u in drv.iter_uploads()}
    assert ups[old].started == dt.datetime(2021, 3, 4, 5, 6, 7, 123456, tzinfo=dt.timezone.utc).timestamp()
    reg = Registry(drv, Settings(upload_max_age=3600))
    assert reg.purge_uploads() == 1
    assert drv.upload_size("p", old) is None and drv.upload_size("p", new) == 0
    assert drv.upload_size("p", slow) == 0  # started long ago, but written to just now: still alive


# ------------------------------------------------------------------ gc
def _manifest(drv: FilesystemDriver, repo: str, tag: str | None, blobs: list[bytes], subject: str | None = None) -> str:
    descs = []
    for b in blobs:
        drv.write_blob(d256(b), b)
        drv.link_layer(repo, d256(b))
        descs.append({"mediaType": "application/octet-stream", "digest": d256(b), "size": len(b)})
    doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": descs[0],
           "layers": descs[1:]}  # fmt: skip
    if subject:
        doc["subject"] = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": 1}
    raw = json.dumps(doc).encode()
    drv.write_blob(d256(raw), raw)
    drv.link_revision(repo, d256(raw))
    if tag:
        drv.set_tag(repo, tag, d256(raw))
    return d256(raw)


def test_gc_mark_and_sweep(root: str) -> None:
    drv = FilesystemDriver(root)
    drv.ensure()
    tagged = _manifest(drv, "r", "v1", [b"cfg", b"layer-kept"])
    untagged = _manifest(drv, "r", None, [b"cfg2", b"layer-untagged"])
    referrer = _manifest(drv, "r", None, [b"sig"], subject=tagged)
    drv.write_blob(d256(b"orphan"), b"orphan")
    drv.link_layer("r", d256(b"orphan"))
    dry = collect(drv, dry_run=True)
    assert [d for d, _ in dry.deleted_blobs] == [d256(b"orphan")]
    assert drv.blob_size(d256(b"orphan")) == 6
    res = collect(drv)
    assert res.freed == 6 and drv.blob_size(d256(b"orphan")) is None
    assert ("r", d256(b"orphan")) in res.dangling_links and not drv.has_layer("r", d256(b"orphan"))
    assert drv.blob_size(d256(b"layer-untagged")) is not None  # untagged manifests are kept by default
    res = collect(drv, delete_untagged=True)
    assert res.deleted_manifests == [("r", untagged)]
    assert drv.blob_size(d256(b"layer-untagged")) is None and drv.blob_size(untagged) is None
    assert drv.blob_size(referrer) is not None and drv.blob_size(d256(b"sig")) is not None  # subject is kept
    assert drv.blob_size(tagged) is not None and drv.blob_size(d256(b"layer-kept")) is not None


# ------------------------------------------------------------------ TLS
def test_self_signed_certificates(root: str) -> None:
    made = ensure_self_signed(os.path.join(root, "tls"), ["registry.example", "10.0.0.5", "::1"])
    cert = x509.load_pem_x509_certificate(Path(made.cert).read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["registry.example"]
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.5", "::1"]
    ca = x509.load_pem_x509_certificate(Path(made.ca_cert).read_bytes())
    assert cert.issuer == ca.subject
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert oct(os.stat(made.key).st_mode & 0o777) == "0o600"
    ctx = ssl.create_default_context(cafile=made.ca_cert)  # the chain verifies
    assert ctx.cert_store_stats()["x509_ca"] == 1
    server_context(made.cert, made.key)
    # same names: same files; new names: new server cert, same CA
    before = Path(made.cert).read_text()
    assert (
        Path(ensure_self_signed(os.path.join(root, "tls"), ["registry.example", "10.0.0.5", "::1"]).cert).read_text()
        == before
    )
    again = ensure_self_signed(os.path.join(root, "tls"), ["other.example"])
    assert Path(again.cert).read_text() != before
    assert Path(again.ca_cert).read_text() == Path(made.ca_cert).read_text()
    with pytest.raises(TLSSetupError):
        server_context(made.cert, made.ca_cert)  # key does not match


def test_certs_d_paths_and_names() -> None:
    assert certs_d_path("reg.local", 5000) == "/etc/docker/certs.d/reg.local:5000/ca.crt"
    assert certs_d_path("reg.local", 443) == "/etc/docker/certs.d/reg.local/ca.crt"
    assert certs_d_path("::1", 5000) == "/etc/docker/certs.d/[::1]:5000/ca.crt"
    assert split_names(["a,b", "c", "a"]) == ["a", "b", "c"]


# ------------------------------------------------------------------ CLI parsing
def test_parse_target() -> None:
    assert parse_target(None, "localhost:5000").registry == "localhost:5000"
    t = parse_target("reg.example:5000/team/app:1.0", "x")
    assert (t.registry, t.repo, t.ref) == ("reg.example:5000", "team/app", "1.0")
    t = parse_target("team/app@sha256:" + "a" * 64, "localhost:5000")
    assert (t.registry, t.repo, t.ref) == ("localhost:5000", "team/app", "sha256:" + "a" * 64)
    t = parse_target("localhost/app", "x")
    assert (t.registry, t.repo, t.ref) == ("localhost", "app", None)
    t = parse_target("app:1.2", "localhost:5000")
    assert (t.registry, t.repo, t.ref) == ("localhost:5000", "app", "1.2")
    t = parse_target("localhost:5000", "x")
    assert (t.registry, t.repo) == ("localhost:5000", None)
    t = parse_target("http://10.0.0.1:5000", "x")
    assert (t.registry, t.repo) == ("10.0.0.1:5000", None)


def test_parse_size_and_duration() -> None:
    assert parse_size("1K") == 1024 and parse_size("5G") == 5 << 30 and parse_size("10MiB") == 10 << 20
    assert parse_size("123") == 123
    assert parse_duration("30m") == 1800 and parse_duration("7d") == 7 * 86400 and parse_duration("15") == 15
    for bad in ("", "x", "5X"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_fsync_mode_commits_the_same(root: str) -> None:
    drv = FilesystemDriver(root, fsync=True)
    drv.ensure()
    uid = drv.new_upload("f")
    with open(drv.upload_data_path("f", uid), "ab") as f:
        f.write(b"synced")
    drv.commit_upload("f", uid, d256(b"synced"))
    drv.write_blob(d256(b"m"), b"m")
    assert drv.read_blob(d256(b"synced")) == b"synced" and drv.read_blob(d256(b"m")) == b"m"


class _RemoteLikeDriver(FilesystemDriver):
    """A driver whose blobs are not local files (as an object store's would be)."""

    def blob_path(self, digest: str) -> str | None:
        return None

    def open_blob(self, digest: str):  # type: ignore[no-untyped-def]
        return open(os.path.join(self._blob_dir(digest), "data"), "rb")  # noqa: SIM115


def test_app_runs_on_a_driver_without_local_blob_files(root: str) -> None:
    """The HTTP layer only needs the StorageDriver interface; blobs then stream instead of sendfile."""
    import asyncio

    import aiohttp
    from aiohttp import web

    drv = _RemoteLikeDriver(root)
    drv.ensure()
    data = os.urandom((2 << 20) + 5)

    async def scenario() -> None:
        runner = web.AppRunner(Registry(drv).app())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as s:
                async with s.post(f"{base}/v2/obj/app/blobs/uploads/?digest={d256(data)}", data=io.BytesIO(data)) as r:
                    assert r.status == 201
                async with s.get(f"{base}/v2/obj/app/blobs/{d256(data)}") as r:
                    assert r.status == 200 and r.headers["Docker-Content-Digest"] == d256(data)
                    assert await r.read() == data
                async with s.head(f"{base}/v2/obj/app/blobs/{d256(data)}") as r:
                    assert r.headers["Content-Length"] == str(len(data))
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


def test_stored_schema1_keeps_its_media_type(root: str) -> None:
    """A registry:2 directory may hold schema1 manifests: we serve them with their own type."""
    from dockerdoctor.registry.app import _stored_media_type

    signed = json.dumps({"schemaVersion": 1, "name": "a", "tag": "1", "fsLayers": [], "signatures": []}).encode()
    assert _stored_media_type(signed) == "application/vnd.docker.distribution.manifest.v1+prettyjws"
    assert _stored_media_type(b'{"schemaVersion": 1}') == "application/vnd.docker.distribution.manifest.v1+json"
    assert _stored_media_type(b"garbage") == "application/octet-stream"


def test_manifest_cache_is_bounded_in_bytes(root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from dockerdoctor.registry import app as appmod
    from dockerdoctor.registry.app import ManifestInfo

    monkeypatch.setattr(appmod, "MANIFEST_CACHE", 1000)
    reg = Registry(FilesystemDriver(root))
    for i in range(10):
        reg._cache_manifest(f"sha256:{i:064x}", ManifestInfo(data=b"x" * 300, media_type="m"))
    assert reg.manifest_bytes <= 1000 and len(reg.manifests) == 3
    assert f"sha256:{9:064x}" in reg.manifests and f"sha256:{0:064x}" not in reg.manifests


@pytest.mark.parametrize(
    ("doc", "ok"),
    [
        (b"[" * 64 + b"]" * 64, True),
        (b"[" * 65 + b"]" * 65, False),
        (b'{"a":' + b"[" * 1000 + b"]" * 1000 + b"}", False),
        (b'["' + b"[" * 5000 + b'"]', True),  # brackets inside a string do not nest
        (b'["\\"' + b"[" * 100 + b'"]', True),  # nor after an escaped quote
        (b"[" + b"[]," * 100_000 + b"[]]", True),  # wide is fine
    ],
)
def test_json_depth_limit(doc: bytes, ok: bool) -> None:
    from dockerdoctor.registry.common import json_depth_ok, load_json

    assert json_depth_ok(doc) is ok
    if not ok:
        with pytest.raises(ValueError, match="nested"):
            load_json(doc)


def test_json_depth_of_a_wide_4_mib_body_and_of_unbalanced_input() -> None:
    from dockerdoctor.registry.common import json_depth_ok, load_json

    wide = b"[" + b"[]," * (4 * 1024 * 1024 // 3 - 1) + b"[]]"  # 1.4 M brackets: peeled in two passes
    assert json_depth_ok(wide)
    with pytest.raises(ValueError, match="nested too deep"):
        load_json(b"[" * 5000)  # unbalanced and deep: the parser's RecursionError becomes a ValueError


def test_parse_range_follows_rfc_9110() -> None:
    assert parse_range("bytes=0-9", 100) == (0, 9)
    assert parse_range("bytes=90-", 100) == (90, 99)
    assert parse_range("bytes=-10", 100) == (90, 99)
    assert parse_range("bytes=-1000", 100) == (0, 99)
    assert parse_range("bytes=50-1000", 100) == (50, 99)
    assert parse_range("Bytes=0-0", 100) == (0, 0)  # the unit is case-insensitive
    for ignored in ("bytes=0-1,5-9", "items=0-9", "bytes=9-1", "bytes=-", "bytes=x-1", "0-9"):
        assert parse_range(ignored, 100) is None, ignored  # answered 200 with the whole body
    for unsatisfiable, size in (("bytes=100-", 100), ("bytes=100-200", 100), ("bytes=-0", 100), ("bytes=0-", 0),
                                ("bytes=-5", 0)):  # fmt: skip
        with pytest.raises(Unsatisfiable):
            parse_range(unsatisfiable, size)
