"""Differential tests: what `dockerdoctor resolve` predicts for podman, buildah and skopeo equals what the
real clients do, over a matrix of registries.conf variants, with each lab registry's access log as the witness.

Three lab registries in the lab's server namespace: A and B speak plain HTTP, T speaks TLS with the lab CA.
Each client and dockerdoctor itself run in the client namespace with a private /etc/containers, /etc/docker
and HOME (tests/lab_containers.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import lab
import pytest
from lab_containers import AccessLog, ContainersHost, make_oci_image, manifest_hits, predict, seed

pytestmark = pytest.mark.real("podman", "skopeo", "buildah")  # conftest: skip off CI, fail on CI
CLIENTS = ("podman", "buildah", "skopeo")
PORTS = {"A": 5150, "B": 5151, "T": 5152}


@dataclass
class Lab:
    host: ContainersHost
    log: AccessLog
    hp: dict[str, str]
    ca_pem: bytes
    regs: dict[str, lab.DistRegistry] = field(default_factory=dict)

    def truth(self, ca_path: str | None) -> dict[str, dict]:
        return {self.hp["A"]: {"tls": False, "ca": None}, self.hp["B"]: {"tls": False, "ca": None},
                self.hp["T"]: {"tls": True, "ca": ca_path}}


@pytest.fixture(scope="module")
def clab(lab_root: Path, labnet: lab.LabNet, certs) -> Iterator[Lab]:
    if not Path("/etc/containers").is_dir():
        why = "/etc/containers is missing (the mount point of the private one; install containers-common)"
        pytest.fail(why) if os.environ.get("CI") else pytest.skip(why)
    w = lab_root / "containers"
    regs: dict[str, lab.DistRegistry] = {}
    host = None
    try:
        for name, port in PORTS.items():
            regs[name] = lab.DistRegistry(w, labnet.srv_ip, port, netns=labnet.srv_ns, name=f"c{name}",
                                          tls=certs.good if name == "T" else None).start()
        host = ContainersHost(w / "host", labnet.cli_ns)
        oci = make_oci_image(w / "oci")
        for r in regs.values():
            seed(host, oci, f"{r.hostport}/lab/hello:v1")
        seed(host, oci, f"{regs['B'].hostport}/mirror/lab/hello:v1")
        yield Lab(host, AccessLog({r.hostport: r for r in regs.values()}), {k: r.hostport for k, r in regs.items()},
                  certs.ca_pem, regs)
    finally:
        for r in regs.values():
            r.stop()
        if host is not None:
            host.close()


def _scenarios() -> dict[str, dict]:
    """name -> {files: {path: text}, env, image (A/T placeholders), ca: path the CA is at (as the clients see it)}"""
    a, b, t = "{A}", "{B}", "{T}"
    img = f"{a}/lab/hello:v1"
    return {
        "system-only-nothing": {"files": {}, "image": img},
        "system-insecure": {"files": {"/etc/containers/registries.conf":
                                      f'# stock comment\n[[registry]]\nlocation = "{a}"\ninsecure = true\n'},
                            "image": img},
        "user-file": {"files": {"~/.config/containers/registries.conf":
                                f'[[registry]]\nlocation = "{a}"\ninsecure = true\n'}, "image": img},
        "user-file-replaces-system": {"files": {
            "/etc/containers/registries.conf": f'[[registry]]\nlocation = "{a}"\ninsecure = true\n',
            "~/.config/containers/registries.conf": 'unqualified-search-registries = ["docker.io"]\n'}, "image": img},
        "drop-in": {"files": {"/etc/containers/registries.conf.d/50-lab.conf":
                              f'[[registry]]\nprefix = "{a}"\nlocation = "{a}"\ninsecure = true\n'}, "image": img},
        "drop-in-overrides-same-prefix": {"files": {
            "/etc/containers/registries.conf": f'[[registry]]\nprefix = "{a}"\nlocation = "{a}"\ninsecure = true\n',
            "/etc/containers/registries.conf.d/90-strict.conf":
                f'[[registry]]\nprefix = "{a}"\nlocation = "{a}"\ninsecure = false\n'}, "image": img},
        "longest-prefix-wins": {"files": {"/etc/containers/registries.conf":
                                          f'[[registry]]\nprefix = "{a}"\nlocation = "{a}"\ninsecure = true\n\n'
                                          f'[[registry]]\nprefix = "{a}/lab"\nlocation = "{a}/lab"\n'},
                                "image": img},
        "location-rewrite": {"files": {"/etc/containers/registries.conf":
                                       f'[[registry]]\nprefix = "{a}/lab"\nlocation = "{b}/mirror/lab"\n'
                                       'insecure = true\n'}, "image": img},
        "mirror-first": {"files": {"/etc/containers/registries.conf":
                                   f'[[registry]]\nprefix = "{a}"\nlocation = "{a}"\ninsecure = true\n\n'
                                   f'[[registry.mirror]]\nlocation = "{b}/mirror"\ninsecure = true\n'},
                         "image": img},
        "blocked": {"files": {"/etc/containers/registries.conf":
                              f'[[registry]]\nlocation = "{a}"\ninsecure = true\nblocked = true\n'}, "image": img},
        "v1-insecure": {"files": {"/etc/containers/registries.conf":
                                  f'[registries.insecure]\nregistries = ["{a}"]\n'}, "image": img},
        "env-var": {"files": {"/etc/containers/lab-env.conf": f'[[registry]]\nlocation = "{a}"\ninsecure = true\n'},
                    "env": {"CONTAINERS_REGISTRIES_CONF": "/etc/containers/lab-env.conf"}, "image": img},
        "legacy-env-var": {"files": {"/etc/containers/old.conf": f'[[registry]]\nlocation = "{a}"\ninsecure = true\n'},
                           "env": {"REGISTRIES_CONFIG_PATH": "/etc/containers/old.conf"}, "image": img},
        "both-env-vars-new-one-wins": {"files": {
            "/etc/containers/old.conf": f'[[registry]]\nlocation = "{a}"\ninsecure = true\n',
            "/etc/containers/new.conf": "# nothing\n"},
            "env": {"REGISTRIES_CONFIG_PATH": "/etc/containers/old.conf",
                    "CONTAINERS_REGISTRIES_CONF": "/etc/containers/new.conf"}, "image": img},
        "tls-no-ca": {"files": {}, "image": f"{t}/lab/hello:v1"},
        "tls-ca-containers-certs-d": {"files": {}, "ca": "/etc/containers/certs.d/{T}/ca.crt",
                                      "image": f"{t}/lab/hello:v1"},
        "tls-ca-docker-certs-d": {"files": {}, "ca": "/etc/docker/certs.d/{T}/ca.crt", "image": f"{t}/lab/hello:v1"},
        "tls-ca-hidden-by-empty-dir": {"files": {"/etc/containers/certs.d/{T}/README": "empty on purpose\n"},
                                       "ca": "/etc/docker/certs.d/{T}/ca.crt", "image": f"{t}/lab/hello:v1"},
    }


SCENARIOS = _scenarios()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_resolve_predicts_what_the_clients_do(clab: Lab, name: str) -> None:
    sc = SCENARIOS[name]
    host = clab.host
    host.reset()

    def sub(s: str) -> str:
        return s.replace("{A}", clab.hp["A"]).replace("{B}", clab.hp["B"]).replace("{T}", clab.hp["T"])

    for path, text in sc["files"].items():
        host.write(sub(path), sub(text))
    ca = sub(sc["ca"]) if sc.get("ca") else None
    if ca:
        host.write(ca, clab.ca_pem)
    env = sc.get("env", {})
    image = sub(sc["image"])
    r = host.dockerdoctor(["resolve", image, "--format", "json"], env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    rows = {row["name"]: row for row in doc["runtimes"]}
    truth = clab.truth(ca)
    results = {}
    for client in CLIENTS:
        assert client in rows, sorted(rows)
        expected = None if rows[client]["blocked"] else predict(rows[client]["endpoints"], truth)
        clab.log.mark()
        out = host.pull(client, image, env)
        got = manifest_hits(clab.log.since())
        results[client] = (expected, out.returncode, sorted(got), out.stderr.strip().splitlines()[-1:])
    for client, (expected, rc, got, _err) in results.items():
        if expected is None:
            assert rc != 0 and not got, (name, client, results)
        else:
            assert rc == 0 and got == [expected], (name, client, results)


def test_skopeo_ignores_the_env_var_but_honours_the_flag(clab: Lab) -> None:
    """The one-environment-two-answers case of runtimes.md §5, predicted and then observed."""
    host = clab.host
    host.reset()
    a = clab.hp["A"]
    host.write("/etc/containers/lab-env.conf", f'[[registry]]\nlocation = "{a}"\ninsecure = true\n')
    env = {"CONTAINERS_REGISTRIES_CONF": "/etc/containers/lab-env.conf"}
    r = host.dockerdoctor(["resolve", f"{a}/lab/hello:v1"], env)
    assert "skopeo 1.9 does not read CONTAINERS_REGISTRIES_CONF" in r.stdout
    out = host.pull("skopeo", f"{a}/lab/hello:v1", env)
    assert out.returncode != 0 and "server gave HTTP response to HTTPS client" in out.stderr
    out = host.pull("skopeo", f"{a}/lab/hello:v1", env, extra=["--registries-conf", "/etc/containers/lab-env.conf"])
    assert out.returncode == 0, out.stderr


STOCK = Path("/etc/containers/registries.conf")


def test_fix_apply_makes_podman_pull_from_a_plain_http_registry(clab: Lab, tmp_path: Path) -> None:
    """DD702 on the real podman: the plan prefers TLS (CA in /etc/containers/certs.d) and names insecure = true;
    --apply takes insecure = true for a plain-HTTP registry, keeps every comment of the stock file, and the
    pull then succeeds (the registry's access log shows the manifest fetched). Rollback restores the bytes."""
    host = clab.host
    host.reset()
    a = clab.hp["A"]
    stock = STOCK.read_text() if STOCK.is_file() else "# stock registries.conf\n# (comments only)\n"
    host.write("/etc/containers/registries.conf", stock)
    before = host.path("/etc/containers/registries.conf").read_bytes()
    image = f"{a}/lab/hello:v1"
    clab.log.mark()
    out = host.pull("podman", image)
    assert out.returncode != 0 and "server gave HTTP response to HTTPS client" in out.stderr
    state = tmp_path / "state"
    plan = host.dockerdoctor(["fix", "--registry", a, "--only", "DD702", "--state-dir", str(state)])
    assert plan.returncode == 0, plan.stderr
    assert f"/etc/containers/certs.d/{a}/ca.crt" in plan.stdout and "insecure = true" in plan.stdout
    r = host.dockerdoctor(["fix", "--registry", a, "--only", "DD702", "--apply", "--yes", "--state-dir", str(state)])
    assert r.returncode == 0, r.stdout + r.stderr
    after = host.path("/etc/containers/registries.conf").read_text()
    assert after.startswith(stock) and "insecure = true" in after  # every stock comment kept, in place
    clab.log.mark()
    out = host.pull("podman", image)
    assert out.returncode == 0, out.stderr
    assert manifest_hits(clab.log.since()) == {a}
    rb = host.dockerdoctor(["fix", "--rollback", "last", "--yes", "--state-dir", str(state)])
    assert rb.returncode == 0, rb.stdout + rb.stderr
    assert host.path("/etc/containers/registries.conf").read_bytes() == before


def test_resolve_rows_differ_per_runtime_on_one_lab_host(clab: Lab, client_dockerd) -> None:
    """One TLS registry, configured three ways on one client host: dockerd trusts its CA in
    /etc/docker/certs.d, podman has insecure = true in registries.conf, skopeo gets CONTAINERS_REGISTRIES_CONF
    (which it does not read). resolve prints three different rows, each with the file that decides, and the
    real clients behave as the rows say. (The containerd row joins when issue 14's adapters are on main.)"""
    host = clab.host
    host.reset()
    t = clab.hp["T"]
    d = client_dockerd(daemon_json={}, certs_d={t: {"ca.crt": clab.ca_pem}})
    host.write("/etc/containers/registries.conf", f'# lab\n[[registry]]\nlocation = "{t}"\ninsecure = true\n')
    env = {"DOCKER_HOST": d.host, "CONTAINERS_REGISTRIES_CONF": "/etc/containers/elsewhere.conf"}
    host.write("/etc/containers/elsewhere.conf", "# nothing for the registry here\n")
    host.write(f"/etc/docker/certs.d/{t}/ca.crt", clab.ca_pem)  # the clients' view of /etc/docker (not dockerd's)
    image = f"{t}/lab/hello:v1"
    r = host.dockerdoctor(["resolve", image, "--format", "json"], env)
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)["runtimes"]}
    dockerd, podman, skopeo = rows["dockerd"], rows["podman"], rows["skopeo"]
    assert [(e["scheme"], e["http_fallback"]) for e in dockerd["endpoints"]] == [("https", False)]
    assert dockerd["endpoints"][0]["tls"]["ca_files"] == [f"/etc/docker/certs.d/{t}/ca.crt"]
    assert podman["config"]["main"] == "/etc/containers/elsewhere.conf"  # podman reads the variable...
    assert [(e["scheme"], e["http_fallback"]) for e in podman["endpoints"]] == [("https", False)]
    # ...and falls back to /etc/docker/certs.d for the CA: the first existing certs.d directory
    assert podman["endpoints"][0]["tls"]["ca_files"] == [f"/etc/docker/certs.d/{t}/ca.crt"]
    assert skopeo["config"]["main"] == "/etc/containers/registries.conf"  # skopeo 1.9 ignores it
    assert [e["http_fallback"] for e in skopeo["endpoints"]] == [True]
    assert skopeo["endpoints"][0]["tls"]["skip_verify"] and skopeo["endpoints"][0]["origin"]["line"] == 2
    assert skopeo["endpoints"][0]["tls"]["origin"]["line"] == 4  # insecure = true
    assert len({json.dumps(row["endpoints"], sort_keys=True) for row in (dockerd, podman, skopeo)}) == 3
    # what really happens, with the registry's log as the witness
    clab.log.mark()
    assert d.docker("pull", image).returncode == 0
    assert manifest_hits(clab.log.since()) == {t}
    for client in ("podman", "skopeo"):
        clab.log.mark()
        out = host.pull(client, image, env)
        assert out.returncode == 0, (client, out.stderr)
        assert manifest_hits(clab.log.since()) == {t}


