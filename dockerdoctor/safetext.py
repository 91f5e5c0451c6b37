"""Small text helpers for untrusted input (snapshot files, command output, logs)."""

from __future__ import annotations


def isdigits(text: str) -> bool:
    """Only ASCII 0-9, at least one. str.isdigit() also accepts '²' and other digits int() refuses."""
    return text.isascii() and text.isdigit()


def loads_json(text: str | bytes, **kw: object) -> object:
    """json.loads for untrusted text: nesting deeper than Python's stack (``[`` * 100000) raises
    ValueError like any other invalid document, not RecursionError."""
    import json

    try:
        return json.loads(text, **kw)  # type: ignore[arg-type]
    except RecursionError:
        raise ValueError("nested too deeply (more levels of [ and { than can be read)") from None
