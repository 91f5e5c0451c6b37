"""`registry ls/rm/gc`: the error prefix of every other command, `--help` with examples, and one clear line
(exit 2, no traceback) for a malformed registry (issue 13, newcomer report B9 and B8)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dockerdoctor.registry.cli import client_hint
from dockerdoctor.registry.client import _short


def dd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dockerdoctor", *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith("dockerdoctor: error: "), lines[0]
    assert lines[0].isprintable()
    return lines[0]


BAD = {  # the value -> what its one line says
    "http://10.0.0.5:5000": "without a scheme",
    "a b:5000": "contains a space or control character",
    "x:5000 ": "contains a space or control character",
    "": "the argument is empty",
    "x:0": "the port must be a number from 1 to 65535",
    "x:99999": "the port must be a number from 1 to 65535",
    "x\x01:5000": "'x\\x01:5000' contains a space or control character",
    "x:5000\x1b]0;T\x07/app": "contains a space or control character",
    "x!y:5000/app": "'x!y' is not a host name or an IP address",
}


@pytest.mark.parametrize("value", list(BAD))
def test_a_malformed_target_is_one_line(value: str) -> None:
    line = one_error_line(dd("registry", "ls", value))
    assert BAD[value] in line, line
    image = value + ("/app:1" if "/" not in value else ":1") if value else ""
    one_error_line(dd("registry", "rm", image))


@pytest.mark.parametrize("value", ["http://x:5000", "x:5000/path", "a b:5000", "", "x:0", "x:99999", "x\x01:5000",
                                   "x,y:5000"])
def test_a_malformed_registry_option_is_one_line(value: str) -> None:
    line = one_error_line(dd("registry", "ls", "--registry", value))
    assert line.startswith("dockerdoctor: error: --registry '"), line


def test_errors_carry_the_prefix_of_every_other_command() -> None:
    assert one_error_line(dd("registry", "rm", "localhost:1/just-a-repo")).startswith("dockerdoctor: error: ")
    assert one_error_line(dd("registry", "gc", "--root", "/nonexistent-dd")).startswith("dockerdoctor: error: ")
    assert one_error_line(dd("serve-registry", "--max-upload-size", "lots")).startswith("dockerdoctor: error: ")
    assert one_error_line(dd("check", "--registry", "x:0", "--root", "/nonexistent-dd")).startswith(
        "dockerdoctor: error: ")


@pytest.mark.parametrize("sub", ["ls", "rm", "gc"])
def test_help_has_examples(sub: str) -> None:
    out = dd("registry", sub, "--help").stdout
    assert "Examples:" in out and f"dockerdoctor registry {sub} " in out.split("Examples:", 1)[1]


def test_rm_help_names_its_argument() -> None:
    out = dd("registry", "rm", "--help").stdout
    assert "TARGET" not in out and "IMAGE" in out


def test_gc_help_says_it_is_offline() -> None:
    out = " ".join(dd("registry", "gc", "--help").stdout.split())
    assert "Offline mark-and-sweep" in out and "not a registry over the network" in out
    assert "a bucket has no such check" in out  # the running-server check covers only local roots


def test_hints() -> None:
    refused = "cannot reach localhost:5000: Connection refused"
    assert "give HOST:PORT" in client_hint(refused, "localhost:5000", False, None, False)
    assert client_hint(refused, "localhost:5000", True, None, False) == refused
    closed = "GET http://r:5443/v2/ failed: the server closed the connection without an answer"
    assert "drop --plain-http" in client_hint(closed, "r:5443", True, None, True)
    denied = "GET /v2/_catalog: HTTP 401 UNAUTHORIZED: authentication required"
    assert "-u USER[:PASSWORD]" in client_hint(denied, "r:5000", True, None, False)
    assert client_hint(denied, "r:5000", True, "admin", False) == denied


@pytest.mark.parametrize("raw,want", [
    ("HTTPSConnectionPool(host='x', port=5000): Max retries exceeded with url: /v2/ (Caused by "
     "NameResolutionError(\"<urllib3.connection.HTTPSConnection object at 0x7f>: Failed to resolve 'x' "
     "([Errno -2] Name or service not known)\"))", "Name or service not known"),
    ("('Connection aborted.', RemoteDisconnected('Remote end closed connection without response'))",
     "the server closed the connection without an answer"),
    ("HTTPSConnectionPool(host='h', port=1): Max retries exceeded with url: /v2/ (Caused by SSLError("
     "SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get "
     "local issuer certificate (_ssl.c:1006)')))", "certificate verify failed: unable to get local issuer certificate"),
])
def test_request_errors_in_words_not_reprs(raw: str, want: str) -> None:
    assert _short(Exception(raw)) == want
