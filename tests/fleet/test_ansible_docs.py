"""The collection's documentation says what its modules accept (what ansible-test's validate-modules checks):
every option of an argument_spec is documented with the same type, default, choices and elements, and the
other way round; the module options mirror the CLI's long options; the role's template is the shipped unit."""

from __future__ import annotations

import ast
import re
from typing import Any

import pytest
import yaml
from fleetkit import INTEGRATIONS, dd

COLL = INTEGRATIONS / "ansible"
MODULES = ("check", "fix")


def _literal_spec(node: ast.AST) -> dict[str, dict[str, Any]]:
    """dict(name=dict(type=..., ...), ...) as plain data."""
    assert isinstance(node, ast.Call)
    return {kw.arg: {k.arg: ast.literal_eval(k.value) for k in kw.value.keywords}  # type: ignore[attr-defined]
            for kw in node.keywords if kw.arg}


def argument_spec(name: str) -> dict[str, dict[str, Any]]:
    utils = ast.parse((COLL / "plugins/module_utils/dockerdoctor.py").read_text())
    common = next(n.value for n in utils.body if isinstance(n, ast.Assign)
                  and getattr(n.targets[0], "id", "") == "COMMON_ARGUMENT_SPEC")
    spec = _literal_spec(common)
    tree = ast.parse((COLL / "plugins/modules" / f"{name}.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "update" and \
                getattr(node.func.value, "id", "") == "argument_spec":  # type: ignore[attr-defined]
            spec.update(_literal_spec(ast.Call(func=node.func, args=[], keywords=node.keywords)))
    return spec


def documented(name: str) -> dict[str, dict[str, Any]]:
    tree = ast.parse((COLL / "plugins/modules" / f"{name}.py").read_text())
    doc = yaml.safe_load(next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                              and getattr(n.targets[0], "id", "") == "DOCUMENTATION"))
    options = dict(doc["options"])
    frag_tree = ast.parse((COLL / "plugins/doc_fragments/common.py").read_text())
    cls = next(n for n in frag_tree.body if isinstance(n, ast.ClassDef))
    frag = yaml.safe_load(next(ast.literal_eval(n.value) for n in cls.body if isinstance(n, ast.Assign)))
    assert "dockerdoctor.registry.common" in doc["extends_documentation_fragment"]
    options.update(frag["options"])
    return options


@pytest.mark.parametrize("name", MODULES)
def test_argument_spec_and_documentation_agree(name: str) -> None:
    spec, doc = argument_spec(name), documented(name)
    assert set(spec) == set(doc), set(spec) ^ set(doc)
    for opt, s in spec.items():
        d = doc[opt]
        assert d["type"] == s.get("type", "str"), opt
        assert d.get("default") == s.get("default"), opt
        assert d.get("choices") == s.get("choices"), opt
        assert d.get("elements") == s.get("elements"), opt
        assert d["description"], opt


@pytest.mark.parametrize("name", MODULES)
def test_module_options_mirror_the_cli_long_options(name: str) -> None:
    helptext = dd(name, "--help", env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"}).stdout
    cli = {m.replace("-", "_") for m in re.findall(r"--([a-z][a-z0-9-]+)", helptext)}
    own = {"executable"}  # which program to run: not a CLI option
    for opt in set(argument_spec(name)) - own:
        assert opt in cli, f"{name}: option {opt} is not a long option of `dockerdoctor {name}`"


def test_role_template_renders_to_the_shipped_systemd_unit() -> None:
    import jinja2

    defaults = yaml.safe_load((COLL / "roles/install/defaults/main.yml").read_text())
    for unit in ("dockerdoctor-textfile.service", "dockerdoctor-textfile.timer"):
        tpl = (COLL / "roles/install/templates" / f"{unit}.j2").read_text()
        rendered = jinja2.Template(tpl, keep_trailing_newline=True).render(ansible_managed="managed", **defaults)
        shipped = (INTEGRATIONS / "systemd" / unit).read_text()
        assert rendered.split("[Unit]", 1)[1] == shipped.split("[Unit]", 1)[1], unit


def test_role_argument_specs_document_every_default() -> None:
    defaults = yaml.safe_load((COLL / "roles/install/defaults/main.yml").read_text())
    specs = yaml.safe_load((COLL / "roles/install/meta/argument_specs.yml").read_text())["argument_specs"]["main"]
    assert set(specs["options"]) == set(defaults)
    for k, v in defaults.items():
        assert specs["options"][k]["default"] == v, k
