"""Pure parsers and lookups of the containerd family (no host, no processes)."""

from __future__ import annotations

import os

import pytest
import tomllib

from dockerdoctor.fixes import hosts_toml as recipes
from dockerdoctor.runtimes.base import ImageRef
from dockerdoctor.runtimes.containerd_config import cri_refusal, parse_containerd_config
from dockerdoctor.runtimes.hosts_toml import (
    HostsDirRuntime,
    find_host_dir,
    host_dir_names,
    near_misses,
    parse_hosts_toml,
)
from dockerdoctor.runtimes.k3s import K3sRuntime, parse_registries_yaml
from dockerdoctor.runtimes.nerdctl import parse_nerdctl_toml
from dockerdoctor.runtimes.toml_edits import add_config_path, edit_hosts_toml, remove_legacy_registry
from dockerdoctor.runtimes.toml_scan import toml_lines


class FakeFs:
    def __init__(self, files: dict[str, str]) -> None:
        self.files = files

    def listdir(self, path: str) -> list[str] | None:
        pre = path.rstrip("/") + "/"
        names = {p[len(pre):].split("/", 1)[0] for p in self.files if p.startswith(pre)}
        return sorted(names) if names else None

    def read(self, path: str) -> str | None:
        return self.files.get(path)


def rt(files: dict[str, str], roots=("/etc/containerd/certs.d",), version=None) -> HostsDirRuntime:
    fs = FakeFs(files)
    return HostsDirRuntime("containerd-cri", "containerd CRI", tuple(roots), fs.listdir, fs.read, version)


V2 = '''version = 2
# comment kept
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d:/etc/docker/certs.d"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
    endpoint = ["https://mirror.example"]
  [plugins."io.containerd.grpc.v1.cri".registry.configs."r.example:5000".tls]
    insecure_skip_verify = true
  [plugins."io.containerd.grpc.v1.cri".registry.configs."r.example:5000".auth]
    username = "u"
'''


def test_config_v2_with_lines_and_conflict() -> None:
    cfg = parse_containerd_config(V2, "/etc/containerd/config.toml")
    assert cfg.version == 2 and cfg.config_path == ("/etc/containerd/certs.d", "/etc/docker/certs.d")
    assert cfg.config_path_line == 4
    assert cfg.mirrors == {"docker.io": ["https://mirror.example"]} and cfg.mirror_lines["docker.io"] == 5
    assert cfg.configs_tls == {"r.example:5000": {"insecure_skip_verify": True}}
    assert cfg.config_lines["r.example:5000"] == 7 and cfg.configs_auth == {"r.example:5000": 9}
    assert cri_refusal(cfg, (1, 6)) == "invalid plugin config: `mirrors` cannot be set when `config_path` is provided"
    assert cri_refusal(cfg, (1, 7)).startswith("invalid cri image config")
    assert "no longer supported since containerd v2.0" in cri_refusal(cfg, (2, 0))


def test_config_v3_and_a_section_under_the_wrong_version() -> None:
    v3 = 'version = 3\n[plugins."io.containerd.cri.v1.images".registry]\n  config_path = "/etc/containerd/certs.d"\n'
    cfg = parse_containerd_config(v3, "c.toml")
    assert cfg.config_path == ("/etc/containerd/certs.d",) and cfg.config_path_line == 3
    wrong = 'version = 3\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/x"\n'
    cfg = parse_containerd_config(wrong, "c.toml")
    assert cfg.config_path == () and cfg.problems and cfg.problems[0].line == 2
    assert "ignores it" in cfg.problems[0].text


def test_auth_only_and_empty_tables_are_accepted() -> None:
    text = ('version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/d"\n'
            '  [plugins."io.containerd.grpc.v1.cri".registry.mirrors]\n'
            '  [plugins."io.containerd.grpc.v1.cri".registry.configs."r:5000".auth]\n    username = "k3s"\n')
    assert cri_refusal(parse_containerd_config(text, "c"), (1, 6)) is None


def test_config_parse_error_has_a_line() -> None:
    cfg = parse_containerd_config('version = 2\n[plugins\n', "c")
    assert cfg.error and cfg.error_line == 2


