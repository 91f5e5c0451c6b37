"""serve-registry operations: TLS, auth, read-only, no-delete, workers, limits, logs, signals, crashes,
and the `registry ls/rm/gc` commands."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from ddreg_helpers import Client, Server, error_codes, free_port, sha256, tmpdir

from dockerdoctor.registry.auth import make_entry
from dockerdoctor.registry.storage import FilesystemDriver


def dd(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dockerdoctor", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture()
def work() -> Iterator[str]:
    d = tmpdir("ops")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


# ------------------------------------------------------------------ TLS
def test_tls_self_signed(work: str) -> None:
    port = free_port()
    srv = Server(root=os.path.join(work, "root"), port=port, scheme="https",
                 args=["--tls-self-signed", "127.0.0.1,localhost", "--no-access-log"])  # fmt: skip
    ca = os.path.join(work, "root.tls", "ca.crt")  # next to the storage root, never inside it
    srv.verify = ca
    srv.start()
    try:
        log = srv.read_log()
        assert f"/etc/docker/certs.d/127.0.0.1:{port}/ca.crt" in log
        assert f"/etc/docker/certs.d/localhost:{port}/ca.crt" in log
        for host in ("127.0.0.1", "localhost"):
            assert requests.get(f"https://{host}:{port}/v2/", verify=ca, timeout=10).status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"https://127.0.0.1:{port}/v2/", timeout=10)  # not trusted without the CA
        c = Client(srv.url, verify=ca)
        data = os.urandom(3 << 20)  # big enough for the raw path, which TLS must not take
        d = c.push_blob("tls/x", data)
        assert c.req("GET", f"/v2/tls/x/blobs/{d}").content == data  # no sendfile over TLS; still correct
        if shutil.which("skopeo"):
            # skopeo, like dockerd, reads /etc/docker/certs.d: put the CA at exactly the printed path
            # in a private mount namespace (the host's /etc/docker is never touched).
            printed = re.search(r"(/etc/docker/certs\.d/127\.0\.0\.1:\d+/ca\.crt)", log).group(1)  # type: ignore[union-attr]
            fake_etc = os.path.join(work, "etc-docker")
            target = os.path.join(fake_etc, os.path.relpath(printed, "/etc/docker"))
            os.makedirs(os.path.dirname(target))
            shutil.copy(ca, target)
            listing = f"skopeo list-tags docker://127.0.0.1:{port}/tls/x"
            r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                                f"mount --bind {fake_etc} /etc/docker && exec {listing}"],
                               capture_output=True, text=True, timeout=60)  # fmt: skip
            assert r.returncode == 0, r.stderr
            assert json.loads(r.stdout)["Tags"] == []
            bad = subprocess.run(listing.split(), capture_output=True, text=True, timeout=60)
            assert bad.returncode != 0 and "certificate" in bad.stderr
        first_ca = Path(ca).read_text()
    finally:
        assert srv.stop() == 0
    # a restart reuses the CA, so clients keep trusting it
    srv.start()
    try:
        assert Path(ca).read_text() == first_ca
    finally:
        srv.stop()
    # the same files work as --tls-cert/--tls-key
    tls = os.path.join(work, "root.tls")
    assert not os.path.exists(os.path.join(work, "root", "tls"))
    other = Server(root=os.path.join(work, "root2"), port=free_port(), scheme="https", verify=ca,
                   args=["--tls-cert", f"{tls}/server.crt", "--tls-key", f"{tls}/server.key"])  # fmt: skip
    other.start()
    try:
        assert requests.get(other.url + "/v2/", verify=ca, timeout=10).status_code == 200
    finally:
        other.stop()


def test_tls_errors_are_one_line(work: str) -> None:
    root = os.path.join(work, "root")
    line = _one_error_line(
        dd("serve-registry", "--root", root, "--tls-cert", "/nonexistent.crt", "--tls-key", "/x.key")
    )
    assert "/nonexistent.crt" in line
    line = _one_error_line(dd("serve-registry", "--root", root, "--tls-cert", "/etc/hostname"))
    assert "--tls-key" in line
    garbage = os.path.join(work, "bad.pem")
    with open(garbage, "w") as f:
        f.write("not a certificate\n")
    _one_error_line(dd("serve-registry", "--root", root, "--tls-cert", garbage, "--tls-key", garbage))


# ------------------------------------------------------------------ auth and modes
def test_htpasswd(ddreg_servers: Callable[..., Server], work: str) -> None:
    ht = os.path.join(work, "htpasswd")
    with open(ht, "w") as f:
        f.write(make_entry("alice", "s3cret", rounds=4) + "\n")
    srv = ddreg_servers("--htpasswd", ht, "--no-access-log")
    r = requests.get(srv.url + "/v2/", timeout=10)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == 'Basic realm="dockerdoctor"'
    assert error_codes(r) == ["UNAUTHORIZED"]
    assert requests.get(srv.url + "/v2/", auth=("alice", "wrong"), timeout=10).status_code == 401
    assert requests.get(srv.url + "/v2/", auth=("bob", "s3cret"), timeout=10).status_code == 401
    c = Client(srv.url, auth=("alice", "s3cret"))
    assert c.req("GET", "/v2/").status_code == 200
    c.push_image("auth/app", "1")
    assert requests.get(srv.url + "/v2/auth/app/tags/list", timeout=10).status_code == 401
    ls = dd("registry", "ls", f"{srv.hostport}/auth/app", "--plain-http", "-u", "alice:s3cret")
    assert ls.returncode == 0 and ls.stdout.split() == ["1"], ls.stderr
    denied = dd("registry", "ls", f"{srv.hostport}/auth/app", "--plain-http")
    assert "401" in _one_error_line(denied)


def test_htpasswd_file_errors(work: str) -> None:
    bad = os.path.join(work, "ht")
    with open(bad, "w") as f:
        f.write("alice:{SHA}abcdef\n")
    line = _one_error_line(dd("serve-registry", "--root", work, "--htpasswd", bad))
    assert "bcrypt" in line
    _one_error_line(dd("serve-registry", "--root", work, "--htpasswd", os.path.join(work, "missing")))


def test_read_only(ddreg_servers: Callable[..., Server], work: str) -> None:
    root = os.path.join(work, "root")
    writer = ddreg_servers("--no-access-log", root=root)
    d, body = Client(writer.url).push_image("ro/app", "1")
    srv = ddreg_servers("--read-only", "--no-access-log", root=root)
    c = Client(srv.url)
    assert c.req("GET", "/v2/ro/app/manifests/1").content == body
    for method, path in (
        ("POST", "/v2/ro/app/blobs/uploads/"),
        ("PUT", "/v2/ro/app/manifests/2"),
        ("DELETE", f"/v2/ro/app/manifests/{d}"),
        ("PATCH", "/v2/ro/app/blobs/uploads/00000000-0000-0000-0000-000000000000"),
    ):
        r = c.req(method, path, data=body)
        assert r.status_code == 405, (method, path)
        assert error_codes(r) == ["UNSUPPORTED"]


def test_no_delete(ddreg_servers: Callable[..., Server]) -> None:
    srv = ddreg_servers("--no-delete", "--no-access-log")
    c = Client(srv.url)
    d, _ = c.push_image("nodel/app", "1")
    blob = c.push_blob("nodel/app", b"blob")
    for path in (f"/v2/nodel/app/manifests/{d}", "/v2/nodel/app/manifests/1", f"/v2/nodel/app/blobs/{blob}"):
        r = c.req("DELETE", path)
        assert r.status_code == 405 and error_codes(r) == ["UNSUPPORTED"]
    assert c.req("GET", "/v2/nodel/app/manifests/1").status_code == 200
    line = _one_error_line(dd("registry", "rm", f"{srv.hostport}/nodel/app:1", "--plain-http"))
    assert "REGISTRY_STORAGE_DELETE_ENABLED=true" in line


def test_upload_size_limit(ddreg_servers: Callable[..., Server]) -> None:
    srv = ddreg_servers("--max-upload-size", "1K", "--no-access-log")
    c = Client(srv.url)
    assert c.push_blob("lim/app", b"x" * 1024)
    big = os.urandom(3000)
    r = c.req("POST", f"/v2/lim/app/blobs/uploads/?digest={sha256(big)}", data=big)
    assert r.status_code == 413 and error_codes(r) == ["SIZE_INVALID"]
    r = c.req("POST", "/v2/lim/app/blobs/uploads/")
    loc = c.loc(r)
    r = c.req("PATCH", loc, data=iter([big[:600], big[600:]]))  # no Content-Length: caught while streaming
    assert r.status_code == 413
    s = c.req("GET", loc)
    assert s.status_code == 204 and s.headers["Range"] == "0-0"  # the session is intact, nothing kept
    r = c.req("PATCH", loc, data=big[:1000])
    assert r.status_code == 202
    r = c.req("PUT", c.loc(r) + f"?digest={sha256(big[:1000])}")
    assert r.status_code == 201
    line = _one_error_line(dd("serve-registry", "--max-upload-size", "lots"))
    assert line.startswith("dockerdoctor: error: invalid size")


def test_access_log_and_sigterm(work: str) -> None:
    log = os.path.join(work, "access.log")
    srv = Server(root=os.path.join(work, "root"), port=free_port(), args=["--access-log", log]).start()
    c = Client(srv.url)
    c.req("GET", "/v2/", headers={"User-Agent": "ddreg-test/1"})
    c.req("GET", "/v2/nothing/here/manifests/x")
    assert srv.stop(signal.SIGTERM) == 0
    text = Path(log).read_text()
    assert re.search(r'127\.0\.0\.1 "GET /v2/ HTTP/1\.1" 200 \d+ [\d.]+ "ddreg-test/1"', text), text
    assert '"GET /v2/nothing/here/manifests/x HTTP/1.1" 404' in text
    assert "Traceback" not in srv.read_log()


def test_sigterm_finishes_inflight_upload(work: str) -> None:
    srv = Server(root=os.path.join(work, "root"), port=free_port(), args=["--no-access-log"]).start()
    c = Client(srv.url)
    r = c.req("POST", "/v2/term/app/blobs/uploads/")
    loc = c.loc(r)
    data = os.urandom(2 << 20)
    sent_first = threading.Event()
    result: dict[str, requests.Response] = {}

    def body() -> Iterator[bytes]:
        yield data[: 1 << 20]
        sent_first.set()
        time.sleep(0.5)  # the SIGTERM arrives while the body is still streaming
        yield data[1 << 20 :]

    t = threading.Thread(
        target=lambda: result.setdefault("r", c.req("PUT", loc + f"?digest={sha256(data)}", data=body()))
    )
    t.start()
    assert sent_first.wait(30)
    srv.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    t.join(60)
    assert "error" not in result, result
    assert result["r"].status_code == 201
    assert srv.proc.wait(30) == 0  # type: ignore[union-attr]
    assert FilesystemDriver(srv.root).blob_size(sha256(data)) == len(data)


def test_workers(work: str) -> None:
    srv = Server(root=os.path.join(work, "root"), port=free_port(), args=["--workers", "3", "--no-access-log"]).start()
    try:
        children = Path(f"/proc/{srv.proc.pid}/task/{srv.proc.pid}/children").read_text().split()  # type: ignore[union-attr]
        assert len(children) == 3
        c = Client(srv.url)
        # uploads spread over workers still hash right: chunks may land on different processes
        for i in range(6):
            data = os.urandom(50_000 + i)
            r = c.req("POST", "/v2/workers/app/blobs/uploads/")
            loc = c.loc(r)
            for start in range(0, len(data), 20_000):
                chunk = data[start : start + 20_000]
                s = requests.patch(loc, data=chunk, headers={"Content-Range": f"{start}-{start + len(chunk) - 1}"})
                assert s.status_code == 202
                loc = c.loc(s)
            assert requests.put(loc + f"?digest={sha256(data)}").status_code == 201
        c.push_image("workers/app", "1")
    finally:
        assert srv.stop() == 0
    for pid in children:
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()


def test_port_in_use_is_one_line(ddreg_server: Server, work: str) -> None:
    line = _one_error_line(
        dd("serve-registry", "--host", "127.0.0.1", "--port", str(ddreg_server.port), "--root", work)
    )
    assert "cannot listen" in line


# ------------------------------------------------------------------ crash safety
def test_kill_9_mid_push_leaves_no_blob(work: str) -> None:
    root = os.path.join(work, "root")
    port = free_port()
    srv = Server(root=root, port=port, args=["--no-access-log"]).start()
    data = os.urandom(8 << 20)
    digest = sha256(data)
    c = Client(srv.url)
    r = c.req("POST", "/v2/crash/app/blobs/uploads/")
    loc = c.loc(r)
    half_sent = threading.Event()
    release = threading.Event()
    errors: list[BaseException] = []

    def body() -> Iterator[bytes]:
        yield data[: 4 << 20]
        half_sent.set()
        release.wait(30)
        yield data[4 << 20 :]

    def push() -> None:
        try:
            c.req("PUT", loc + f"?digest={digest}", data=body())
        except requests.RequestException as e:
            errors.append(e)

    t = threading.Thread(target=push)
    t.start()
    assert half_sent.wait(30)
    time.sleep(0.3)  # let the server write some of it
    srv.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
    srv.proc.wait()  # type: ignore[union-attr]
    release.set()
    t.join(30)
    driver = FilesystemDriver(root)
    assert driver.blob_size(digest) is None
    assert not os.path.exists(os.path.join(driver.blobs_dir, "sha256", digest[7:9], digest[7:]))
    srv.start()
    try:
        assert c.req("HEAD", f"/v2/crash/app/blobs/{digest}").status_code == 404
        # the interrupted session is still there, holding only a prefix of the data
        s = c.req("GET", loc)
        if s.status_code == 204:
            end = int(s.headers["Range"].split("-")[1])
            assert end < len(data) - 1
        assert c.push_blob("crash/app", data) == digest
        assert c.req("GET", f"/v2/crash/app/blobs/{digest}").content == data
    finally:
        srv.stop()


def test_resume_after_restart_keeps_digest(work: str) -> None:
    srv = Server(root=os.path.join(work, "root"), port=free_port(), args=["--no-access-log"]).start()
    c = Client(srv.url)
    data = os.urandom(300_000)
    r = c.req("POST", "/v2/resume/app/blobs/uploads/")
    r = c.req("PATCH", c.loc(r), data=data[:100_000], headers={"Content-Range": "0-99999"})
    loc = c.loc(r)
    srv.stop()
    srv.start()  # the in-memory hash state is gone; it is rebuilt from disk
    try:
        r = c.req("PATCH", loc, data=data[100_000:], headers={"Content-Range": f"100000-{len(data) - 1}"})
        assert r.status_code == 202
        assert c.req("PUT", c.loc(r) + f"?digest={sha256(data)}").status_code == 201
    finally:
        srv.stop()


@pytest.mark.parametrize("step", [512 * 1024, 3 << 19])
def test_concurrent_pushes_of_the_same_blob(ddreg_server: Server, step: int) -> None:
    data = os.urandom(3 << 20)
    digest = sha256(data)
    results: list[int] = []
    lock = threading.Lock()

    def push(i: int) -> None:
        c = Client(ddreg_server.url)
        name = f"same/r{i % 3}"
        r = c.req("POST", f"/v2/{name}/blobs/uploads/")
        loc = c.loc(r)
        for start in range(0, len(data), step):
            r = c.req("PATCH", loc, data=data[start : start + step])
            loc = c.loc(r)
        r = c.req("PUT", loc + f"?digest={digest}")
        with lock:
            results.append(r.status_code)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == [201] * 8
    c = Client(ddreg_server.url)
    for i in range(3):
        assert c.req("GET", f"/v2/same/r{i}/blobs/{digest}").content == data
    blob_dir = os.path.join(FilesystemDriver(ddreg_server.root).blobs_dir, "sha256", digest[7:9], digest[7:])
    assert os.listdir(blob_dir) == ["data"]


def test_stale_uploads_are_purged_at_start(work: str) -> None:
    root = os.path.join(work, "root")
    driver = FilesystemDriver(root)
    driver.ensure()
    old = driver.new_upload("stale/app")
    fresh = driver.new_upload("stale/app")
    with open(os.path.join(os.path.dirname(driver.upload_data_path("stale/app", old)), "startedat"), "w") as f:
        f.write("2020-01-01T00:00:00.123456789Z")  # distribution writes nanoseconds
    os.utime(driver.upload_data_path("stale/app", old), (1577836800, 1577836800))
    srv = Server(root=root, port=free_port(), args=["--upload-ttl", "1h", "--no-access-log"]).start()
    try:
        deadline = time.monotonic() + 20
        while driver.upload_size("stale/app", old) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert driver.upload_size("stale/app", old) is None
        assert driver.upload_size("stale/app", fresh) == 0
    finally:
        srv.stop()


# ------------------------------------------------------------------ registry ls / rm / gc
def test_registry_ls_rm_gc(work: str) -> None:
    root = os.path.join(work, "root")
    srv = Server(root=root, port=free_port(), args=["--no-access-log"]).start()
    c = Client(srv.url)
    keep_layer, gone_layer = os.urandom(1000), os.urandom(2000)
    d1, body1 = c.push_image("gc/app", "keep", layers=[keep_layer])
    d2, _ = c.push_image("gc/app", "old", layers=[gone_layer])
    c.req(
        "PUT",
        "/v2/gc/app/manifests/alias",
        data=body1,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    c.push_image("other", "1", layers=[keep_layer])
    try:
        ls = dd("registry", "ls", srv.hostport)
        assert ls.returncode == 0, ls.stderr
        assert f"{srv.hostport}/gc/app: alias keep old" in ls.stdout
        assert f"{srv.hostport}/other: 1" in ls.stdout
        tags = dd("registry", "ls", "gc/app", "--registry", srv.hostport, "--json")
        assert '"keep"' in tags.stdout
        dry = dd("registry", "rm", f"{srv.hostport}/gc/app:keep", "--dry-run")
        assert "alias" in dry.stdout and "nothing deleted" in dry.stdout
        rm = dd("registry", "rm", f"{srv.hostport}/gc/app:old")
        assert rm.returncode == 0, rm.stderr
        assert d2 in rm.stdout and "registry gc" in rm.stdout
        assert c.req("GET", "/v2/gc/app/manifests/old").status_code == 404
        assert c.req("GET", f"/v2/gc/app/blobs/{sha256(gone_layer)}").status_code == 200  # until gc
        missing = dd("registry", "rm", f"{srv.hostport}/gc/app:old")
        assert "MANIFEST_UNKNOWN" in _one_error_line(missing)
        # gc refuses while a writable server holds the directory
        busy = dd("registry", "gc", "--root", root)
        assert "stop it" in _one_error_line(busy)
    finally:
        srv.stop()
    dry = dd("registry", "gc", "--root", root, "--dry-run")
    assert dry.returncode == 0 and f"would delete blob {sha256(gone_layer)}" in dry.stdout
    gc = dd("registry", "gc", "--root", root)
    assert gc.returncode == 0, gc.stderr
    assert f"deleted blob {sha256(gone_layer)}" in gc.stdout
    driver = FilesystemDriver(root)
    assert driver.blob_size(sha256(gone_layer)) is None
    assert driver.blob_size(sha256(keep_layer)) == 1000
    assert driver.blob_size(d2) is None and driver.blob_size(d1) is not None
    srv.start()
    try:
        assert c.req("GET", "/v2/gc/app/manifests/keep").content == body1
        assert c.req("HEAD", f"/v2/gc/app/blobs/{sha256(gone_layer)}").status_code == 404
        c.push_image("gc/app", "again", layers=[gone_layer])  # a re-push after gc works
    finally:
        srv.stop()
    assert "holds no registry storage" in _one_error_line(dd("registry", "gc", "--root", work + "/nothing"))


def test_registry_commands_one_line_errors() -> None:
    port = free_port()
    line = _one_error_line(dd("registry", "ls", f"127.0.0.1:{port}"))
    assert f"127.0.0.1:{port}" in line
    assert "REPO:TAG" in _one_error_line(dd("registry", "rm", "localhost:1/just-a-repo"))


def test_storage_errors_are_reported_not_crashing(ddreg_servers: Callable[..., Server], work: str) -> None:
    root = os.path.join(work, "root")
    srv = ddreg_servers("--no-access-log", root=root)
    # a file where a repository directory should be: every write under it fails with ENOTDIR
    with open(os.path.join(FilesystemDriver(root).repos_dir, "broken"), "w") as f:
        f.write("not a directory")
    c = Client(srv.url)
    r = c.req("POST", "/v2/broken/app/blobs/uploads/")
    assert r.status_code == 500
    assert error_codes(r) == ["UNKNOWN"] and "storage error" in r.json()["errors"][0]["message"]
    assert c.req("GET", "/v2/").status_code == 200  # still serving
    assert "storage error on POST /v2/broken/app/blobs/uploads/" in srv.read_log()


def test_kill_9_mid_push_with_content_length(work: str) -> None:
    """Same as above for a Content-Length body (read straight off the socket)."""
    import socket

    root = os.path.join(work, "root")
    srv = Server(root=root, port=free_port(), args=["--no-access-log"]).start()
    data = os.urandom(8 << 20)
    digest = sha256(data)
    c = Client(srv.url)
    loc = c.loc(c.req("POST", "/v2/crash/raw/blobs/uploads/"))
    path = "/" + loc.split("//", 1)[1].split("/", 1)[1]
    with socket.create_connection(("127.0.0.1", srv.port)) as s:
        s.sendall(f"PUT {path}?digest={digest} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n".encode())
        s.sendall(data[: 5 << 20])
        driver = FilesystemDriver(root)
        uid = path.rsplit("/", 1)[1]
        for _ in range(400):  # wait until the server has written part of it, then kill it
            if (driver.upload_size("crash/raw", uid) or 0) > 0:
                break
            time.sleep(0.025)
        srv.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        srv.proc.wait()  # type: ignore[union-attr]
    assert driver.blob_size(digest) is None
    assert 0 < (driver.upload_size("crash/raw", uid) or 0) <= 5 << 20
    srv.start()
    try:
        assert c.req("HEAD", f"/v2/crash/raw/blobs/{digest}").status_code == 404
        assert c.push_blob("crash/raw", data) == digest
    finally:
        srv.stop()


def test_cli_surface() -> None:
    helptext = dd("serve-registry", "--help").stdout
    for flag in ("--host", "--port", "--root", "--tls-cert", "--tls-key", "--tls-self-signed", "--htpasswd",
                 "--read-only", "--no-delete", "--workers", "--max-upload-size", "--access-log"):  # fmt: skip
        assert flag in helptext
    assert re.search(r"--port\s+INTEGER.*\[default:\s+5000\]", helptext, re.S)
    sub = dd("registry", "--help").stdout
    assert all(cmd in sub for cmd in ("ls", "rm", "gc"))
    assert "--dry-run" in dd("registry", "gc", "--help").stdout
