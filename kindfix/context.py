"""What a repair step works with (as kind's actions receive an ActionContext): the runtime, the
cluster and its nodes as observed, the run's recorder (backups, journal), where progress goes,
and the event that says "start nothing new". The applier builds it; steps and the etcd recovery
receive it and nothing else, so they need not know the applier.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from kindfix.discovery import Cluster
from kindfix.errors import KindfixError
from kindfix.journal import RunRecorder
from kindfix.node import Node
from kindfix.observe import NodeSnapshot
from kindfix.runtime import Runtime

Progress = Callable[[str], None]


@dataclass(frozen=True)
class StepContext:
    """One run's shared state, read-only (the recorder, the events and apiservers_asked
    change, the other fields do not)."""

    runtime: Runtime
    cluster: Cluster
    nodes: Mapping[str, Node]
    snapshots: Mapping[str, NodeSnapshot]  # what observe read, before anything changed
    recorder: RunRecorder
    progress: Progress
    # set on a failure or Ctrl-C: start nothing new
    stopping: threading.Event = field(default_factory=threading.Event)
    # the plan's etcd step stops every member and parks its manifest (snapshot restore,
    # force-new-cluster) and restarts the kubelet itself: a rewritten etcd.yaml needs no
    # kubelet refresh of its own before that (issue #10: ~2 s of every such repair)
    etcd_parks: bool = False
    # the members whose kube-apiserver this run asked (and stopped if silent) once their kubelet
    # was stopped (etcd-prepare-member.sh): the etcd step does not ask them again. Filled by the
    # preparation beside the certificates; the one field that changes.
    apiservers_asked: set[str] = field(default_factory=set)
    # set once the apiservers can answer again (etcd's members started): the Lease release
    # (leases.py) starts then, beside the rest of the repair
    apiservers_due: threading.Event = field(default_factory=threading.Event)

    def say(self, text: str) -> None:
        """Progress under a step's own line (indented like it)."""
        self.progress(f"      {text}")

    def node(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise KindfixError(f"node {name} is not part of cluster {self.cluster.name}") from None
