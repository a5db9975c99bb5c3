"""One core call per CLI command. Returns data; never prints."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kindfix import dump
from kindfix.audit import AuditReport, audit
from kindfix.discovery import Cluster, ClusterNode, discover, list_clusters, require_running
from kindfix.node import ContainerNode, Node
from kindfix.observe import NodeSnapshot, snapshot_cluster
from kindfix.runtime import Runtime


@dataclass(frozen=True)
class Observed:
    cluster: Cluster
    snapshots: dict[str, NodeSnapshot]


def clusters(runtime: Runtime) -> list[str]:
    runtime.ping()
    return list_clusters(runtime)


def nodes(runtime: Runtime, name: str) -> Cluster:
    runtime.ping()
    return discover(runtime, name)


def node_factory(runtime: Runtime):  # type: ignore[no-untyped-def]
    def make(node: ClusterNode) -> Node:
        return ContainerNode(runtime, node.name, node.role)
    return make


def observe(runtime: Runtime, name: str) -> Observed:
    runtime.ping()
    cluster = discover(runtime, name)
    require_running(cluster)
    return Observed(cluster, snapshot_cluster(cluster, node_factory(runtime)))


def audit_live(runtime: Runtime, name: str) -> AuditReport:
    seen = observe(runtime, name)
    return audit(seen.cluster, seen.snapshots)


def audit_dump(directory: Path) -> AuditReport:
    cluster, snapshots = dump.load_dump(directory)
    return audit(cluster, snapshots)


def collect(runtime: Runtime, name: str, directory: Path) -> Path:
    seen = observe(runtime, name)
    return dump.collect(runtime, name, directory, seen.snapshots)
