"""`dockerdoctor explain "<error text>"`: the knowledge base, the ranking, the parameters, the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dockerdoctor.explain import best_rules, explain_result, extract_params, load_kb, match_text, scan_lines
from dockerdoctor.facts import HostPort
from dockerdoctor.knowledge import diagnose

REPO = Path(__file__).resolve().parents[1]
EXE = str(REPO / ".venv" / "bin" / "dockerdoctor")

# The issue's examples, and what each must name first.
ISSUE_EXAMPLES = [
    ("Get https://127.0.0.1:5000/v1/_ping: EOF", "DD203", {"registry": "127.0.0.1:5000"}),
    ("Error: Invalid registry endpoint https://10.0.0.5:5000/v1/: Get https://10.0.0.5:5000/v1/_ping: EOF. If this "
     "private registry supports only HTTP or HTTPS with an unknown CA certificate, please add `--insecure-registry "
     "10.0.0.5:5000` to the daemon's arguments. In the case of HTTPS, if you have access to the registry's CA "
     "certificate, no need for the flag; simply place the CA certificate at /etc/docker/certs.d/10.0.0.5:5000/ca.crt",
     "DD203", {"registry": "10.0.0.5:5000"}),
    ("OSError: [Errno 2] No such file or directory: './registry._setup_database.lock'", "DD401",
     {"file": "./registry._setup_database.lock"}),
    ("x509: certificate signed by unknown authority", "DD204", {}),
    ("dial tcp 10.0.0.5:5000: connect: no route to host", "DD202", {"host": "10.0.0.5", "port": 5000}),
    ("unable to configure the Docker daemon with file /etc/docker/daemon.json: invalid character '}' looking for "
     "beginning of object key string", "DD106", {"file": "/etc/docker/daemon.json"}),
]

# What dockerd 20.10 really prints (../shared/lab.md §1-§4), and the rule the probe names for that case.
LAB_TEXTS = [
    ('Get "https://10.203.0.1:5100/v2/": http: server gave HTTP response to HTTPS client', "DD203"),
    ('Error response from daemon: Get "https://10.203.0.1:5100/v2/": http: server gave HTTP response to HTTPS client',
     "DD203"),
    ('level=info msg="Attempting next endpoint for push after error: Get \\"https://10.203.0.1:5100/v2/\\": http: '
     'server gave HTTP response to HTTPS client"', "DD203"),
    ('Get "https://10.203.0.1:5101/v2/": x509: certificate signed by unknown authority', "DD204"),
    ('Get "https://10.203.0.1:5102/v2/": x509: certificate relies on legacy Common Name field, use SANs instead',
     "DD205"),
    ("x509: certificate is valid for 10.203.0.9, not 10.203.0.1", "DD205"),
    ("x509: certificate has expired or is not yet valid: current time 2026-11-27T22:23:43Z is after "
     "2026-11-26T22:23:38Z", "DD206"),
    ("Error response from daemon: missing key client.key for client certificate client.cert. Note that CA "
     "certificates should use the extension .crt", "DD209"),
    ("Error response from daemon: Missing client certificate client.cert for key client.key", "DD209"),
    ('Get "https://10.203.0.1:5107/v2/": EOF', "DD210"),
    ('Get "https://10.203.0.1:5107/v2/": read tcp 10.203.0.1:53300->10.203.0.1:5107: read: connection reset by peer',
     "DD210"),
    ('Get "https://10.203.0.1:5109/v2/": tls: first record does not look like a TLS handshake', "DD210"),
    ('Get "https://10.203.0.1:5110/v2/": net/http: TLS handshake timeout', "DD210"),
    ('Get "https://10.203.0.1:5111/v2/": dial tcp 10.203.0.1:5111: connect: connection refused', "DD201"),
    ('Get "http://10.203.0.1:5109/v2/": net/http: HTTP/1.x transport connection broken: malformed HTTP response '
     '"SSH-2.0-OpenSSH_9.2"', "DD210"),
    ('Get "http://10.203.0.1:5109/v2/": malformed HTTP response "SSH-2.0-OpenSSH_9.2"', "DD210"),
    ('Get "http://10.203.0.1:5109/v2/": readLoopPeekFailLocked: <nil>', "DD210"),
    ('Get "http://10.203.0.1:5100/v2/": dial tcp 10.203.0.1:5100: connect: no route to host', "DD202"),
    ('Get "https://10.203.0.1:5101/v2/": net/http: request canceled while waiting for connection '
     '(Client.Timeout exceeded while awaiting headers)', "DD202"),
    ('Get "https://10.203.0.1:5101/v2/": dial tcp 10.203.0.1:5101: connect: network is unreachable', "DD202"),
    ("unable to configure the Docker daemon with file /tmp/lab-X/daemon-insecure.json: the following directives are "
     "specified both as a flag and in the configuration file: insecure-registries: (from flag: [10.203.0.1:5100], "
     "from file: [10.203.0.1:5100])", "DD104"),
    ('failed to start daemon: insecure registry [10.203.0.1:5100,10.203.0.2:5100] is not valid: invalid host '
     '"[10.203.0.1:5100,10.203.0.2:5100]"', "DD105"),
    ("Status: unknown flag: --insecure-registry 10.203.0.1:5100", "DD105"),
    ("unable to configure the Docker daemon with file F: json: cannot unmarshal string into Go struct field "
     "Config.insecure-registries of type []string", "DD106"),
    ("unable to configure the Docker daemon with file /etc/docker/daemon.json: the following directives don't match "
     "any configuration option: insecure-registires", "DD106"),
    ('time="2026-11-27T22:00:00Z" level=fatal msg="Error parsing image name \\"docker://10.203.0.1:5100/x:1\\": '
     'pinging container registry 10.203.0.1:5100: Get \\"https://10.203.0.1:5100/v2/\\": http: server gave HTTP '
     'response to HTTPS client"', "DD203"),
    ('level=fatal msg="listen tcp 10.203.0.1:5100: bind: address already in use"', "DD303"),
    ('level=fatal msg="open /certs/domain.crt: no such file or directory"', "DD402"),
    ("2026/11/27 23:34:31 http: TLS handshake error from 10.203.0.2:47948: remote error: tls: bad certificate",
     "DD204"),
]


@pytest.mark.parametrize("text,rule,params", ISSUE_EXAMPLES)
def test_issue_examples(text: str, rule: str, params: dict) -> None:
    res = explain_result(text)
    assert res["known"]
    top = res["matches"][0]
    assert top["rule"] == rule, [m["rule"] for m in res["matches"]]
    for k, v in params.items():
        assert top["params"].get(k) == v, top["params"]
    if "registry" in params:
        assert params["registry"] in top["fix"]


@pytest.mark.parametrize("text,rule", LAB_TEXTS)
def test_what_dockerd_20_10_prints(text: str, rule: str) -> None:
    assert rule in best_rules(text), [(m.rule_id, m.score) for m in match_text(text)]


def test_every_example_matches_its_pattern_and_names_its_rule() -> None:
    kb = load_kb()
    wrappers = {"invalid-registry-endpoint", "avc-denied"}  # the inner text decides for these
    for p in kb.patterns:
        assert p.examples, f"pattern {p.id} has no real wording"
        for ex in p.examples:
            assert p.regex.search(ex), (p.id, ex)
            if p.not_private:  # "not a private-registry fault": no known cause, and says why
                d = diagnose(ex)
                assert d.verdict == "no known cause" and p.id in {h.pattern.id for h in d.not_private}, (p.id, ex)
                continue
            ranked = [m.rule_id for m in match_text(ex)]
            assert p.rule in ranked, (p.id, ex, ranked)
            if p.id not in wrappers:
                assert p.rule in best_rules(ex), (p.id, ex, ranked)


def test_catalog_coverage_several_wordings_per_rule() -> None:
    kb = load_kb()
    count: dict[str, int] = {}
    for p in kb.patterns:
        for rid in (p.rule, *p.equally):
            count[rid] = count.get(rid, 0) + len(p.examples)
    endpoint = [f"DD2{i:02d}" for i in range(1, 13)]
    for rid in endpoint:
        assert count.get(rid, 0) >= 2, f"{rid} has {count.get(rid, 0)} wordings"
    # every rule that has a knowledge-base title is reachable from some wording (DD107: a state, no message)
    unreachable = {r for r in kb.rules if r not in count and not any(r in p.also for p in kb.patterns)}
    assert unreachable <= {"DD107"}, unreachable


def test_wrapper_yields_to_the_inner_error() -> None:
    """docker 1.x wrapped every ping error in the same advice; the inner error names the layer."""
    text = ("Error: Invalid registry endpoint https://192.168.90.137:5000/v1/: Get https://192.168.90.137:5000/v1/"
            "_ping: dial tcp 192.168.90.137:5000: no route to host. If this private registry supports only HTTP or "
            "HTTPS with an unknown CA certificate, please add `--insecure-registry 192.168.90.137:5000` to the "
            "daemon's arguments.")
    ranked = [m.rule_id for m in match_text(text)]
    assert ranked[0] == "DD202" and "DD101" in ranked


def test_dns_timeout_is_not_a_firewall() -> None:
    text = ("Get https://registry.internal:5000/v2/: dial tcp: lookup registry.internal on 10.0.2.3:53: "
            "read udp 10.0.2.15:39767->10.0.2.3:53: i/o timeout")
    assert best_rules(text) == {"DD212"}
    assert "DD202" not in {m.rule_id for m in match_text(text)}


def test_proxy_errors_beat_the_refusal_inside_them() -> None:
    text = 'Get "https://10.0.0.5:5000/v2/": proxyconnect tcp: dial tcp 10.1.1.1:3128: connect: connection refused'
    res = explain_result(text)
    assert res["matches"][0]["rule"] == "DD110"
    assert res["matches"][0]["params"]["registry"] == "10.0.0.5:5000"  # the registry, not the proxy
    assert "DD201" not in [m["rule"] for m in res["matches"]]


def test_ambiguous_wording_ranks_both_rules_equally() -> None:
    text = 'Get "https://10.0.0.5:5000/v2/": tls: first record does not look like a TLS handshake'
    assert best_rules(text) == {"DD203", "DD210"}


def test_multi_line_push_output() -> None:
    text = ("The push refers to repository [10.0.0.5:5000/app]\n"
            "5f70bf18a086: Preparing\n"
            "e07ee1baac5f: Retrying in 5 seconds\n"
            "error parsing HTTP 413 response body: invalid character '<' looking for beginning of value: "
            "\"<html>\\r\\n<head><title>413 Request Entity Too Large</title></head>\"\n")
    res = explain_result(text)
    top = res["matches"][0]
    assert top["rule"] == "DD211"
    assert top["params"]["registry"] == "10.0.0.5:5000"  # from "The push refers to repository [...]"
    assert top["evidence"][0]["line"] == 4


def test_unknown_text_gets_no_known_cause_and_marked_guesses() -> None:
    res = explain_result('Get "https://10.0.0.5:5000/v2/": http: servr gave HTTP respons to HTTPS clent')
    assert res["known"] is False and res["matches"] == []
    assert res["guesses"] and all(g["guess"] is True for g in res["guesses"])
    assert res["guesses"][0]["rule"] == "DD203"
    assert explain_result("the flux capacitor overheated")["guesses"] == []


def test_params_extraction() -> None:
    p = extract_params('Get "https://[fd00::5]:5000/v2/": x509: certificate signed by unknown authority')
    assert p["host"] == "fd00::5" and p["registry"] == "[fd00::5]:5000"
    p = extract_params("v2 ping attempt failed with error: Get https://ldap.example.com:5001/v2/: dial tcp "
                       "192.168.1.195:5001: connection refused")
    assert p["registry"] == "ldap.example.com:5001"  # the name the user typed, not the address it resolved to
    p = extract_params("Get https://registry-1.docker.io/v2/: net/http: TLS handshake timeout")
    assert "host" not in p


def test_scan_lines_finds_rule_hits_for_one_registry() -> None:
    lines = [
        'level=info msg="Attempting next endpoint for push after error: Get \\"https://10.0.0.5:5000/v2/\\": x509: '
        'certificate signed by unknown authority"',
        'level=info msg="... Get \\"https://10.0.0.6:5000/v2/\\": x509: certificate signed by unknown authority"',
        "unrelated line",
    ]
    hits = list(scan_lines(lines, "DD204", HostPort("10.0.0.5", 5000)))
    assert [h[0] for h in hits] == [1]
    assert list(scan_lines(lines, "DD203", HostPort("10.0.0.5", 5000))) == []


def test_cli_text_json_stdin_and_exit_codes() -> None:
    r = subprocess.run([EXE, "explain", "dial tcp 10.0.0.5:5000: connect: no route to host"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "DD202 registry-filtered" in r.stdout and "firewall-cmd --add-port=5000/tcp" in r.stdout
    r = subprocess.run([EXE, "explain", "-", "--format", "json"], input="no basic auth credentials\n",
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    data = json.loads(r.stdout)
    assert data["schema_version"] == 2 and data["verdict"] == "cause" and data["matches"][0]["rule"] == "DD208"
    r = subprocess.run([EXE, "explain", "the flux capacitor overheated"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "No known cause" in r.stdout
    r = subprocess.run([EXE, "explain", "DD205"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "legacy Common Name" in r.stdout  # the rule's own docstring


def test_fix_has_no_unfilled_placeholders_when_params_are_known() -> None:
    res = explain_result('Get "https://10.0.0.5:5000/v2/": x509: certificate relies on legacy Common Name field, '
                         "use SANs instead")
    fix = res["matches"][0]["fix"]
    assert "10.0.0.5" in fix and not re.search(r"\{\w+\}", fix)


def test_real_dockerd_captures_if_present() -> None:
    """The lab's stored captures (fixtures/errors/dockerd-20.10) agree with the knowledge base."""
    d = REPO / "fixtures" / "errors" / "dockerd-20.10"
    expect = {"tls-unknown-authority": "DD204", "tls-cn-only": "DD205", "tls-wrong-name": "DD205",
              "tls-expired": "DD206", "tls-not-yet-valid": "DD206", "endpoint-eof-https": "DD210",
              "endpoint-refused-https": "DD201", "filter-drop": "DD202", "filter-reject-admin-prohibited": "DD202",
              "proxy-413-push": "DD211", "auth-push-no-credentials": "DD208",
              "certs-d-client-cert-without-key": "DD209", "push-plain-http-no-config": "DD203"}
    seen = 0
    for name, rule in expect.items():
        f = d / f"{name}.txt"
        if not f.exists():
            continue
        seen += 1
        assert rule in best_rules(f.read_text()), (name, [(m.rule_id, m.score) for m in match_text(f.read_text())])
    assert seen >= 1 or not d.exists()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