def _check(host: ContainersHost, registry: str) -> dict:
    r = host.dockerdoctor(["check", "--registry", registry, "--select", "DD7", "--format", "json", "--fail-on",
                           "never"])
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_live_dd702_fires_on_plain_http_and_stays_silent_with_the_ca(clab: Lab) -> None:
    """Live, from the clients' namespaces: DD702 reads the layered probe. A plain-HTTP registry with no
    table fires for every client; the TLS registry with its CA in /etc/containers/certs.d passes."""
    host = clab.host
    host.reset()
    a, t = clab.hp["A"], clab.hp["T"]
    doc = _check(host, a)
    f = [x for x in doc["findings"] if x["id"] == "DD702"]
    assert f and f[0]["params"]["plain_http"] and set(f[0]["params"]["clients"]) == set(CLIENTS)
    assert any(e["source"].startswith(f"probe {a}") for e in f[0]["evidence"])
    host.write(f"/etc/containers/certs.d/{t}/ca.crt", clab.ca_pem)
    doc = _check(host, t)
    assert not [x for x in doc["findings"] if x["id"] == "DD702"]
    assert next(r for r in doc["rules"] if r["id"] == "DD702")["status"] == "passed"
    host.path(f"/etc/containers/certs.d/{t}/ca.crt").unlink()  # the directory stays, empty: no CA
    doc = _check(host, t)
    f = [x for x in doc["findings"] if x["id"] == "DD702"]
    assert f and not f[0]["params"]["plain_http"]


