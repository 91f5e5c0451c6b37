"""explain on what real clients print right now against broken lab endpoints (the same scenarios
as bench/explain/lab_capture.py, run afresh: skopeo, podman, curl, Python requests, nginx and
distribution in two network namespaces), not only on the stored captures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.real("skopeo", "podman", "curl", "nginx", "iptables")
def test_what_real_clients_print_now_is_explained() -> None:
    sys.path.insert(0, str(REPO / "bench" / "explain"))
    import lab_capture

    from dockerdoctor.explain import explain_result

    entries = lab_capture.capture("ddx9t")
    assert len(entries) >= 30, [e["source"] for e in entries]
    wrong = []
    for e in entries:
        res = explain_result(e["text"])
        ranked = [m["rule"] for m in res["matches"]] if res["known"] else []
        if e["expect"] == "NONE" and res["known"]:
            wrong.append((e["source"], ranked[:3]))
        elif e["expect"] != "NONE" and e["expect"] not in ranked[:3]:
            wrong.append((e["source"], e["expect"], ranked[:3], e["text"][:200]))
    assert not wrong, wrong
