"""serve-registry on S3 (moto's server on 127.0.0.1): crash safety, multipart aborts, gc, replicas, interop.

The conformance tests (test_registry_conformance.py) run on S3 too; these are what only S3 has.
Without the s3 extra (aiobotocore) or moto (moto[s3], flask) every test here skips with the reason.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import requests
from ddreg_helpers import OCI_MANIFEST, Client, Distribution, Server, free_port, sha256, tmpdir
from s3lab import Moto

MIB = 1 << 20


@pytest.fixture()
def work() -> Iterator[str]:
    d = tmpdir("s3")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _server(moto: Moto, work: str, bucket: str, *extra: str, root: str = "") -> Server:
    srv = Server(root=os.path.join(work, f"unused-{free_port()}"), port=free_port(),
                 args=[*moto.args(bucket, root), "--no-access-log", *extra], env=moto.env)  # fmt: skip
    return srv.start()


def _path(loc: str) -> str:
    """An upload Location without its host, to send it to another replica."""
    return "/" + loc.split("//", 1)[1].split("/", 1)[1] if loc.startswith("http") else loc


def _layers(body: bytes) -> list[str]:
    doc = json.loads(body)
    return [doc["config"]["digest"], *(layer["digest"] for layer in doc["layers"])]


def _rss_hwm(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_layout_is_distributions_and_a_big_upload_streams_in_bounded_memory(ddreg_moto: Moto, work: str) -> None:
    bucket = ddreg_moto.bucket("layout")
    srv = _server(ddreg_moto, work, bucket, root="/reg/root")
    c = Client(srv.url)
    assert srv.proc is not None
    data = os.urandom(48 * MIB)
    before = _rss_hwm(srv.proc.pid)
    digest = c.push_blob("lay/out", data)
    grew = _rss_hwm(srv.proc.pid) - before
    assert grew < 40 * MIB, f"a 48 MiB push raised the server's peak RSS by {grew / MIB:.0f} MiB"
    enc = digest.split(":")[1]
    keys = set(ddreg_moto.keys(bucket))
    assert f"reg/root/docker/registry/v2/blobs/sha256/{enc[:2]}/{enc}/data" in keys
    assert f"reg/root/docker/registry/v2/repositories/lay/out/_layers/sha256/{enc}/link" in keys
    assert not [k for k in keys if "/_uploads/" in k]  # the session is gone
    assert ddreg_moto.multipart_uploads(bucket) == []
    r = c.req("GET", f"/v2/lay/out/blobs/{digest}")
    assert r.status_code == 200 and sha256(r.content) == digest
    srv.stop()


def test_kill_9_mid_push_leaves_no_visible_blob_and_the_push_can_start_over(ddreg_moto: Moto, work: str) -> None:
    bucket = ddreg_moto.bucket("kill")
    srv = _server(ddreg_moto, work, bucket)
    c = Client(srv.url)
    data = os.urandom(24 * MIB)
    digest = sha256(data)
    loc = c.loc(c.req("POST", "/v2/kill/me/blobs/uploads/"))
    path = loc.split("//", 1)[1].split("/", 1)[1]
    with socket.create_connection(("127.0.0.1", srv.port)) as sock:  # closed on a failure too
        sep = "&" if "?" in path else "?"
        head = f"PUT /{path}{sep}digest={digest} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n"
        sock.sendall(head.encode())
        sock.sendall(data[: 16 * MIB])
        deadline = time.monotonic() + 30
        while not ddreg_moto.multipart_uploads(bucket):  # a part is in S3: the push is half way
            assert time.monotonic() < deadline, "no multipart upload started"
            time.sleep(0.05)
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(10)
    enc = digest.split(":")[1]
    assert not [k for k in ddreg_moto.keys(bucket) if enc in k]  # no blob, no link
    again = _server(ddreg_moto, work, bucket)
    c2 = Client(again.url)
    assert c2.req("HEAD", f"/v2/kill/me/blobs/{digest}").status_code == 404
    st = c2.req("GET", _path(loc))
    assert st.status_code == 204 and st.headers["Range"] == "0-0"  # the killed request changed nothing
    # the restarted server aborts the orphaned multipart upload (it sweeps those started an hour ago or
    # more that no session points at; moto dates every multipart upload 2010)
    deadline = time.monotonic() + 20
    while ddreg_moto.multipart_uploads(bucket):
        assert time.monotonic() < deadline, "the orphaned multipart upload was not aborted"
        time.sleep(0.1)
    assert c2.push_blob("kill/me", data) == digest
    assert sha256(c2.req("GET", f"/v2/kill/me/blobs/{digest}").content) == digest
    again.stop()


def test_cancel_and_purge_abort_the_multipart_upload(ddreg_moto: Moto, work: str) -> None:
    bucket = ddreg_moto.bucket("abort")
    srv = _server(ddreg_moto, work, bucket)
    c = Client(srv.url)
    sessions = []
    for _ in range(2):
        loc = c.loc(c.req("POST", "/v2/ab/ort/blobs/uploads/"))
        r = c.req("PATCH", loc, data=os.urandom(12 * MIB), headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 202 and r.headers["Range"] == f"0-{12 * MIB - 1}"
        sessions.append(c.loc(r))
    assert len(ddreg_moto.multipart_uploads(bucket)) == 2  # two full parts each, the rest as a tail
    assert c.req("DELETE", sessions[0]).status_code == 204
    assert len(ddreg_moto.multipart_uploads(bucket)) == 1
    assert c.req("GET", sessions[0]).status_code == 404
    srv.stop()
    time.sleep(1.5)
    purger = _server(ddreg_moto, work, bucket, "--upload-ttl", "1s")  # purges at start
    deadline = time.monotonic() + 20
    while ddreg_moto.multipart_uploads(bucket) or [k for k in ddreg_moto.keys(bucket) if "/_uploads/" in k]:
        assert time.monotonic() < deadline, "the stale session was not purged"
        time.sleep(0.1)
    assert Client(purger.url).req("GET", _path(sessions[1])).status_code == 404
    purger.stop()


def test_gc_on_s3_keeps_what_manifests_reach(ddreg_moto: Moto, work: str) -> None:
    bucket = ddreg_moto.bucket("gc")
    srv = _server(ddreg_moto, work, bucket, root="gcroot")
    c = Client(srv.url)
    manifest, body = c.push_image("gc/app", "1")
    layers = _layers(body)
    stray = c.push_blob("gc/app", os.urandom(6 * MIB))
    srv.stop()
    cfg = os.path.join(work, "config.yml")
    with open(cfg, "w") as f:
        f.write("version: 0.1\nstorage:\n" + ddreg_moto.distribution_storage(bucket, "/gcroot"))
    env = {**os.environ, **ddreg_moto.env}
    dd = [sys.executable, "-m", "dockerdoctor", "registry", "gc", "--config", cfg]
    dry = subprocess.run([*dd, "--dry-run"], capture_output=True, text=True, timeout=120, env=env)
    assert dry.returncode == 0 and f"would delete blob {stray}" in dry.stdout, dry.stdout + dry.stderr
    assert "no check for running registries on S3" in dry.stderr  # the local-root check cannot see a bucket
    r = subprocess.run(dd, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0 and "deleted 1 blob(s)" in r.stdout, r.stdout + r.stderr
    keys = ddreg_moto.keys(bucket)
    assert not [k for k in keys if stray.split(":")[1] in k]  # the blob and its dangling link
    again = _server(ddreg_moto, work, bucket, root="gcroot")
    c2 = Client(again.url)
    got = c2.req("GET", "/v2/gc/app/manifests/1", headers={"Accept": OCI_MANIFEST})
    assert got.status_code == 200 and got.headers["Docker-Content-Digest"] == manifest
    for d in layers:
        assert c2.req("HEAD", f"/v2/gc/app/blobs/{d}").status_code == 200
    again.stop()


def test_two_replicas_on_one_bucket_continue_one_upload(ddreg_moto: Moto, work: str) -> None:
    bucket = ddreg_moto.bucket("rep")
    secret = "s" * 64
    a = _server(ddreg_moto, work, bucket, "--http-secret", secret)
    b = _server(ddreg_moto, work, bucket, "--http-secret", secret)
    ca, cb = Client(a.url), Client(b.url)
    data = os.urandom(12 * MIB + 12345)
    digest = sha256(data)
    cuts = [0, 7 * MIB, 11 * MIB, 12 * MIB, len(data)]  # 7 MiB = a part and a tail; 4 MiB more crosses a part
    loc = _path(ca.loc(ca.req("POST", "/v2/rep/lica/blobs/uploads/")))
    for i, (lo, hi) in enumerate(zip(cuts, cuts[1:], strict=False)):
        c = (ca, cb)[i % 2]  # A, B, A, B
        r = c.req("PATCH", loc, data=data[lo:hi], headers={"Content-Type": "application/octet-stream",
                                                           "Content-Range": f"{lo}-{hi - 1}"})  # fmt: skip
        assert r.status_code == 202 and r.headers["Range"] == f"0-{hi - 1}", r.text
        loc = _path(c.loc(r))
        other = (cb, ca)[i % 2]
        st = other.req("GET", loc)
        assert st.status_code == 204 and st.headers["Range"] == f"0-{hi - 1}"  # the other replica sees it too
    r = ca.req("PUT", f"{loc}&digest={digest}")
    assert r.status_code == 201, r.text
    got = cb.req("GET", f"/v2/rep/lica/blobs/{digest}")
    assert got.status_code == 200 and got.content == data
    # a wrong digest after a hop between replicas (no hash state here): refused, session gone, nothing stored
    loc = ca.loc(ca.req("POST", "/v2/rep/lica/blobs/uploads/"))
    loc = _path(
        ca.loc(ca.req("PATCH", loc, data=data[: 6 * MIB], headers={"Content-Type": "application/octet-stream"}))
    )
    wrong = cb.req("PUT", f"{loc}&digest={sha256(b'other')}")
    assert wrong.status_code == 400 and "DIGEST_INVALID" in wrong.text
    assert cb.req("HEAD", f"/v2/rep/lica/blobs/{sha256(data[: 6 * MIB])}").status_code == 404
    assert ddreg_moto.multipart_uploads(bucket) == []
    # a replica with another secret refuses the session, naming the cause
    odd = _server(ddreg_moto, work, bucket, "--http-secret", "t" * 64)
    loc = _path(ca.loc(ca.req("POST", "/v2/rep/lica/blobs/uploads/")))
    r = Client(odd.url).req("PATCH", loc, data=b"x", headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 400 and "same --http-secret" in r.text
    for s in (a, b, odd):
        s.stop()


def test_ranges_on_s3_blobs(ddreg_moto: Moto, work: str) -> None:
    srv = _server(ddreg_moto, work, ddreg_moto.bucket("ranges"))
    c = Client(srv.url)
    data = os.urandom(10000)
    digest = c.push_blob("ra/nge", data)
    url = f"/v2/ra/nge/blobs/{digest}"
    r = c.req("GET", url, headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == data[100:200] and r.headers["Content-Range"] == "bytes 100-199/10000"
    r = c.req("GET", url, headers={"Range": "bytes=-10"})
    assert r.status_code == 206 and r.content == data[-10:]
    assert c.req("GET", url, headers={"Range": "bytes=10000-"}).status_code == 416
    for ignored in ("bytes=0-1,5-9", "items=0-1", "bytes=9-1"):  # RFC 9110: ignore, send it all
        r = c.req("GET", url, headers={"Range": ignored})
        assert r.status_code == 200 and r.content == data and "Content-Range" not in r.headers, ignored
    srv.stop()


def test_blob_gets_redirect_to_presigned_urls_when_asked(ddreg_moto: Moto, work: str) -> None:
    bucket = ddreg_moto.bucket("redir")
    srv = _server(ddreg_moto, work, bucket, "--s3-redirect")
    c = Client(srv.url)
    data = os.urandom(MIB)
    digest = c.push_blob("re/dir", data)
    r = c.req("GET", f"/v2/re/dir/blobs/{digest}")
    assert r.status_code == 307 and r.headers["Location"].startswith(ddreg_moto.endpoint), r.headers
    assert requests.get(r.headers["Location"], timeout=30).content == data
    assert c.req("HEAD", f"/v2/re/dir/blobs/{digest}").status_code == 200  # HEAD answers itself
    srv.stop()


@pytest.mark.real("docker-registry")
def test_distribution_and_serve_registry_serve_each_others_bucket(ddreg_moto: Moto, work: str) -> None:
    """distribution 2.8.2 (its s3-aws driver) and serve-registry on one bucket and rootdirectory."""
    bucket = ddreg_moto.bucket("interop")
    ours = _server(ddreg_moto, work, bucket, root="/shared")
    dist = Distribution(root="", port=free_port(), workdir=work,
                        storage=ddreg_moto.distribution_storage(bucket, "/shared")).start()  # fmt: skip
    try:
        co, cd = Client(ours.url), Client(dist.url)
        accept = {"Accept": OCI_MANIFEST}
        # pushed through serve-registry (a 12 MiB layer: a multipart upload), pulled through distribution
        big = os.urandom(12 * MIB + 7)
        m1, body1 = co.push_image("inter/ours", "v1", layers=[big])
        layers1 = _layers(body1)
        r = cd.req("GET", "/v2/inter/ours/manifests/v1", headers=accept)
        assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == m1
        got = cd.req("GET", f"/v2/inter/ours/blobs/{layers1[-1]}")
        assert got.status_code == 200 and got.content == big
        # pushed through distribution (chunked, its own multipart writer), pulled through serve-registry
        other = os.urandom(11 * MIB + 3)
        m2, body2 = cd.push_image("inter/theirs", "v2", layers=[other])
        layers2 = _layers(body2)
        r = co.req("GET", "/v2/inter/theirs/manifests/v2", headers=accept)
        assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == m2
        assert co.req("GET", f"/v2/inter/theirs/blobs/{layers2[-1]}").content == other
        for c in (co, cd):
            repos = c.req("GET", "/v2/_catalog").json()["repositories"]
            assert {"inter/ours", "inter/theirs"} <= set(repos)
            assert c.req("GET", "/v2/inter/theirs/tags/list").json()["tags"] == ["v2"]
    finally:
        dist.stop()
        ours.stop()


def test_config_yml_storage_s3_and_its_environment(ddreg_moto: Moto, work: str) -> None:
    """distribution's file runs serve-registry on S3; REGISTRY_STORAGE_S3_* override it."""
    bucket = ddreg_moto.bucket("cfg")
    port = free_port()
    cfg = os.path.join(work, "config.yml")
    with open(cfg, "w") as f:
        f.write(f"version: 0.1\nhttp:\n  addr: 127.0.0.1:{port}\nstorage:\n"
                + ddreg_moto.distribution_storage("no-such-bucket"))  # fmt: skip
    log = os.path.join(work, "cfg.log")
    env = {**os.environ, **ddreg_moto.env, "REGISTRY_STORAGE_S3_BUCKET": bucket}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dockerdoctor", "serve-registry", "--config", cfg],
                                stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=env)  # fmt: skip
    srv = Server(root=work, port=port)
    srv.proc, srv.log = proc, log
    try:
        srv.wait_ready()
        assert f"storage s3://{bucket}/" in srv.read_log()
        d = Client(srv.url).push_blob("cfg/s3", b"hello")
        assert [k for k in ddreg_moto.keys(bucket) if d.split(":")[1] in k]
    finally:
        srv.stop()
    bad = subprocess.run(
        [sys.executable, "-m", "dockerdoctor", "serve-registry", "--config", cfg],
        capture_output=True, text=True, timeout=60, env={**env, "REGISTRY_STORAGE_S3_CHUNKSIZE": "1024"},
    )  # fmt: skip
    assert bad.returncode == 2 and "chunksize must be at least" in bad.stderr, bad.stderr