def test_hosts_toml_shape_problems_with_lines() -> None:
    text = 'server = "10.0.0.5:5000"\nfoo = 1\n\n[host."10.0.0.5:5000"]\n  capabilities = ["pull", "fetch"]\n' \
           '  skip_verify = "yes"\n  ca = "ca.crt"\n'
    hf = parse_hosts_toml(text, "/etc/containerd/certs.d/10.0.0.5:5000/hosts.toml")
    lines = {p.line for p in hf.problems}
    assert {1, 2, 4, 5, 6} <= lines, hf.problems
    assert hf.hosts[0].ca == ("/etc/containerd/certs.d/10.0.0.5:5000/ca.crt",)  # relative to the file


def test_dir_name_variants_in_containerd_order() -> None:
    assert host_dir_names("10.0.0.5:5000") == ["10.0.0.5_5000_", "10.0.0.5:5000", "_default"]
    assert host_dir_names("registry.example") == ["registry.example", "_default"]
    fs = FakeFs({"/d/10.0.0.5_5000_/hosts.toml": "", "/d/10.0.0.5:5000/hosts.toml": ""})
    assert find_host_dir(["/d"], "10.0.0.5:5000", fs.listdir, fs.read).name == "10.0.0.5_5000_"
    fs2 = FakeFs({"/a/other/hosts.toml": "", "/b/10.0.0.5:5000/ca.crt": "x"})
    m = find_host_dir(["/a", "/b"], "10.0.0.5:5000", fs2.listdir, fs2.read)
    assert m.root == "/b" and m.hosts_toml is None and m.cert_files == ["ca.crt"]


def test_near_misses() -> None:
    fs = FakeFs({f"/d/{n}/hosts.toml": "" for n in ("10.0.0.5", "http:__10.0.0.5:5000", "10.0.0.5_5000", "default")})
    why = dict(near_misses(["/d"], "10.0.0.5:5000", fs.listdir))
    assert "port is missing" in why["/d/10.0.0.5"]
    assert "scheme" in why["/d/http:__10.0.0.5:5000"]
    assert "Windows-safe" in why["/d/10.0.0.5_5000"]
    assert "_default" in why["/d/default"]


def test_resolve_hosts_in_order_then_server_with_provenance() -> None:
    p = "/etc/containerd/certs.d/10.0.0.5:5000/hosts.toml"
    text = ('server = "https://10.0.0.5:5000"\n\n[host."http://10.0.0.6:5000"]\n  capabilities = ["pull", "resolve"]\n'
            '\n[host."https://10.0.0.7:5000/mirror"]\n  override_path = true\n  ca = "/ca.pem"\n')
    res = rt({p: text}).resolve(ImageRef.parse("10.0.0.5:5000/app:1"))
    assert [e.url for e in res.endpoints] == ["http://10.0.0.6:5000/v2", "https://10.0.0.7:5000/mirror",
                                              "https://10.0.0.5:5000/v2"]
    assert [e.origin.line for e in res.endpoints] == [3, 6, 1]
    assert res.endpoints[1].tls.ca_files == ("/ca.pem",) and res.endpoints[1].override_path
    push = rt({p: text}).resolve(ImageRef.parse("10.0.0.5:5000/app:1"), push=True)
    assert [e.host for e in push.endpoints] == ["10.0.0.7:5000", "10.0.0.5:5000"]


def test_resolve_on_16_ignores_root_fields() -> None:
    p = "/etc/containerd/certs.d/10.0.0.5:5000/hosts.toml"
    res = rt({p: 'server = "http://10.0.0.5:5000"\nca = "/ca"\n'}, version=(1, 6)).resolve(
        ImageRef.parse("10.0.0.5:5000/app:1"))
    assert [(e.scheme, e.tls.ca_files) for e in res.endpoints] == [("https", ())]
    assert any("ignores the root fields" in n for n in res.notes)
    res = rt({p: 'server = "http://10.0.0.5:5000"\n'}, version=(1, 7)).resolve(ImageRef.parse("10.0.0.5:5000/a:1"))
    assert res.endpoints[0].scheme == "http"


def test_docker_hub_default_and_docker_style_certs() -> None:
    res = rt({}).resolve(ImageRef.parse("alpine"))
    assert res.endpoints[0].url == "https://registry-1.docker.io/v2"
    res = rt({"/etc/containerd/certs.d/r:5000/ca.crt": "x", "/etc/containerd/certs.d/r:5000/c.cert": "x",
              "/etc/containerd/certs.d/r:5000/c.key": "x"}).resolve(ImageRef.parse("r:5000/a:1"))
    tls = res.endpoints[0].tls
    assert tls.ca_files == ("/etc/containerd/certs.d/r:5000/ca.crt",)
    assert tls.client_pairs == (("/etc/containerd/certs.d/r:5000/c.cert", "/etc/containerd/certs.d/r:5000/c.key"),)


