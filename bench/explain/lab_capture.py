"""Run real clients against broken lab endpoints and record what they print, for the explain corpus.

Everything runs in two network namespaces made here (tests/lab.py: registry side and client side,
joined by a veth pair); nothing leaves the machine, and every process started is stopped by PID.
Writes tests/corpus/lab-corpus.yaml: each entry's source names the lab scenario and the tool's
version. Run as root from the worktree:

    .venv/bin/python bench/explain/lab_capture.py

Scenarios: plain HTTP registry, untrusted CA, wrong name, CN only, expired certificate, closed
port, an SSH banner on the port, a web server that is not a registry, a registry with deletes off,
a registry that requires login, nginx with a 1 MiB body limit in front of the registry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

import lab  # noqa: E402
import yaml  # noqa: E402

PY = str(REPO / ".venv" / "bin" / "python")
OUT = REPO / "tests" / "corpus" / "lab-corpus.yaml"


def version(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.splitlines()[0].strip()
    except Exception:  # noqa: BLE001
        return "?"


def oci_layout(d: Path, size: int) -> Path:
    """An OCI image layout with one random layer of `size` bytes (for uploads through nginx)."""
    blobs = d / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> tuple[str, int]:
        h = hashlib.sha256(data).hexdigest()
        (blobs / h).write_bytes(data)
        return "sha256:" + h, len(data)

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        payload = os.urandom(size)
        ti = tarfile.TarInfo("blob.bin")
        ti.size = len(payload)
        tf.addfile(ti, io.BytesIO(payload))
    layer = put(buf.getvalue())
    cfg = put(json.dumps({"architecture": "amd64", "os": "linux",
                          "rootfs": {"type": "layers", "diff_ids": [layer[0]]}}).encode())
    man = put(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                          "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg[0],
                                     "size": cfg[1]},
                          "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer[0],
                                      "size": layer[1]}]}).encode())
    (d / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (d / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": man[0], "size": man[1],
         "annotations": {"org.opencontainers.image.ref.name": "1"}}]}))
    return d


REQUESTS_SNIPPET = (
    "import sys, requests\n"
    "try:\n"
    "    v = sys.argv[3] if len(sys.argv) > 3 else True\n"
    "    r = requests.request(sys.argv[1], sys.argv[2], timeout=4, verify=v)\n"
    "    print(r.status_code, r.text[:300])\n"
    "except Exception as e:\n"
    "    print(type(e).__module__ + '.' + type(e).__name__ + ': ' + str(e))\n"
)


def capture(prefix: str = "ddx9e") -> list[dict]:
    """Run every scenario; the entries (tool, expect, source, text). Cleans up after itself."""
    work = lab.make_workdir("explaincap")
    entries: list[dict] = []
    today = dt.date.today().isoformat()
    vers = {
        "skopeo": version(["skopeo", "--version"]),
        "curl": version(["curl", "--version"]).split(" (")[0],
        "requests": subprocess.run([PY, "-c",
                                    "import requests,urllib3;print(requests.__version__, urllib3.__version__)"],
                                   capture_output=True, text=True).stdout.strip(),
        "podman": version(["podman", "--version"]),
        "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
        "distribution": "docker-registry (distribution) " + version(["docker-registry", "--version"]).split()[-1],
    }
    (work / "snippet.py").write_text(REQUESTS_SNIPPET)
    net = lab.LabNet(prefix)
    procs: list = []
    try:
        ip = net.srv_ip
        certs = lab.make_lab_certs(work / "certs", ip)

        def reg(port: int, **kw) -> lab.DistRegistry:
            r = lab.DistRegistry(work, ip, port, netns=net.srv_ns, **kw).start()
            procs.append(r)
            return r

        def cli(argv: list[str], timeout: float = 30) -> str:
            r = subprocess.run(net.argv(net.cli_ns, argv), capture_output=True, text=True, timeout=timeout)
            return (r.stdout + r.stderr).strip()

        def add(scenario: str, tool: str, expect: str, text: str, command: str) -> None:
            text = "\n".join(x for x in text.splitlines() if x.strip()).replace(str(work), "/tmp/LAB")
            command = command.replace(str(work), "/tmp/LAB")
            if not text:
                return
            entries.append({"tool": tool, "expect": expect,
                            "source": f"lab {today}: {scenario}; {command}", "text": text + "\n"})

        def clients(scenario: str, expect: str, hostport: str, path: str = "/v2/", skip: tuple[str, ...] = (),
                    ca: str | None = None) -> None:
            url = f"https://{hostport}{path}"
            trust = " (with the lab CA trusted)" if ca else ""
            if "skopeo" not in skip:
                cmd = ["skopeo", "inspect", "--retry-times", "0", f"docker://{hostport}/lab/x:1"]
                add(scenario, vers["skopeo"], expect, cli(cmd), " ".join(cmd))
            if "curl" not in skip:
                cmd = ["curl", "-sS", "--max-time", "4", *(["--cacert", ca] if ca else []), url]
                add(scenario + trust, vers["curl"], expect, cli(cmd), " ".join(cmd))
            if "requests" not in skip:
                cmd = [PY, str(work / "snippet.py"), "GET", url, *([ca] if ca else [])]
                add(scenario + trust, f"python requests/urllib3 {vers['requests']}", expect, cli(cmd),
                    f"requests.get('{url}'" + (", verify=CA)" if ca else ")"))
            if "podman" not in skip:
                st = Path(f"/tmp/ddp9-{hostport.rsplit(':', 1)[1]}")
                cmd = ["podman", "--root", str(st / "root"), "--runroot", str(st / "run"), "--storage-driver", "vfs",
                       "pull", f"{hostport}/lab/x:1"]
                try:
                    add(scenario, vers["podman"], expect, cli(cmd, 60), "podman pull " + f"{hostport}/lab/x:1")
                finally:
                    lab.umount_under(st)
                    lab.rmtree(st)

        plain = reg(5171)
        clients("plain-HTTP registry (distribution), clients speak HTTPS", "DD203", plain.hostport)
        untrusted = reg(5172, tls=certs.paths["good"])
        clients("TLS registry, certificate from a CA the client does not trust", "DD204", untrusted.hostport)
        wrong = reg(5173, tls=certs.paths["wrong_name"])
        clients("TLS registry, certificate for another IP", "DD205", wrong.hostport, skip=("podman",),
                ca=str(certs.ca_path))
        cn = reg(5174, tls=certs.paths["cn_only"])
        clients("TLS registry, CN-only certificate", "DD205", cn.hostport, skip=("podman", "curl"),
                ca=str(certs.ca_path))
        expired = reg(5175, tls=certs.paths["expired"])
        clients("TLS registry, expired certificate", "DD206", expired.hostport, skip=("podman",), ca=str(certs.ca_path))
        port = lab.closed_port(net.srv_ns, ip)
        clients("nothing listens on the port", "DD201", f"{ip}:{port}", skip=("podman",))
        ssh = lab.PlainServer(net.srv_ns, ip, 5176, mode="ssh")
        procs.append(ssh)
        clients("an SSH server on the registry's port", "DD210", ssh.hostport, skip=("podman",))
        web = lab.PlainServer(net.srv_ns, ip, 5177, mode="http", response=(
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 22\r\nConnection: close\r\n\r\n"
            b"<h1>404 Not Found</h1>"))
        procs.append(web)
        cmd = ["skopeo", "inspect", "--tls-verify=false", "--retry-times", "0", f"docker://{web.hostport}/lab/x:1"]
        add("a web server that is not a registry (404 on /v2/)", vers["skopeo"], "DD210", cli(cmd), " ".join(cmd))

        # a packet filter on the registry side: DROP (timeouts) and REJECT icmp-host-prohibited (no route)
        for mode, port_, rule_args in (("DROP", 5182, ["-j", "DROP"]),
                                       ("REJECT", 5183, ["-j", "REJECT", "--reject-with", "icmp-host-prohibited"])):
            fw = reg(port_)
            subprocess.run(net.argv(net.srv_ns, ["iptables", "-I", "INPUT", "-p", "tcp", "--dport", str(port_),
                                                 *rule_args]), check=True, capture_output=True)
            scen = f"iptables {mode} on the registry port ({' '.join(rule_args)})"
            url = f"https://{fw.hostport}/v2/"
            cmd = ["skopeo", "inspect", "--command-timeout", "6s", "--retry-times", "0", f"docker://{fw.hostport}/lab/x:1"]
            add(scen, vers["skopeo"], "DD202", cli(cmd, 30), " ".join(cmd))
            cmd = ["curl", "-sS", "--connect-timeout", "3", url]
            add(scen, vers["curl"], "DD202", cli(cmd, 30), " ".join(cmd))
            cmd = [PY, str(work / "snippet.py"), "GET", url]
            add(scen, f"python requests/urllib3 {vers['requests']}", "DD202", cli(cmd, 30), f"requests.get('{url}')")

        # a name that does not resolve (.invalid never does; the client namespace has no route out)
        name = "registry.lab.invalid:5000"
        scen = "the registry's name does not resolve"
        cmd = ["skopeo", "inspect", "--retry-times", "0", f"docker://{name}/lab/x:1"]
        add(scen, vers["skopeo"], "DD212", cli(cmd, 30), " ".join(cmd))
        cmd = ["curl", "-sS", "--connect-timeout", "3", f"https://{name}/v2/"]
        add(scen, vers["curl"], "DD212", cli(cmd, 30), " ".join(cmd))
        cmd = [PY, str(work / "snippet.py"), "GET", f"https://{name}/v2/"]
        add(scen, f"python requests/urllib3 {vers['requests']}", "DD212", cli(cmd, 30), f"requests.get('https://{name}/v2/')")

        # deletes disabled: curl DELETE, and the registry's own log lines for it
        nodel = reg(5178, delete=False)
        layout = oci_layout(work / "small", 2048)
        cli(["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:1", f"docker://{nodel.hostport}/lab/x:1"])
        digest = cli(["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}",
                      f"docker://{nodel.hostport}/lab/x:1"])
        cmd = ["curl", "-sS", "-i", "-X", "DELETE", f"http://{nodel.hostport}/v2/lab/x/manifests/{digest}"]
        add("registry with storage.delete disabled", vers["curl"], "DD406", cli(cmd),
            "curl -X DELETE .../manifests/DIGEST")
        cmd = ["skopeo", "delete", "--tls-verify=false", f"docker://{nodel.hostport}/lab/x:1"]
        add("registry with storage.delete disabled", vers["skopeo"], "DD406", cli(cmd), " ".join(cmd))
        log = [x for x in nodel.log_text().splitlines() if "DELETE" in x]
        add("registry with storage.delete disabled: its own log", vers["distribution"], "DD406", "\n".join(log[-2:]),
            "docker-registry serve (log of the DELETE)")

        # login required
        hp = lab.write_htpasswd(work / "htpasswd", {"lab": "lab-password"})
        auth = reg(5179, htpasswd=hp)
        cmd = ["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:1", f"docker://{auth.hostport}/lab/x:1"]
        add("registry requires login, no credentials", vers["skopeo"], "DD208", cli(cmd), " ".join(cmd))
        log = [x for x in auth.log_text().splitlines() if " 401 " in x or "status=401" in x]
        add("registry requires login: its access log", vers["distribution"], "NONE", "\n".join(log[:1]),
            "docker-registry serve (first 401: the normal challenge on /v2/)")

        # nginx with the default 1 MiB body limit in front of a registry
        back = reg(5180)
        ngx = lab.Nginx(work, f"{ip}:5181", f"http://{back.hostport}", "1m", net.srv_ns).start()
        procs.append(ngx)
        big = oci_layout(work / "big", 3 * 1024 * 1024)
        cmd = ["skopeo", "copy", "--retry-times", "0", "--dest-tls-verify=false", f"oci:{big}:1",
               f"docker://{ip}:5181/lab/big:1"]
        add("nginx (client_max_body_size 1m) in front of the registry", vers["skopeo"], "DD211", cli(cmd, 60),
            " ".join(cmd))
        acc = [x for x in ngx.access_log.read_text(errors="replace").splitlines() if "PATCH" in x or "PUT" in x]
        add("nginx (client_max_body_size 1m): its access log", vers["nginx"], "DD211", "\n".join(acc[-2:]),
            "nginx access.log of that push")
        err = [x for x in ngx.error_log.read_text(errors="replace").splitlines() if "too large" in x]
        add("nginx (client_max_body_size 1m): its error log", vers["nginx"], "DD211", "\n".join(err[-1:]),
            "nginx error.log of that push")
    finally:
        for p in reversed(procs):
            try:
                p.stop()
            except Exception:  # noqa: BLE001
                pass
        net.close()
        lab.rmtree(work)
    return entries


def main() -> int:
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    entries = capture()
    header = ("# Written by bench/explain/lab_capture.py: what real clients printed against broken lab endpoints\n"
              "# (two network namespaces, nothing left the machine). Same format as explain-corpus.yaml.\n")
    OUT.write_text(header + yaml.safe_dump({"entries": entries}, sort_keys=False, allow_unicode=True, width=1000))
    print(f"{len(entries)} entries -> {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
