"""Compares what every component advertises with the nodes' real IPs. Pure: snapshots in,
findings and a diagnosis out."""

from __future__ import annotations

from collections.abc import Container, Iterator, Mapping
from dataclasses import dataclass, field

from kindfix import probes
from kindfix.addresses import by_family, node_ips, same_ip
from kindfix.discovery import Cluster, ClusterNode
from kindfix.errors import KindfixError
from kindfix.findings import NA, OK, STALE, UNREACHABLE, Finding
from kindfix.loadbalancer import audit_load_balancer
from kindfix.observe import NodeSnapshot
from kindfix.patches import CONTROL_PLANE, Location, Patches, load_patches
from kindfix.x509 import parse_pem_certificates
from kindfix.yamlpath import Document, Ref, parse_document


@dataclass(frozen=True)
class NodeFacts:
    name: str
    role: str
    state: str
    ipv4: str | None
    ipv6: str | None
    generation: str = "unknown"  # kind node image generation, from entrypoint markers
    kind_old_ipv4: str | None = None
    etcd_image: str | None = None


@dataclass(frozen=True)
class EtcdState:
    quorum: bool | None  # None: no control plane answered at all
    members: tuple[probes.EtcdMember, ...] = ()
    stale_members: tuple[str, ...] = ()  # member names whose peer URLs are stale
    revisions: Mapping[str, int] = field(default_factory=dict)  # node -> revision


@dataclass(frozen=True)
class AuditReport:
    cluster: str
    network: str
    nodes: tuple[NodeFacts, ...]
    findings: tuple[Finding, ...]
    diagnosis: tuple[str, ...]
    etcd: EtcdState

    @property
    def consistent(self) -> bool:
        return all(f.status in (OK, NA) for f in self.findings)


def _judge_node_ip(value: str, node: ClusterNode) -> tuple[str, str]:
    """(status, actual) for a value that must carry only this node's IPs."""
    current = by_family(node.ipv4, node.ipv6)
    literals = node_ips(value)
    actual = ",".join(current[f] for f in sorted({lit.family for lit in literals}) if f in current)
    if not literals:
        return OK, actual or "-"
    stale = any(not same_ip(lit.text, current.get(lit.family)) for lit in literals)
    return (STALE if stale else OK), actual or "none"


def _judge_members(value: str, cluster: Cluster) -> tuple[str, str]:
    expected, stale = [], False
    for entry in filter(None, value.split(",")):
        name, _, url = entry.partition("=")
        member_node = cluster.node(name)
        lits = node_ips(url)
        if member_node is None:
            stale = True
            expected.append(f"{name}=?")
            continue
        current = by_family(member_node.ipv4, member_node.ipv6)
        fam = lits[0].family if lits else 4
        expected.append(f"{name}={current.get(fam, '?')}")
        stale |= any(not same_ip(lit.text, current.get(lit.family)) for lit in lits)
    return (STALE if stale else OK), ",".join(expected)


def _judge_endpoint(value: str, node: ClusterNode, cluster: Cluster) -> tuple[str, str]:
    literals = node_ips(value)
    endpoint = cluster.endpoint()
    allowed = [ip for n in (endpoint, node) if n for ip in n.ips()]
    if not literals:
        return OK, "hostname"
    ok = all(any(same_ip(lit.text, ip) for ip in allowed) for lit in literals)
    return (OK if ok else STALE), ",".join(dict.fromkeys(allowed))


def _judge_text(loc: Location, value: str, node: ClusterNode) -> tuple[str, str]:
    current = by_family(node.ipv4, node.ipv6).get(loc.family or 4)
    if current is None:
        return NA, "-"
    return (OK if same_ip(value, current) else STALE), current


def judge(loc: Location, value: str, node: ClusterNode, cluster: Cluster) -> tuple[str, str]:
    if loc.format == "text":
        return _judge_text(loc, value, node)
    if loc.expect == "members":
        return _judge_members(value, cluster)
    if loc.expect == "endpoint":
        return _judge_endpoint(value, node, cluster)
    return _judge_node_ip(value, node)


