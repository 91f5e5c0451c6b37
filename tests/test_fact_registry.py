"""The fact registry and the rule engine's contract with it: a fact name is defined once, every bundled
rule parameter names a fact (a typo fails here, not at a user's site), and Facts.from_values seeds a store."""

from __future__ import annotations

import pytest

from dockerdoctor.engine import RuleSpec, check_rule_parameters, discover, run_rules
from dockerdoctor.errors import FactUnavailable
from dockerdoctor.facts import Facts, fact, known_facts
from dockerdoctor.model import RuleStatus, Severity


def test_every_bundled_rule_parameter_names_a_fact() -> None:
    rules = discover()  # raises on an unknown parameter
    known = set(known_facts())
    assert rules and all(set(s.required + s.optional) <= known for s in rules.values())


def test_a_misspelt_rule_parameter_fails_discovery() -> None:
    def dd999(daemon_jsn: object) -> list:  # the typo
        return []

    dd999.__module__ = "dockerdoctor.rules.example"
    spec = RuleSpec("DD999", "example", "Example", "daemon", Severity.ERROR, dd999, ["daemon_jsn"], [])
    with pytest.raises(ValueError, match=r"DD999 .* names no fact 'daemon_jsn'"):
        check_rule_parameters([spec])


def test_a_fact_name_defined_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="'daemon_json' is defined twice"):
        @fact("daemon_json")
        def other(facts: Facts) -> None: ...


def test_from_values_seeds_values_and_reasons() -> None:
    facts = Facts.from_values({"target_registries": []}, {"docker_unit": "no unit here"})
    assert facts.get("target_registries") == []
    with pytest.raises(FactUnavailable, match="no unit here"):
        facts.get("docker_unit")
    with pytest.raises(KeyError):
        Facts.from_values({"no_such_fact": 1})
    # the engine skips a rule whose fact is unavailable, with the reason, and never passes it
    res = {r.rule_id: r for r in run_rules(facts, {"DD102"})}["DD102"]
    assert res.status == RuleStatus.SKIPPED and res.reason
