"""A registry the user types (`--registry`, `registry ls TARGET`): HOST:PORT or one clear line (issue 13, B8)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockerdoctor.net import HostPort, parse_registry_arg

GOOD = {
    "10.0.0.5:5000": HostPort("10.0.0.5", 5000),
    "Registry.Example.com:443": HostPort("registry.example.com", 443),
    "localhost:5000": HostPort("localhost", 5000),
    "[::1]:5000": HostPort("::1", 5000),
    "[fd00::5]:65535": HostPort("fd00::5", 65535),
    "my_reg:1": HostPort("my_reg", 1),
}

BAD = {  # value -> what the one line must say
    "http://10.0.0.5:5000": "without a scheme, e.g. 10.0.0.5:5000",
    "https://r:5000/v2/": "without a scheme, e.g. r:5000",
    "10.0.0.5:5000/app": "without a path or repository name, e.g. 10.0.0.5:5000",
    "10.0.0.5:5000/app:1": "without a path",
    "a b:5000": "is not one HOST:PORT: give one per --registry",
    "10.0.0.5:5000 ": "is not one HOST:PORT",
    "10.0.0.5:5000,10.0.0.6:5000": "is not one HOST:PORT: give one per --registry (repeat the option)",
    "[10.0.0.5:5000]": "brackets hold an IPv6 address",
    "": "is empty",
    "   ": "is empty",
    "x:0": "the port must be a number from 1 to 65535",
    "x:99999": "the port must be a number from 1 to 65535",
    "x:-1": "the port must be a number from 1 to 65535",
    "x:٥٠٠٠": "the port must be a number from 1 to 65535",  # Unicode digits pass isdigit()
    "x:": "no port after the colon, e.g. x:5000",
    ":5000": "names no host",
    "10.0.0.5": "give the port too, e.g. 10.0.0.5:5000",
    "::1": "in brackets, as [ADDRESS]:PORT, e.g. [::1]:5000",
    "::1:5000": "in brackets",
    "[::1]": "give the port too, e.g. [::1]:5000",
    "[x]:5000": "brackets hold an IPv6 address",
    "x\x01:5000": "'x\\x01:5000' contains the invisible or control character '\\x01'",
    "x:5000\x1b]0;T\x07": "control character '\\x1b'",
    "x\x00:5000": "control character '\\x00'",
    "x\u200b:5000": "invisible or control character '\\u200b'",
    "x\x7f:5000": "control character '\\x7f'",
    "x!y:5000": "'x!y' is not a host name",
}


@pytest.mark.parametrize("text", list(GOOD))
def test_good_values(text: str) -> None:
    assert parse_registry_arg(text) == GOOD[text]


@pytest.mark.parametrize("text", list(BAD))
def test_bad_values_get_one_clear_line(text: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_registry_arg(text)
    msg = str(exc.value)
    assert BAD[text] in msg, msg
    assert msg.isprintable() and "\n" not in msg


def test_a_port_may_be_optional() -> None:
    assert parse_registry_arg("reg.example.com", need_port=False) == HostPort("reg.example.com", None)


@given(st.text(max_size=40))
def test_any_text_is_a_registry_or_one_printable_line(text: str) -> None:
    try:
        hp = parse_registry_arg(text)
    except ValueError as exc:
        assert str(exc).isprintable() and str(exc).startswith("'")
        return
    assert hp.port is not None and 0 < hp.port < 65536
    assert parse_registry_arg(str(hp)) == hp  # what it prints, it reads back


CLI_BAD = ["http://10.0.0.5:5000", "10.0.0.5:5000/app", "a b:5000", "", "x:0", "x:99999", "x\x01:5000",
           "x:5000\x1b[2K", "::1", "10.0.0.5"]


@pytest.mark.parametrize("cmd", ["check", "fix"])
@pytest.mark.parametrize("value", CLI_BAD)
def test_the_cli_says_one_line_and_exits_2(tmp_path, cmd: str, value: str) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    (tmp_path / "etc").mkdir()
    r = subprocess.run([sys.executable, "-m", "dockerdoctor", cmd, "--root", str(tmp_path), "--registry", value],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, (r.returncode, r.stderr)
    assert lines[0].startswith("dockerdoctor: error: --registry '") and lines[0].isprintable(), lines[0]
    assert r.stdout == ""
