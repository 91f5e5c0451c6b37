"""`dockerdoctor registry ls/rm` against a hostile or broken registry: one clear line, exit 2."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

EXE = str(Path(sys.executable).parent / "dockerdoctor")
ANSWERS = {
    "garbage": (b"\x00\xffnot json{{{", "application/json"),
    "array": (b"[1, 2, 3]", "application/json"),
    "wrong-type": (b'{"repositories": "not-a-list", "tags": {"a": 1}}', "application/json"),
}


class Handler(http.server.BaseHTTPRequestHandler):
    answer = ANSWERS["garbage"]

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body, ctype = self.answer
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Docker-Distribution-Api-Version", "registry/2.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[http.server.ThreadingHTTPServer]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("kind", sorted(ANSWERS))
@pytest.mark.parametrize("argv", [["registry", "ls"], ["registry", "ls", "REPO"]])
def test_broken_answers_give_one_line_and_exit_2(server, kind: str, argv: list[str]) -> None:  # type: ignore[no-untyped-def]
    Handler.answer = ANSWERS[kind]
    host = f"127.0.0.1:{server.server_address[1]}"
    args = [a.replace("REPO", f"{host}/some/repo") for a in argv]
    if args == ["registry", "ls"]:
        args.append(host)
    r = subprocess.run([EXE, *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
