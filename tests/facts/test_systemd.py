"""systemd semantics: unit merge, environment files and ExecStart expansion."""

from __future__ import annotations

from dockerdoctor.facts.systemd import (
    expand_exec,
    merge_unit,
    parse_env_file,
    parse_systemctl_show,
    parse_unit_text,
)

CENTOS7_SYSCONFIG = """\
# /etc/sysconfig/docker

# Modify these options if you want to change the way the docker daemon runs
OPTIONS='--selinux-enabled --log-driver=journald --signature-verification=false'
if [ -z "${DOCKER_CERT_PATH}" ]; then
    DOCKER_CERT_PATH=/etc/docker
fi

# If you want to add your own registry to be used for docker search and docker
# pull use the ADD_REGISTRY option to list a set of registries, each prepended
# with --add-registry flag. The first registry added will be the first registry
# searched.
#ADD_REGISTRY='--add-registry registry.access.redhat.com'

INSECURE_REGISTRY='--insecure-registry 10.0.0.5:5000'
"""


def test_env_file_ignores_shell_lines_and_keeps_lines():
    env = parse_env_file(CENTOS7_SYSCONFIG, "/etc/sysconfig/docker")
    names = [a.name for a in env.assignments]
    assert names == ["OPTIONS", "DOCKER_CERT_PATH", "INSECURE_REGISTRY"]
    assert env.get("OPTIONS").value == "--selinux-enabled --log-driver=journald --signature-verification=false"
    assert env.get("OPTIONS").line == 4
    assert env.get("INSECURE_REGISTRY").line == 15
    ignored = [text for _, text in env.ignored]
    assert any(t.startswith("if [") for t in ignored)
    assert "fi" in ignored


def test_env_file_quotes_escapes_and_continuation():
    text = 'A="x \\"y\\" z"\nB=plain value  \nC=one\\\n two\n; comment\nD=\'$HOME lit\'\n  E = spaced\n'
    env = parse_env_file(text, "f")
    assert env.get("A").value == 'x "y" z'
    assert env.get("B").value == "plain value"
    assert env.get("C").value == "onetwo"
    assert env.get("D").value == "$HOME lit"
    assert env.get("E") is None or env.get("E").value == "spaced"


def test_env_file_later_assignment_wins():
    env = parse_env_file("X=1\nX=2\n", "f")
    assert env.as_dict()["X"].value == "2"
    assert env.get("X").line == 2


def test_unit_continuation_and_execstart_reset():
    frag = "[Service]\nEnvironmentFile=-/etc/sysconfig/docker\nExecStart=/usr/bin/dockerd-current \\\n" \
           "  --add-runtime x=y \\\n  $OPTIONS\n"
    dropin = "[Service]\nExecStart=\nExecStart=/usr/bin/dockerd $INSECURE_REGISTRY\n"
    unit = merge_unit("docker.service", [("/usr/lib/systemd/system/docker.service", frag),
                                         ("/etc/systemd/system/docker.service.d/10.conf", dropin)])
    assert len(unit.exec_start) == 1
    assert unit.exec_start[0].command == "/usr/bin/dockerd $INSECURE_REGISTRY"
    assert unit.exec_start[0].path.endswith("10.conf") and unit.exec_start[0].line == 3
    assert unit.exec_reset_at is not None
    directives = parse_unit_text(frag, "frag")
    exec_d = [d for d in directives if d.key == "ExecStart"][0]
    assert exec_d.value.split() == ["/usr/bin/dockerd-current", "--add-runtime", "x=y", "$OPTIONS"]
    assert exec_d.line == 3


def test_several_environment_files_in_order_and_optional():
    unit = merge_unit("docker.service", [("u", "[Service]\nEnvironmentFile=-/etc/a\nEnvironmentFile=/etc/b\n")])
    assert [(r.path, r.optional) for r in unit.environment_files] == [("/etc/a", True), ("/etc/b", False)]
    reset = merge_unit("docker.service", [("u", "[Service]\nEnvironmentFile=/etc/a\n"),
                                          ("d", "[Service]\nEnvironmentFile=\n")])
    assert reset.environment_files == []


def test_dollar_var_splits_and_braced_var_does_not():
    env = parse_env_file("INSECURE_REGISTRY='--insecure-registry 10.0.0.5:5000'\n", "/etc/sysconfig/docker")
    unit = merge_unit("docker.service", [("u", "[Service]\nExecStart=/usr/bin/dockerd $INSECURE_REGISTRY\n")])
    ex = expand_exec(unit.exec_start[0], env.as_dict())
    assert ex.argv == ["/usr/bin/dockerd", "--insecure-registry", "10.0.0.5:5000"]
    assert ex.origins[1].variable == "INSECURE_REGISTRY" and ex.origins[1].var_line == 1
    unit2 = merge_unit("docker.service", [("u", "[Service]\nExecStart=/usr/bin/dockerd ${INSECURE_REGISTRY}\n")])
    ex2 = expand_exec(unit2.exec_start[0], env.as_dict())
    assert ex2.argv == ["/usr/bin/dockerd", "--insecure-registry 10.0.0.5:5000"]
    assert ex2.referenced == {"INSECURE_REGISTRY": True}


def test_unset_variable_expands_to_nothing():
    unit = merge_unit("docker.service", [("u", "[Service]\nExecStart=/usr/bin/dockerd $OPTIONS ${OTHER} -D\n")])
    ex = expand_exec(unit.exec_start[0], {})
    assert ex.argv == ["/usr/bin/dockerd", "-D"]
    assert sorted(ex.unset_references) == ["OPTIONS", "OTHER"]


def test_exec_prefixes_are_stripped():
    unit = merge_unit("docker.service", [("u", "[Service]\nExecStart=-/usr/bin/dockerd -H fd://\n")])
    assert unit.exec_start[0].prefixes == "-"
    assert unit.exec_start[0].command == "/usr/bin/dockerd -H fd://"


def test_systemctl_show_finds_the_docker_block():
    text = "Id=containerd.service\nNeedDaemonReload=no\n\nId=docker.service\nNeedDaemonReload=yes\n" \
           "EnvironmentFiles=/etc/sysconfig/docker (ignore_errors=yes) /run/x (ignore_errors=no)\n" \
           "ExecStart={ path=/usr/bin/dockerd ; argv[]=/usr/bin/dockerd -H fd:// $OPTIONS ; ignore_errors=no }\n"
    props = parse_systemctl_show(text)
    assert props is not None and props["NeedDaemonReload"] == "yes"
    from dockerdoctor.facts.systemd import SystemdUnitState

    st = SystemdUnitState("x", props)
    assert st.need_daemon_reload is True
    assert st.environment_files == [("/etc/sysconfig/docker", True), ("/run/x", False)]
    assert st.exec_start_argv == [["/usr/bin/dockerd", "-H", "fd://", "$OPTIONS"]]
    assert parse_systemctl_show("Id=other.service\n") is None


def test_systemd_219_singular_environment_file_property():
    from dockerdoctor.facts.systemd import SystemdUnitState

    st = SystemdUnitState("x", {"EnvironmentFile": "/etc/sysconfig/docker (ignore_errors=yes)"})
    assert st.environment_files == [("/etc/sysconfig/docker", True)]
