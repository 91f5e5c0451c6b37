"""`serve-registry --config config.yml`: distribution's file and REGISTRY_* overrides, with the real peer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests
from ddreg_helpers import Client, Distribution, Server, error_codes, free_port, tmpdir

from dockerdoctor.registry.auth import make_entry
from dockerdoctor.registry.config import ConfigError, go_duration, load, split_addr
from dockerdoctor.registry.tls import ensure_self_signed
from dockerdoctor.registry.uploads import sign_state


@pytest.fixture()
def work() -> Iterator[str]:
    d = tmpdir("cfg")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _write(path: str, text: str) -> str:
    with open(path, "w") as f:
        f.write(text)
    return path


def _config(work: str, port: int, extra: str = "") -> str:
    ht = _write(os.path.join(work, "htpasswd"), make_entry("alice", "pw", rounds=4) + "\n")
    return _write(os.path.join(work, "config.yml"), f"""\
version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: {work}/root
  maintenance:
    uploadpurging:
      enabled: true
      age: 1h30m
      interval: 10m
      dryrun: false
http:
  addr: 127.0.0.1:{port}
  secret: not-so-secret
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: lab-realm
    path: {ht}
notifications:
  endpoints: []
{extra}""")


def _serve_from(cfg: str, port: int, log: str, *args: str, env: dict[str, str] | None = None,
                scheme: str = "http", verify: object = True) -> Server:
    """`serve-registry --config CFG ARGS`, ready; by hand, as Server.start would add its own root and port."""
    srv = Server(root="", port=port, scheme=scheme, verify=verify)
    srv.log = log
    with open(log, "wb") as out:
        srv.proc = subprocess.Popen([sys.executable, "-m", "dockerdoctor", "serve-registry", "--config", cfg, *args,
                                     "--no-access-log"], stdout=out, stderr=out, env={**os.environ, **(env or {})},
                                    stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        srv.wait_ready()
    except BaseException:
        srv.stop()
        raise
    return srv


def test_the_same_file_runs_both_registries(work: str) -> None:
    port = free_port()
    cfg = _config(work, port)
    log = os.path.join(work, "serve.log")
    srv = _serve_from(cfg, port, log)  # --config gives root and port
    try:
        text = open(log).read()
        # keys it does not act on are named, with where they came from
        assert "log.fields.service (file): not supported by serve-registry, ignored" in text
        assert "notifications.endpoints (file)" in text
        assert "storage.cache" not in text and "http.secret" not in text
        r = requests.get(srv.url + "/v2/", timeout=10)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == 'Basic realm="lab-realm"'
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        c = Client(srv.url, auth=("alice", "pw"))
        digest, _ = c.push_image("cfg/app", "1")
        assert os.path.isdir(os.path.join(work, "root", "docker/registry/v2/repositories/cfg/app"))
        # distribution's default: no deletes unless storage.delete.enabled
        assert c.req("DELETE", f"/v2/cfg/app/manifests/{digest}").status_code == 405
    finally:
        srv.stop()
    # the CNCF registry serves the same directory from the same file (its own port by REGISTRY_HTTP_ADDR)
    dport = free_port()
    dlog = open(os.path.join(work, "dist.log"), "ab")  # noqa: SIM115
    env = {**os.environ, "REGISTRY_HTTP_ADDR": f"127.0.0.1:{dport}"}
    dist = subprocess.Popen(["docker-registry", "serve", cfg], stdout=dlog, stderr=dlog, env=env,
                            stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        peer = Distribution(root=os.path.join(work, "root"), port=dport, workdir=work)
        peer.proc = dist
        c = Client(peer.url, auth=("alice", "pw"))
        for _ in range(100):
            try:
                if c.req("GET", "/v2/").status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        oci = {"Accept": "application/vnd.oci.image.manifest.v1+json"}  # 2.8 hides OCI manifests otherwise
        assert c.req("GET", "/v2/cfg/app/manifests/1", headers=oci).status_code == 200
        assert c.req("GET", "/v2/").headers.get("X-Content-Type-Options") == "nosniff"
    finally:
        peer.stop()
        dlog.close()


def test_environment_overrides_and_the_command_line_wins(work: str) -> None:
    port, other = free_port(), free_port()
    cfg = _config(work, port)
    env = {"REGISTRY_HTTP_ADDR": f"127.0.0.1:{other}", "REGISTRY_STORAGE_DELETE_ENABLED": "true",
           "REGISTRY_AUTH_HTPASSWD_REALM": "env-realm"}  # fmt: skip
    srv = _serve_from(cfg, other, os.path.join(work, "serve.log"), "--realm", "cli-realm", "--http-secret",
                      "cli-secret", "--root", os.path.join(work, "cli-root"), env=env)  # fmt: skip
    try:
        r = requests.get(srv.url + "/v2/", timeout=10)
        assert r.headers["WWW-Authenticate"] == 'Basic realm="cli-realm"'  # the option beats env and file
        c = Client(srv.url, auth=("alice", "pw"))
        r = c.req("POST", "/v2/cfg/env/blobs/uploads/")
        state = sign_state(b"cli-secret", "cfg/env", r.headers["Docker-Upload-UUID"])
        assert f"_state={state}" in r.headers["Location"]  # --http-secret beats http.secret
        digest, _ = c.push_image("cfg/env", "1")
        assert c.req("DELETE", f"/v2/cfg/env/manifests/{digest}").status_code == 202  # env turned deletes on
        assert os.path.isdir(os.path.join(work, "cli-root", "docker/registry/v2/repositories/cfg/env"))
        assert not os.path.exists(os.path.join(work, "root"))  # --root beats rootdirectory
    finally:
        srv.stop()


@pytest.mark.parametrize(
    ("extra", "env", "needle"),
    [
        ("", {"REGISTRY_STORAGE_S3_BUCKET": "b"}, "storage names more than one driver (filesystem, s3)"),
        ("proxy:\n  remoteurl: https://registry-1.docker.io\n", {}, "pull-through cache"),
        ("", {"REGISTRY_AUTH_TOKEN_REALM": "x"}, "token authentication is not supported"),
        ("", {"REGISTRY_HTTP_ADDR": "nonsense"}, "http.addr: expected HOST:PORT"),
    ],
)
def test_what_it_cannot_honour_stops_the_start(work: str, extra: str, env: dict[str, str], needle: str) -> None:
    cfg = _config(work, free_port(), extra)
    r = subprocess.run([sys.executable, "-m", "dockerdoctor", "serve-registry", "--config", cfg],
                       capture_output=True, text=True, timeout=60, env={**os.environ, **env})  # fmt: skip
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and needle in lines[0], r.stderr


def test_config_units(work: str) -> None:
    assert go_duration("168h", "k") == 168 * 3600 and go_duration("1h30m", "k") == 5400
    assert go_duration("500ms", "k") == 0.5 and go_duration(10**9, "k") == 1.0
    for bad in ("", "10", "1d", "h", "1h 30m"):
        with pytest.raises(ConfigError):
            go_duration(bad, "k")
    assert split_addr(":5000") == ("0.0.0.0", 5000) and split_addr("[::1]:5001") == ("::1", 5001)
    with pytest.raises(ConfigError):
        split_addr("host:99999")
    path = _write(os.path.join(work, "c.yml"), "version: 0.2\n")
    with pytest.raises(ConfigError, match="version must be 0.1"):
        load(path, {})
    path = _write(os.path.join(work, "c.yml"), "version: 0.1\nstorage: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(path, {})
    path = _write(os.path.join(work, "c.yml"), "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /a\n")
    rc = load(path, {"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/b", "REGISTRY_STORAGE_DELETE": "{enabled: true}"})
    assert rc.root == "/b" and rc.allow_delete and rc.upload_ttl == 168 * 3600 and rc.ignored == []
    assert rc.warnings == []
    path = _write(os.path.join(work, "c.yml"), "version: 0.1\nstorage:\n  maintenance:\n    uploadpurging:\n"
                  "      enabled: true\n")  # fmt: skip
    assert "lacks age, interval, dryrun: distribution 2.8 refuses" in load(path, {}).warnings[0]


def test_tls_secret_log_level_purging_and_readonly_from_the_file(work: str) -> None:
    """http.tls, http.secret, log.level and uploadpurging's age and interval each change what runs;
    storage.maintenance.readonly (here from REGISTRY_*) refuses writes; --port beats http.addr."""
    tls = ensure_self_signed(os.path.join(work, "tls"), ["127.0.0.1"])
    file_port, cli_port = free_port(), free_port()
    cfg = _write(os.path.join(work, "config.yml"), f"""\
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: {work}/root
  maintenance:
    uploadpurging:
      enabled: true
      age: 1s
      interval: 1s
      dryrun: false
