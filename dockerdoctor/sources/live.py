"""The live host: real files, and diagnostic commands run with tight timeouts."""

from __future__ import annotations

import os
import shutil
import subprocess

from dockerdoctor.sources.base import COMMANDS, DEFAULT_READ_LIMIT, FileStat, Source

COMMAND_TIMEOUT = 3.0


def _read_limited(path: str, limit: int, tail: bool) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            if tail:
                try:
                    size = os.fstat(fh.fileno()).st_size
                    if size > limit:
                        fh.seek(size - limit)
                except OSError:
                    pass
            return fh.read(limit)
    except (OSError, ValueError):
        return None


class LiveSource(Source):
    live = True

    def __init__(self, root: str = "/") -> None:
        self.root = root
        self.description = "live host"
        self._cache: dict[str, str | None] = {}

    def _path(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/")) if self.root != "/" else path

    def read_bytes(self, path: str, limit: int = DEFAULT_READ_LIMIT, tail: bool = False) -> bytes | None:
        return _read_limited(self._path(path), limit, tail)

    def stat(self, path: str) -> FileStat | None:
        try:
            st = os.stat(self._path(path))
        except (OSError, ValueError):
            return None
        return FileStat(st.st_mtime, st.st_mode, st.st_size)

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(self._path(path)))
        except (OSError, ValueError):
            return []

    def is_symlink_to(self, path: str) -> str | None:
        try:
            return os.readlink(self._path(path))
        except (OSError, ValueError):
            return None

    def command(self, key: str, limit: int = DEFAULT_READ_LIMIT) -> str | None:
        if key in self._cache:
            return self._cache[key]
        spec = COMMANDS[key]
        out: str | None = None
        if shutil.which(spec.live[0]):
            try:
                proc = subprocess.run(
                    list(spec.live),
                    capture_output=True,
                    timeout=COMMAND_TIMEOUT,
                    stdin=subprocess.DEVNULL,
                    env={**os.environ, "LC_ALL": "C", "SYSTEMD_PAGER": "", "PAGER": "cat"},
                )
                data = proc.stdout
                if proc.returncode == 0 or data:
                    data = data[-limit:] if spec.tail else data[:limit]
                    out = data.decode("utf-8", errors="replace")
            except (OSError, subprocess.SubprocessError):
                out = None
        self._cache[key] = out
        return out
