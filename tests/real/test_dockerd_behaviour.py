"""What a real dockerd 20.10 does with each insecure-registry / daemon.json mistake (lab.md §1-§3).

Every test asserts the real behaviour (refuses to start and says X; starts but ignores it; works),
and saves the captured text under ``fixtures/errors/dockerd-20.10/<case>.txt`` so rules, parsers and
docs can use real text. ``index.json`` there says, per case, what input produced it.

The namespaces here use the fixed subnet 10.203.0.0/24 (registry host 10.203.0.1, client 10.203.0.2),
as lab.md does, so the captured texts are the same on every run. Each pair of namespaces is isolated,
so other labs that use the same subnet do not interfere.

A stored file is written when it is missing, or when ``DDLAB_UPDATE_FIXTURES=1``; otherwise the test
checks that today's capture still equals it (timestamps and the lab's temp dir masked in the comparison).
In stored files the lab's own temp dir is written as ``/tmp/dd-lab-X/d``; everything else is verbatim.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import lab
import pytest

pytestmark = pytest.mark.real

REPO = Path(__file__).resolve().parents[2]
FIXDIR = REPO / "fixtures" / "errors" / "dockerd-20.10"
UPDATE = os.environ.get("DDLAB_UPDATE_FIXTURES") == "1"
SUBNET_N = 203
SRV, CLI = f"10.{SUBNET_N}.0.1", f"10.{SUBNET_N}.0.2"
PORT = 5100
HP = f"{SRV}:{PORT}"  # the plain-HTTP registry
DAEMON_JSON = "/etc/docker/daemon.json"  # the private bind mount makes this path the same on every run
# Debian's CLI (20.10, same as the daemon) for `docker info` texts; the error texts come from the daemon.
CLI_BIN = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else None

_index: dict[str, dict] = {}


def _mask(text: str, d: lab.Dockerd | None) -> str:
    if d is not None:
        text = text.replace(str(d.workdir), "/tmp/dd-lab-X/d")
    return text


def _norm(text: str) -> str:
    text = re.sub(r'time="[^"]*"', 'time="T"', text)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "T", text)
    text = re.sub(r"sha256:[0-9a-f]{64}", "sha256:D", text)
    return text.strip()


def record(case: str, text: str, d: lab.Dockerd | None, **meta: object) -> str:
    """Save (or compare with) fixtures/errors/dockerd-20.10/<case>.txt; return the masked text."""
    text = _mask(text, d).rstrip("\n") + "\n"
    path = FIXDIR / f"{case}.txt"
    _index[case] = {"file": path.name, **meta}
    if UPDATE or not path.exists():
        FIXDIR.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    else:
        stored, now = _norm(path.read_text()), _norm(text)
        if meta.get("kind") == "docker-info":  # the CLI prints IndexConfigs from a Go map: any order
            stored, now = sorted(stored.splitlines()), sorted(now.splitlines())
        assert stored == now, (
            f"dockerd's text for {case} changed; rerun with DDLAB_UPDATE_FIXTURES=1 if that is expected.\n"
            f"stored:   {path.read_text()!r}\ncaptured: {text!r}"
        )
    return text


@pytest.fixture(scope="module", autouse=True)
def _write_index() -> Iterator[None]:
    yield
    if not _index:
        return
    path = FIXDIR / "index.json"
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = {}
    merged = {**old.get("cases", {}), **_index}
    doc = {
        "what": "Texts captured from a real dockerd by tests/real/test_dockerd_behaviour.py",
        "dockerd": _dockerd_version(),
        "registry": f"docker-registry (distribution 2.8) on {HP}, plain HTTP, in its own network namespace",
        "client_ip": CLI,
        "cases": dict(sorted(merged.items())),
    }
    new = json.dumps(doc, indent=2) + "\n"
    if UPDATE or not path.exists() or json.loads(new)["cases"] != old.get("cases"):
        path.write_text(new)


def _dockerd_version() -> str:
    r = subprocess.run([lab.dockerd_bin(), "--version"], capture_output=True, text=True)
    return r.stdout.strip()


def test_dockerd_is_20_10() -> None:
    # The stored texts are dockerd 20.10's (Debian 12 docker.io). Another engine needs its own directory.
    assert "Docker version 20.10." in _dockerd_version(), _dockerd_version()


@pytest.fixture(scope="module")
def bnet(lab_root: Path) -> Iterator[lab.LabNet]:
    net = lab.LabNet(f"ddb{os.getpid()}x", n=SUBNET_N)
    net.record_in(lab_root)
    yield net
    net.close()


@pytest.fixture(scope="module")
def breg(lab_root: Path, bnet: lab.LabNet) -> Iterator[lab.DistRegistry]:
    reg = lab.DistRegistry(lab_root / "behaviour", SRV, PORT, netns=bnet.srv_ns, name="behaviour-plain")
    reg.start()
    yield reg
    reg.stop()


@pytest.fixture
def start(client_dockerd, bnet: lab.LabNet, breg: lab.DistRegistry):
    """start(daemon_json, extra_args, must_start) -> Dockerd in the fixed-subnet client namespace."""

    def _start(daemon_json=None, extra_args=(), must_start=False, busybox=False):
        return client_dockerd(
            daemon_json, list(extra_args), labnet=bnet, must_start=must_start, busybox=busybox, cli=CLI_BIN
        )

    return _start


def _push(d: lab.Dockerd, hostport: str = HP, repo: str = "lab/x:1") -> subprocess.CompletedProcess:
    ref = f"{hostport}/{repo}"
    assert d.docker("tag", "lab/busybox:1", ref).returncode == 0
    return d.docker("push", ref, timeout=60)


def _startup_failure(d: lab.Dockerd) -> str:
    assert not d.running(), "dockerd was expected to refuse to start"
    assert d.returncode == 1
    return d.failure_line()


def _plain_lines(d: lab.Dockerd) -> str:
    """Everything dockerd printed since start that is not a logrus (level=) line."""
    return "\n".join(ln for ln in d.log_text(since_start=True).splitlines() if ln.strip() and "level=" not in ln)


def _insecure_section(d: lab.Dockerd) -> str:
    """The 'Insecure Registries:' block of `docker info`."""
    out = d.docker("info").stdout.splitlines()
    i = next(i for i, ln in enumerate(out) if ln.strip() == "Insecure Registries:")
    block = [out[i]]
    for ln in out[i + 1 :]:
        if not ln.startswith("  ") or ln.strip().endswith(":"):
            break
        block.append(ln)
    return "\n".join(block)


# ---------------------------------------------------------------------------------------------------
# baseline


def test_push_plain_http_without_config(start) -> None:
    d = start({}, must_start=True, busybox=True)
    r = _push(d)
    assert r.returncode == 1
    assert r.stderr.strip() == f'Get "https://{HP}/v2/": http: server gave HTTP response to HTTPS client'
    record(
        "push-plain-http-no-config",
        r.stderr,
        d,
        kind="push-stderr",
        daemon_json={},
        command=f"docker push {HP}/lab/x:1",
    )
    r = d.docker("pull", f"{HP}/lab/x:1")
    assert r.returncode == 1
    assert r.stderr.startswith("Error response from daemon: ")
    record(
        "pull-plain-http-no-config",
        r.stderr,
        d,
        kind="pull-stderr",
        daemon_json={},
        command=f"docker pull {HP}/lab/x:1",
    )
    # The daemon's log line for the same failure
    line = next(ln for ln in d.log_text(since_start=True).splitlines() if "Attempting next endpoint for push" in ln)
    assert "server gave HTTP response to HTTPS client" in line
    record("log-attempting-next-endpoint", line, d, kind="dockerd-log")


# ---------------------------------------------------------------------------------------------------
# dockerd refuses to start


def test_flag_and_file_conflict(start) -> None:
    d = start({"insecure-registries": [HP]}, [f"--insecure-registry={HP}"])
    msg = _startup_failure(d)
    assert msg == (
        f"unable to configure the Docker daemon with file {DAEMON_JSON}: the following directives are specified both"
        f" as a flag and in the configuration file: insecure-registries: (from flag: [{HP}], from file: [{HP}])"
    )
    record(
        "flag-and-file-conflict",
        msg,
        d,
        kind="startup-failure",
        daemon_json={"insecure-registries": [HP]},
        args=[f"--insecure-registry={HP}"],
        rule="DD104",
    )


def test_flag_and_file_conflict_different_values(start) -> None:
    d = start({"insecure-registries": [f"{CLI}:5000"]}, [f"--insecure-registry={HP}"])
    msg = _startup_failure(d)
    assert f"insecure-registries: (from flag: [{HP}], from file: [{CLI}:5000])" in msg
    record(
        "flag-and-file-conflict-different-values",
        msg,
        d,
        kind="startup-failure",
        daemon_json={"insecure-registries": [f"{CLI}:5000"]},
        args=[f"--insecure-registry={HP}"],
        rule="DD104",
    )


def test_bracket_list_flag(start) -> None:
    v = f"[{HP},{CLI}:5100]"
    d = start(None, [f"--insecure-registry={v}"])
    msg = _startup_failure(d)
    assert msg == f'failed to start daemon: insecure registry {v} is not valid: invalid host "{v}"'
    record("bracket-list-flag", msg, d, kind="startup-failure", args=[f"--insecure-registry={v}"], rule="DD105")


def test_bracket_list_in_daemon_json(start) -> None:
    v = f"[{HP},{CLI}:5100]"
    d = start({"insecure-registries": [v]})
    msg = _startup_failure(d)
    assert msg == f'failed to start daemon: insecure registry {v} is not valid: invalid host "{v}"'
    record(
        "bracket-list-daemon-json",
        msg,
        d,
        kind="startup-failure",
        daemon_json={"insecure-registries": [v]},
        rule="DD105",
    )


def test_comma_list_flag(start) -> None:
    v = f"{HP},{CLI}:5100"
    d = start(None, [f"--insecure-registry={v}"])
    msg = _startup_failure(d)
    assert msg == f'failed to start daemon: insecure registry {v} is not valid: invalid host "{v}"'
    record("comma-list-flag", msg, d, kind="startup-failure", args=[f"--insecure-registry={v}"], rule="DD105")


def test_space_list_in_one_argument(start) -> None:
    v = f"{HP} {CLI}:5100"
    d = start(None, [f"--insecure-registry={v}"])
    msg = _startup_failure(d)
    assert msg == f'failed to start daemon: insecure registry {v} is not valid: invalid host "{v}"'
    record("space-list-one-argument", msg, d, kind="startup-failure", args=[f"--insecure-registry={v}"], rule="DD105")


def test_literal_quotes_in_value(start) -> None:
    v = f"'{HP}'"
    d = start(None, [f"--insecure-registry={v}"])
    msg = _startup_failure(d)
    assert msg == f'failed to start daemon: insecure registry {v} is not valid: invalid host "\'{SRV}"'
    record("literal-quotes-in-value", msg, d, kind="startup-failure", args=[f"--insecure-registry={v}"], rule="DD105")


def test_flag_and_value_in_one_argv(start) -> None:
    # What systemd's ${VAR} makes of VAR='--insecure-registry 10.203.0.1:5100': one argv word.
    arg = f"--insecure-registry {HP}"
    d = start(None, [arg])
    assert not d.running() and d.returncode == 1
    text = _plain_lines(d)
    assert f"unknown flag: {arg}" in text
    assert "See 'dockerd --help'." in text
    record("flag-and-value-in-one-argv", text, d, kind="startup-failure", args=[arg], rule="DD103")


def test_daemon_json_trailing_comma(start) -> None:
    raw = f'{{\n  "insecure-registries": ["{HP}"],\n}}\n'
    d = start(raw)
    msg = _startup_failure(d)
    assert msg == (
        f"unable to configure the Docker daemon with file {DAEMON_JSON}:"
        " invalid character '}' looking for beginning of object key string"
    )
    record("daemon-json-trailing-comma", msg, d, kind="startup-failure", daemon_json_raw=raw, rule="DD106")


def test_daemon_json_string_instead_of_list(start) -> None:
    d = start({"insecure-registries": HP})
    msg = _startup_failure(d)
    assert msg == (
        f"unable to configure the Docker daemon with file {DAEMON_JSON}: json: cannot unmarshal string into Go struct"
        " field Config.insecure-registries of type []string"
    )
    record(
        "daemon-json-string-not-list",
        msg,
        d,
        kind="startup-failure",
        daemon_json={"insecure-registries": HP},
        rule="DD106",
    )


def test_daemon_json_typo_key(start) -> None:
    d = start({"insecure-registires": [HP]})
    msg = _startup_failure(d)
    assert msg == (
        f"unable to configure the Docker daemon with file {DAEMON_JSON}: the following directives don't match any"
        " configuration option: insecure-registires"
    )
    record(
        "daemon-json-typo-key", msg, d, kind="startup-failure", daemon_json={"insecure-registires": [HP]}, rule="DD106"
    )


def test_daemon_json_empty_file(start) -> None:
    d = start("")
    msg = _startup_failure(d)
    assert msg == f"unable to configure the Docker daemon with file {DAEMON_JSON}: EOF"
    record("daemon-json-empty", msg, d, kind="startup-failure", daemon_json_raw="", rule="DD106")


def test_config_file_missing(start) -> None:
    missing = "/etc/docker/missing.json"
    d = start(None, ["--config-file", missing])
    msg = _startup_failure(d)
    assert (
        msg == f"unable to configure the Docker daemon with file {missing}: open {missing}: no such file or directory"
    )
    record("config-file-missing", msg, d, kind="startup-failure", args=["--config-file", missing], rule="DD106")


# ---------------------------------------------------------------------------------------------------
# dockerd starts, but the setting does nothing


def test_singular_key_silently_ignored(start) -> None:
    d = start({"insecure-registry": [HP]}, must_start=True, busybox=True)
    assert HP not in d.info()["RegistryConfig"]["IndexConfigs"]
    r = _push(d)
    assert r.returncode == 1
    assert r.stderr.strip() == f'Get "https://{HP}/v2/": http: server gave HTTP response to HTTPS client'
    record(
        "daemon-json-singular-key-ignored",
        r.stderr,
        d,
        kind="push-stderr",
        daemon_json={"insecure-registry": [HP]},
        note="dockerd starts; the key is silently ignored",
        rule="DD106",
    )


def test_host_without_port_is_a_noop(start) -> None:
    d = start(None, [f"--insecure-registry={SRV}"], must_start=True, busybox=True)
    idx = d.info()["RegistryConfig"]["IndexConfigs"]
    assert idx[SRV]["Secure"] is False
    assert HP not in idx
    r = _push(d)
    assert r.returncode == 1
    assert r.stderr.strip() == f'Get "https://{HP}/v2/": http: server gave HTTP response to HTTPS client'
    record(
        "host-without-port-push",
        r.stderr,
        d,
        kind="push-stderr",
        args=[f"--insecure-registry={SRV}"],
        note="dockerd starts and lists the host as insecure, but a push to HOST:PORT still uses HTTPS",
        rule="DD105",
    )
    sec = _insecure_section(d)
    assert SRV in sec
    record("host-without-port-docker-info", sec, d, kind="docker-info", args=[f"--insecure-registry={SRV}"])


# ---------------------------------------------------------------------------------------------------
# dockerd starts, and it works


def test_scheme_is_stripped(start) -> None:
    d = start(None, [f"--insecure-registry=http://{HP}"], must_start=True, busybox=True)
    assert d.info()["RegistryConfig"]["IndexConfigs"][HP]["Secure"] is False
    r = _push(d)
    assert r.returncode == 0, r.stderr
    sec = _insecure_section(d)
    assert f"  {HP}" in sec.splitlines()
    record(
        "scheme-stripped-docker-info",
        sec,
        d,
        kind="docker-info",
        args=[f"--insecure-registry=http://{HP}"],
        note="works: the scheme is stripped",
    )


def test_cidr_works(start) -> None:
    cidr = f"10.{SUBNET_N}.0.0/24"
    d = start(None, [f"--insecure-registry={cidr}"], must_start=True, busybox=True)
    rc = d.info()["RegistryConfig"]
    assert cidr in rc["InsecureRegistryCIDRs"]
    assert HP not in rc["IndexConfigs"]
    r = _push(d)
    assert r.returncode == 0, r.stderr
    sec = _insecure_section(d)
    record(
        "cidr-docker-info",
        sec,
        d,
        kind="docker-info",
        args=[f"--insecure-registry={cidr}"],
        note="works: listed in InsecureRegistryCIDRs, not in IndexConfigs",
    )


def test_repeated_flag_works(start) -> None:
    d = start(None, [f"--insecure-registry={HP}", f"--insecure-registry={CLI}:5100"], must_start=True, busybox=True)
    idx = d.info()["RegistryConfig"]["IndexConfigs"]
    assert idx[HP]["Secure"] is False and idx[f"{CLI}:5100"]["Secure"] is False
    assert _push(d).returncode == 0
    record(
        "repeated-flag-docker-info",
        _insecure_section(d),
        d,
        kind="docker-info",
        args=[f"--insecure-registry={HP}", f"--insecure-registry={CLI}:5100"],
        note="works",
    )


def test_sighup_reload(start) -> None:
    d = start({}, must_start=True, busybox=True)
    assert _push(d).returncode == 1
    d.write_daemon_json({"insecure-registries": [HP]})
    out = d.reload()
    lines = [
        ln for ln in out.splitlines() if re.search(r"signal to reload|Reloaded configuration|unable to configure", ln)
    ]
    assert any(f"Got signal to reload configuration, reloading from: {DAEMON_JSON}" in ln for ln in lines)
    assert any("Reloaded configuration:" in ln and HP in ln for ln in lines)
    r = _push(d)
    assert r.returncode == 0, r.stderr
    record(
        "reload-sighup-ok",
        "\n".join(lines),
        d,
        kind="dockerd-log",
        daemon_json={"insecure-registries": [HP]},
        note="kill -HUP <dockerd> after editing daemon.json: no restart needed",
    )

    # A bad file on reload: logged at level=error, and dockerd keeps running with the old config.
    d.write_daemon_json({"insecure-registries": HP})
    out = d.reload()
    lines = [
        ln for ln in out.splitlines() if re.search(r"signal to reload|Reloaded configuration|unable to configure", ln)
    ]
    err = next(ln for ln in lines if "unable to configure" in ln)
    assert "level=error" in err
    assert "json: cannot unmarshal string into Go struct field Config.insecure-registries of type []string" in err
    assert d.running()
    assert d.info()["RegistryConfig"]["IndexConfigs"][HP]["Secure"] is False
    assert _push(d, repo="lab/y:1").returncode == 0
    record(
        "reload-sighup-bad-json",
        "\n".join(lines),
        d,
        kind="dockerd-log",
        daemon_json={"insecure-registries": HP},
        note="dockerd keeps running with its previous configuration",
    )
