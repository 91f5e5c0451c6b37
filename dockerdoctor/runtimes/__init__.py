"""Runtime adapters: every client of the registry on a host, in one shape (see base.py)."""

# containerd family (issue 14, dockerdoctor/runtimes/containerd.py): facts whose value is a Runtime or None
CONTAINERD_FAMILY = ("containerd_cri", "dockerd_containerd_store", "dockerd_classic", "nerdctl_runtime", "k3s_runtime")
