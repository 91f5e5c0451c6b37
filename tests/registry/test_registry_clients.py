"""Real clients against serve-registry: skopeo, podman, oras, and the CNCF registry itself.

All servers listen on 127.0.0.1 (ports 15000-15999); nothing touches the host's /etc/docker.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ddreg_helpers import (
    OCI_INDEX,
    OCI_MANIFEST,
    Client,
    Distribution,
    Server,
    free_port,
    make_oci_layout,
    sha256,
    tmpdir,
)

pytestmark = pytest.mark.real


def run(*cmd: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-1500:]}"
    return r


def need(binary: str) -> None:
    if shutil.which(binary) is None:
        pytest.skip(f"{binary} is not installed (CI installs it)")


@pytest.fixture(scope="session")
def ddreg_work() -> Iterator[str]:
    d = tmpdir("clients")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def ddreg_layout(ddreg_work: str, ddreg_busybox_rootfs: str) -> tuple[str, str]:
    """An OCI layout with a one-layer busybox image tagged `1`; (path, manifest digest)."""
    path = os.path.join(ddreg_work, "layout")
    return path, make_oci_layout(path, ddreg_busybox_rootfs)


@pytest.fixture(scope="session")
def ddreg_distributions(ddreg_work: str) -> Iterator[Callable[[str], Distribution]]:
    need("docker-registry")
    started: list[Distribution] = []

    def start(root: str) -> Distribution:
        d = Distribution(root=root, port=free_port(), workdir=ddreg_work, session=True).start()
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()


def manifest_digest_of(ref: str, *tls: str) -> str:
    out = run("skopeo", "inspect", *tls, "--raw", ref).stdout
    return sha256(out.encode())


# ------------------------------------------------------------------ skopeo
def test_skopeo_copy_both_directions(ddreg_server: Server, ddreg_layout: tuple[str, str], ddreg_work: str) -> None:
    need("skopeo")
    layout, digest = ddreg_layout
    dest = f"docker://{ddreg_server.hostport}/skopeo/bb:1"
    # push: OCI layout -> serve-registry (OCI media types, unchanged digest)
    run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:1", dest)
    c = Client(ddreg_server.url)
    r = c.req("GET", "/v2/skopeo/bb/manifests/1", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == digest
    # push again as Docker schema2
    run("skopeo", "copy", "--dest-tls-verify=false", "--format", "v2s2", f"oci:{layout}:1",
        f"docker://{ddreg_server.hostport}/skopeo/bb:v2s2")  # fmt: skip
    r = c.req("GET", "/v2/skopeo/bb/manifests/v2s2", headers={"Accept": "*/*"})
    assert r.headers["Content-Type"] == "application/vnd.docker.distribution.manifest.v2+json"
    # pull: serve-registry -> OCI layout, by tag and by digest
    out = os.path.join(ddreg_work, "pulled")
    run("skopeo", "copy", "--src-tls-verify=false", dest, f"oci:{out}:back")
    run("skopeo", "copy", "--src-tls-verify=false", f"docker://{ddreg_server.hostport}/skopeo/bb@{digest}",
        f"oci:{out}:bydigest")  # fmt: skip
    index = json.loads(Path(os.path.join(out, "index.json")).read_text())
    assert {m["digest"] for m in index["manifests"]} == {digest}
    # a skopeo copy between two repositories of ours mounts the blobs
    run("skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false", dest,
        f"docker://{ddreg_server.hostport}/skopeo/copy:1")  # fmt: skip
    assert c.req("GET", "/v2/skopeo/copy/manifests/1").headers["Docker-Content-Digest"] == digest
    tags = json.loads(run("skopeo", "list-tags", "--tls-verify=false", dest.rsplit(":", 1)[0]).stdout)
    assert sorted(tags["Tags"]) == ["1", "v2s2"]
    run("skopeo", "delete", "--tls-verify=false", f"docker://{ddreg_server.hostport}/skopeo/copy:1")
    assert c.req("GET", "/v2/skopeo/copy/manifests/1").status_code == 404


# ------------------------------------------------------------------ podman
def test_podman_push_and_pull(ddreg_server: Server, ddreg_layout: tuple[str, str], ddreg_work: str) -> None:
    need("podman")
    layout, _ = ddreg_layout
    store = os.path.join(ddreg_work, "podman")
    base = ["podman", "--root", f"{store}/root", "--runroot", f"{store}/run", "--storage-driver", "vfs",
            "--cgroup-manager", "cgroupfs", "--events-backend", "none"]  # fmt: skip
    try:
        run(*base, "pull", f"oci:{layout}:1")
        images = run(*base, "images", "--format", "{{.ID}}").stdout.split()
        assert images
        ref = f"{ddreg_server.hostport}/podman/bb:1"
        run(*base, "tag", images[0], ref)
        run(*base, "push", "--tls-verify=false", ref)
        c = Client(ddreg_server.url)
        r = c.req("GET", "/v2/podman/bb/manifests/1", headers={"Accept": f"{OCI_MANIFEST}, */*"})
        assert r.status_code == 200
        run(*base, "rmi", "-f", ref)
        run(*base, "pull", "--tls-verify=false", ref)
        assert ref in run(*base, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout
    finally:
        subprocess.run([*base, "system", "reset", "-f"], capture_output=True, timeout=60)
        for m in sorted(
            (ln.split()[1] for ln in Path("/proc/mounts").read_text().splitlines() if store in ln), reverse=True
        ):
            subprocess.run(["umount", m], capture_output=True)


# ------------------------------------------------------------------ oras
def test_oras_artifact_with_subject_and_referrers(ddreg_server: Server, ddreg_work: str) -> None:
    import oras.client
    import oras.oci

    c = Client(ddreg_server.url)
    subject_digest, subject_body = c.push_image("oras/app", "1.0")
    sbom = os.path.join(ddreg_work, "sbom.json")
    with open(sbom, "w") as f:
        json.dump({"spdxVersion": "SPDX-2.3", "name": "app"}, f)
    client = oras.client.OrasClient(hostname=ddreg_server.hostport, insecure=True)
    target = f"{ddreg_server.hostport}/oras/app:sbom"
    cwd = os.getcwd()
    os.chdir(ddreg_work)  # oras wants relative paths
    try:
        resp = client.push(
            target=target,
            files=["sbom.json:application/spdx+json"],
            subject=oras.oci.Subject(mediaType=OCI_MANIFEST, digest=subject_digest, size=len(subject_body)),
            manifest_annotations={"org.example.kind": "sbom"},
        )
    finally:
        os.chdir(cwd)
    assert resp.status_code == 201
    assert resp.headers.get("OCI-Subject") == subject_digest
    # list the referrers through the oras client's own transport
    url = f"http://{ddreg_server.hostport}/v2/oras/app/referrers/{subject_digest}"
    r = client.do_request(url, "GET")
    assert r.status_code == 200
    idx = r.json()
    assert idx["mediaType"] == OCI_INDEX
    (desc,) = idx["manifests"]
    pushed = c.req("HEAD", "/v2/oras/app/manifests/sbom")
    assert desc["digest"] == pushed.headers["Docker-Content-Digest"]
    assert desc["size"] == int(pushed.headers["Content-Length"])
    assert client.get_manifest(target)["subject"]["digest"] == subject_digest
    assert desc["annotations"]["org.example.kind"] == "sbom"
    assert client.get_tags(f"{ddreg_server.hostport}/oras/app") == ["1.0", "sbom"]
    # and pull it back
    outdir = os.path.join(ddreg_work, "oras-out")
    files = client.pull(target=target, outdir=outdir)
    assert json.loads(Path(files[0]).read_text())["name"] == "app"


# ------------------------------------------------------------------ the CNCF registry
def test_distribution_serves_our_directory(
    ddreg_servers: Callable[..., Server],
    ddreg_distributions: Callable[[str], Distribution],
    ddreg_layout: tuple[str, str],
    ddreg_work: str,
) -> None:
    need("skopeo")
    layout, digest = ddreg_layout
    root = os.path.join(ddreg_work, "ours")
    ours = ddreg_servers("--no-access-log", root=root)
    run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:1", f"docker://{ours.hostport}/interop/bb:1")
    c = Client(ours.url)
    art_digest, art_body = c.push_image("interop/art", "a1", layers=[b"hello"])
    theirs = ddreg_distributions(root)
    d = Client(theirs.url)
    assert d.req("GET", "/v2/_catalog").json()["repositories"] == ["interop/art", "interop/bb"]
    assert d.req("GET", "/v2/interop/bb/tags/list").json()["tags"] == ["1"]
    r = d.req("GET", "/v2/interop/art/manifests/a1", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200 and r.content == art_body
    assert d.req("GET", f"/v2/interop/art/blobs/{sha256(b'hello')}").content == b"hello"
    out = os.path.join(ddreg_work, "from-distribution")
    run("skopeo", "copy", "--src-tls-verify=false", f"docker://{theirs.hostport}/interop/bb:1", f"oci:{out}:1")
    assert json.loads(Path(os.path.join(out, "index.json")).read_text())["manifests"][0]["digest"] == digest


def test_we_serve_a_distribution_directory(
    ddreg_servers: Callable[..., Server],
    ddreg_distributions: Callable[[str], Distribution],
    ddreg_layout: tuple[str, str],
    ddreg_work: str,
) -> None:
    need("skopeo")
    layout, digest = ddreg_layout
    root = os.path.join(ddreg_work, "theirs")
    os.makedirs(root)
    theirs = ddreg_distributions(root)
    run("skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:1", f"docker://{theirs.hostport}/dist/bb:1")
    run("skopeo", "copy", "--dest-tls-verify=false", "--format", "v2s2", f"oci:{layout}:1",
        f"docker://{theirs.hostport}/dist/bb:docker")  # fmt: skip
    # a chunked upload left half-done by distribution must not confuse us
    d = Client(theirs.url)
    r = d.req("POST", "/v2/dist/bb/blobs/uploads/")
    d.req("PATCH", d.loc(r), data=b"partial", headers={"Content-Range": "0-6"})
    ours = ddreg_servers("--no-access-log", root=root)
    c = Client(ours.url)
    assert c.req("GET", "/v2/_catalog").json()["repositories"] == ["dist/bb"]
    assert c.req("GET", "/v2/dist/bb/tags/list").json()["tags"] == ["1", "docker"]
    r = c.req("HEAD", "/v2/dist/bb/manifests/1")
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.headers["Content-Type"] == OCI_MANIFEST
    out = os.path.join(ddreg_work, "from-ours")
    run("skopeo", "copy", "--src-tls-verify=false", f"docker://{ours.hostport}/dist/bb:docker", f"oci:{out}:d")
    run("skopeo", "copy", "--src-tls-verify=false", f"docker://{ours.hostport}/dist/bb@{digest}", f"oci:{out}:o")
    # we write into their directory and they read it back
    c.push_image("dist/bb", "ours")
    assert sorted(d.req("GET", "/v2/dist/bb/tags/list").json()["tags"]) == ["1", "docker", "ours"]
    # our offline gc reads their layout: everything is referenced, nothing is deleted
    import sys

    gc = subprocess.run([sys.executable, "-m", "dockerdoctor", "registry", "gc", "--root", root, "--dry-run"],
                        capture_output=True, text=True, timeout=60)  # fmt: skip
    assert gc.returncode == 0, gc.stderr
    assert gc.stdout.startswith("would delete 0 blob(s), 0 bytes; kept ")
    assert int(re.search(r"kept (\d+)", gc.stdout).group(1)) >= 5  # type: ignore[union-attr]

    assert d.req("GET", "/v2/dist/bb/manifests/ours", headers={"Accept": OCI_MANIFEST}).status_code == 200


def test_registry_ls_and_rm_against_distribution(ddreg_work: str) -> None:
    """`dockerdoctor registry` works against the CNCF registry too, and explains disabled deletes."""
    need("docker-registry")
    import sys

    def dd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "dockerdoctor", *args], capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip

    on = Distribution(root=os.path.join(ddreg_work, "rm-on"), port=free_port(), workdir=ddreg_work).start()
    off = Distribution(root=os.path.join(ddreg_work, "rm-off"), port=free_port(), workdir=ddreg_work, delete=False)
    off.start()
    try:
        for srv in (on, off):
            c = Client(srv.url)
            c.push_image("lib/app", "1", media_type="application/vnd.docker.distribution.manifest.v2+json")
            c.push_image("lib/app", "2", media_type=OCI_MANIFEST)
        ls = dd("registry", "ls", on.hostport)
        assert ls.returncode == 0, ls.stderr
        assert f"{on.hostport}/lib/app: 1 2" in ls.stdout
        for tag in ("1", "2"):  # Docker and OCI manifests both resolve with the right Accept headers
            rm = dd("registry", "rm", f"{on.hostport}/lib/app:{tag}")
            assert rm.returncode == 0, rm.stderr
            assert "registry garbage-collect" in rm.stdout
        assert dd("registry", "ls", f"{on.hostport}/lib/app").stdout.split() == []
        refused = dd("registry", "rm", f"{off.hostport}/lib/app:1")
        assert refused.returncode == 2
        assert "REGISTRY_STORAGE_DELETE_ENABLED=true" in refused.stderr
    finally:
        on.stop()
        off.stop()
