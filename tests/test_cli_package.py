"""The command line is a package (dockerdoctor/cli/): every command is still registered, in the same order,
with its examples in --help, and --debug lives in one holder the commands and the error boundary share."""

from __future__ import annotations

import subprocess
import sys

import pytest

DD = [sys.executable, "-m", "dockerdoctor"]

# (command, an example --help must show), in the order `dockerdoctor --help` lists them
COMMANDS = [
    ("check", "dockerdoctor check --registry 10.0.0.5:5000"),
    ("fix", "dockerdoctor fix --registry 10.0.0.5:5000 --apply --insecure"),
    ("collect", "sudo dockerdoctor collect /tmp/host-snap --tar"),
    ("rules", "dockerdoctor rules --format json"),
    ("explain", "dockerdoctor explain DD104"),
    ("report", "dockerdoctor report reports/ --format html -o fleet.html"),
    ("serve-registry", None),
    ("resolve", "dockerdoctor resolve 10.0.0.5:5000/team/app:1.2"),
    ("registry", None),
]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DD, *args], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1", **(env or {})})


def test_every_command_is_listed_in_order() -> None:
    r = run("--help")
    assert r.returncode == 0, r.stderr
    listed = [ln.split()[0] for ln in r.stdout.split("Commands:", 1)[1].splitlines() if ln.startswith("  ")]
    assert listed == [c for c, _ in COMMANDS]


def test_the_core_commands_register_without_the_others() -> None:
    """check, fix, collect, rules and explain come with the package; report, serve-registry, resolve and
    registry are attached only when the command line needs them (see `_core_command`)."""
    from dockerdoctor import cli

    core = [c.name or (c.callback.__name__ if c.callback else "") for c in cli.app.registered_commands][:5]
    assert core == ["check", "fix", "collect", "rules", "explain"]
    assert cli._core_command(["check", "--root", "x"]) and cli._core_command(["--debug", "rules"])
    assert not cli._core_command(["report", "x"]) and not cli._core_command([])


@pytest.mark.parametrize("command,example", [c for c in COMMANDS if c[1]], ids=[c[0] for c in COMMANDS if c[1]])
def test_help_keeps_its_examples(command: str, example: str) -> None:
    r = run(command, "--help")
    assert r.returncode == 0, r.stderr
    assert example in r.stdout
    assert r.stdout.startswith(f"Usage: python -m dockerdoctor {command} ")


def test_exit_code_epilogs() -> None:
    assert "Exit codes: 0 nothing at or above --fail-on" in run("check", "--help").stdout
    assert "Exit codes: 0 plan shown" in run("fix", "--help").stdout
    assert "Exit codes: 0 every host was checked" in run("report", "--help").stdout


def test_debug_is_one_holder_set_by_the_callback(monkeypatch: pytest.MonkeyPatch) -> None:
    from dockerdoctor.cli import common, main_options

    monkeypatch.setattr(common.DEBUG, "on", False)
    monkeypatch.delenv("DOCKERDOCTOR_DEBUG", raising=False)
    main_options(version=False, debug=True)
    assert common.DEBUG.on
    main_options(version=False, debug=False)
    assert not common.DEBUG.on
    monkeypatch.setenv("DOCKERDOCTOR_DEBUG", "1")
    main_options(version=False, debug=False)
    assert common.DEBUG.on


def test_the_error_boundary(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from dockerdoctor.cli import common
    from dockerdoctor.errors import InputError

    def raising(exc: BaseException):  # type: ignore[no-untyped-def]
        def app() -> None:
            raise exc
        return app

    with pytest.raises(SystemExit) as e:
        common.invoke(raising(InputError("no  such\nthing")))  # type: ignore[arg-type]
    assert e.value.code == 2 and capsys.readouterr().err == "dockerdoctor: error: no such thing\n"
    monkeypatch.setattr(common.DEBUG, "on", False)
    with pytest.raises(SystemExit) as e:
        common.invoke(raising(RuntimeError("boom")))  # type: ignore[arg-type]
    err = capsys.readouterr().err
    assert e.value.code == 3 and err.startswith("dockerdoctor: internal error: RuntimeError: boom (rerun with --debug")
    assert "Traceback" not in err
    monkeypatch.setattr(common.DEBUG, "on", True)
    with pytest.raises(SystemExit):
        common.invoke(raising(RuntimeError("boom")))  # type: ignore[arg-type]
    assert "Traceback (most recent call last)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        common.invoke(raising(KeyboardInterrupt()))  # type: ignore[arg-type]
    assert e.value.code == 130 and capsys.readouterr().err == "dockerdoctor: interrupted\n"


def test_the_console_script_is_the_package_entry() -> None:
    from pathlib import Path

    import tomllib

    py = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    assert py["project"]["scripts"]["dockerdoctor"] == "dockerdoctor.__main__:main"
    assert "dockerdoctor.cli" in py["tool"]["setuptools"]["packages"]
    r = subprocess.run([sys.executable, "-c", "from dockerdoctor.cli import run, app; print(callable(run))"],
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "True", r.stderr
