"""A source that sees candidate file contents over another source: what the rules would say after
a fix, before anything is written.
"""

from __future__ import annotations

import time

from dockerdoctor.sources.base import DEFAULT_READ_LIMIT, FileStat, Source


class OverlaySource(Source):
    """The base source, with some files replaced by candidate contents (for validation)."""

    def __init__(self, base: Source, files: dict[str, bytes]) -> None:
        self.base = base
        self.files = files
        self.live = base.live
        self.description = base.description + " (candidate)"

    def read_bytes(self, path: str, limit: int = DEFAULT_READ_LIMIT, tail: bool = False) -> bytes | None:
        if path in self.files:
            data = self.files[path]
            return data[-limit:] if tail else data[:limit]
        return self.base.read_bytes(path, limit, tail)

    def stat(self, path: str) -> FileStat | None:
        if path in self.files:
            old = self.base.stat(path)
            return FileStat(time.time(), old.mode if old else 0o100644, len(self.files[path]))
        return self.base.stat(path)

    def listdir(self, path: str) -> list[str]:
        names = set(self.base.listdir(path))
        prefix = path.rstrip("/") + "/"
        names.update(p[len(prefix) :] for p in self.files if p.startswith(prefix) and "/" not in p[len(prefix) :])
        return sorted(names)

    def is_symlink_to(self, path: str) -> str | None:
        return None if path in self.files else self.base.is_symlink_to(path)

    def command(self, key: str, limit: int = DEFAULT_READ_LIMIT) -> str | None:
        return self.base.command(key, limit)

    def command_source(self, key: str) -> str:
        return self.base.command_source(key)
