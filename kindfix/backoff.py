"""Clearing the kubelet's CrashLoopBackOff of the control-plane pods once a repair is applied.

While etcd has no quorum, kube-apiserver exits at storage init and a controller-manager or
scheduler that led exits when it cannot renew its Lease; the kubelet restarts each after 10 s,
20 s, ... up to 300 s (pkg/kubelet/kubelet.go backOffPeriod, MaxContainerBackOff), counted from
the last exit. So after a correct repair the cluster could sit unreachable for five minutes.
The back-off lives in kubelet memory and is keyed by pod and container; with no exited container
left, the kubelet starts the container at its next sync (kuberuntime doBackOff). So: on every
control plane, for each static pod that has no running container, remove its exited containers
(`crictl rm`); where that fails, `systemctl restart kubelet` (running containers keep running).
Then wait, bounded, until they run again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from kindfix.discovery import Cluster
from kindfix.node import Node
from kindfix.nodescripts import script

PODS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
WAIT_S = 30.0
POLL_S = 1.0
PROGRESS_EVERY_S = 5.0

@dataclass(frozen=True)
class Cleared:
    node: str
    pods: tuple[str, ...]  # cleared, to be waited for
    kubelet_restarted: bool = False


def parse_clear(text: str) -> dict[str, str]:
    """Pure: backoff-clear.sh's output as pod -> state."""
    out = {}
    for line in text.splitlines():
        name, _, state = line.strip().partition(" ")
        if name in PODS and state:
            out[name] = state
    return out


def _clear_node(node: Node) -> Cleared:
    r = node.exec(["sh", "-c", script("backoff-clear"), "kindfix-clear-backoff", *PODS],
                  timeout=60)
    states = parse_clear(r.text()) if r.ok else {}
    cleared = tuple(p for p, s in states.items() if s in ("cleared", "failed"))
    if not r.ok or any(s == "failed" for s in states.values()):
        # containers keep running across a kubelet restart; its back-off table starts empty
        restart = node.exec(["systemctl", "restart", "kubelet"], timeout=60)
        return Cleared(node.name, cleared, restart.ok)
    return Cleared(node.name, cleared)


def _running(node: Node, pods: tuple[str, ...]) -> set[str]:
    r = node.exec(["sh", "-c", script("backoff-running"), "kindfix-running", *pods], timeout=30)
    return set(r.text().split()) if r.ok else set()


def clear(cluster: Cluster, nodes: Mapping[str, Node], progress: Callable[[str], None],
          wait: float = WAIT_S) -> list[Cleared]:
    """Clear back-off on every control plane at once, then wait (bounded) for what was cleared
    to run. Returns what was done per node; a pod still not running is left to verify."""
    cps = [nodes[cp.name] for cp in cluster.control_planes if cp.name in nodes]
    if not cps:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(cps))) as pool:
        done = list(pool.map(_clear_node, cps))
    for c in done:
        if c.pods or c.kubelet_restarted:
            how = "restarted the kubelet" if c.kubelet_restarted else "removed exited containers"
            progress(f"[{c.node}] cleared restart back-off of {', '.join(c.pods) or 'its pods'} "
                     f"({how})")
    pending = {c.node: c.pods for c in done if c.pods}
    by_name = {n.name: n for n in cps}
    start = time.monotonic()
    last_report = start
    while pending and time.monotonic() - start < wait:
        asked = [(by_name[n], pods) for n, pods in pending.items()]
        with ThreadPoolExecutor(max_workers=min(8, len(asked))) as pool:
            up = dict(zip(pending, pool.map(lambda item: _running(*item), asked)))
        pending = {n: tuple(p for p in pods if p not in up[n]) for n, pods in pending.items()}
        pending = {n: pods for n, pods in pending.items() if pods}
        now = time.monotonic()
        if pending and now - last_report >= PROGRESS_EVERY_S:
            last_report = now
            waiting = sorted({p for pods in pending.values() for p in pods})
            progress(f"waiting for {', '.join(waiting)} to start on {len(pending)} "
                     f"node(s), {now - start:.0f} s")
        if pending:
            time.sleep(POLL_S)
    return done
