"""DD701-DD705 on fact values (Facts.from_values): each fires where it should and stays silent otherwise."""

from __future__ import annotations

from dockerdoctor.engine import run_rules
from dockerdoctor.facts import Facts, HostPort
from dockerdoctor.facts.host import Journal, TargetRegistry
from dockerdoctor.model import RuleStatus
from dockerdoctor.runtimes.base import ImageRef
from dockerdoctor.runtimes.containers_image import SYSTEM_CONF, SYSTEM_DIR, ConfigInput, load
from dockerdoctor.runtimes.crio import parse_crio

HTTP_LINE = ('Mar 04 09:41:52 h dockerd[812]: level=error msg="Handler for POST /v1.41/images/create returned error: '
             'Get \\"https://10.0.0.5:5000/v2/\\": http: server gave HTTP response to HTTPS client"')


def _cfgs(files: dict[str, str], clients=("podman",), dirs=None) -> dict:
    d = dict(dirs or {})
    for p in files:
        if p.startswith(SYSTEM_DIR + "/"):
            d.setdefault(SYSTEM_DIR, []).append(p.rsplit("/", 1)[1])
    inp = ConfigInput(files, d)
    return {c: load(inp, c) for c in clients}


def _run(rule: str, **values):
    values.setdefault("target_registries", [TargetRegistry(HostPort.parse("10.0.0.5:5000"), "test", True)])
    values.setdefault("checked_images", [])
    res = next(r for r in run_rules(Facts.from_values(values), {rule}) if r.rule_id == rule)
    return res


def test_dd701_unknown_key_is_a_warning_and_errors_are_errors() -> None:
    res = _run("DD701", containers_configs=_cfgs({SYSTEM_CONF: '[[registry]]\nlocation = "a:1"\ninsecur = true\n'}))
    assert [f.severity.label for f in res.findings] == ["warning"] and res.findings[0].evidence[0].line == 3
    res = _run("DD701", containers_configs=_cfgs({SYSTEM_CONF: '[[registry]]\nlocation = "a:1"\n'}))
    assert res.status == RuleStatus.PASSED


def test_dd702_fires_without_insecure_and_not_with_it() -> None:
    journal = Journal("journalctl", [HTTP_LINE])
    res = _run("DD702", containers_configs=_cfgs({SYSTEM_CONF: ""}, ("podman", "skopeo")), docker_journal=journal,
               endpoint_probes=None, containers_texts={SYSTEM_CONF: ""})
    assert res.findings and set(res.findings[0].params["clients"]) == {"podman", "skopeo"}
    alt = res.findings[0].fix.alternatives[0]
    assert alt.operations[0].path == SYSTEM_CONF and "insecure = true" in alt.operations[0].content
    ok = _run("DD702", containers_configs=_cfgs({SYSTEM_CONF: '[[registry]]\nlocation = "10.0.0.5:5000"\n'
                                                              'insecure = true\n'}),
              docker_journal=journal, endpoint_probes=None)
    assert ok.status == RuleStatus.PASSED
    skipped = _run("DD702", containers_configs=_cfgs({SYSTEM_CONF: ""}), docker_journal=None, endpoint_probes=None)
    assert skipped.status == RuleStatus.SKIPPED and skipped.reason


def test_dd703_longer_prefix_and_identical_dropin() -> None:
    conf = ('[[registry]]\nprefix = "10.0.0.5:5000"\nlocation = "10.0.0.5:5000"\ninsecure = true\n'
            '[[registry]]\nprefix = "10.0.0.5:5000/team"\nlocation = "10.0.0.5:5000/team"\n')
    res = _run("DD703", containers_configs=_cfgs({SYSTEM_CONF: conf}))
    assert [f.params["kind"] for f in res.findings] == ["longer-prefix"]
    same = '[[registry]]\nlocation = "a:1"\ninsecure = true\n'
    res = _run("DD703", containers_configs=_cfgs({SYSTEM_CONF: same, f"{SYSTEM_DIR}/10.conf": same}))
    assert res.status == RuleStatus.PASSED  # the drop-in repeats the table: nothing is hidden
    res = _run("DD703", containers_configs=_cfgs({SYSTEM_CONF: same, f"{SYSTEM_DIR}/10.conf": same.replace(
        "true", "false")}))
    assert [f.params["kind"] for f in res.findings] == ["drop-in"]


def test_dd704_ignored_and_disagreeing() -> None:
    crio = parse_crio({"/etc/crio/crio.conf": '[crio]\ninsecure_registries = ["a:1"]\n[crio.image]\n'
                                              'insecure_registries = ["10.0.0.0/8"]\n'})
    cfgs = _cfgs({SYSTEM_CONF: '[[registry]]\nlocation = "10.0.0.5:5000"\ninsecure = false\n'}, ("cri-o",))
    res = _run("DD704", crio_conf=crio, containers_configs=cfgs)
    assert sorted(f.params["kind"] for f in res.findings) == ["disagree", "ignored"]


def test_dd705_short_image_for_podman_and_always_for_crio() -> None:
    cfgs = _cfgs({SYSTEM_CONF: ""}, ("podman", "cri-o", "skopeo"))
    res = _run("DD705", containers_configs=cfgs, checked_images=[])
    assert [f.params["client"] for f in res.findings] == ["cri-o"]
    res = _run("DD705", containers_configs=cfgs, checked_images=[ImageRef.parse("nginx")])
    assert sorted(f.params["client"] for f in res.findings) == ["cri-o", "podman"]
    cfgs = _cfgs({SYSTEM_CONF: 'unqualified-search-registries = ["docker.io"]\n'}, ("podman", "cri-o"))
    assert _run("DD705", containers_configs=cfgs, checked_images=[ImageRef.parse("nginx")]).status == \
        RuleStatus.PASSED


def test_dd702_crio_trusts_through_its_insecure_registries() -> None:
    journal = Journal("journalctl", [HTTP_LINE])
    cfgs = _cfgs({SYSTEM_CONF: ""}, ("cri-o", "podman"))
    crio = parse_crio({"/etc/crio/crio.conf": '[crio.image]\ninsecure_registries = ["10.0.0.5:5000"]\n'})
    res = _run("DD702", containers_configs=cfgs, docker_journal=journal, endpoint_probes=None, crio_conf=crio)
    assert [f.params["clients"] for f in res.findings] == [["podman"]]
