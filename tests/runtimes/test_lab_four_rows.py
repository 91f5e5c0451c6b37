"""resolve on one lab host where dockerd, containerd and podman (and skopeo) reach one plain-HTTP registry
configured different ways: different rows, each right about what the real client does (access logs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lab_containerd import Containerd
from lab_containers import manifest_hits
from test_lab_containers import Lab, clab  # noqa: F401  (the module-scoped lab: registries A, B, T)

pytestmark = pytest.mark.real


def test_dockerd_containerd_podman_rows_differ_and_are_right(clab: Lab, client_dockerd, tmp_path: Path,  # noqa: F811
                                                             labnet) -> None:
    host = clab.host
    host.reset()
    a, b = clab.hp["A"], clab.hp["B"]
    image = f"{a}/lab/hello:v1"
    d = client_dockerd(daemon_json={"insecure-registries": [a]})
    hosts = tmp_path / "certs.d"
    (hosts / a).mkdir(parents=True)
    (hosts / a / "hosts.toml").write_text(f'server = "http://{a}"\n\n[host."http://{a}"]\n'
                                          '  capabilities = ["pull", "resolve"]\n')
    ctd = Containerd(tmp_path / "ctd", netns=labnet.cli_ns, config_path=str(hosts)).start()
    try:
        host.write("/etc/containers/registries.conf",
                   f'[[registry]]\nprefix = "{a}"\nlocation = "{a}"\ninsecure = true\n\n'
                   f'[[registry.mirror]]\nlocation = "{b}/mirror"\ninsecure = true\n')
        r = host.dockerdoctor(["resolve", image, "--format", "json", "--containerd-config", str(ctd.config)],
                              {"DOCKER_HOST": d.host})
        assert r.returncode == 0, r.stderr
        rows = {row["name"]: row for row in json.loads(r.stdout)["runtimes"]}
        assert {"dockerd", "containerd-cri", "podman"} <= set(rows), sorted(rows)
        dk, ct, pm = rows["dockerd"], rows["containerd-cri"], rows["podman"]
        assert dk["endpoints"][0]["http_fallback"] and dk["endpoints"][0]["tls"]["skip_verify"]
        assert ct["endpoints"][0]["scheme"] == "http" and "hosts.toml" in ct["endpoints"][0]["origin"]["source"]
        assert pm["endpoints"][0]["role"] == "mirror" and pm["endpoints"][0]["host"] == b
        assert len({json.dumps(x["endpoints"], sort_keys=True) for x in (dk, ct, pm)}) == 3
        clab.log.mark()
        assert d.docker("pull", image).returncode == 0
        assert manifest_hits(clab.log.since()) == {a}
        clab.log.mark()
        out = ctd.pull(image, hosts)
        assert out.returncode == 0, out.stderr
        assert manifest_hits(clab.log.since()) == {a}
        clab.log.mark()
        assert host.pull("podman", image).returncode == 0
        assert manifest_hits(clab.log.since()) == {b}  # the mirror, as the podman row says
    finally:
        ctd.stop()
