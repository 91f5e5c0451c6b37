"""Helpers that rules share: evidence from provenance, and the fixes for trusting a registry."""

from __future__ import annotations

import re

from dockerdoctor.facts.daemon import ConfigValue, DaemonJson
from dockerdoctor.facts.systemd import ArgOrigin
from dockerdoctor.model import (
    Evidence,
)


def value_evidence(v: ConfigValue, text: str | None = None) -> Evidence:
    return Evidence(v.source, text if text is not None else (v.detail or f"{v.via}: {v.value}"), v.line)


def origin_evidence(origin: ArgOrigin, text: str) -> Evidence:
    if origin.var_path:
        return Evidence(origin.var_path, text, origin.var_line)
    return Evidence(origin.exec_path, text, origin.exec_line)


def json_evidence(dj: DaemonJson, key: str, text: str) -> Evidence:
    return Evidence(dj.path, text, dj.line_of(key))


_WS = re.compile(r"\s+")


def short(text: str, limit: int = 200) -> str:
    text = _WS.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"
