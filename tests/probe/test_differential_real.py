"""Differential check: what a real dockerd 20.10 prints for `docker push` to each broken endpoint,
versus what the probe finds. `explain` of dockerd's text must name the same rule as the probe.

The client is a real dockerd in the client namespace (10.N.0.2), so every registry on 10.N.0.1 is
"secure" for it (not 127.0.0.0/8), as on a real second host. The silent server (10 s) and the DROP
rule (15 s) are left out to keep the run short; their texts are checked in tests/test_explain.py
against the lab's captures.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from eplab import EpLab  # noqa: E402
from rulecheck import fired  # noqa: E402

pytestmark = pytest.mark.real("nft", "nginx")

REPO = Path(__file__).resolve().parents[2]

# endpoint -> (probe options, the rule both must name)
CASES = {
    "closed": ({}, "DD201"),
    "reject": ({}, "DD202"),
    "plain": ({}, "DD203"),
    "tls": ({}, "DD204"),
    "cn_only": ({"certs": True}, "DD205"),
    "wrong_name": ({"certs": True}, "DD205"),
    "expired": ({"certs": True}, "DD206"),
    "not_yet_valid": ({"certs": True}, "DD206"),
    "auth": ({"certs": True}, "DD208"),
    "eof": ({}, "DD210"),
    "rst": ({}, "DD210"),
    "ssh": ({}, "DD210"),
    "html": ({}, "DD203"),
    "v1": ({}, "DD203"),
    "mtls": ({"certs": True}, "DD209"),
}


@pytest.fixture(scope="module")
def pushes(ep_lab: EpLab, ep_dockerd) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """docker push output (stdout+stderr, as `2>&1` gives it) for every case, captured once."""
    d = ep_dockerd
    for name in CASES:
        if name in ("cn_only", "wrong_name", "expired", "not_yet_valid", "mtls"):
            d.add_cert(ep_lab.hp(name), {"ca.crt": ep_lab.ca_pem})  # certs.d is read on every push
    out = {}
    for name in CASES:
        ref = f"{ep_lab.hp(name)}/ddep/probe:1"
        assert d.docker("tag", "lab/busybox:1", ref).returncode == 0
        r = d.docker("push", ref, timeout=60)
        assert r.returncode != 0, f"push to {name} unexpectedly worked: {r.stdout}"
        out[name] = r.stdout + r.stderr
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_explain_of_dockerd_text_names_the_probe_rule(ep_lab: EpLab, pushes: dict[str, str], name: str) -> None:
    from dockerdoctor.explain import best_rules, match_text

    opts, want = CASES[name]
    text = pushes[name]
    rep = ep_lab.probe(name, timeout=1.0, **opts)
    probe_rules = set(fired(rep))
    assert want in probe_rules, f"probe of {name}: {rep.summary}; fired {sorted(probe_rules)}"
    best = best_rules(text)
    assert want in best, f"explain of dockerd's text names {sorted(best)}, not {want}:\n{text}"
    matched = {m.rule_id for m in match_text(text)}
    assert best <= probe_rules | matched
    # the probe predicts dockerd's own wording for the layer that broke
    if rep.docker_text and name not in ("auth",):
        key = rep.docker_text.split(": ", 1)[-1].split(" (")[0]
        if name != "rst":  # the reset text carries the client's ephemeral port
            assert _mask(key) in _mask(text), f"probe predicted {rep.docker_text!r}; dockerd said {text!r}"


def _mask(text: str) -> str:
    import re

    return re.sub(r"current time \S+", "current time T", text)


def test_explain_reads_a_push_from_stdin(ep_lab: EpLab, pushes: dict[str, str]) -> None:
    """`docker push ... 2>&1 | dockerdoctor explain -` with dockerd's real output."""
    exe = str(REPO / ".venv" / "bin" / "dockerdoctor")
    r = subprocess.run([exe, "explain", "-", "--format", "json"], input=pushes["cn_only"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    import json

    data = json.loads(r.stdout)
    top = data["matches"][0]
    assert top["rule"] == "DD205"
    assert top["params"]["registry"] == ep_lab.hp("cn_only")
    assert ep_lab.srv in top["fix"]
