"""What a real dockerd 20.10 does with each insecure-registry / daemon.json mistake (lab.md §1).

Every test asserts the real behaviour (refuses to start and says X; starts but ignores it; works),
and saves the captured text under ``fixtures/errors/dockerd-20.10/<case>.txt`` (see dockerd_capture.py)
so rules, parsers and docs can use real text. ``index.json`` there says what input produced each one.
"""

from __future__ import annotations

import re

import lab
import pytest
from dockerd_capture import CLI, DAEMON_JSON, HP, SRV, SUBNET_N, dockerd_version, record
from dockerd_capture import push as _push

pytestmark = pytest.mark.real


def test_dockerd_is_20_10() -> None:
    # The stored texts are dockerd 20.10's (Debian 12 docker.io). Another engine needs its own directory.
    assert "Docker version 20.10." in dockerd_version(), dockerd_version()


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
