"""Compares what every component advertises with the nodes' real IPs. Pure: snapshots in,
findings and a diagnosis out.

Every location patches/addresses.yaml marks required is either read and judged, or reported with
status `unknown` and the reason: audit never calls a node consistent that it could not read.
A container carrying kind's labels must also look like a kind node, or audit refuses it.

The rooms (one concern each; arrows point one way, into this module):
- nodes.py: is it a kind node (`require_kind_node`), and the facts shown about it
- locations.py: the addresses patches/addresses.yaml locates in node files, read and judged
- certificates.py: whether the serving certificates cover the node's current address
- etcd.py: quorum and membership as the members describe them (`EtcdState`)
- diagnosis.py: the lines that sum the findings up
- report.py: what `audit` returns (`AuditReport`, `NodeFacts`)
"""

from __future__ import annotations

from collections.abc import Mapping

from kindfix.audit.certificates import advertise_family, certificate_findings
from kindfix.audit.diagnosis import diagnose
from kindfix.audit.etcd import EtcdState, etcd_findings, etcd_state
from kindfix.audit.locations import judge, located_values, location_findings, parse_file
from kindfix.audit.nodes import node_facts, require_kind_node
from kindfix.audit.report import AuditReport, NodeFacts
from kindfix.discovery import Cluster
from kindfix.findings import UNKNOWN, Finding
from kindfix.loadbalancer import ENVOY_CDS, HAPROXY_CFG, audit_load_balancer
from kindfix.observe import NodeSnapshot
from kindfix.patches import CONTROL_PLANE, Patches, load_patches

# What callers outside audit use; each name lives in the room listed above.
__all__ = [
    "AuditReport",
    "EtcdState",
    "NodeFacts",
    "advertise_family",
    "audit",
    "certificate_findings",
    "diagnose",
    "etcd_findings",
    "etcd_state",
    "judge",
    "lb_findings",
    "located_values",
    "location_findings",
    "parse_file",
    "require_kind_node",
]


def lb_findings(cluster: Cluster, snapshots: Mapping[str, NodeSnapshot]) -> list[Finding]:
    """The load balancer's findings; a running one whose config named no backend at all is
    `unknown` (missing or unparseable haproxy.cfg / Envoy files), not a silent pass."""
    findings = audit_load_balancer(cluster, snapshots)
    lb = cluster.load_balancer
    if lb is not None and lb.running and not findings:
        findings.append(Finding(lb.name, "load-balancer", "load balancer config", "no backends",
                                ",".join(n.name for n in cluster.control_planes), UNKNOWN,
                                f"found no backend in {HAPROXY_CFG} or {ENVOY_CDS} (missing or "
                                "unparseable)"))
    return findings


def audit(cluster: Cluster, snapshots: Mapping[str, NodeSnapshot],
          patches: Patches | None = None) -> AuditReport:
    patches = patches or load_patches()
    findings: list[Finding] = []
    for node in cluster.nodes:
        snap = snapshots.get(node.name)
        if snap is not None:
            require_kind_node(node, snap)
    for node in cluster.kube_nodes:
        snap = snapshots.get(node.name)
        if snap is None:  # a stopped node (a dump of one): nothing of it was read
            why = (f"node is {node.state}" if not node.running
                   else "nothing was read from it (not in the dump)")
            findings.append(Finding(node.name, "node", "container state", node.state, "running",
                                    UNKNOWN, f"{why}: none of its files were read"))
            continue
        findings += location_findings(snap, node, cluster, patches)
        if node.role == CONTROL_PLANE:
            findings += certificate_findings(snap, node, patches)
    state = etcd_state(cluster, snapshots, findings)
    findings += etcd_findings(state, cluster)
    findings += lb_findings(cluster, snapshots)
    facts = tuple(node_facts(n, snapshots.get(n.name), patches) for n in cluster.nodes)
    return AuditReport(cluster.name, cluster.network, facts, tuple(findings),
                       tuple(diagnose(findings, state, cluster)), state)
