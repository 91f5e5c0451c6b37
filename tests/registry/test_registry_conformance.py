"""Conformance of serve-registry to the OCI distribution spec v1.1 (written from the spec).

Runs against a real `dockerdoctor serve-registry` subprocess on 127.0.0.1, once on the filesystem
driver and once on the S3 driver (a moto server on loopback; skipped without the s3 extra).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import uuid
from typing import Any

import pytest
from ddreg_helpers import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    EMPTY_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    Client,
    Server,
    error_codes,
    sha256,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


@pytest.fixture(scope="module", params=["filesystem", "s3"])
def ddreg_server(request: pytest.FixtureRequest, ddreg_servers: Any) -> Server:
    if request.param == "filesystem":
        return ddreg_servers()  # type: ignore[no-any-return]
    moto = request.getfixturevalue("ddreg_moto")
    return ddreg_servers(*moto.args(moto.bucket("conf")), env=moto.env)  # type: ignore[no-any-return]


def raw_request(c: Client, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send the path exactly as given (requests would normalise `..`)."""
    host, port = c.base.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, body=body)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def repo() -> str:
    return f"conf/r{uuid.uuid4().hex[:10]}"


# ------------------------------------------------------------------ base
def test_base_endpoint(ddreg_client: Client) -> None:
    r = ddreg_client.req("GET", "/v2/")
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert ddreg_client.req("HEAD", "/v2/").status_code == 200


# ------------------------------------------------------------------ push
def test_monolithic_post_then_put(ddreg_client: Client) -> None:
    name, data = repo(), os.urandom(5000)
    r = ddreg_client.req("POST", f"/v2/{name}/blobs/uploads/")
    assert r.status_code == 202
    assert r.headers["Location"].startswith(f"/v2/{name}/blobs/uploads/")
    assert r.headers["Docker-Upload-UUID"]
    r = ddreg_client.req("PUT", ddreg_client.loc(r) + f"?digest={sha256(data)}", data=data)
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/{name}/blobs/{sha256(data)}"
    assert r.headers["Docker-Content-Digest"] == sha256(data)
    h = ddreg_client.req("HEAD", f"/v2/{name}/blobs/{sha256(data)}")
    assert h.status_code == 200
    assert h.headers["Content-Length"] == "5000"
    assert h.headers["Docker-Content-Digest"] == sha256(data)
    assert h.content == b""
    g = ddreg_client.req("GET", f"/v2/{name}/blobs/{sha256(data)}")
    assert g.status_code == 200 and g.content == data
    assert g.headers["Docker-Content-Digest"] == sha256(data)


def test_single_post_with_digest(ddreg_client: Client) -> None:
    name, data = repo(), os.urandom(3000)
    r = ddreg_client.req("POST", f"/v2/{name}/blobs/uploads/?digest={sha256(data)}", data=data)
    assert r.status_code == 201
    assert r.headers["Docker-Content-Digest"] == sha256(data)
    assert ddreg_client.req("GET", f"/v2/{name}/blobs/{sha256(data)}").content == data


def test_single_post_with_wrong_digest_is_rejected(ddreg_client: Client) -> None:
    name, data = repo(), os.urandom(300)
    r = ddreg_client.req("POST", f"/v2/{name}/blobs/uploads/?digest={sha256(b'other')}", data=data)
    assert r.status_code == 400
    assert error_codes(r) == ["DIGEST_INVALID"]
    assert ddreg_client.req("HEAD", f"/v2/{name}/blobs/{sha256(b'other')}").status_code == 404


