"""`collect --script`'s POSIX collector keeps secrets out as `dockerdoctor collect` does (dockerdoctor/redact.py):
under dash (with this machine's awk) and under busybox sh with only busybox applets."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import lab
import pytest

from dockerdoctor.collect_script import CollectSpec, render_script

TOOLS = ("sh", "hostname", "uname", "date", "ls", "mkdir", "dirname", "basename", "readlink", "ln", "wc", "cp", "dd",
         "touch", "find", "sort", "tail", "rm", "tar", "gzip", "grep", "cat", "pwd", "timeout", "seq", "head", "env",
         "od", "tr", "awk", "echo")




def _shell(name: str, tmp: Path) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    if name == "dash":
        if not shutil.which("dash"):
            pytest.skip("no dash")
        return ["dash"], env
    bb = shutil.which("busybox")
    if not bb:
        pytest.skip("no busybox")
    d = tmp / "bin"
    d.mkdir()
    for t in TOOLS:
        (d / t).symlink_to(bb)
    env["PATH"] = str(d)
    return [str(d / "sh")], env


def _run_script(tmp_path: Path, shell: str, specs: list[CollectSpec], timeout: float = 60) -> Path:
    """Render the collect script for `specs`, run it under `shell` into tmp_path/out, and return that folder."""
    argv, env = _shell(shell, tmp_path)
    script = tmp_path / "collect.sh"
    script.write_text(render_script(specs))
    out = tmp_path / "out"
    r = lab.run_group([*argv, str(script), str(out)], timeout=timeout, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


@pytest.mark.parametrize("shell", ["dash", "busybox"])
def test_the_script_redacts_files_and_command_output(tmp_path: Path, shell: str) -> None:
    src = tmp_path / "host"
    src.mkdir()
    envfile = src / "docker"
    envfile.write_text("HTTP_PROXY=http://bob:s3cret@proxy:3128\nOPTIONS='--insecure-registry 10.0.0.5:5000'\n")
    os.utime(envfile, (1_600_000_000, 1_600_000_000))
    cfg = src / "config.yml"
    cfg.write_text("http:\n  addr: :5000\n  secret: sharedsecret  # the same on every replica\n")
    plain = src / "daemon.json"
    plain.write_text('{"insecure-registries": ["10.0.0.5:5000"]}')  # no newline at the end
    ca = src / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIBtoken=a==\n-----END CERTIFICATE-----\n")
    ps = "echo 'root 812 ? Ssl 0:05 /usr/bin/registry serve --password hunter2'; echo 'Authorization: Basic YWRtaW4='"
    inspect = "echo '[{\"Env\": [\"REGISTRY_HTTP_SECRET=sharedsecret\", \"PATH=/bin\"]}]'"
    specs = [CollectSpec("file", str(p)) for p in (envfile, cfg, plain, ca)] + [
        CollectSpec("command", "sos_commands/process/ps_auxwww", ("sh", "-c", ps)),
        CollectSpec("command", "sos_commands/docker/inspect", ("sh", "-c", inspect)),
    ]
    out = _run_script(tmp_path, shell, specs, timeout=120)
    got = lambda p: out / str(p).lstrip("/")  # noqa: E731
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != "dockerdoctor-collect.txt"}
    everything = b"".join(files.values())
    for s in (b"s3cret", b"hunter2", b"sharedsecret", b"YWRtaW4="):
        assert s not in everything, s
    assert not (out / ".scrub.awk").exists()
    assert got(envfile).read_bytes().startswith(b"HTTP_PROXY=http://bob:redacted-")
    assert b"--insecure-registry 10.0.0.5:5000" in got(envfile).read_bytes()
    assert got(envfile).stat().st_mtime == 1_600_000_000  # DD107 compares it with dockerd's start
    assert b"  secret: redacted-" in got(cfg).read_bytes() and b"# the same on every replica" in got(cfg).read_bytes()
    assert got(plain).read_bytes() == plain.read_bytes()  # nothing secret: byte for byte
    assert got(ca).read_bytes() == ca.read_bytes()  # a certificate is left alone
    ps_out = (out / "sos_commands/process/ps_auxwww").read_text()
    assert "--password redacted-" in ps_out and "Authorization: Basic redacted-" in ps_out
    hashed = lambda b: re.search(rb"redacted-([0-9]+)", b).group(1)  # type: ignore[union-attr]  # noqa: E731
    inspect_out = (out / "sos_commands/docker/inspect").read_bytes()
    assert b"PATH=/bin" in inspect_out
    assert hashed(inspect_out) == hashed(got(cfg).read_bytes())  # the same secret, the same hash
    manifest = (out / "dockerdoctor-collect.txt").read_text().splitlines()
    assert f"redacted 1 secret value in {envfile}" in manifest
    assert any(m.startswith("redacted 2 secret values in sh -c") for m in manifest), manifest


QUOTED = """http:
  password: "hunter2"
  secret: 's3cret'
