"""Making a node's kubelet act on what kindfix changed under it, while no API server answers.

Why a kubelet restart (realkind/README.md findings 1, 2, 2b; upstream v1.34 pkg/kubelet):
- A kubelet that started while no API server answered (every control plane after a Docker
  restart) has `sourcesReady` false: `deletePod` skips "because sources aren't ready yet" and
  housekeeping does not clean up, so a static pod whose manifest changed or was removed is never
  terminated, the new pod (new UID) waits for it, and its containers keep being restarted under
  the CrashLoopBackOff (kubernetes#116880, #109596). Nothing but the API server ends that, and
  the API server needs etcd, which is what is being repaired.
- A new kubelet knows only the manifests on disk (so a parked etcd.yaml is no pod of it) and its
  back-off table is empty; it adopts running containers of unchanged pods and leaves those of
  pods it does not know alone. So: stop it, stop and remove what must not run, start it.
Every call is bounded (exec timeouts) and says what it did; where the node has no systemctl,
it says so instead of failing: the pods then need a kubelet restart by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kindfix.errors import CommandError
from kindfix.node import MANIFESTS_DIR, NO_SHELL, NO_SYSTEMCTL, REFRESH_KUBELET, Node, shown

TIMEOUT = 120.0  # two crictl stops of 10 s each and two systemctl calls, with room for load


def manifest_pods(paths: Sequence[str]) -> list[str]:
    """The static pods (container names, as kubeadm names them after the file) whose manifests
    are among paths."""
    pods = []
    for p in paths:
        if p.startswith(MANIFESTS_DIR) and p.endswith((".yaml", ".yml", ".json")):
            name = p[len(MANIFESTS_DIR):].rsplit(".", 1)[0]
            if name and "/" not in name and name not in pods:
                pods.append(name)
    return pods


def no_systemctl(node: Node, what: str, progress: Callable[[str], None]) -> None:
    progress(f"[{node.name}] no systemctl on the node: cannot restart the kubelet {what}; "
             "if a control-plane pod does not come up, restart the node's kubelet by hand")


def _ran(node: Node, argv: list[str], what: str, progress: Callable[[str], None]) -> bool:
    result = node.exec(argv, timeout=TIMEOUT)
    if result.exit_code in NO_SHELL or NO_SYSTEMCTL in result.text():
        no_systemctl(node, what, progress)
        return False
    if not result.ok:
        raise CommandError(shown(argv), result.exit_code, result.stdout, result.stderr,
                           where=node.name)
    return True


def refresh(node: Node, pods: Sequence[str], progress: Callable[[str], None]) -> bool:
    """Stop the kubelet, stop and remove the containers of `pods` (their manifests changed or
    went), start the kubelet: it starts the pods as their manifests are now. False where the
    node has no systemctl."""
    progress(f"[{node.name}] restarting the kubelet so it acts on the changed manifests "
             f"({', '.join(pods)}; their old containers are stopped and removed meanwhile)")
    return _ran(node, ["sh", "-c", REFRESH_KUBELET, "kindfix-refresh-kubelet", *pods],
                "after its manifests changed", progress)


def restart(node: Node, why: str, progress: Callable[[str], None]) -> bool:
    """`systemctl restart kubelet` (running containers keep running, the back-off table is
    empty, the manifests are read afresh). False where the node has no systemctl."""
    progress(f"[{node.name}] restarting the kubelet ({why})")
    return _ran(node, ["systemctl", "restart", "kubelet"], why, progress)
