"""Build small snapshot directories for tests (sosreport layout)."""

from __future__ import annotations

import os
from pathlib import Path

DOCKER_CE_UNIT = """\
[Unit]
Description=Docker Application Container Engine
Documentation=https://docs.docker.com
After=network-online.target docker.socket firewalld.service containerd.service
Wants=network-online.target
Requires=docker.socket containerd.service

[Service]
Type=notify
ExecStart=/usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock
ExecReload=/bin/kill -s HUP $MAINPID
TimeoutSec=0
RestartSec=2
Restart=always

[Install]
WantedBy=multi-user.target
"""

DOCKER_SOCKET = "[Socket]\nListenStream=/run/docker.sock\nSocketMode=0660\nSocketGroup=docker\n"

PS_HEADER = "USER         PID %CPU %MEM    VSZ   RSS TTY      STAT START   TIME COMMAND\n"


def ps_line(argv: str, pid: int = 1234) -> str:
    return f"root        {pid}  0.1  1.2 1850000 90000 ?       Ssl  09:15   0:05 {argv}\n"


def make_snapshot(root: Path, files: dict[str, str], mtimes: dict[str, float] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        p = root / rel.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    for rel, t in (mtimes or {}).items():
        os.utime(root / rel.lstrip("/"), (t, t))
    return root


def docker_ce_host(root: Path, daemon_json: str | None = '{\n  "insecure-registries": ["10.0.0.5:5000"]\n}\n',
                   running_argv: str = "/usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock",
                   insecure_running: tuple[str, ...] = ("10.0.0.5:5000",), extra: dict[str, str] | None = None
                   ) -> Path:
    files = {
        "usr/lib/systemd/system/docker.service": DOCKER_CE_UNIT,
        "usr/lib/systemd/system/docker.socket": DOCKER_SOCKET,
        "sos_commands/process/ps_auxwww": PS_HEADER + ps_line(running_argv),
        "sos_commands/docker/docker_info": (
            "Server:\n Server Version: 20.10.24\n Insecure Registries:\n"
            + "".join(f"  {r}\n" for r in insecure_running) + "  127.0.0.0/8\n Live Restore Enabled: false\n"
        ),
    }
    if daemon_json is not None:
        files["etc/docker/daemon.json"] = daemon_json
    files.update(extra or {})
    return make_snapshot(root, files)