def parse_file(snapshot: NodeSnapshot, path: str, fmt: str, cache: dict[str, Document],
               editable: bool = False) -> Document | None:
    if path not in cache:
        raw = snapshot.file(path)
        if raw is None:
            return None
        cache[path] = parse_document(fmt, raw, f"{snapshot.name}:{path}", editable)
    return cache[path]


def located_values(snapshot: NodeSnapshot, role: str, patches: Patches,
                   docs: dict[str, Document], editable: bool = False,
                   files: Container[str] | None = None) -> Iterator[tuple[Location, Ref]]:
    """Every (location, scalar) patches declares for the role that the node's files hold (only
    in `files` when given); parsed documents are kept in `docs` so a caller can change
    (editable) and dump them."""
    for loc in patches.locations_for(role):
        if files is not None and loc.file not in files:
            continue
        doc = parse_file(snapshot, loc.file, loc.format, docs, editable)
        if doc is not None:
            for ref in doc.find(loc.path):
                yield loc, ref


def location_findings(snapshot: NodeSnapshot, node: ClusterNode, cluster: Cluster,
                      patches: Patches) -> list[Finding]:
    findings = []
    for loc, ref in located_values(snapshot, node.role, patches, {}):
        value = ref.get()
        status, actual = judge(loc, value, node, cluster)
        findings.append(Finding(node.name, loc.component, f"{loc.file}#{loc.id}", value,
                                actual, status))
    return findings


def advertise_family(snapshot: NodeSnapshot, node: ClusterNode) -> int:
    """The address family the control plane advertises (kubeadm puts only that address in the
    certificates): from etcd's advertise URL, else the only family the node has."""
    raw = snapshot.file("/etc/kubernetes/manifests/etcd.yaml")
    if raw is not None:
        for line in raw.decode(errors="replace").splitlines():
            if "--advertise-client-urls=" in line:
                lits = node_ips(line)
                if lits:
                    return lits[0].family
    return 4 if node.ipv4 else 6


def certificate_findings(snapshot: NodeSnapshot, node: ClusterNode, patches: Patches
                         ) -> list[Finding]:
    findings = []
    wanted = by_family(node.ipv4, node.ipv6).get(advertise_family(snapshot, node))
    for spec in patches.certificates_for(node.role):
        raw = snapshot.file(spec.file)
        if raw is None:  # a real control plane always has it; a killed repair may not
            findings.append(Finding(node.name, spec.component, f"{spec.file}#SAN", "missing",
                                    wanted or "-", STALE, "certificate file is missing"))
            continue
        try:
            cert = parse_pem_certificates(raw.decode(errors="replace"))[0]
        except (KindfixError, IndexError):
            findings.append(Finding(node.name, spec.component, spec.file, "unparseable", "-",
                                    STALE, "not a PEM certificate"))
            continue
        sans = ",".join(cert.sans_ip)
        missing = [ip for ip in (wanted,) if ip and not any(same_ip(ip, s) for s in cert.sans_ip)]
        findings.append(Finding(node.name, spec.component, f"{spec.file}#SAN", sans or "-",
                                wanted or "-", STALE if missing else OK,
                                f"does not cover {', '.join(missing)}" if missing else ""))
    return findings


def etcd_state(cluster: Cluster, snapshots: Mapping[str, NodeSnapshot]) -> EtcdState:
    answers: dict[str, probes.EtcdProbe] = {}
    for node in cluster.control_planes:
        snap = snapshots.get(node.name)
        result = snap.output(probes.ETCD_PROBE) if snap else None
        if result is not None:
            answers[node.name] = probes.parse_etcd_probe(result.text())
    if not answers:
        return EtcdState(quorum=None)
    listing = next((p for p in answers.values() if p.reachable and p.members), None)
    has_leader = any(p.has_leader for p in answers.values()) or (
        listing is not None and any(p.leader for p in answers.values()))
    revisions = {n: r for n, p in answers.items()
                 if (r := p.revision or p.metrics_revision) is not None}
    members = listing.members if listing else ()
    stale = tuple(m.name for m in members if not _member_current(m, cluster))
    return EtcdState(quorum=has_leader, members=members, stale_members=stale, revisions=revisions)