def test_resolve_probe_asks_each_endpoint(clab: Lab) -> None:
    host = clab.host
    host.reset()
    a, t = clab.hp["A"], clab.hp["T"]
    host.write("/etc/containers/registries.conf",
               f'[[registry]]\nprefix = "{a}"\nlocation = "{a}"\n[[registry.mirror]]\nlocation = "{t}"\n')
    r = host.dockerdoctor(["resolve", f"{a}/lab/hello:v1", "--probe", "--format", "json"])
    assert r.returncode == 0, r.stderr
    podman = next(row for row in json.loads(r.stdout)["runtimes"] if row["name"] == "podman")
    assert [e["host"] for e in podman["endpoints"]] == [t, a]
    assert podman["probe"][a]["scheme"] == "http"
    assert podman["probe"][t]["scheme"] == "https" and podman["probe"][t]["tls_error"] == "unknown-authority"
    text = host.dockerdoctor(["resolve", f"{a}/lab/hello:v1", "--probe"]).stdout
    assert "-> http" in text and "unknown-authority" in text


def test_fix_apply_with_ca_trusts_a_tls_registry_in_containers_certs_d(clab: Lab, tmp_path: Path) -> None:
    """The preferred fix: `fix --ca` writes the CA to /etc/containers/certs.d/HOST:PORT/ca.crt (no
    registries.conf edit, no restart); podman then pulls over verified TLS."""
    host = clab.host
    host.reset()
    t = clab.hp["T"]
    image = f"{t}/lab/hello:v1"
    conf_before = host.path("/etc/containers/registries.conf").read_bytes()
    out = host.pull("podman", image)
    assert out.returncode != 0 and "x509" in out.stderr
    ca = host.dir / "given-ca.crt"
    ca.write_bytes(clab.ca_pem)
    r = host.dockerdoctor(["fix", "--registry", t, "--only", "DD702", "--ca", str(ca), "--apply", "--yes",
                           "--state-dir", str(tmp_path / "state")])
    assert r.returncode == 0, r.stdout + r.stderr
    assert host.path(f"/etc/containers/certs.d/{t}/ca.crt").read_bytes() == clab.ca_pem
    assert host.path("/etc/containers/registries.conf").read_bytes() == conf_before
    clab.log.mark()
    out = host.pull("podman", image)
    assert out.returncode == 0, out.stderr
    assert manifest_hits(clab.log.since()) == {t}