export TOKEN="abc123tok s3cret"
registry --password "hunter2" serve
docker login -u admin -p hunter2 10.0.0.5:5000
docker login -p 'YWRtaW4=' 10.0.0.5:5000
[{"Env": ["REGISTRY_HTTP_SECRET=", "PATH=/bin"]}]
"""




@pytest.mark.parametrize("shell", ["dash", "busybox"])
def test_the_script_redacts_quoted_values_and_login_p(tmp_path: Path, shell: str) -> None:
    f = tmp_path / "host/quoted.conf"
    f.parent.mkdir()
    f.write_text(QUOTED)
    out = _run_script(tmp_path, shell, [CollectSpec("file", str(f))])
    got = (out / str(f).lstrip("/")).read_text()
    for secret in ("hunter2", "s3cret", "abc123tok", "YWRtaW4="):
        assert secret not in got, got
    for kept in ('  password: "redacted-', "  secret: 'redacted-", 'export TOKEN="redacted-',
                 '--password "redacted-', "-u admin -p redacted-", "login -p 'redacted-",
                 '["REGISTRY_HTTP_SECRET=", "PATH=/bin"]'):
        assert kept in got, got


PEM = "-----BEGIN CERTIFICATE-----\nMIIBtoken=a==\n-----END CERTIFICATE-----\n"


@pytest.mark.parametrize("shell", ["dash", "busybox"])
def test_the_script_redacts_a_file_around_its_certificates(tmp_path: Path, shell: str) -> None:
    f = tmp_path / "host/bundle.yml"
    f.parent.mkdir()
    f.write_text("password: hunter2\n" + PEM + "TOKEN=abc123tok\n" + PEM)
    out = _run_script(tmp_path, shell, [CollectSpec("file", str(f))])
    got = (out / str(f).lstrip("/")).read_text()
    assert "hunter2" not in got and "abc123tok" not in got and got.count(PEM) == 2, got


KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIEsecretkeybytes\n-----END RSA PRIVATE KEY-----\n"
NOTE = "# private key not collected by dockerdoctor\n"


@pytest.mark.parametrize("shell", ["dash", "busybox"])
def test_the_script_refuses_private_keys_by_content_and_by_the_links_target(tmp_path: Path, shell: str) -> None:
    bundle = tmp_path / "host/tls.pem"
    bundle.parent.mkdir()
    bundle.write_text(PEM + KEY)
    (tmp_path / "host/id.key").write_text("a key without PEM\n")
    (tmp_path / "host/keylink").symlink_to("id.key")
    home = tmp_path / "home/alice"
    (home / ".config/x").mkdir(parents=True)
    (home / "keys").mkdir()
    (home / "keys/id.key").write_text("not PEM, but a .key\n")
    (home / ".config/x/conf").symlink_to("../../keys/id.key")
    (home / ".config/x/other").write_text(KEY)
    specs = [CollectSpec("file", str(bundle)), CollectSpec("file", str(tmp_path / "host/keylink")),
             CollectSpec("user-tree", f"{tmp_path}/home/*/.config/x")]
    out = _run_script(tmp_path, shell, specs)
    everything = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    assert b"MIIEsecretkeybytes" not in everything and b"PEM, but a .key" not in everything
    for p in (bundle, home / ".config/x/conf", home / ".config/x/other"):
        assert (out / str(p).lstrip("/")).read_text() == NOTE, p
    manifest = (out / "dockerdoctor-collect.txt").read_text().splitlines()
    assert f"redacted {bundle}" in manifest and f"redacted {home}/.config/x/other" in manifest, manifest


@pytest.mark.parametrize("shell", ["dash", "busybox"])
def test_the_script_numbers_secret_values_per_snapshot(tmp_path: Path, shell: str) -> None:
    """No hash: a known plaintext says nothing of the others. Equal values get one number in the snapshot."""
    a, b = tmp_path / "host/a.env", tmp_path / "host/b.env"
    a.parent.mkdir()
    a.write_text("TOKEN=one\nPASSWORD=two\n")
    b.write_text("SECRET=two\nAPI_KEY=three\nX_TOKEN=one\n")
    out = _run_script(tmp_path, shell, [CollectSpec("file", str(a)), CollectSpec("file", str(b))])
    assert (out / str(a).lstrip("/")).read_text() == "TOKEN=redacted-1\nPASSWORD=redacted-2\n"
    assert (out / str(b).lstrip("/")).read_text() == "SECRET=redacted-2\nAPI_KEY=redacted-3\nX_TOKEN=redacted-1\n"
    assert not [p for p in out.rglob(".scrub*")]
    tar = subprocess.run(["tar", "tzf", f"{out}.tar.gz"], capture_output=True, text=True, check=True).stdout
    assert ".scrub" not in tar


@pytest.mark.parametrize("shell", ["dash", "busybox"])
def test_a_huge_line_is_quick(tmp_path: Path, shell: str) -> None:
    big = tmp_path / "big.log"
    big.write_bytes(b"x" * (2 * 1024 * 1024) + b" token=abc\n" + b"y" * (2 * 1024 * 1024) + b"\n")
    out = _run_script(tmp_path, shell, [CollectSpec("file", str(big))])
    data = (out / str(big).lstrip("/")).read_bytes()
    assert b"abc" not in data and b"with a secret word: not collected by dockerdoctor" in data


HOSTS_TOML = """server = "https://10.0.0.5:5000"

