"""The live host: real files, and diagnostic commands run with tight timeouts.

Run as root, a path under a user's home directory (the spec table's HOME_BASE/NAME/...) is read only while it,
through any symbolic link, stays inside that home: a user's link must not make root read (and report) a file
elsewhere. `collect` copies the per-user rows under the same rule, so a snapshot gives the same findings.
"""

from __future__ import annotations

import os
import shutil
import stat as stat_mod
import subprocess

from dockerdoctor.sources import specs
from dockerdoctor.sources.base import COMMANDS, DEFAULT_READ_LIMIT, FileStat, Source, open_below

COMMAND_TIMEOUT = 3.0


def _read_limited(path: str, limit: int, tail: bool) -> bytes | None:
    try:
        return _read_fd(os.open(path, os.O_RDONLY | os.O_CLOEXEC), limit, tail)
    except (OSError, ValueError):
        return None


def _read_fd(fd: int, limit: int, tail: bool) -> bytes | None:
    try:
        with os.fdopen(fd, "rb") as fh:
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

    def _home_of(self, path: str) -> str | None:
        """The real home directory `path` lies in, when it does and this runs as root; else None."""
        base = specs.HOME_BASE.rstrip("/") + "/"
        if not path.startswith(base) or os.geteuid() != 0:
            return None
        name = path[len(base):].split("/", 1)[0]
        return os.path.realpath(self._path(base + name)) if name not in ("", ".", "..") else "/nonexistent"

    def _confined(self, path: str) -> str | None:
        """The path to open, or None when it lies in a user's home and leads out of it (as root only)."""
        real = self._path(path)
        home = self._home_of(path)
        if home is None:
            return real
        target = os.path.realpath(real)
        return real if target == home or target.startswith(home + "/") else None

    def read_bytes(self, path: str, limit: int = DEFAULT_READ_LIMIT, tail: bool = False) -> bytes | None:
        real = self._path(path)
        home = self._home_of(path)
        if home is None:
            return _read_limited(real, limit, tail)
        return self._read_below(home, real, limit, tail)

    def read_in(self, home: str, path: str, limit: int = DEFAULT_READ_LIMIT) -> str | None:
        """`path` read only while it, through any link, stays inside `home` (a rootless user's home that need
        not be under HOME_BASE), with no link swapped in between the check and the read."""
        data = self._read_below(os.path.realpath(self._path(home)), self._path(path), limit, False)
        return data.decode("utf-8", errors="replace") if data is not None else None

    def _read_below(self, home: str, real: str, limit: int, tail: bool) -> bytes | None:
        target = os.path.realpath(real)  # once: the same answer _confined would give
        if target == home or not target.startswith(home.rstrip("/") + "/"):
            return None
        try:  # no link may be swapped in between the check and the read
            fd = open_below(home, os.path.relpath(target, home))
        except (OSError, ValueError):
            return None
        try:
            regular = stat_mod.S_ISREG(os.fstat(fd).st_mode)
        except OSError:
            regular = False
        if not regular:
            os.close(fd)
            return None
        return _read_fd(fd, limit, tail)

    def stat(self, path: str) -> FileStat | None:
        real = self._confined(path)
        if real is None:
            return None
        try:
            st = os.stat(real)
        except (OSError, ValueError):
            return None
        return FileStat(st.st_mtime, st.st_mode, st.st_size)

    def listdir(self, path: str) -> list[str]:
        real = self._confined(path)
        if real is None:
            return []
        try:
            return sorted(os.listdir(real))
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
