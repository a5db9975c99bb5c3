"""Finds a kind cluster and its nodes from the container engine (labels, network, IPs)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from kindfix.errors import KindfixError
from kindfix.patches import CONTROL_PLANE, LOAD_BALANCER, WORKER
from kindfix.runtime import KIND_CLUSTER_LABEL, KIND_ROLE_LABEL, ContainerInfo, Runtime

DEFAULT_NETWORK = "kind"
# kind v0.5 and older labelled nodes io.k8s.sigs.kind.* (kind v0.6 moved to io.x-k8s.kind.*).
# Such clusters are recognised only to refuse them clearly: their node images have no IP fix-up
# at boot (kind v0.8+, DOMAIN.md), use kubeadm layouts patches/addresses.yaml does not describe,
# and no kindfix code path was ever run against one.
LEGACY_CLUSTER_LABEL = "io.k8s.sigs.kind.cluster"
_LEGACY_HINT = ("kindfix supports clusters made by kind v0.6 or newer; recreate it with a "
                "current kind (`kind delete cluster --name {name}` with the kind that made it)")
_ROLE_ORDER = {CONTROL_PLANE: 0, LOAD_BALANCER: 1, WORKER: 2}


@dataclass(frozen=True)
class ClusterNode:
    name: str
    role: str
    state: str
    ipv4: str | None
    ipv6: str | None
    image: str
    pinned_ipv4: str | None = None
    pinned_ipv6: str | None = None
    started_at: float | None = None  # when Docker last started it (Unix time), if known

    @property
    def running(self) -> bool:
        return self.state == "running"

    def ips(self) -> tuple[str, ...]:
        return tuple(ip for ip in (self.ipv4, self.ipv6) if ip)


@dataclass(frozen=True)
class Cluster:
    name: str
    network: str
    nodes: tuple[ClusterNode, ...]

    @property
    def control_planes(self) -> tuple[ClusterNode, ...]:
        return tuple(n for n in self.nodes if n.role == CONTROL_PLANE)

    @property
    def workers(self) -> tuple[ClusterNode, ...]:
        return tuple(n for n in self.nodes if n.role == WORKER)

    @property
    def load_balancer(self) -> ClusterNode | None:
        return next((n for n in self.nodes if n.role == LOAD_BALANCER), None)

    @property
    def kube_nodes(self) -> tuple[ClusterNode, ...]:
        return tuple(n for n in self.nodes if n.role != LOAD_BALANCER)

    def node(self, name: str) -> ClusterNode | None:
        return next((n for n in self.nodes if n.name == name), None)

    def endpoint(self) -> ClusterNode | None:
        """The control-plane endpoint: the external load balancer, else the first control plane."""
        return self.load_balancer or next(iter(self.control_planes), None)


def network_name(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get("KIND_EXPERIMENTAL_DOCKER_NETWORK") or DEFAULT_NETWORK


def default_cluster_name(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get("KIND_CLUSTER_NAME") or "kind"


def list_clusters(runtime: Runtime) -> list[str]:
    """Like `kind get clusters`: every value of the cluster label, sorted."""
    containers = runtime.list_containers({KIND_CLUSTER_LABEL: None})
    return sorted({c.labels[KIND_CLUSTER_LABEL] for c in containers})


def _node_order(name: str) -> tuple[int, str]:
    # kind numbers nodes control-plane, control-plane2, ... control-plane10
    digits = len(name) - len(name.rstrip("0123456789"))
    number = int(name[-digits:]) if digits else 1
    return number, name


def _to_node(container: ContainerInfo, network: str) -> ClusterNode:
    endpoint = container.networks.get(network)
    if endpoint is None and len(container.networks) == 1:
        # a cluster created on another network (KIND_EXPERIMENTAL_DOCKER_NETWORK at creation)
        endpoint = next(iter(container.networks.values()))
    return ClusterNode(
        name=container.name,
        role=container.labels.get(KIND_ROLE_LABEL, ""),
        state=container.state,
        ipv4=endpoint.ipv4 if endpoint else None,
        ipv6=endpoint.ipv6 if endpoint else None,
        image=container.image,
        pinned_ipv4=endpoint.ipv4_config if endpoint else None,
        pinned_ipv6=endpoint.ipv6_config if endpoint else None,
        started_at=container.started_at,
    )


def cluster_network(containers: list[ContainerInfo], preferred: str) -> str:
    names = {net for c in containers for net in c.networks}
    if preferred in names or not names:
        return preferred
    if len(names) == 1:
        return names.pop()
    return preferred


def _refuse_legacy(runtime: Runtime, name: str) -> None:
    if runtime.list_containers({LEGACY_CLUSTER_LABEL: name}):
        raise KindfixError(f"cluster {name!r} was made by kind v0.5 or older (labels "
                           "io.k8s.sigs.kind.*), which kindfix does not support",
                           hint=_LEGACY_HINT.format(name=name))


def _refuse_non_kind_container(runtime: Runtime, name: str) -> None:
    """A container name given as the cluster: say what it is rather than 'no cluster'."""
    try:
        info = runtime.inspect_container(name)
    except KindfixError:
        return
    cluster = info.labels.get(KIND_CLUSTER_LABEL)
    legacy = info.labels.get(LEGACY_CLUSTER_LABEL)
    if legacy and not cluster:
        raise KindfixError(f"{name} is a node of cluster {legacy!r}, made by kind v0.5 or older "
                           "(labels io.k8s.sigs.kind.*), which kindfix does not support",
                           hint=_LEGACY_HINT.format(name=legacy))
    if cluster:
        raise KindfixError(f"{name} is a node of kind cluster {cluster!r}, not a cluster name",
                           hint=f"use --name {cluster}")
    raise KindfixError(f"container {name} is not a kind node (no {KIND_CLUSTER_LABEL} label)",
                       hint="kindfix repairs kind clusters; see `kindfix clusters`")


def discover(runtime: Runtime, name: str, network: str | None = None) -> Cluster:
    """The cluster called `name`, its nodes ordered as kind orders them."""
    containers = runtime.list_containers({KIND_CLUSTER_LABEL: name})
    if not containers:
        _refuse_legacy(runtime, name)
        _refuse_non_kind_container(runtime, name)
        known = list_clusters(runtime)
        hint = (f"known clusters: {', '.join(known)} (see `kindfix clusters`)" if known
                else "no kind clusters exist on this engine; check DOCKER_HOST / docker context")
        raise KindfixError(f"no kind cluster named {name!r}", hint=hint)
    net = cluster_network(containers, network or network_name())
    nodes = sorted(
        (_to_node(c, net) for c in containers),
        key=lambda n: (_ROLE_ORDER.get(n.role, 3), _node_order(n.name)),
    )
    return Cluster(name=name, network=net, nodes=tuple(nodes))


def require_running(cluster: Cluster) -> None:
    """A stopped kind node cannot be read or repaired: one clear error with the fix."""
    for node in cluster.kube_nodes:
        if not node.running:
            raise KindfixError(
                f"node {node.name} is {node.state}, not running",
                hint=f"start it with `docker start {node.name}` and run kindfix again",
            )
        if not node.ipv4 and not node.ipv6:
            raise KindfixError(
                f"node {node.name} has no address on network {cluster.network!r}",
                hint="set KIND_EXPERIMENTAL_DOCKER_NETWORK to the network the cluster uses",
            )