def test_legacy_mirrors_without_config_path() -> None:
    cfg = parse_containerd_config(
        'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry.mirrors."10.0.0.5:5000"]\n'
        '  endpoint = ["http://10.0.0.5:5000"]\n', "c")
    r = HostsDirRuntime("containerd-cri", "CRI", (), None, None, legacy=cfg).resolve(ImageRef.parse("10.0.0.5:5000/a"))
    assert [(e.scheme, e.host) for e in r.endpoints] == [("http", "10.0.0.5:5000")]


def test_k3s_registries_yaml_problems() -> None:
    text = ('mirrors:\n  "10.0.0.5:5000":\n    endpoint:\n      - "10.0.0.5:5000"\n  configs:\n'
            '    "10.0.0.5:5000":\n      tls:\n        ca_file: /etc/ssl/missing.pem\nfoo: 1\n')
    reg = parse_registries_yaml(text, "/etc/rancher/k3s/registries.yaml", exists=lambda p: False)
    texts = {p.line: p.text for p in reg.problems}
    assert "no scheme" in texts[4] and "indented under `mirrors:`" in texts[5] and "unknown top-level" in texts[9]
    assert "configs" not in reg.mirrors and not reg.configs
    good = ('mirrors:\n  "10.0.0.5:5000":\n    endpoint: ["http://10.0.0.5:5000"]\nconfigs:\n  "10.0.0.5:5000":\n'
            '    tls:\n      insecure_skip_verify: true\n')
    reg = parse_registries_yaml(good, "r.yaml")
    assert not reg.problems
    res = K3sRuntime(reg, None).resolve(ImageRef.parse("10.0.0.5:5000/a:1"))
    assert [(e.scheme, e.host) for e in res.endpoints] == [("http", "10.0.0.5:5000")]


def test_k3s_fix_lifts_configs_and_keeps_comments() -> None:
    text = ('# site registries\nmirrors:\n  "10.0.0.5:5000":\n    endpoint:\n      - "https://10.0.0.5:5000"\n'
            '  configs:\n    "10.0.0.5:5000":\n      tls:\n        insecure_skip_verify: true\n')
    fix = recipes.registries_yaml_fix("/etc/rancher/k3s/registries.yaml", text)
    new = fix.operations[0].content
    assert new.startswith("# site registries\n")
    reg = parse_registries_yaml(new, "r")
    assert not reg.problems and reg.configs["10.0.0.5:5000"].tls == {"insecure_skip_verify": True}
    assert fix.operations[1].unit == "k3s.service"


def test_nerdctl_toml() -> None:
    nc = parse_nerdctl_toml('hosts_dir = ["/etc/containerd/certs.d"]\ninsecure_registry = true\n', "n")
    assert nc.hosts_dir == ("/etc/containerd/certs.d",) and nc.insecure_registry and nc.line == 1


def test_edits_keep_comments_and_other_tables() -> None:
    cur = '# ours\nserver = "https://r:5000"\n\n[host."https://m:5000"]\n  capabilities = ["pull"]  # mirror\n'
    new = edit_hosts_toml(cur, "r:5000", scheme="http")
    assert new.startswith(cur.rstrip("\n")[:30]) and "# mirror" in new
    data = tomllib.loads(new)
    assert list(data["host"]) == ["https://m:5000", "http://r:5000"]
    cfg = parse_containerd_config(V2, "/etc/containerd/config.toml")
    cleaned = remove_legacy_registry(V2, cfg)
    assert "# comment kept" in cleaned and "mirrors" not in cleaned and "auth" in cleaned
    assert cri_refusal(parse_containerd_config(cleaned, "c"), (1, 6)) is None
    plain = 'version = 2\n# keep me\n[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "pause:3.9"\n'
    out = add_config_path(plain, parse_containerd_config(plain, "c"), "/etc/containerd/certs.d")
    assert "# keep me" in out and 'sandbox_image = "pause:3.9"' in out
    assert parse_containerd_config(out, "c").config_path == ("/etc/containerd/certs.d",)