def test_any_text_is_explained_without_crashing() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    kb = load_kb()
    pieces = st.sampled_from([ex for p in kb.patterns for ex in p.examples] + ["", "\n", "\x00", "é", "https://"])

    @settings(max_examples=150, deadline=None)
    @given(st.lists(st.one_of(st.text(max_size=80), pieces), max_size=6))
    def check(parts: list[str]) -> None:
        text = "".join(parts)
        res = explain_result(text)
        json.dumps(res)
        scores = [m["score"] for m in res["matches"]]
        assert scores == sorted(scores, reverse=True)
        for m in res["matches"]:
            assert not re.search(r"\{(registry|host|port|file)\}", m["fix"])

    check()


def test_compiled_knowledge_base_is_current():
    """data/errors-compiled.json must be made from the current errors.yaml
    (regenerate with `python -m dockerdoctor.explain --compile`)."""
    import json
    from importlib import resources

    from dockerdoctor import explain

    text = resources.files("dockerdoctor").joinpath("data/errors.yaml").read_text(encoding="utf-8")
    cached = json.loads(resources.files("dockerdoctor").joinpath(explain.COMPILED_FILE).read_text(encoding="utf-8"))
    assert cached["sha256"] == explain.kb_digest(text), "stale: run python -m dockerdoctor.explain --compile"
    assert cached["data"] == explain._parse_yaml(text)
    kb = explain.load_kb()
    assert {k: tuple(v) for k, v in cached["keywords"].items()} == explain.derive_keywords(kb.patterns)
    assert kb.keywords == explain.derive_keywords(kb.patterns)
