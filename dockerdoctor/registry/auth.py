"""htpasswd (bcrypt) authentication for `serve-registry --htpasswd FILE`.

Only bcrypt entries are accepted, as in the CNCF registry: `htpasswd -B` writes them
(`$2y$`, `$2a$` or `$2b$`). Other hash kinds are rejected when the file is loaded.
"""

from __future__ import annotations

import bcrypt

from dockerdoctor.errors import DoctorError


class HtpasswdError(DoctorError, ValueError):
    """The htpasswd file cannot be used (missing, unreadable, or not bcrypt)."""


BCRYPT_MAX = 72  # bcrypt reads this many bytes of a password; htpasswd -B and Go's bcrypt ignore the rest


def _cost(hashed: bytes) -> int:
    try:
        return int(hashed.split(b"$")[2])
    except (IndexError, ValueError):
        return 10


class Htpasswd:
    def __init__(self, entries: dict[str, bytes]) -> None:
        self.entries = entries
        # An unknown user is checked against a hash of the same cost as the real ones, so the
        # answer takes as long as for a known user with a wrong password (no user enumeration).
        cost = max((_cost(h) for h in entries.values()), default=10)
        self._dummy = bcrypt.hashpw(b"no such user", bcrypt.gensalt(rounds=min(max(cost, 4), 31)))

    @classmethod
    def load(cls, path: str) -> Htpasswd:
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise HtpasswdError(f"cannot read htpasswd file {path}: {e.strerror}") from None
        entries: dict[str, bytes] = {}
        for number, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, hashed = line.partition(":")
            if not sep or not user:
                raise HtpasswdError(f"{path}:{number}: expected USER:HASH")
            if not hashed.startswith(("$2y$", "$2a$", "$2b$")):
                raise HtpasswdError(f"{path}:{number}: user {user!r} is not bcrypt (create it with `htpasswd -B`)")
            entries[user] = hashed.encode()
        if not entries:
            raise HtpasswdError(f"{path}: no users")
        return cls(entries)

    def check(self, user: str, password: str) -> bool:
        hashed = self.entries.get(user)
        secret = password.encode("utf-8", "surrogateescape")[:BCRYPT_MAX]  # bcrypt >= 5 refuses longer ones
        try:
            ok = bcrypt.checkpw(secret, hashed if hashed is not None else self._dummy)
        except ValueError:
            return False
        return ok and hashed is not None


def make_entry(user: str, password: str, rounds: int = 10) -> str:
    """One htpasswd line (used by tests and by people without apache2-utils)."""
    hashed = bcrypt.hashpw(password.encode()[:BCRYPT_MAX], bcrypt.gensalt(rounds=rounds)).decode()
    return f"{user}:{hashed.replace('$2b$', '$2y$', 1)}"
