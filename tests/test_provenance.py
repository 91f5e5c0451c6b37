"""Every fact value type that says where it came from answers `value.evidence(text, line)` with a
model.Provenance: its own source (never empty), the text given (or what the value shows by default),
and the line given (or its own line). Rules use it instead of rebuilding evidence from field names."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from typing import Any

import pytest

import dockerdoctor.facts
from dockerdoctor.model import Evidence, Provenance
from dockerdoctor.net import HostPort

MODULES = sorted(
    {f"dockerdoctor.facts.{m.name}" for m in pkgutil.iter_modules(dockerdoctor.facts.__path__)}
    | {"dockerdoctor.probe.report", "dockerdoctor.probe.auth", "dockerdoctor.knowledge.journal"}
)  # dockerdoctor.runtimes.base.Origin answers evidence(text) (no line yet): see test_runtime_origin


def _located_types() -> list[type]:
    out = []
    for name in MODULES:
        mod = importlib.import_module(name)
        for _n, cls in inspect.getmembers(mod, inspect.isclass):
            if cls.__module__ == name and dataclasses.is_dataclass(cls) and callable(getattr(cls, "evidence", None)):
                out.append(cls)
    return out


TYPES = _located_types()


def _dummy(name: str, annotation: str) -> Any:
    a = annotation.replace(" ", "")
    if a.startswith(("list", "tuple")) or a.endswith("]|None") and a.startswith(("list", "tuple")):
        return [] if a.startswith("list") else ()
    if a.startswith("dict"):
        return {}
    if a.startswith("HostPort"):
        return HostPort("10.0.0.5", 5000)
    if a.startswith(("int", "float")):
        return 3
    if a.startswith("bool"):
        return False
    return f"/src/{name}"  # str, str | None, Literal...


def build(cls: type) -> Any:
    """An instance with every required field filled (nested fact types built the same way)."""
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        ann = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        nested = next((t for t in TYPES if t.__name__ == ann.split("|")[0].strip()), None)
        if nested is None:
            for mod in MODULES:
                cand = getattr(importlib.import_module(mod), ann.split("|")[0].strip(), None)
                if inspect.isclass(cand) and dataclasses.is_dataclass(cand):
                    nested = cand
                    break
        if f.name == "sources":
            kwargs[f.name] = ["/src/a", "/src/b"]
            continue
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        if has_default:
            # where it came from is often filled in after parsing (source="" by default): fill it in here
            if "source" in f.name and f.default in ("", None):
                kwargs[f.name] = f"/src/{f.name}"
            continue
        kwargs[f.name] = build(nested) if nested is not None else _dummy(f.name, ann)
    return cls(**kwargs)


def test_there_are_located_types() -> None:
    names = {t.__name__ for t in TYPES}
    # the kinds the rules read provenance from; a renamed or removed one shows up here
    for expected in ("ConfigValue", "DaemonJson", "ArgOrigin", "EnvAssignment", "ExecLine", "Journal", "CertsDir",
                     "FilterRule", "ListenSocket", "ContainerInfo", "RegistryContainer", "FirewalldState",
                     "SelinuxStatus", "AuditLog", "EndpointReport", "JournalHits"):
        assert expected in names
    assert len(TYPES) >= 25


@pytest.mark.parametrize("cls", TYPES, ids=lambda c: c.__name__)
def test_evidence_names_its_source_and_takes_text_and_line(cls: type) -> None:
    value = build(cls)
    ev = value.evidence()
    assert isinstance(ev, Evidence) and Provenance is Evidence
    assert isinstance(ev.source, str) and ev.source, f"{cls.__name__}: no source"
    given = value.evidence("seen there", 42)
    assert (given.source, given.text, given.line) == (ev.source, "seen there", 42)
    own_line = next((getattr(value, n) for n in ("line", "var_line", "exec_line") if hasattr(value, n)), None)
    if isinstance(own_line, int) and cls.__name__ not in ("Journal", "JournalHits"):
        assert ev.line == own_line, f"{cls.__name__}: its own line is not the default"


def test_defaults_show_the_value() -> None:
    from dockerdoctor.facts.daemon import ConfigValue
    from dockerdoctor.facts.systemd import ArgOrigin, EnvAssignment, ExecLine

    assert ConfigValue("10.0.0.5:5000", "flag", "/etc/sysconfig/docker", 4).evidence() == Evidence(
        "/etc/sysconfig/docker", "flag: 10.0.0.5:5000", 4)
    assert EnvAssignment("OPTIONS", "--selinux-enabled", "/etc/sysconfig/docker", 2).evidence().text == \
        "OPTIONS=--selinux-enabled"
    assert ExecLine("/usr/bin/dockerd", "/lib/systemd/system/docker.service", 12).evidence().text == \
        "ExecStart=/usr/bin/dockerd"
    o = ArgOrigin("/lib/systemd/system/docker.service", 12, "OPTIONS", False, "/etc/sysconfig/docker", 3)
    assert (o.evidence().source, o.evidence().line) == ("/etc/sysconfig/docker", 3)
    plain = ArgOrigin("/lib/systemd/system/docker.service", 12)
    assert (plain.evidence("x").source, plain.evidence("x").line) == ("/lib/systemd/system/docker.service", 12)


def test_a_container_log_line_is_shortened_and_located() -> None:
    from dockerdoctor.facts.containers import ContainerInfo

    c = build(ContainerInfo)
    c.log_source = "sos_commands/docker/containers/docker_logs_-t_registry"
    ev = c.log_evidence(7, "x" * 400 + "\n")
    assert ev.source == c.log_source and ev.line == 7 and len(ev.text) == 300
    c.log_source = None
    assert c.log_evidence(1, "y").source == f"docker logs {c.name}"


def test_runtime_origin() -> None:
    from dockerdoctor.runtimes.base import Origin

    o = Origin("/etc/containers/registries.conf", 4, "prefix 10.0.0.5:5000")
    assert o.evidence() == Evidence("/etc/containers/registries.conf", "prefix 10.0.0.5:5000", 4)
    assert o.evidence("x").text == "x"