def test_chunked_upload_with_status(ddreg_client: Client) -> None:
    name = repo()
    a, b, c = os.urandom(1000), os.urandom(2000), os.urandom(10)
    data = a + b + c
    r = ddreg_client.req("POST", f"/v2/{name}/blobs/uploads/")
    assert r.status_code == 202
    r = ddreg_client.req(
        "PATCH",
        ddreg_client.loc(r),
        data=a,
        headers={"Content-Range": "0-999", "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 202
    assert r.headers["Range"] == "0-999"
    loc = ddreg_client.loc(r)
    s = ddreg_client.req("GET", loc)
    assert s.status_code == 204
    assert s.headers["Range"] == "0-999"
    assert s.headers["Location"]
    r = ddreg_client.req("PATCH", loc, data=b, headers={"Content-Range": "1000-2999"})
    assert r.status_code == 202 and r.headers["Range"] == "0-2999"
    # the final chunk rides on the PUT
    r = ddreg_client.req(
        "PUT", ddreg_client.loc(r) + f"?digest={sha256(data)}", data=c, headers={"Content-Range": "3000-3009"}
    )
    assert r.status_code == 201, r.text
    assert ddreg_client.req("GET", f"/v2/{name}/blobs/{sha256(data)}").content == data


def test_streamed_patch_without_content_range(ddreg_client: Client) -> None:
    name, data = repo(), os.urandom(3 << 20)
    r = ddreg_client.req("POST", f"/v2/{name}/blobs/uploads/")
    r = ddreg_client.req("PATCH", ddreg_client.loc(r), data=iter([data[: 1 << 20], data[1 << 20 :]]))
    assert r.status_code == 202
    assert r.headers["Range"] == f"0-{len(data) - 1}"
    r = ddreg_client.req("PUT", ddreg_client.loc(r) + f"?digest={sha256(data)}")
    assert r.status_code == 201
    assert (
        hashlib.sha256(ddreg_client.req("GET", f"/v2/{name}/blobs/{sha256(data)}").content).hexdigest()
        == sha256(data).split(":")[1]
    )


def test_out_of_order_chunk_gets_416(ddreg_client: Client) -> None:
    name = repo()
    r = ddreg_client.req("POST", f"/v2/{name}/blobs/uploads/")
    loc = ddreg_client.loc(r)
    r = ddreg_client.req("PATCH", loc, data=b"x" * 10, headers={"Content-Range": "0-9"})
    assert r.status_code == 202
    r = ddreg_client.req("PATCH", loc, data=b"y" * 10, headers={"Content-Range": "20-29"})
    assert r.status_code == 416
    assert r.headers["Range"] == "0-9"
    assert error_codes(r) == ["BLOB_UPLOAD_INVALID"]
    # the session survives and continues at the right offset
    r = ddreg_client.req("PATCH", loc, data=b"y" * 10, headers={"Content-Range": "10-19"})
    assert r.status_code == 202 and r.headers["Range"] == "0-19"


def test_upload_cancel(ddreg_client: Client) -> None:
    name = repo()
    r = ddreg_client.req("POST", f"/v2/{name}/blobs/uploads/")
    loc = ddreg_client.loc(r)
    assert ddreg_client.req("DELETE", loc).status_code == 204
    s = ddreg_client.req("GET", loc)
    assert s.status_code == 404
    assert error_codes(s) == ["BLOB_UPLOAD_UNKNOWN"]
    p = ddreg_client.req("PATCH", loc, data=b"x")
    assert p.status_code == 404 and error_codes(p) == ["BLOB_UPLOAD_UNKNOWN"]


def test_put_digest_mismatch_and_missing(ddreg_client: Client) -> None:
    name = repo()
    r = ddreg_client.req("POST", f"/v2/{name}/blobs/uploads/")
    loc = ddreg_client.loc(r)
    r = ddreg_client.req("PUT", loc, data=b"abc")
    assert r.status_code == 400 and error_codes(r) == ["DIGEST_INVALID"]
    r = ddreg_client.req("PUT", loc + f"?digest={sha256(b'not-abc')}", data=b"abc")
    assert r.status_code == 400 and error_codes(r) == ["DIGEST_INVALID"]


def test_unknown_upload_ids(ddreg_client: Client) -> None:
    name = repo()
    for uid in (str(uuid.uuid4()), "not-a-uuid"):
        r = ddreg_client.req("GET", f"/v2/{name}/blobs/uploads/{uid}")
        assert r.status_code == 404, uid
        assert error_codes(r) == ["BLOB_UPLOAD_UNKNOWN"]
    for uid in ("..", "%2e%2e%2f%2e%2e", "..%2f..%2f_layers"):  # traversal attempts never reach storage
        status, _ = raw_request(ddreg_client, "PATCH", f"/v2/{name}/blobs/uploads/{uid}", b"x")
        assert status in (400, 404), uid


def test_sha512_blob(ddreg_client: Client) -> None:
    name, data = repo(), os.urandom(777)
    d = "sha512:" + hashlib.sha512(data).hexdigest()
    r = ddreg_client.req("POST", f"/v2/{name}/blobs/uploads/")
    r = ddreg_client.req("PATCH", ddreg_client.loc(r), data=data)
    r = ddreg_client.req("PUT", ddreg_client.loc(r) + f"?digest={d}")
    assert r.status_code == 201
    assert r.headers["Docker-Content-Digest"] == d
    g = ddreg_client.req("GET", f"/v2/{name}/blobs/{d}")
    assert g.content == data and g.headers["Docker-Content-Digest"] == d


def test_empty_blob(ddreg_client: Client) -> None:
    name = repo()
    d = ddreg_client.push_blob(name, b"")
    h = ddreg_client.req("HEAD", f"/v2/{name}/blobs/{d}")
    assert h.status_code == 200 and h.headers["Content-Length"] == "0"
    assert ddreg_client.req("GET", f"/v2/{name}/blobs/{d}").content == b""


def test_cross_repo_mount(ddreg_client: Client) -> None:
    src, dst, data = repo(), repo(), os.urandom(999)
    d = ddreg_client.push_blob(src, data)
    assert ddreg_client.req("HEAD", f"/v2/{dst}/blobs/{d}").status_code == 404
    r = ddreg_client.req("POST", f"/v2/{dst}/blobs/uploads/?mount={d}&from={src}")
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/{dst}/blobs/{d}"
    assert r.headers["Docker-Content-Digest"] == d
    assert ddreg_client.req("GET", f"/v2/{dst}/blobs/{d}").content == data


def test_cross_repo_mount_fallback_202(ddreg_client: Client) -> None:
    src, dst = repo(), repo()
    missing = sha256(b"never pushed " + os.urandom(8))
    r = ddreg_client.req("POST", f"/v2/{dst}/blobs/uploads/?mount={missing}&from={src}")
    assert r.status_code == 202
    assert "/blobs/uploads/" in r.headers["Location"]
    # the fallback is a normal upload session
    data = os.urandom(10)
    r = ddreg_client.req("PUT", ddreg_client.loc(r) + f"?digest={sha256(data)}", data=data)
    assert r.status_code == 201
    # a blob that exists, but not in `from`, is not mounted either
    other = ddreg_client.push_blob(repo(), os.urandom(12))
    r = ddreg_client.req("POST", f"/v2/{dst}/blobs/uploads/?mount={other}&from={src}")
    assert r.status_code == 202


def test_mount_with_malformed_digest(ddreg_client: Client) -> None:
    r = ddreg_client.req("POST", f"/v2/{repo()}/blobs/uploads/?mount=sha256:xyz&from=a")
    assert r.status_code == 400 and error_codes(r) == ["DIGEST_INVALID"]


# ------------------------------------------------------------------ pull
@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_manifest_get_head_by_tag_and_digest(ddreg_client: Client, media_type: str) -> None:
    name = repo()
    digest, body = ddreg_client.push_image(name, "v1", media_type=media_type)
    for ref in ("v1", digest):
        g = ddreg_client.req("GET", f"/v2/{name}/manifests/{ref}", headers={"Accept": media_type})
        assert g.status_code == 200
        assert g.content == body
        assert g.headers["Content-Type"] == media_type
        assert g.headers["Docker-Content-Digest"] == digest
        h = ddreg_client.req("HEAD", f"/v2/{name}/manifests/{ref}")
        assert h.status_code == 200
        assert h.headers["Content-Length"] == str(len(body))
        assert h.headers["Docker-Content-Digest"] == digest
        assert h.content == b""


def test_blob_range_requests(ddreg_client: Client) -> None:
    name, data = repo(), os.urandom(10000)
    d = ddreg_client.push_blob(name, data)
    r = ddreg_client.req("GET", f"/v2/{name}/blobs/{d}", headers={"Range": "bytes=100-199"})
    assert r.status_code == 206
    assert r.content == data[100:200]
    assert r.headers["Content-Range"] == "bytes 100-199/10000"
    r = ddreg_client.req("GET", f"/v2/{name}/blobs/{d}", headers={"Range": "bytes=9990-"})
    assert r.status_code == 206 and r.content == data[9990:]
    r = ddreg_client.req("GET", f"/v2/{name}/blobs/{d}", headers={"Range": "bytes=20000-20010"})
    assert r.status_code == 416
    # RFC 9110 14.2: a Range the server does not support is ignored, and the whole blob goes out
    for ignored in ("bytes=0-1,5-9", "items=0-1", "bytes=9-1"):
        r = ddreg_client.req("GET", f"/v2/{name}/blobs/{d}", headers={"Range": ignored})
        assert r.status_code == 200 and r.content == data and "Content-Range" not in r.headers, ignored


def test_unknown_blob_and_manifest(ddreg_client: Client) -> None:
    name = repo()
    ddreg_client.push_image(name, "v1")
    d = sha256(os.urandom(8))
    for method in ("GET", "HEAD"):
        r = ddreg_client.req(method, f"/v2/{name}/blobs/{d}")
        assert r.status_code == 404
    assert error_codes(ddreg_client.req("GET", f"/v2/{name}/blobs/{d}")) == ["BLOB_UNKNOWN"]
    for ref in ("nope", d):
        r = ddreg_client.req("GET", f"/v2/{name}/manifests/{ref}")
        assert r.status_code == 404 and error_codes(r) == ["MANIFEST_UNKNOWN"]
        assert ddreg_client.req("HEAD", f"/v2/{name}/manifests/{ref}").status_code == 404


def test_blob_is_scoped_to_repository(ddreg_client: Client) -> None:
    a, b, data = repo(), repo(), os.urandom(100)
    d = ddreg_client.push_blob(a, data)
    r = ddreg_client.req("GET", f"/v2/{b}/blobs/{d}")
    assert r.status_code == 404 and error_codes(r) == ["BLOB_UNKNOWN"]


# ------------------------------------------------------------------ manifests
def test_index_and_manifest_list_round_trip(ddreg_client: Client) -> None:
    name = repo()
    for index_type, child_type in ((OCI_INDEX, OCI_MANIFEST), (DOCKER_LIST, DOCKER_MANIFEST)):
        d1, b1 = ddreg_client.push_image(name, None, media_type=child_type)
        d2, b2 = ddreg_client.push_image(name, None, media_type=child_type)
        index = {
            "schemaVersion": 2,
            "mediaType": index_type,
            "manifests": [
                {
                    "mediaType": child_type,
                    "digest": d1,
                    "size": len(b1),
                    "platform": {"architecture": "amd64", "os": "linux"},
                },
                {
                    "mediaType": child_type,
                    "digest": d2,
                    "size": len(b2),
                    "platform": {"architecture": "arm64", "os": "linux"},
                },
            ],
        }
        body = json.dumps(index, indent=1).encode()
        r = ddreg_client.req("PUT", f"/v2/{name}/manifests/multi", data=body, headers={"Content-Type": index_type})
        assert r.status_code == 201, r.text
        g = ddreg_client.req("GET", f"/v2/{name}/manifests/multi")
        assert g.content == body and g.headers["Content-Type"] == index_type
        assert g.headers["Docker-Content-Digest"] == sha256(body)


def test_index_with_unknown_child(ddreg_client: Client) -> None:
    name = repo()
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(b"nothing"), "size": 7}],
    }
    r = ddreg_client.req("PUT", f"/v2/{name}/manifests/x", data=json.dumps(index), headers={"Content-Type": OCI_INDEX})
    assert r.status_code == 400 and error_codes(r) == ["MANIFEST_BLOB_UNKNOWN"]


