"""dockerd's image store: docker info (what the running dockerd reports) before daemon.json.

Engine >= 23 cannot run here (Debian 12 ships 20.10): the /info shapes below are the documented ones
(docker/docs:content/manuals/engine/storage/containerd.md shows `docker info -f '{{ .DriverStatus }}'` ->
`[[driver-type io.containerd.snapshotter.v1]]`; moby/moby#46757 quotes the text form). Snapshot fixtures with
the text form: fixtures/hosts/docker-ce-containerd-store-*/sos_commands/docker/docker_info.
"""

from __future__ import annotations

from dockerdoctor.facts import Facts
from dockerdoctor.facts.daemon import parse_daemon_json
from dockerdoctor.facts.docker_info import docker_info_from_api, parse_docker_info_text
from dockerdoctor.runtimes.dockerd_store import store_from_info

C8D_TEXT = """Server:
 Containers: 0
 Server Version: 29.1.2
 Storage Driver: overlayfs
  driver-type: io.containerd.snapshotter.v1
 Logging Driver: json-file
"""
CLASSIC_TEXT = """Server:
 Server Version: 27.3.1
 Storage Driver: overlay2
  Backing Filesystem: extfs
  Supports d_type: true
 Logging Driver: json-file
"""


def test_text_form_names_the_store_and_its_line() -> None:
    info = parse_docker_info_text(C8D_TEXT, "sos_commands/docker/docker_info")
    assert info.storage_driver == "overlayfs" and info.driver_status == {"driver-type": "io.containerd.snapshotter.v1"}
    st = store_from_info(info)
    assert st is not None and st.store == "containerd"
    assert st.origin.where() == "sos_commands/docker/docker_info:4"
    classic = store_from_info(parse_docker_info_text(CLASSIC_TEXT, "docker info"))
    assert classic is not None and classic.store == "classic" and "overlay2" in classic.why


def test_engine_api_driver_status() -> None:
    info = docker_info_from_api({"ServerVersion": "29.1.2", "Driver": "overlayfs",
                                 "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]]}, "Engine API /info")
    st = store_from_info(info)
    assert st is not None and st.store == "containerd" and st.origin.source == "Engine API /info"
    old = docker_info_from_api({"Driver": "overlay2", "DriverStatus": [["Backing Filesystem", "extfs"]]}, "api")
    assert store_from_info(old).store == "classic"  # type: ignore[union-attr]
    assert store_from_info(docker_info_from_api({}, "api")) is None


def test_docker_info_wins_over_daemon_json_and_says_a_restart_is_pending() -> None:
    dj = parse_daemon_json('{"features": {"containerd-snapshotter": true}}\n', "/etc/docker/daemon.json")
    info = parse_docker_info_text(CLASSIC_TEXT, "docker info")
    st = Facts.from_values({"daemon_json": dj, "docker_info": info}).get("dockerd_image_store")
    assert st.store == "classic" and "only when dockerd restarts" in st.why
    # docker info alone (no features key in daemon.json): the containerd store, from docker info
    dj2 = parse_daemon_json('{"insecure-registries": ["10.0.0.5:5000"]}\n', "/etc/docker/daemon.json")
    info2 = parse_docker_info_text(C8D_TEXT, "docker info")
    st2 = Facts.from_values({"daemon_json": dj2, "docker_info": info2}).get("dockerd_image_store")
    assert st2.store == "containerd" and st2.origin.source == "docker info"