def _member_current(member: probes.EtcdMember, cluster: Cluster) -> bool:
    node = cluster.node(member.name)
    if node is None:
        return False
    current = by_family(node.ipv4, node.ipv6)
    lits = [lit for url in member.peer_urls for lit in node_ips(url)]
    return bool(lits) and all(same_ip(lit.text, current.get(lit.family)) for lit in lits)


def etcd_findings(state: EtcdState, cluster: Cluster) -> list[Finding]:
    if state.quorum is None:
        return []
    if not state.members:
        return [Finding(n.name, "etcd", "etcd member list", "?", ",".join(n.ips()), UNREACHABLE,
                        "no member answered on 2379: quorum lost or etcd down")
                for n in cluster.control_planes]
    findings = []
    for m in state.members:
        node = cluster.node(m.name)
        actual = ",".join(node.ips()) if node else "no such node"
        status = OK if m.name not in state.stale_members else STALE
        findings.append(Finding(node.name if node else m.name, "etcd",
                                f"etcd member list#{m.name}.peerURLs", ",".join(m.peer_urls),
                                actual, status, "" if node else "member has no node"))
    return findings


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
        kind_old_ipv4=old.decode().strip() if old is not None else None,
        etcd_image=etcd_image,
    )


def diagnose(findings: list[Finding], state: EtcdState, cluster: Cluster) -> list[str]:
    lines = []
    members = len(state.members) or len(cluster.control_planes)
    stale_peers = len(state.stale_members)
    if not state.members:
        stale_peers = len({f.node for f in findings if f.component == "etcd"
                           and f.status == STALE and "peer" in f.source})
    if state.quorum is False:
        lines.append(f"etcd lost quorum: {stale_peers} of {members} members advertise stale peer "
                     "URLs or certificates" if stale_peers else "etcd lost quorum")
    elif state.stale_members:
        lines.append(f"etcd: {len(state.stale_members)} of {members} members advertise stale peer "
                     "URLs (quorum intact)")
    stale = [f for f in findings if f.status == STALE]
    lb = [f for f in stale + [f for f in findings if f.status == UNREACHABLE]
          if f.component == "load-balancer"]
    lines.extend(f.detail for f in lb if f.detail)
    certs = [f for f in stale if "#SAN" in f.source]
    if certs:
        lines.append(f"{len(certs)} certificate(s) do not cover their node's current IP: "
                     + ", ".join(sorted({f'{f.node}:{f.source.split("#")[0].rsplit("/", 1)[-1]}'
                                         for f in certs})))
    other = [f for f in stale if f not in certs and f.component not in ("load-balancer",)]
    if other:
        nodes = sorted({f.node for f in other})
        lines.append(f"{len(other)} stale address(es) on {len(nodes)} node(s): {', '.join(nodes)}")
    if not lines:
        lines.append("all addresses consistent")
    return list(dict.fromkeys(lines))


def audit(cluster: Cluster, snapshots: Mapping[str, NodeSnapshot],
          patches: Patches | None = None) -> AuditReport:
    patches = patches or load_patches()
    findings: list[Finding] = []
    for node in cluster.kube_nodes:
        snap = snapshots.get(node.name)
        if snap is None:
            continue
        findings += location_findings(snap, node, cluster, patches)
        if node.role == CONTROL_PLANE:
            findings += certificate_findings(snap, node, patches)
    state = etcd_state(cluster, snapshots)
    findings += etcd_findings(state, cluster)
    findings += audit_load_balancer(cluster, snapshots)
    facts = tuple(node_facts(n, snapshots.get(n.name), patches) for n in cluster.nodes)
    return AuditReport(cluster.name, cluster.network, facts, tuple(findings),
                       tuple(diagnose(findings, state, cluster)), state)
