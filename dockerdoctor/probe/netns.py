"""Probe from where the daemon stands: worker threads that joined the daemon's network namespace.

dockerd pushes and pulls from its own network namespace (rootless docker from RootlessKit's,
docker-in-docker and test daemons from theirs), so a probe made from the caller's namespace may reach
another host, or nothing, at the same address. A network namespace belongs to a thread, not to the
process: ``setns(CLONE_NEWNET)`` in a pool's initializer moves only that worker, and threads it starts
(the bounded DNS lookup) inherit it. Mount namespaces cannot be joined by a threaded process, so the
daemon's files (certs.d) are read through ``/proc/PID/root`` instead.
"""

from __future__ import annotations

import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000


@dataclass(frozen=True)
class ProbeOrigin:
    """The network namespace probes run in. ``netns`` is None for the caller's own."""

    netns: str | None  # /proc/PID/ns/net, entered by every probe thread
    label: str  # "net:[4026532301]"
    pid: int | None = None
    note: str = ""

    @property
    def foreign(self) -> bool:
        return self.netns is not None

    def describe(self) -> str:
        if self.netns is not None:
            return f"the network namespace of dockerd pid {self.pid} ({self.label})"
        return "this process's network namespace" + (f" ({self.note})" if self.note else "")

    def to_dict(self) -> dict[str, object]:
        return {"netns": self.label, "pid": self.pid, "description": self.describe()}


def netns_label(path: str) -> str:
    """``net:[INODE]`` of a namespace file; OSError when it cannot be read (another user's process)."""
    return os.readlink(path)


def own_netns_label() -> str:
    for p in ("/proc/thread-self/ns/net", "/proc/self/ns/net"):
        try:
            return netns_label(p)
        except OSError:
            continue
    return "net:[?]"


_libc: ctypes.CDLL | None = None


def enter_netns(path: str) -> None:
    """Move the calling thread into the network namespace at `path` (needs CAP_SYS_ADMIN over it)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"setns({path}): {os.strerror(e)}")
    finally:
        os.close(fd)


def can_enter(path: str) -> str | None:
    """None when a thread can join the namespace at `path`, else why not."""
    out: list[str] = []

    def trial() -> None:
        try:
            enter_netns(path)
        except OSError as exc:
            out.append(exc.strerror or str(exc))

    t = threading.Thread(target=trial, name="dockerdoctor-netns-trial")
    t.start()
    t.join()
    return out[0] if out else None


def probe_pool(origin: ProbeOrigin | None, max_workers: int) -> ThreadPoolExecutor:
    """A thread pool whose workers run in `origin`'s network namespace (the caller's when None)."""
    if origin is None or origin.netns is None:
        return ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="dockerdoctor-probe")
    return ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="dockerdoctor-probe-netns",
                              initializer=enter_netns, initargs=(origin.netns,))