[host."https://10.0.0.5:5000"]
  capabilities = ["pull", "resolve"]

[host."https://10.0.0.5:5000".header]
  authorization = ["Basic YWRtaW46cGFzcw=="]
  "X-Token" = [
    "Bearer abc123tok",
    'hunter2'
  ]
  x-meta = ["kept"]
"""


@pytest.mark.parametrize("shell", ["dash", "busybox"])
def test_the_script_redacts_toml_header_arrays_as_collect_does(tmp_path: Path, shell: str) -> None:
    from dockerdoctor.redact import Redactor

    hosts = tmp_path / "host/certs.d/10.0.0.5:5000/hosts.toml"
    hosts.parent.mkdir(parents=True)
    hosts.write_text(HOSTS_TOML)
    out = _run_script(tmp_path, shell, [CollectSpec("file", str(hosts))])
    by_script = (out / str(hosts).lstrip("/")).read_text()
    by_collect = Redactor(b"s").redact(HOSTS_TOML.encode())[0].decode()
    for got in (by_script, by_collect):
        for secret in ("YWRtaW46cGFzcw==", "abc123tok", "hunter2"):
            assert secret not in got, got
        assert 'authorization = ["Basic redacted-' in got and '"Bearer redacted-' in got
        assert 'x-meta = ["kept"]' in got and 'capabilities = ["pull", "resolve"]' in got
    # the same lines changed, only the masks differ (the script numbers the values, collect hashes them)
    strip = lambda t: re.sub(r"redacted-[0-9a-f]+", "redacted-H", t)  # noqa: E731
    assert strip(by_script) == strip(by_collect)
    assert f"redacted 3 secret values in {hosts}" in (out / "dockerdoctor-collect.txt").read_text()