def test_manifest_with_unknown_blob(ddreg_client: Client) -> None:
    name = repo()
    cfg = ddreg_client.push_blob(name, b"{}")
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(b"gone"), "size": 4}],
    }
    r = ddreg_client.req("PUT", f"/v2/{name}/manifests/x", data=json.dumps(doc), headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400
    assert error_codes(r) == ["MANIFEST_BLOB_UNKNOWN"]
    assert r.json()["errors"][0]["detail"] == {"digest": sha256(b"gone")}


@pytest.mark.parametrize(
    "body,ctype",
    [
        (b"not json", OCI_MANIFEST),
        (b"[1,2]", OCI_MANIFEST),
        (json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST}).encode(), OCI_MANIFEST),
        (json.dumps({"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}).encode(),
         "application/vnd.docker.distribution.manifest.v1+prettyjws"),
        (json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode(), OCI_MANIFEST),
    ],
)  # fmt: skip
def test_invalid_manifests(ddreg_client: Client, body: bytes, ctype: str) -> None:
    r = ddreg_client.req("PUT", f"/v2/{repo()}/manifests/bad", data=body, headers={"Content-Type": ctype})
    assert r.status_code == 400
    assert error_codes(r) == ["MANIFEST_INVALID"]


def test_manifest_put_by_digest(ddreg_client: Client) -> None:
    name = repo()
    cfg = ddreg_client.push_blob(name, b"{}")
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": EMPTY_CONFIG, "digest": cfg, "size": 2}, "layers": []}  # fmt: skip
    body = json.dumps(doc).encode()
    r = ddreg_client.req(
        "PUT", f"/v2/{name}/manifests/{sha256(body)}", data=body, headers={"Content-Type": OCI_MANIFEST}
    )
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/{name}/manifests/{sha256(body)}"
    wrong = sha256(b"x")
    r = ddreg_client.req("PUT", f"/v2/{name}/manifests/{wrong}", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400 and error_codes(r) == ["DIGEST_INVALID"]
    r = ddreg_client.req("PUT", f"/v2/{name}/manifests/sha256:abc", data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400 and error_codes(r) == ["DIGEST_INVALID"]


def test_manifest_too_large(ddreg_client: Client) -> None:
    big = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "pad": "x" * (4 * 1024 * 1024)}).encode()
    r = ddreg_client.req("PUT", f"/v2/{repo()}/manifests/big", data=big, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 413


def test_artifact_with_subject_and_referrers(ddreg_client: Client) -> None:
    name = repo()
    subj_d, subj_b = ddreg_client.push_image(name, "app")
    subject = {"mediaType": OCI_MANIFEST, "digest": subj_d, "size": len(subj_b)}
    r1, b1 = ddreg_client.push_image(
        name, None, subject=subject, artifact_type="application/vnd.example.sbom", config=b"{}",
        config_type=EMPTY_CONFIG, annotations={"org.example": "1"},
    )  # fmt: skip
    r2, b2 = ddreg_client.push_image(
        name, None, subject=subject, config=b'{"sig":1}', config_type="application/vnd.example.signature"
    )
    # the PUT answers with OCI-Subject
    body = json.loads(b1)
    body["annotations"] = {"again": "yes"}
    raw = json.dumps(body).encode()
    p = ddreg_client.req("PUT", f"/v2/{name}/manifests/{sha256(raw)}", data=raw, headers={"Content-Type": OCI_MANIFEST})
    assert p.status_code == 201 and p.headers["OCI-Subject"] == subj_d

    r = ddreg_client.req("GET", f"/v2/{name}/referrers/{subj_d}")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == OCI_INDEX
    idx = r.json()
    assert idx["schemaVersion"] == 2 and idx["mediaType"] == OCI_INDEX
    by_digest = {m["digest"]: m for m in idx["manifests"]}
    assert set(by_digest) == {r1, r2, sha256(raw)}
    assert by_digest[r1]["artifactType"] == "application/vnd.example.sbom"
    assert by_digest[r1]["annotations"] == {"org.example": "1"}
    assert by_digest[r1]["size"] == len(b1) and by_digest[r1]["mediaType"] == OCI_MANIFEST
    assert by_digest[r2]["artifactType"] == "application/vnd.example.signature"  # from config.mediaType

    f = ddreg_client.req("GET", f"/v2/{name}/referrers/{subj_d}?artifactType=application/vnd.example.signature")
    assert f.status_code == 200
    assert f.headers["OCI-Filters-Applied"] == "artifactType"
    assert [m["digest"] for m in f.json()["manifests"]] == [r2]


def test_subject_may_be_missing(ddreg_client: Client) -> None:
    name = repo()
    ghost = sha256(b"no such manifest")
    d, _ = ddreg_client.push_image(name, None, subject={"mediaType": OCI_MANIFEST, "digest": ghost, "size": 10})
    r = ddreg_client.req("GET", f"/v2/{name}/referrers/{ghost}")
    assert [m["digest"] for m in r.json()["manifests"]] == [d]


def test_referrers_unknown_subject_is_empty_index(ddreg_client: Client) -> None:
    for name in (repo(), "conf/never-created"):
        r = ddreg_client.req("GET", f"/v2/{name}/referrers/{sha256(os.urandom(4))}")
        assert r.status_code == 200
        assert r.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    r = ddreg_client.req("GET", f"/v2/{repo()}/referrers/sha256:nothex")
    assert r.status_code == 400 and error_codes(r) == ["DIGEST_INVALID"]


# ------------------------------------------------------------------ discovery
def test_tags_list_pagination(ddreg_client: Client) -> None:
    name = repo()
    d, body = ddreg_client.push_image(name, "b")
    for tag in ("a", "C", "c", "a1", "z"):
        r = ddreg_client.req("PUT", f"/v2/{name}/manifests/{tag}", data=body, headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 201
    everything = ddreg_client.req("GET", f"/v2/{name}/tags/list").json()
    assert everything == {"name": name, "tags": ["C", "a", "a1", "b", "c", "z"]}
    r = ddreg_client.req("GET", f"/v2/{name}/tags/list?n=2")
    assert r.json()["tags"] == ["C", "a"]
    assert r.headers["Link"] == f'</v2/{name}/tags/list?n=2&last=a>; rel="next"'
    r = ddreg_client.req("GET", f"/v2/{name}/tags/list?n=2&last=a")
    assert r.json()["tags"] == ["a1", "b"]
    r = ddreg_client.req("GET", f"/v2/{name}/tags/list?n=10&last=c")
    assert r.json()["tags"] == ["z"] and "Link" not in r.headers
    r = ddreg_client.req("GET", f"/v2/{name}/tags/list?last=b")
    assert r.json()["tags"] == ["c", "z"]
    r = ddreg_client.req("GET", f"/v2/{name}/tags/list?n=0")
    assert r.status_code == 200 and r.json()["tags"] == []
    r = ddreg_client.req("GET", f"/v2/{name}/tags/list?n=-1")
    assert r.status_code == 400


def test_tags_list_unknown_repository(ddreg_client: Client) -> None:
    r = ddreg_client.req("GET", "/v2/conf/does-not-exist/tags/list")
    assert r.status_code == 404
    assert error_codes(r) == ["NAME_UNKNOWN"]


def test_catalog_pagination(ddreg_servers) -> None:  # type: ignore[no-untyped-def]
    srv = ddreg_servers("--no-access-log")  # a fresh, empty registry
    c = Client(srv.url)
    assert c.req("GET", "/v2/_catalog").json() == {"repositories": []}
    names = ["x/b", "a", "x/a/deep", "m-1", "x"]  # "x" is both a repository and a parent of others
    for n in names:
        c.push_image(n, "t")
    assert c.req("GET", "/v2/_catalog").json()["repositories"] == sorted(names)
    got, url = [], "/v2/_catalog?n=3"
    while url:
        r = c.req("GET", url)
        got += r.json()["repositories"]
        assert len(r.json()["repositories"]) <= 3
        url = r.headers.get("Link", "").partition("<")[2].partition(">")[0]
    assert got == sorted(names)


# ------------------------------------------------------------------ management
def test_delete_manifest_by_digest(ddreg_client: Client) -> None:
    name = repo()
    d, body = ddreg_client.push_image(name, "v1")
    ddreg_client.req("PUT", f"/v2/{name}/manifests/v2", data=body, headers={"Content-Type": OCI_MANIFEST})
    keep, _ = ddreg_client.push_image(name, "other")
    r = ddreg_client.req("DELETE", f"/v2/{name}/manifests/{d}")
    assert r.status_code == 202
    for ref in (d, "v1", "v2"):
        assert ddreg_client.req("GET", f"/v2/{name}/manifests/{ref}").status_code == 404
    assert ddreg_client.req("GET", f"/v2/{name}/tags/list").json()["tags"] == ["other"]
    assert ddreg_client.req("GET", f"/v2/{name}/manifests/{keep}").status_code == 200
    r = ddreg_client.req("DELETE", f"/v2/{name}/manifests/{d}")
    assert r.status_code == 404 and error_codes(r) == ["MANIFEST_UNKNOWN"]


def test_delete_tag(ddreg_client: Client) -> None:
    name = repo()
    d, _ = ddreg_client.push_image(name, "v1")
    r = ddreg_client.req("DELETE", f"/v2/{name}/manifests/v1")
    assert r.status_code == 202
    assert ddreg_client.req("GET", f"/v2/{name}/manifests/v1").status_code == 404
    assert ddreg_client.req("GET", f"/v2/{name}/manifests/{d}").status_code == 200
    r = ddreg_client.req("DELETE", f"/v2/{name}/manifests/v1")
    assert r.status_code == 404 and error_codes(r) == ["MANIFEST_UNKNOWN"]


def test_delete_blob(ddreg_client: Client) -> None:
    name = repo()
    d = ddreg_client.push_blob(name, os.urandom(50))
    assert ddreg_client.req("DELETE", f"/v2/{name}/blobs/{d}").status_code == 202
    assert ddreg_client.req("HEAD", f"/v2/{name}/blobs/{d}").status_code == 404
    r = ddreg_client.req("DELETE", f"/v2/{name}/blobs/{d}")
    assert r.status_code == 404 and error_codes(r) == ["BLOB_UNKNOWN"]


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("name", ["UPPER/case", "a//b", "a/../b", "-lead", "trail-", "a..b", "x" * 300])
def test_name_invalid(ddreg_client: Client, name: str) -> None:
    status, body = raw_request(ddreg_client, "GET", f"/v2/{name}/tags/list")
    assert status in (400, 404)
    if status == 400:
        assert json.loads(body)["errors"][0]["code"] == "NAME_INVALID"
    status, _ = raw_request(ddreg_client, "POST", f"/v2/{name}/blobs/uploads/")
    assert status in (400, 404)


def test_name_invalid_code(ddreg_client: Client) -> None:
    r = ddreg_client.req("GET", "/v2/Bad_Name/tags/list")
    assert r.status_code == 400 and error_codes(r) == ["NAME_INVALID"]


@pytest.mark.parametrize(
    "digest",
    ["sha256:abc", "sha256:" + "G" * 64, "md5:" + "a" * 32, "sha256:" + "A" * 64, "sha512:" + "a" * 64, ":x"],
)
def test_malformed_digest_is_400(ddreg_client: Client, digest: str) -> None:
    name = repo()
    for method, path in (
        ("GET", f"/v2/{name}/blobs/{digest}"),
        ("HEAD", f"/v2/{name}/blobs/{digest}"),
        ("DELETE", f"/v2/{name}/blobs/{digest}"),
        ("GET", f"/v2/{name}/manifests/{digest}"),
        ("DELETE", f"/v2/{name}/manifests/{digest}"),
        ("GET", f"/v2/{name}/referrers/{digest}"),
        ("POST", f"/v2/{name}/blobs/uploads/?digest={digest}"),
    ):
        r = ddreg_client.req(method, path)
        assert r.status_code == 400, (method, path, r.status_code)
        if method != "HEAD":
            assert error_codes(r) == ["DIGEST_INVALID"]


def test_unsupported_method(ddreg_client: Client) -> None:
    r = ddreg_client.req("POST", f"/v2/{repo()}/manifests/x")
    assert r.status_code == 405
    assert error_codes(r) == ["UNSUPPORTED"]


def test_error_body_shape(ddreg_client: Client) -> None:
    r = ddreg_client.req("GET", f"/v2/{repo()}/manifests/missing")
    body = r.json()
    assert r.headers["Content-Type"].startswith("application/json")
    assert set(body) == {"errors"}
    (e,) = body["errors"]
    assert set(e) == {"code", "message", "detail"}
    assert isinstance(e["message"], str) and e["message"]


_path_chars = st.text(alphabet="abcAZ09-._/:%@~ ", min_size=0, max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "HEAD", "PUT", "PATCH", "DELETE", "POST"]),
    name=_path_chars,
    kind=st.sampled_from(["manifests", "blobs", "blobs/uploads", "referrers", "tags"]),
    ref=_path_chars,
)
def test_fuzzed_paths_never_500(ddreg_client: Client, method: str, name: str, kind: str, ref: str) -> None:
    r = ddreg_client.req(method, f"/v2/{name}/{kind}/{ref}", data=b"{}")
    assert r.status_code < 500, (method, name, kind, ref, r.text)


def test_push_by_digest_with_tag_parameters(ddreg_client: Client) -> None:
    name = repo()
    cfg = ddreg_client.push_blob(name, b"{}")
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": EMPTY_CONFIG, "digest": cfg, "size": 2}, "layers": []}  # fmt: skip
    body = json.dumps(doc).encode()
    r = ddreg_client.req("PUT", f"/v2/{name}/manifests/{sha256(body)}?tag=v1&tag=latest", data=body,
                         headers={"Content-Type": OCI_MANIFEST})  # fmt: skip
    assert r.status_code == 201
    assert r.headers["OCI-Tag"] == "v1, latest"
    assert ddreg_client.req("GET", f"/v2/{name}/tags/list").json()["tags"] == ["latest", "v1"]
    r = ddreg_client.req("PUT", f"/v2/{name}/manifests/{sha256(body)}?tag=bad/tag", data=body,
                         headers={"Content-Type": OCI_MANIFEST})  # fmt: skip
    assert r.status_code == 400 and error_codes(r) == ["MANIFEST_INVALID"]


# ------------------------------------------------------------------ big bodies (read straight off the socket)
def test_big_monolithic_put_with_content_length(ddreg_client: Client) -> None:
    name, data = repo(), os.urandom((3 << 20) + 123)
    r = ddreg_client.req("POST", f"/v2/{name}/blobs/uploads/")
    r = ddreg_client.req("PUT", ddreg_client.loc(r) + f"?digest={sha256(data)}", data=data)
    assert r.status_code == 201, r.text
    assert ddreg_client.req("GET", f"/v2/{name}/blobs/{sha256(data)}").content == data
    r = ddreg_client.req("POST", f"/v2/{name}/blobs/uploads/?digest={sha256(b'x' + data)}", data=b"x" + data)
    assert r.status_code == 201
    bad = ddreg_client.req("POST", f"/v2/{name}/blobs/uploads/?digest={sha256(b'no')}", data=data)
    assert bad.status_code == 400 and error_codes(bad) == ["DIGEST_INVALID"]


def test_big_chunks_with_content_range(ddreg_client: Client) -> None:
    name, data = repo(), os.urandom(5 << 20)
    r = ddreg_client.req("POST", f"/v2/{name}/blobs/uploads/")
    loc = ddreg_client.loc(r)
    step = (2 << 20) + 7
    for start in range(0, len(data), step):
        chunk = data[start : start + step]
        r = ddreg_client.req("PATCH", loc, data=chunk, headers={"Content-Range": f"{start}-{start + len(chunk) - 1}"})
        assert r.status_code == 202 and r.headers["Range"] == f"0-{start + len(chunk) - 1}"
        loc = ddreg_client.loc(r)
    r = ddreg_client.req("PUT", loc + f"?digest={sha256(data)}")
    assert r.status_code == 201
    assert ddreg_client.req("GET", f"/v2/{name}/blobs/{sha256(data)}").content == data


def test_client_vanishing_mid_body_keeps_the_prefix(ddreg_client: Client) -> None:
    """A PATCH whose client disconnects keeps what arrived; the upload resumes from there."""
    import socket
    import time

    name, data = repo(), os.urandom(4 << 20)
    r = ddreg_client.req("POST", f"/v2/{name}/blobs/uploads/")
    loc = ddreg_client.loc(r)
    path = loc.split("//", 1)[1].split("/", 1)[1]
    host, port = ddreg_client.base.split("//")[1].split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(
            f"PATCH /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(data)}\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        s.sendall(data[: 3 << 20])
    for _ in range(200):  # the server notices the close and records the prefix
        st = ddreg_client.req("GET", loc)
        if st.headers.get("Range") == f"0-{(3 << 20) - 1}":
            break
        time.sleep(0.05)
    assert st.status_code == 204 and st.headers["Range"] == f"0-{(3 << 20) - 1}"
    r = ddreg_client.req("PATCH", loc, data=data[3 << 20 :], headers={"Content-Range": f"{3 << 20}-{len(data) - 1}"})
    assert r.status_code == 202
    r = ddreg_client.req("PUT", ddreg_client.loc(r) + f"?digest={sha256(data)}")
    assert r.status_code == 201
    assert ddreg_client.req("GET", f"/v2/{name}/blobs/{sha256(data)}").content == data


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=6),
    ranged=st.lists(st.booleans(), min_size=8, max_size=8),
    last_in_put=st.booleans(),
)
def test_any_chunking_gives_the_same_blob(
    ddreg_client: Client, cuts: list[int], ranged: list[bool], last_in_put: bool
) -> None:
    data = os.urandom(5000)
    bounds = sorted({0, len(data), *cuts})
    pieces = [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    name = repo()
    loc = ddreg_client.loc(ddreg_client.req("POST", f"/v2/{name}/blobs/uploads/"))
    final = pieces.pop() if last_in_put and pieces else b""
    offset = 0
    for i, piece in enumerate(pieces):
        headers = {"Content-Range": f"{offset}-{offset + len(piece) - 1}"} if ranged[i % 8] and piece else {}
        r = ddreg_client.req("PATCH", loc, data=piece, headers=headers)
        assert r.status_code == 202, r.text
        offset += len(piece)
        assert r.headers["Range"] == f"0-{max(offset - 1, 0)}"
        loc = ddreg_client.loc(r)
    r = ddreg_client.req("PUT", loc + f"?digest={sha256(data)}", data=final)
    assert r.status_code == 201, r.text
    assert ddreg_client.req("GET", f"/v2/{name}/blobs/{sha256(data)}").content == data