def test_config_units_for_s3(work: str) -> None:
    from dockerdoctor.registry.config import ConfigError, load

    path = os.path.join(work, "c.yml")
    with open(path, "w") as f:
        f.write(
            "version: 0.1\nstorage:\n  s3:\n    bucket: b\n    chunksize: 6291456\n    forcepathstyle: true\n"
            "    regionendpoint: http://127.0.0.1:9\n    storageclass: STANDARD\n  delete:\n    enabled: true\n"
        )
    rc = load(path, {"REGISTRY_STORAGE_S3_ROOTDIRECTORY": "/r"})
    assert rc.s3 == {"bucket": "b", "chunksize": 6291456, "forcepathstyle": True, "regionendpoint": "http://127.0.0.1:9",
                     "rootdirectory": "/r", "redirect": True}  # fmt: skip
    assert rc.allow_delete and any(k.startswith("storage.s3.storageclass") for k in rc.ignored)
    rc = load(path, {"REGISTRY_STORAGE_REDIRECT_DISABLE": "true"})
    assert rc.s3 is not None and rc.s3["redirect"] is False
    with pytest.raises(ConfigError, match="more than one driver"):
        load(path, {"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/x"})
    rc = load(path, {"REGISTRY_STORAGE": "filesystem", "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/x"})
    assert rc.s3 is None and rc.root == "/x" and rc.allow_delete
    with pytest.raises(ConfigError, match="encrypt"):
        load(path, {"REGISTRY_STORAGE_S3_ENCRYPT": "true"})
    rc = load(path, {"REGISTRY_STORAGE_S3_MULTIPARTCOPYTHRESHOLDSIZE": "5368709120"})
    assert rc.s3 is not None and rc.s3["multipartcopythresholdsize"] == 5 << 30
    with pytest.raises(ConfigError, match="whole number"):
        load(path, {"REGISTRY_STORAGE_S3_CHUNKSIZE": "10MB"})
    from dockerdoctor.registry.s3 import S3Options

    for bad in ({"chunksize": 1 << 20}, {"multipartcopychunksize": 1 << 20}, {"accesskey": "a"}, {"bucket": ""}):
        with pytest.raises(ValueError):
            S3Options(**{"bucket": "b", **bad}).check()  # type: ignore[arg-type]