def test_move_legacy_fix_builds_hosts_files_that_resolve_the_same() -> None:
    text = ('version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/containerd/certs.d"\n'
            '  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."10.0.0.5:5000"]\n'
            '    endpoint = ["http://10.0.0.5:5000"]\n')
    cfg = parse_containerd_config(text, "/etc/containerd/config.toml")
    fix = recipes.move_legacy_fix(cfg, text)
    files = {op.path: op.content for op in fix.operations if hasattr(op, "content")}
    res = rt(files).resolve(ImageRef.parse("10.0.0.5:5000/a:1"))
    assert res.endpoints[0].scheme == "http"
    assert cri_refusal(parse_containerd_config(files["/etc/containerd/config.toml"], "c"), (1, 6)) is None
    assert fix.operations[-1].unit == "containerd.service"


def test_trust_fixes_never_blanket_skip_verify() -> None:
    fix = recipes.trust_ca("/etc/containerd/certs.d", "r:5000", None, "CRI")
    alt = fix.alternatives[0].operations[0]
    assert os.path.basename(os.path.dirname(alt.path)) == "r:5000"  # never _default
    assert tomllib.loads(alt.content)["host"]["https://r:5000"]["skip_verify"] is True
    http = recipes.trust_http("/etc/containerd/certs.d", "r:5000", None, "CRI")
    assert http.warnings and "clear text" in http.warnings[0]


@pytest.mark.parametrize("text", ["", "[[[", 'a = "\n', "x = [1,\n", "\x00" * 10])
def test_hostile_input_never_raises(text: str) -> None:
    parse_hosts_toml(text, "h")
    parse_containerd_config(text, "c")
    parse_registries_yaml(text, "r")
    toml_lines(text)


def test_collect_takes_the_containerd_family_files() -> None:
    from dockerdoctor.collect import collect_specs
    from dockerdoctor.runtimes.containerd import COMMAND_KEYS, DIR_KEYS, FILE_KEYS
    from dockerdoctor.sources import specs

    cs = {(c.kind, c.path) for c in collect_specs()}
    for key in FILE_KEYS:
        assert all(("file", p) in cs for p in specs.FILES[key].paths), key
    for key in DIR_KEYS:
        assert all(("tree", p) in cs for p in specs.DIRS[key].paths), key
    for key in COMMAND_KEYS:
        assert ("command", specs.COMMANDS[key].sos[0]) in cs, key
        assert specs.COMMANDS[key].sos[0].startswith("sos_commands/containerd/")


def test_nerdctl_insecure_registry_falls_back_to_http() -> None:
    fs = FakeFs({})
    r = HostsDirRuntime("nerdctl", "nerdctl", ("/etc/containerd/certs.d",), fs.listdir, fs.read, insecure_all=True)
    ep = r.resolve(ImageRef.parse("10.0.0.5:5000/a:1")).endpoints[-1]
    assert ep.scheme == "https" and ep.http_fallback and ep.tls.skip_verify


def test_hypothesis_parsers_never_raise() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    alphabet = st.sampled_from(list('[]"=.\n #host:servercapbilitys_vfy{}-\'tru12'))

    @settings(max_examples=150, deadline=None)
    @given(st.text(alphabet, max_size=200))
    def check(text: str) -> None:
        parse_hosts_toml(text, "/d/h:1/hosts.toml")
        parse_containerd_config(text, "c")
        parse_registries_yaml(text.replace("[", "- "), "r")
        toml_lines(text)

    check()


def test_dockerd_classic_store_resolution() -> None:
    from dockerdoctor.runtimes.dockerd_store import DockerdClassic

    d = DockerdClassic(("10.0.0.5:5000",), {"10.0.0.6:5000": ["ca.crt", "client.cert", "client.key", "hosts.toml"]},
                       mirrors=("https://mirror.example",))
    (ep,) = d.resolve(ImageRef.parse("10.0.0.5:5000/a:1")).endpoints
    assert ep.http_fallback and ep.tls.skip_verify
    (ep,) = d.resolve(ImageRef.parse("10.0.0.6:5000/a:1")).endpoints
    assert ep.tls.ca_files == ("/etc/docker/certs.d/10.0.0.6:5000/ca.crt",) and not ep.http_fallback
    assert any("never read" in n for n in ep.notes)
    hub = d.resolve(ImageRef.parse("alpine")).endpoints
    assert [e.role for e in hub] == ["mirror", "registry"] and hub[1].host == "registry-1.docker.io"
    assert [e.role for e in d.resolve(ImageRef.parse("alpine"), push=True).endpoints] == ["registry"]


