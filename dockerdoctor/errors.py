"""Errors a user can cause. The CLI turns these into one line and exit code 2."""

from __future__ import annotations


class DoctorError(Exception):
    """A problem with the user's input or environment, not a bug in dockerdoctor."""

    exit_code = 2


class InputError(DoctorError):
    """Bad command-line input or an unreadable snapshot."""


class FactUnavailable(Exception):
    """A fact cannot be known on this source; rules that need it are skipped with `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Skip(Exception):
    """Raised by a rule that does not apply here (for example: no registry to check)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ApplyError(DoctorError):
    """The plan cannot be applied as asked (for example a previous run was interrupted)."""