http:
  addr: 127.0.0.1:{file_port}
  secret: from-the-file
  tls:
    certificate: {tls.cert}
    key: {tls.key}
""")

    def start(port: int, env: dict[str, str]) -> Server:
        return _serve_from(cfg, port, os.path.join(work, f"serve-{port}.log"), "--port", str(port), env=env,
                           scheme="https", verify=tls.ca_cert)  # fmt: skip

    srv = start(cli_port, {})
    try:
        assert requests.get(srv.url + "/v2/", verify=tls.ca_cert, timeout=10).status_code == 200  # http.tls
        with pytest.raises(requests.ConnectionError):
            requests.get(f"https://127.0.0.1:{file_port}/v2/", verify=tls.ca_cert, timeout=5)  # --port won
        c = Client(srv.url, verify=tls.ca_cert)
        r = c.req("POST", "/v2/cfg/purge/blobs/uploads/")
        upload = r.headers["Docker-Upload-UUID"]
        assert f"_state={sign_state(b'from-the-file', 'cfg/purge', upload)}" in r.headers["Location"]  # http.secret
        deadline = time.monotonic() + 8  # age 1s, interval 1s: purged within about 2 s
        while time.monotonic() < deadline and "purged 1 stale upload session(s)" not in srv.read_log():
            time.sleep(0.2)
        assert "purged 1 stale upload session(s)" in srv.read_log(), srv.read_log()  # printed at log.level info
        r = c.req("PATCH", c.loc(r), data=b"late", headers={"Content-Range": "0-3"})
        assert r.status_code == 404 and error_codes(r) == ["BLOB_UPLOAD_UNKNOWN"]
    finally:
        srv.stop()
    ro = start(free_port(), {"REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED": "true"})
    try:
        c = Client(ro.url, verify=tls.ca_cert)
        r = c.req("POST", "/v2/cfg/ro/blobs/uploads/")
        assert r.status_code == 405 and error_codes(r) == ["UNSUPPORTED"]
        assert c.req("GET", "/v2/").status_code == 200
    finally:
        ro.stop()