def test_fix_apply_edits_each_file_the_clients_read(clab: Lab, tmp_path: Path) -> None:
    """With CONTAINERS_REGISTRIES_CONF set, podman and buildah read that file and skopeo 1.9 the system one:
    the DD702 fix edits both, and afterwards every client pulls."""
    host = clab.host
    host.reset()
    a = clab.hp["A"]
    host.write("/etc/containers/env.conf", "# podman's and buildah's file here\n")
    env = {"CONTAINERS_REGISTRIES_CONF": "/etc/containers/env.conf"}
    r = host.dockerdoctor(["fix", "--registry", a, "--only", "DD702", "--apply", "--yes", "--insecure",
                           "--state-dir", str(tmp_path / "state")], env)
    assert r.returncode == 0, r.stdout + r.stderr
    for path in ("/etc/containers/env.conf", "/etc/containers/registries.conf"):
        text = host.path(path).read_text()
        assert text.startswith("# ") and "insecure = true" in text, (path, text)
    for client in CLIENTS:
        clab.log.mark()
        out = host.pull(client, f"{a}/lab/hello:v1", env)
        assert out.returncode == 0, (client, out.stderr)
        assert manifest_hits(clab.log.since()) == {a}


def test_push_ignores_rewrites_and_mirrors(clab: Lab) -> None:
    """resolve --push: no location rewrite and no mirror (containers-registries.conf(5)); skopeo's push goes
    to the named registry, with the table's insecure = true, as predicted."""
    host = clab.host
    host.reset()
    a, b = clab.hp["A"], clab.hp["B"]
    host.write("/etc/containers/registries.conf",
               f'[[registry]]\nprefix = "{a}/lab"\nlocation = "{b}/mirror/lab"\ninsecure = true\n\n'
               f'[[registry.mirror]]\nlocation = "{b}/other"\ninsecure = true\n')
    dest = f"{a}/lab/pushed:v1"
    r = host.dockerdoctor(["resolve", dest, "--push", "--format", "json"])
    skopeo = next(row for row in json.loads(r.stdout)["runtimes"] if row["name"] == "skopeo")
    assert [(e["host"], e["http_fallback"]) for e in skopeo["endpoints"]] == [(a, True)] and not skopeo["rewritten"]
    oci = host.dir.parent / "oci"
    clab.log.mark()
    out = host.run(["skopeo", "copy", f"oci:{oci}:v1", f"docker://{dest}"])
    assert out.returncode == 0, out.stderr
    hits = clab.log.since()
    assert any(h.startswith("PUT /v2/lab/pushed/manifests/") for h in hits.get(a, [])) and b not in hits


def test_check_image_short_name_without_search_registries(clab: Lab) -> None:
    """check --image NAME: DD705 for podman and buildah (not skopeo, which takes docker.io/library/NAME); the real
    podman refuses the same way, and explain ties its words to DD705."""
    host = clab.host
    host.reset()
    r = host.dockerdoctor(["check", "--image", "hello:v1", "--select", "DD705", "--format", "json",
                           "--fail-on", "never"])
    assert r.returncode == 0, r.stderr
    clients = sorted(f["params"]["client"] for f in json.loads(r.stdout)["findings"] if f["id"] == "DD705")
    assert clients == ["buildah", "podman"]
    out = host.pull("podman", "hello:v1")
    assert out.returncode != 0 and "did not resolve to an alias and no unqualified-search registries" in out.stderr
    ex = host.dockerdoctor(["explain", out.stderr.strip().splitlines()[-1], "--format", "json"])
    assert json.loads(ex.stdout)["matches"][0]["rule"] == "DD705"