def test_a_bucket_that_goes_away_is_a_storage_error_and_not_ready(ddreg_moto: Moto, work: str) -> None:
    bucket = ddreg_moto.bucket("gone")
    srv = _server(ddreg_moto, work, bucket)
    c = Client(srv.url)
    ddreg_moto.client().delete_bucket(Bucket=bucket)
    r = c.req("GET", "/v2/gone/x/manifests/1", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 500 and r.json()["errors"][0]["code"] == "UNKNOWN", r.text
    assert r.json()["errors"][0]["message"] == "storage error"  # botocore's text (endpoint, bucket) stays in the log
    assert bucket not in r.text and ddreg_moto.endpoint not in r.text
    ready = requests.get(srv.url + "/readyz", timeout=30)
    assert ready.status_code == 503 and "storage error" in ready.text
    assert bucket not in ready.text and ddreg_moto.endpoint not in ready.text
    assert requests.get(srv.url + "/livez", timeout=10).status_code == 200
    srv.stop()


def test_without_the_extra_the_driver_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from dockerdoctor.registry.s3 import S3Driver, S3Options, S3Unavailable
    from dockerdoctor.registry.server import ServeConfig, ServeError, make_driver

    monkeypatch.setitem(sys.modules, "aiobotocore", None)  # what an install without the s3 extra has
    monkeypatch.setitem(sys.modules, "aiobotocore.session", None)
    with pytest.raises(S3Unavailable, match=r"dockerdoctor\[s3\]"):
        S3Driver(S3Options(bucket="b"))
    with pytest.raises(ServeError, match="s3 extra"):
        make_driver(ServeConfig(root="/nonexistent", s3=S3Options(bucket="b")))


def test_delete_prefix_fails_when_delete_objects_refuses_keys() -> None:
    pytest.importorskip("aiobotocore")
    from dockerdoctor.registry.s3 import S3Driver, S3Options

    drv = S3Driver(S3Options(bucket="b"))

    class Refusing:  # S3 answers 200 and lists the keys it would not delete
        async def delete_objects(self, **kw: Any) -> dict[str, Any]:
            return {"Errors": [{"Key": "p/k", "Code": "AccessDenied", "Message": "Access Denied"}]}

    async def keys(prefix: str) -> AsyncIterator[tuple[str, int]]:
        yield "p/k", 1

    drv._client = Refusing()
    drv._keys = keys  # type: ignore[method-assign]
    with pytest.raises(OSError, match="AccessDenied"):
        asyncio.run(drv._delete_prefix("p/"))


def test_close_on_a_bound_loop_exits_the_client() -> None:
    pytest.importorskip("aiobotocore")
    import threading

    from dockerdoctor.registry.s3 import S3Driver, S3Options

    class Cm:
        exited = 0

        async def __aexit__(self, *exc: object) -> None:
            Cm.exited += 1

    loop = asyncio.new_event_loop()
    try:
        drv = S3Driver(S3Options(bucket="b"))
        drv.bind_loop(loop)
        drv._client_cm, drv._client = Cm(), object()
        drv.close()  # the loop is stopped: run to completion here
        assert Cm.exited == 1 and drv._client is None
        t = threading.Thread(target=loop.run_forever, daemon=True)
        t.start()
        drv._client_cm, drv._client = Cm(), object()
        drv.close()  # the loop runs in another thread (the server's): wait for it there
        assert Cm.exited == 2
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)
    finally:
        loop.close()


