"""A stand-in for systemd for the fix tests: starts the lab dockerd from a docker.service unit file.

    python labsvc.py restart SPEC.json     # stop (if running), start from the unit, wait for /_ping
    python labsvc.py stop SPEC.json

SPEC: {"workdir": ..., "netns": ..., "etc_docker": ..., "unit_dir": ...}. The unit is
``unit_dir/docker.service`` plus ``unit_dir/docker.service.d/*.conf`` (last ExecStart wins, an empty
``ExecStart=`` resets it); EnvironmentFile= and $VAR/${VAR} are expanded the systemd way (``$VAR``
splits into words, ``${VAR}`` stays one word). dockerd runs the lab way (tests/lab.py): a private
mount namespace with ETC bind-mounted over /etc/docker, in the client network namespace. The PID
is kept in workdir/svc.pid; exit 0 when dockerd answers, 1 with dockerd's last line when it exits.
This file is what `dockerdoctor fix --restart-command` runs in the real tests.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _ping(sock: str) -> bool:
    class C(http.client.HTTPConnection):
        def connect(self) -> None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(1)
            s.connect(sock)
            self.sock = s

    c = C("localhost", timeout=1)
    try:
        c.request("GET", "/_ping")
        return c.getresponse().status == 200
    except OSError:
        return False
    finally:
        c.close()


def parse_env_file(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        text = Path(path).read_text()
    except OSError:
        return out
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        k, _, v = line.partition("=")
        words = shlex.split(v, comments=False) if v.strip() else [""]
        out[k.strip()] = " ".join(words)
    return out


def unit_argv(unit_dir: str) -> list[str]:
    files = [Path(unit_dir) / "docker.service"]
    d = Path(unit_dir) / "docker.service.d"
    if d.is_dir():
        files += sorted(p for p in d.iterdir() if p.suffix == ".conf")
    exec_start = ""
    env: dict[str, str] = {}
    for f in files:
        for raw in f.read_text().splitlines():
            line = raw.strip()
            if line.startswith("ExecStart="):
                exec_start = line[len("ExecStart=") :]
            elif line.startswith("EnvironmentFile="):
                env.update(parse_env_file(line[len("EnvironmentFile=") :].lstrip("-")))
            elif line.startswith("Environment="):
                for w in shlex.split(line[len("Environment=") :]):
                    k, _, v = w.partition("=")
                    env[k] = v
    if not exec_start:
        raise SystemExit("labsvc: no ExecStart in the unit")
    argv: list[str] = []
    for word in shlex.split(exec_start):
        m = re.fullmatch(r"\$(\w+)", word)
        if m:
            argv += env.get(m.group(1), "").split()
            continue
        argv.append(re.sub(r"\$\{(\w+)\}", lambda mm: env.get(mm.group(1), ""), word))
    return [a for a in argv if a != ""]


def stop(spec: dict) -> None:
    wd = Path(spec["workdir"])
    try:
        pid = int((wd / "svc.pid").read_text())
    except (OSError, ValueError):
        return
    if _alive(pid):
        try:
            cpid = int((wd / "exec" / "containerd" / "containerd.pid").read_text())
        except (OSError, ValueError):
            cpid = None
        os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + 20
        while _alive(pid) and time.monotonic() < end:
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        if cpid and _alive(cpid) and str(wd) in Path(f"/proc/{cpid}/cmdline").read_text(errors="replace"):
            os.kill(cpid, signal.SIGKILL)
    (wd / "svc.pid").unlink(missing_ok=True)


def start(spec: dict) -> int:
    wd = Path(spec["workdir"])
    argv = unit_argv(spec["unit_dir"])
    sock = str(wd / "docker.sock")
    Path(sock).unlink(missing_ok=True)
    inner = shlex.join(["nsenter", f"--net=/run/netns/{spec['netns']}", *argv])
    shell = (
        f"mount -n --bind {shlex.quote(spec['etc_docker'])} /etc/docker"
        " && mkdir -p /run/containerd /run/docker"
        " && mount -n -t tmpfs -o mode=0711 dd-fix /run/containerd"
        " && mount -n -t tmpfs -o mode=0700 dd-fix /run/docker"
        f" && exec {inner}"
    )
    log_path = wd / "dockerd.log"
    offset = log_path.stat().st_size if log_path.exists() else 0
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", shell],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (wd / "svc.pid").write_text(str(proc.pid))
    end = time.monotonic() + 30
    while time.monotonic() < end:
        if proc.poll() is not None:
            text = log_path.read_bytes()[offset:].decode(errors="replace")
            lines = [ln for ln in text.splitlines() if ln.strip() and "level=" not in ln]
            print(f"dockerd exited {proc.returncode}: {lines[-1] if lines else ''}", file=sys.stderr)
            return 1
        if _ping(sock):
            print(f"dockerd {proc.pid} is up")
            return 0
        time.sleep(0.05)
    print("dockerd did not answer in 30s", file=sys.stderr)
    return 1


def main() -> int:
    cmd, spec_path = sys.argv[1], sys.argv[2]
    spec = json.loads(Path(spec_path).read_text())
    if cmd == "stop":
        stop(spec)
        return 0
    if cmd in ("restart", "start"):
        stop(spec)
        return start(spec)
    raise SystemExit(f"labsvc: unknown command {cmd}")


if __name__ == "__main__":
    sys.exit(main())
