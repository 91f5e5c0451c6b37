"""registries.conf parsing and resolution (pure): provenance, precedence, per-client differences."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dockerdoctor.runtimes.base import ImageRef
from dockerdoctor.runtimes.containers_image import (
    SYSTEM_CONF,
    SYSTEM_DIR,
    ConfigInput,
    certs_for,
    credentials_for,
    load,
    parse_conf,
    resolve,
)
from dockerdoctor.runtimes.crio import CrioRuntime, parse_crio

HOSTS = Path(__file__).resolve().parent.parent.parent / "fixtures" / "hosts"
HOME = "/root"
USER = f"{HOME}/.config/containers/registries.conf"


def _inp(files: dict[str, str], dirs: dict[str, list[str]] | None = None, env: dict[str, str] | None = None,
         auth: dict | None = None) -> ConfigInput:
    d = dict(dirs or {})
    for p in files:
        for base in (SYSTEM_DIR, f"{HOME}/.config/containers/registries.conf.d"):
            if p.startswith(base + "/"):
                d.setdefault(base, []).append(p.rsplit("/", 1)[1])
    return ConfigInput(dict(files), d, HOME, env or {}, auth or {})


def _res(inp: ConfigInput, image: str, client: str = "podman", push: bool = False):
    cfg = load(inp, client)
    return cfg, resolve(ImageRef.parse(image), cfg, inp.dirs, inp.auth, push=push)


def test_v2_table_line_numbers_and_insecure_fallback() -> None:
    inp = _inp({SYSTEM_CONF: '# c\n\n[[registry]]\nlocation = "10.0.0.5:5000"\ninsecure = true\n'})
    cfg, res = _res(inp, "10.0.0.5:5000/app:1")
    assert [(e.scheme, e.tls.skip_verify, e.http_fallback) for e in res.endpoints] == [("https", True, True)]
    assert res.endpoints[0].origin.where() == f"{SYSTEM_CONF}:3"
    assert res.endpoints[0].tls.origin.where() == f"{SYSTEM_CONF}:5"  # the insecure = true line


def test_longest_prefix_wins_and_exact_separator() -> None:
    inp = _inp({SYSTEM_CONF: '[[registry]]\nprefix = "r:5000"\nlocation = "r:5000"\ninsecure = true\n'
                             '[[registry]]\nprefix = "r:5000/team"\nlocation = "r:5000/team"\n'})
    _, team = _res(inp, "r:5000/team/app:1")
    _, teamx = _res(inp, "r:5000/teamx/app:1")  # "team" must be followed by / : or @
    assert [e.http_fallback for e in team.endpoints] == [False]
    assert [e.http_fallback for e in teamx.endpoints] == [True]


def test_wildcard_prefix_keeps_the_reference() -> None:
    inp = _inp({SYSTEM_CONF: '[[registry]]\nprefix = "*.lab.example"\ninsecure = true\n'})
    _, res = _res(inp, "a.b.lab.example/x/y:1")
    assert res.rewritten is None and res.endpoints[0].host == "a.b.lab.example" and res.endpoints[0].tls.skip_verify
    _, other = _res(inp, "lab.example/x/y:1")  # the bare domain is not a subdomain
    assert not other.endpoints[0].tls.skip_verify


def test_location_rewrite_and_mirrors_pull_only() -> None:
    conf = ('[[registry]]\nprefix = "a:1/lab"\nlocation = "b:2/mirror/lab"\n'
            '[[registry.mirror]]\nlocation = "m:3/cache"\n[[registry.mirror]]\nlocation = "d:4"\n'
            'pull-from-mirror = "digest-only"\n')
    inp = _inp({SYSTEM_CONF: conf})
    _, pull = _res(inp, "a:1/lab/hello:v1")
    assert pull.rewritten == "b:2/mirror/lab/hello:v1"
    assert [(e.role, e.host) for e in pull.endpoints] == [("mirror", "m:3"), ("registry", "b:2")]
    _, digest = _res(inp, "a:1/lab/hello@sha256:" + "a" * 64)
    assert [e.host for e in digest.endpoints] == ["m:3", "d:4", "b:2"]
    _, push = _res(inp, "a:1/lab/hello:v1", push=True)
    assert [e.host for e in push.endpoints] == ["a:1"] and push.rewritten is None


def test_blocked() -> None:
    inp = _inp({SYSTEM_CONF: '[[registry]]\nlocation = "a:1"\nblocked = true\n'})
    _, res = _res(inp, "a:1/x:1")
    assert res.endpoints == () and res.blocked is not None and res.blocked.line == 3


def test_user_file_replaces_system_file_and_its_dropins() -> None:
    inp = _inp({SYSTEM_CONF: '[[registry]]\nlocation = "a:1"\ninsecure = true\n',
                f"{SYSTEM_DIR}/10-x.conf": '[[registry]]\nlocation = "c:1"\ninsecure = true\n',
                USER: 'unqualified-search-registries = ["docker.io"]\n'})
    cfg, res = _res(inp, "a:1/x:1")
    assert cfg.main == USER and cfg.chosen_by == "user file"
    assert [(e.scheme, e.http_fallback) for e in res.endpoints] == [("https", False)]
    assert SYSTEM_CONF in cfg.ignored_files and f"{SYSTEM_DIR}/10-x.conf" in cfg.ignored_files
    assert any(s.what == "user-file" and s.hidden.source == SYSTEM_CONF for s in cfg.shadows)


def test_dropins_in_name_order_replace_same_prefix() -> None:
    inp = _inp({SYSTEM_CONF: '[[registry]]\nlocation = "a:1"\ninsecure = true\n',
                f"{SYSTEM_DIR}/20-b.conf": '[[registry]]\nlocation = "a:1"\ninsecure = false\n',
                f"{SYSTEM_DIR}/10-a.conf": '[[registry]]\nlocation = "a:1"\ninsecure = true\n',
                f"{SYSTEM_DIR}/30-c.conf.bak": '[[registry]]\nlocation = "a:1"\ninsecure = true\n'})
    cfg, res = _res(inp, "a:1/x:1")
    assert [f.path.rsplit("/", 1)[1] for f in cfg.files] == ["registries.conf", "10-a.conf", "20-b.conf"]
    assert [(e.scheme, e.http_fallback) for e in res.endpoints] == [("https", False)]  # 20-b.conf wins
    assert cfg.table_for("a:1").origin.source.endswith("20-b.conf")


def test_env_var_read_by_podman_not_by_skopeo() -> None:
    inp = _inp({SYSTEM_CONF: "", "/tmp/x.conf": '[[registry]]\nlocation = "a:1"\ninsecure = true\n'},
               env={"CONTAINERS_REGISTRIES_CONF": "/tmp/x.conf"})
    pcfg, pres = _res(inp, "a:1/x:1", "podman")
    scfg, sres = _res(inp, "a:1/x:1", "skopeo")
    assert pcfg.main == "/tmp/x.conf" and [e.http_fallback for e in pres.endpoints] == [True]
    assert scfg.main == SYSTEM_CONF and [e.scheme for e in sres.endpoints] == ["https"]
    assert any("does not read CONTAINERS_REGISTRIES_CONF" in s.message for s in scfg.shadows)


def test_v1_converted_and_mixing_refused() -> None:
    cfg, res = _res(_inp({SYSTEM_CONF: '[registries.search]\nregistries = ["q.io"]\n'
                                       '[registries.insecure]\nregistries = ["a:1"]\n'}), "a:1/x:1")
    assert [e.http_fallback for e in res.endpoints] == [True] and cfg.search == ["q.io"]
    mixed = parse_conf(SYSTEM_CONF, '[registries.insecure]\nregistries = ["a:1"]\n[[registry]]\nlocation = "b"\n')
    assert not mixed.valid and mixed.problems[0].kind == "mixing" and mixed.problems[0].line == 1
    dropin = parse_conf("/d/x.conf", '# c\n[registries.insecure]\nregistries = ["a:1"]\n', "drop-in")
    assert [(p.kind, p.line) for p in dropin.problems] == [("v1-dropin", 2)]


@pytest.mark.parametrize("text,kind", [
    ('[[registry]]\nlocation = "http://a:5000"\n', "bad-location"),
    ('[[registry]]\nprefix = "*.a.com/foo"\n', "bad-location"),
    ('[[registry]]\nprefix = "a.*.com"\n', "bad-location"),
    ('[[registry]]\nlocation = "a:1"\npull-from-mirror = "digest-only"\n', "mirror-option"),
    ('[[registry\nlocation = "a"\n', "toml"),
])
def test_invalid(text: str, kind: str) -> None:
    f = parse_conf(SYSTEM_CONF, text)
    assert not f.valid and f.problems[0].kind == kind and f.problems[0].line


def test_short_names() -> None:
    inp = _inp({SYSTEM_CONF: 'unqualified-search-registries = ["q.io", "docker.io"]\n[aliases]\n'
                             '"app" = "r:1/team/app"\n'})
    _, res = _res(inp, "alpine:3")
    assert [e.host for e in res.endpoints] == ["q.io", "docker.io"]
    _, alias = _res(inp, "app:2")
    assert alias.endpoints[0].host == "r:1"
    _, sk = _res(inp, "alpine:3", "skopeo")  # skopeo: docker.io/library/alpine, no search
    assert [e.host for e in sk.endpoints] == ["docker.io"]
    _, none = _res(_inp({SYSTEM_CONF: ""}), "alpine")
    assert none.endpoints == () and "no unqualified-search-registries" in " ".join(none.notes)


def test_certs_first_existing_directory_wins() -> None:
    dirs = {"/etc/containers/certs.d/a:1": [], "/etc/docker/certs.d/a:1": ["ca.crt"]}
    c = certs_for("a:1", dirs)
    assert c.directory == "/etc/containers/certs.d/a:1" and c.files == () and c.hidden == ("/etc/docker/certs.d/a:1",)
    assert certs_for("a:1", {"/etc/docker/certs.d/a:1": ["ca.crt", "c.cert", "c.key"]}).tls(False).client_pairs


def test_credentials_name_the_file_never_the_secret() -> None:
    auth = {"/run/containers/0/auth.json": {"r:1/team"}, "/root/.docker/config.json": {"r:1"}}
    c = credentials_for("r:1/team/app", auth)
    assert c.source == "/run/containers/0/auth.json" and "team" in c.origin.detail
    assert credentials_for("r:1/other", auth).source == "/root/.docker/config.json"
    assert credentials_for("s:1/x", auth).source == "none"


def test_crio_insecure_entry_without_port_does_not_match() -> None:
    crio = parse_crio({"/etc/crio/crio.conf": '[crio.image]\ninsecure_registries = ["192.168.122.1", "10.1.0.0/16"]\n'
                                              '[crio]\ninsecure_registries = ["x:1"]\n'})
    assert crio.entry_for("192.168.122.1:443") is None and crio.entry_for("192.168.122.1") is not None
    assert crio.entry_for("10.1.2.3:5000") is not None
    assert any(e.ignored for e in crio.insecure if e.value == "x:1") and crio.entry_for("x:1") is None
    inp = _inp({SYSTEM_CONF: ""})
    rt = CrioRuntime(load(inp, "cri-o"), crio, {}, {}, None)  # type: ignore[arg-type]
    res = rt.resolve(ImageRef.parse("10.1.2.3:5000/app:1"))
    assert [e.http_fallback for e in res.endpoints] == [True] and res.endpoints[0].tls.skip_verify


def test_resolve_json_schema(tmp_path: Path) -> None:
    """`resolve --root FIXTURE --format json` validates against docs/resolve.schema.json."""
    import subprocess
    import sys

    import jsonschema

    schema = json.loads((HOSTS.parent.parent / "docs" / "resolve.schema.json").read_text())
    out = subprocess.run([sys.executable, "-m", "dockerdoctor", "resolve", "10.0.0.5:5000/team/app:1", "--root",
                          str(HOSTS / "fedora-podman-user-registries-conf-replaces-system"), "--format", "json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    jsonschema.validate(doc, schema)
    podman = next(r for r in doc["runtimes"] if r["name"] == "podman")
    assert podman["config"]["chosen_by"] == "user file"
    assert [(e["scheme"], e["http_fallback"]) for e in podman["endpoints"]] == [("https", False)]


def test_every_dd7_rule_fires_in_a_fixture() -> None:
    covered = {rid for p in HOSTS.glob("*/expected.json") for rid in json.loads(p.read_text())["fire"]}
    assert {"DD701", "DD702", "DD703", "DD704", "DD705"} <= covered


def test_proxy_from_the_clients_environment() -> None:
    from dockerdoctor.runtimes import env_proxy

    p = env_proxy({"HTTPS_PROXY": "http://user:secret@proxy.corp:3128", "NO_PROXY": "10.0.0.0/8,.lab"})
    inp = _inp({SYSTEM_CONF: ""})
    cfg = load(inp, "podman")
    res = resolve(ImageRef.parse("r.example:5000/x:1"), cfg, {}, {}, proxy_for=p)
    assert res.proxy == "http://proxy.corp:3128" and "secret" not in repr(res)
    assert resolve(ImageRef.parse("10.0.0.5:5000/x:1"), cfg, {}, {}, proxy_for=p).proxy is None
    assert resolve(ImageRef.parse("a.lab/x:1"), cfg, {}, {}, proxy_for=p).proxy is None


def test_hostile_registries_conf_is_one_finding_not_a_crash() -> None:
    for text in ("\x00\xff" * 1000, "[[registry]]\n" * 5000, "a = [" * 2000, "registry = 5\n", "[registries]\nx=1\n"):
        f = parse_conf(SYSTEM_CONF, text)
        assert isinstance(f.problems, list)
        cfg = load(_inp({SYSTEM_CONF: text}), "podman")
        resolve(ImageRef.parse("a:1/x:1"), cfg, {}, {})


def test_tomlkit_is_imported_only_when_a_fix_edits() -> None:
    import subprocess
    import sys

    def imports(*args: str) -> str:
        r = subprocess.run([sys.executable, "-X", "importtime", "-m", "dockerdoctor", *args], capture_output=True,
                           text=True, timeout=60)
        return r.stderr

    healthy = str(HOSTS / "debian12-podman-registries-conf-healthy")
    assert "tomlkit" not in imports("check", "--root", healthy, "--registry", "10.0.0.5:5443")
    assert "tomlkit" not in imports("resolve", "10.0.0.5:5443/a:1", "--root", healthy)
    broken = str(HOSTS / "debian12-podman-http-registry-not-trusted")
    assert "tomlkit" in imports("check", "--root", broken, "--registry", "10.0.0.5:5000")  # DD702's edit
