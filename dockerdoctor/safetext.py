"""Small text helpers for untrusted input (snapshot files, command output, logs)."""

from __future__ import annotations

import re

_WS = re.compile(r"\s+")


def short(text: str, limit: int = 200) -> str:
    """`text` on one line (runs of whitespace become one space), cut to `limit` characters with an ellipsis."""
    text = _WS.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


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


# C0 controls (tab and newline are handled apart), DEL, C1 controls, and the bidirectional overrides
# that reorder what a terminal shows. Snapshot files, journals, certs.d names and container logs are
# untrusted: none of these may reach a terminal raw (an OSC sequence renames the window, CSI 2K erases
# a report line, even with --no-color).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group(0))
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def printable(text: str, keep_newlines: bool = False) -> str:
    """`text` with every control character shown as a visible escape (ESC becomes the four characters
    \\x1b). A tab becomes a space; a newline is kept only with keep_newlines."""
    if not keep_newlines:
        text = text.replace("\n", "\\n").replace("\r", "\\r")
    text = text.replace("\t", " ")
    return _UNSAFE.sub(_escape, text)


# XML 1.0 forbids most C0 controls even as character references; surrogates cannot be encoded.
_XML_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(text: str) -> str:
    """Text an XML 1.0 document can hold: forbidden characters shown as \\xNN escapes."""
    return _XML_UNSAFE.sub(_escape, text)