def test_k3s_wildcard_mirror_and_default_endpoint_last() -> None:
    reg = parse_registries_yaml('mirrors:\n  "*":\n    endpoint: ["https://cache.example:5000"]\n', "r")
    res = K3sRuntime(reg, None).resolve(ImageRef.parse("10.0.0.5:5000/a:1"))
    assert [e.url for e in res.endpoints] == ["https://cache.example:5000/v2", "https://10.0.0.5:5000/v2"]


def test_imports_replace_the_cri_plugin_table_whole() -> None:
    """As containerd 1.6.20 does (tests/runtimes/test_lab_containerd.py): a plugin's table in an imported file
    replaces config.toml's table of that plugin, so config_path from config.toml is gone."""
    from dockerdoctor.runtimes.containerd_config import merge_imports

    main = ('version = 2\nimports = ["/etc/containerd/conf.d/*.toml"]\n'
            '[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/containerd/certs.d"\n')
    files = {
        "/etc/containerd/conf.d/20-mirror.toml":
            '[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\n  endpoint = ["https://m.example"]\n',
        "/etc/containerd/conf.d/README": "not toml",
    }
    fs = FakeFs(files)
    cfg = merge_imports(parse_containerd_config(main, "/etc/containerd/config.toml"), fs.listdir, fs.read)
    assert cfg.imported == ["/etc/containerd/conf.d/20-mirror.toml"]
    assert cfg.config_path == () and cfg.mirrors == {"docker.io": ["https://m.example"]}
    assert cfg.legacy_conflict == [('mirrors."docker.io"', "/etc/containerd/conf.d/20-mirror.toml", 1)]
    assert cri_refusal(cfg, (1, 6)) is None  # no config_path left, so no conflict: the CRI loads, with mirrors
    (p,) = [p for p in cfg.problems if "dropped" in p.text]
    assert p.path == "/etc/containerd/conf.d/20-mirror.toml"
    # an import that sets config_path itself keeps it, with its own file and line
    fs2 = FakeFs({"/etc/containerd/conf.d/10-registry.toml":
                  '[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/srv/certs.d"\n'})
    cfg2 = merge_imports(parse_containerd_config(main, "/etc/containerd/config.toml"), fs2.listdir, fs2.read)
    assert cfg2.config_path == ("/srv/certs.d",) and cfg2.config_path_line == 2
    assert cfg2.file_of("config_path") == "/etc/containerd/conf.d/10-registry.toml"


@pytest.mark.parametrize("broken", ["version = 2\n[plugins.\x00", "[host.\"http://a:5000\"\ncapabilities = ["])
def test_a_toml_file_the_editor_cannot_take_gives_advice_not_a_crash(broken: str) -> None:
    # found by tests/test_fuzz.py: DD602 crashed on a truncated config.toml (tomlkit's UnexpectedCharError)
    cfg = parse_containerd_config(broken, "/etc/containerd/config.toml")
    for fix in (recipes.add_config_path_fix(cfg, broken),
                recipes.trust_http("/etc/containerd/certs.d", "a:5000", broken, "containerd CRI"),
                recipes.with_config_path(cfg, "/etc/containerd/certs.d", "a:5000", True, broken)):
        assert fix.operations == ()
        assert fix.summary.startswith("Repair the TOML file first (")


def test_a_hosts_toml_of_an_odd_shape_gives_advice_not_a_crash() -> None:
    fix = recipes.trust_http("/etc/containerd/certs.d", "a:5000", "host = 3\n", "containerd CRI")
    assert fix.operations == () and fix.summary.startswith("Repair the TOML file first (")


@pytest.mark.parametrize("text, disabled", [
    ('disabled_plugins = ["cri"]\n', True),  # docker-ce's containerd.io package
    ('version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n', True),  # dockerd's managed containerd
    ('version = 3\ndisabled_plugins = ["io.containerd.cri.v1.images"]\n', True),
    ('version = 2\ndisabled_plugins = ["io.containerd.internal.v1.opt"]\n', False),
    ('version = 2\n', False),
])
def test_a_containerd_without_its_cri_plugin_is_no_kubelet_puller(text: str, disabled: bool) -> None:
    assert parse_containerd_config(text, "/etc/containerd/config.toml").cri_disabled is disabled
