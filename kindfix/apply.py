"""Applying a plan: every step backs up what it changes first and is journaled, so a run that is
killed at any point is continued by the next `kindfix repair`."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from kindfix import etcd_recovery
from kindfix.discovery import Cluster
from kindfix.errors import KindfixError
from kindfix.journal import RunRecorder
from kindfix.loadbalancer import HAPROXY_CFG, lb_rewrites
from kindfix.node import Node, run
from kindfix.observe import NodeSnapshot, snapshot_node
from kindfix.patches import load_patches
from kindfix.plan import Plan, Step
from kindfix.runtime import Runtime

Progress = Callable[[str], None]

KUBEADM_CONFIG = "/kind/kubeadm.conf"
_RESTART_POD = r"""
ids=$(crictl ps -q --name "^$1\$" 2>/dev/null)
[ -z "$ids" ] && exit 0
crictl stop $ids >/dev/null
"""


class Applier:
    def __init__(self, runtime: Runtime, cluster: Cluster, nodes: Mapping[str, Node],
                 snapshots: Mapping[str, NodeSnapshot], recorder: RunRecorder,
                 progress: Progress) -> None:
        self.runtime = runtime
        self.cluster = cluster
        self.nodes = nodes
        self.snapshots = snapshots
        self.recorder = recorder
        self.progress = progress

    def apply(self, plan: Plan) -> list[str]:
        done = []
        for i, step in enumerate(plan.steps, 1):
            if self.recorder.is_done(step.key):
                self.progress(f"[{i}/{len(plan.steps)}] already done: {step.summary}")
                continue
            self.progress(f"[{i}/{len(plan.steps)}] {step.summary}")
            getattr(self, "_" + step.kind.replace("-", "_"))(step)
            self.recorder.mark_done(step.key)
            done.append(step.key)
        return done

    def _node(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise KindfixError(f"node {name} is not part of cluster {self.cluster.name}") from None

    def _write_file(self, step: Step) -> None:
        node = self._node(step.node)
        snap = self.snapshots.get(step.node)
        original = snap.file(step.path) if snap else node.read_file(step.path)
        self.recorder.backup_file(node, step.path, original, mode=_mode(node, step.path))
        node.write_file(step.path, step.content, mode=_mode(node, step.path))

    def _regen_cert(self, step: Step) -> None:
        node = self._node(step.node)
        for path in (step.path, step.key_path):
            self.recorder.backup_file(node, path, node.read_file(path), mode=0o600, move=True)
        run(node, ["kubeadm", "init", "phase", "certs", step.phase, "--config", KUBEADM_CONFIG],
            timeout=60)

    def _etcd(self, step: Step) -> None:
        etcd_recovery.repair(self, step.phase)

    def _restart_pod(self, step: Step) -> None:
        run(self._node(step.node), ["sh", "-c", _RESTART_POD, "kindfix-restart", step.phase])

    def _restart_kubelet(self, step: Step) -> None:
        run(self._node(step.node), ["systemctl", "restart", "kubelet"], timeout=60)

    def _start_lb(self, step: Step) -> None:
        self.runtime.start(step.node)

    def _fix_lb(self, step: Step) -> None:
        from kindfix.node import ContainerNode

        lb = self.cluster.load_balancer
        assert lb is not None
        node = self.nodes.get(lb.name) or ContainerNode(self.runtime, lb.name, lb.role)
        snap = snapshot_node(node, load_patches())
        for path, (old, new) in lb_rewrites(self.cluster, snap).items():
            self.recorder.backup_file(node, path, old)
            node.write_file(path, new)  # atomic rename: what Envoy needs to notice a change
            if path == HAPROXY_CFG:
                run(node, ["kill", "-s", "HUP", "1"])


def _mode(node: Node, path: str) -> int:
    result = node.exec(["stat", "-c", "%a", path])
    try:
        return int(result.text().strip(), 8) if result.ok else 0o644
    except ValueError:
        return 0o644