@pytest.mark.parametrize(
    ("forcepathstyle", "host"),
    [(True, "s3.lab.invalid:9"), (False, "lab-bucket.s3.lab.invalid:9"), (None, "s3.lab.invalid:9")],
)
def test_forcepathstyle_and_v4_reach_the_signed_urls(forcepathstyle: bool | None, host: str) -> None:
    """The live tests run on 127.0.0.1, where botocore picks path style whatever the option says, and
    a virtual-hosted name cannot resolve here without a DNS query leaving the machine. A pre-signed URL
    is built without any request (".invalid" never resolves), so it shows the addressing and the signature
    the options give: `false` is virtual-hosted as in distribution, unset is path style for an endpoint
    (distribution 2.8's default there), and the URL is signed with SigV4 as distribution's are."""
    from urllib.parse import parse_qs, urlsplit

    from dockerdoctor.registry.s3_objects import S3Objects
    from dockerdoctor.registry.s3_session import S3Options

    opts = S3Options(bucket="lab-bucket", regionendpoint="http://s3.lab.invalid:9", forcepathstyle=forcepathstyle,
                     accesskey="lab", secretkey="lab-secret", rootdirectory="/r")  # fmt: skip
    objects = S3Objects(opts)

    async def presign() -> str:
        try:
            return await objects.a_presign("sha256:" + "a" * 64)
        finally:
            await objects.aclose()

    url = urlsplit(asyncio.run(presign()))
    key = "r/docker/registry/v2/blobs/sha256/aa/" + "a" * 64 + "/data"
    assert url.netloc == host
    assert url.path == ("/" if forcepathstyle is False else "/lab-bucket/") + key
    assert parse_qs(url.query)["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
