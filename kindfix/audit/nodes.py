"""What a node is: a kind node at all (`require_kind_node`), and the facts shown about it."""

from __future__ import annotations

from kindfix.audit.report import NodeFacts
from kindfix.discovery import ClusterNode
from kindfix.errors import KindfixError
from kindfix.observe import NodeSnapshot
from kindfix.patches import CONTROL_PLANE, LOAD_BALANCER, WORKER, Patches

# What a real kind node has, whatever its version: kind's entrypoint, and under /kind/ either
# /kind/version, which the node image build writes and kind itself reads to learn the node's
# Kubernetes version (kind pkg/build/nodeimage/buildcontext.go, pkg/cluster/nodeutils/util.go
# KubeVersion), or /kind/kubeadm.conf, which `kind create cluster` writes on every node. A
# container with neither was not made by kind, whatever its labels say. A missing kubeadm.conf
# on a node that has /kind/version is an `unknown` finding (a required location), not a refusal.
# kubeadm's presence would cost one more exec per node and tells nothing these files do not.
ENTRYPOINT = "/usr/local/bin/entrypoint"
KIND_FILES = ("/kind/version", "/kind/kubeadm.conf")
_ROLES = (CONTROL_PLANE, WORKER, LOAD_BALANCER)


def require_kind_node(node: ClusterNode, snapshot: NodeSnapshot) -> None:
    """Refuse (one line) a container that carries kind's labels but is not a kind node: planning
    certificates and an etcd restore for it would act on guesses."""
    if node.role not in _ROLES:
        raise KindfixError(f"container {node.name} has kind role label {node.role!r}, which "
                           f"kind never sets (one of {', '.join(_ROLES)})",
                           hint="kindfix repairs clusters made by `kind create cluster`")
    if node.role == LOAD_BALANCER:
        return
    absent = [p for p in (ENTRYPOINT,) if snapshot.file(p) is None]
    if all(snapshot.file(p) is None for p in KIND_FILES):
        absent.append(" or ".join(KIND_FILES))
    if absent:
        raise KindfixError(f"container {node.name} is labelled as a kind {node.role} but is not "
                           f"a kind node: no {' and no '.join(absent)}",
                           hint="kindfix repairs clusters made by `kind create cluster`; remove "
                           "the io.x-k8s.kind.* labels from containers kind did not create")


def node_facts(node: ClusterNode, snapshot: NodeSnapshot | None, patches: Patches) -> NodeFacts:
    if snapshot is None:
        return NodeFacts(node.name, node.role, node.state, node.ipv4, node.ipv6)
    old = snapshot.file("/kind/old-ipv4")
    etcd_image = None
    manifest = snapshot.file("/etc/kubernetes/manifests/etcd.yaml")
    if manifest is not None:
        for line in manifest.decode(errors="replace").splitlines():
            if line.strip().startswith("image:"):
                etcd_image = line.split(":", 1)[1].strip()
                break
    return NodeFacts(
        node.name, node.role, node.state, node.ipv4, node.ipv6,
        generation=patches.generation(snapshot.file("/usr/local/bin/entrypoint")),
        # a fact shown as it is; the kind.old-ipv4 location judges it strictly
        kind_old_ipv4=old.decode(errors="replace").strip()[:64] if old is not None else None,
        etcd_image=etcd_image,
    )
