"""Small text helpers for untrusted input (snapshot files, command output, logs)."""

from __future__ import annotations


def isdigits(text: str) -> bool:
    """Only ASCII 0-9, at least one. str.isdigit() also accepts '²' and other digits int() refuses."""
    return text.isascii() and text.isdigit()
