"""Compares what every component advertises with the nodes' real IPs. Pure: snapshots in,
findings and a diagnosis out.

Every location patches/addresses.yaml marks required is either read and judged, or reported with
status `unknown` and the reason (file missing or unparseable, key or flag not where kubeadm puts
it, a value that is no address): audit never calls a node consistent that it could not read.
A container carrying kind's labels must also look like a kind node, or audit refuses it (see
`require_kind_node`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Container, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from kindfix import probes
from kindfix.addresses import by_family, malformed, node_ips, same_ip
from kindfix.discovery import Cluster, ClusterNode
from kindfix.errors import KindfixError
from kindfix.findings import NA, OK, STALE, UNKNOWN, UNREACHABLE, Finding
from kindfix.loadbalancer import ENVOY_CDS, HAPROXY_CFG, audit_load_balancer
from kindfix.observe import NodeSnapshot
from kindfix.patches import CONTROL_PLANE, LOAD_BALANCER, WORKER, Location, Patches, load_patches
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
    """What the control planes' etcd members said, and what kindfix concludes from it.

    quorum is True when a member has a leader; False when quorum is lost: a majority of the
    members answer and none has a leader, AND a file shows why (a stale etcd address or
    certificate: `evidence`) or it lasted through the start-up wait (settle.py); None when
    unknown: members still starting, or without a leader for an instant. Unknown is never lost.
    """

    quorum: bool | None
    members: tuple[probes.EtcdMember, ...] = ()
    stale_members: tuple[str, ...] = ()  # member names whose peer URLs are stale
    revisions: Mapping[str, int] = field(default_factory=dict)  # node -> revision
    size: int = 0  # members expected: the listed ones, else the control planes
    answering: tuple[str, ...] = ()  # control planes whose etcd answered on any port
    leaderless: tuple[str, ...] = ()  # of those, the ones that said they have no leader
    evidence: tuple[str, ...] = ()  # stale etcd addresses/certificates: why etcd needs work
    moved: tuple[str, ...] = ()  # members the evidence shows at a new address
    waited: float = 0.0  # seconds of start-up wait behind this state (settle.py)

    @property
    def leaderless_majority(self) -> bool:
        """A majority of the members run and none has a leader: either they are still
        electing one (seconds) or they cannot reach each other (quorum lost)."""
        return self.quorum is not True and len(self.leaderless) > self.size // 2

    @property
    def silent(self) -> int:
        """Members that did not answer at all (not started yet, or not running)."""
        return max(0, self.size - len(self.answering))


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

    @property
    def unknown(self) -> tuple[Finding, ...]:
        """What could not be read or judged (never counted as broken, never as consistent)."""
        return tuple(f for f in self.findings if f.status == UNKNOWN)


# Files larger than this are not parsed: the biggest a kind node holds (kubeadm.conf, a manifest)
# is a few KiB, and pure-Python YAML costs ~1 s per 100 KiB.
MAX_FILE_BYTES = 1 << 20

# What a real kind node has, whatever its version: kind's entrypoint, and under /kind/ either
# /kind/version, which the node image build writes and kind itself reads to learn the node's
# Kubernetes version (kind pkg/build/nodeimage/buildcontext.go, pkg/cluster/nodeutils/util.go
# KubeVersion), or /kind/kubeadm.conf, which `kind create cluster` writes on every node. A
# container with neither was not made by kind, whatever its labels say. A missing kubeadm.conf
# on a node that has /kind/version is an `unknown` finding (a required location), not a refusal.
# kubeadm's presence would cost one more exec per node and tells nothing these files do not.
ENTRYPOINT = "/usr/local/bin/entrypoint"
KIND_FILES = ("/kind/version", "/kind/kubeadm.conf")
UNKNOWN_SHOWN = 8  # reasons listed in the diagnosis; -o json has them all
MISSING = "file is missing"
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


def unjudgeable(loc: Location, ref: Ref, value: str) -> str | None:
    """Why a found value cannot be judged (it would otherwise pass as 'no address'), or None."""
    if not ref.text:
        return f"{value!r} is a YAML {'number or boolean' if value else 'scalar'}, not a string"
    if not value.strip():  # kubeadm and kind never write an empty address
        return "empty value"
    bad = malformed(value)
    if bad:
        return f"malformed address {bad[0]!r}"
    if loc.format == "text":
        try:
            ip = ipaddress.ip_address(value)
        except ValueError:
            return f"{value[:40]!r} is not an IPv{loc.family or 4} address"
        if ip.version != (loc.family or 4):
            return f"{value!r} is not an IPv{loc.family or 4} address"
    return None


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
    """The parsed file, None when it is absent; KindfixError (naming node and file) when it is
    too big or does not parse."""
    if path not in cache:
        raw = snapshot.file(path)
        if raw is None:
            return None
        source = f"{snapshot.name}:{path}"
        if len(raw) > MAX_FILE_BYTES:
            raise KindfixError(f"{source} is {len(raw)} bytes; a kind node's file is a few KiB "
                               f"(kindfix reads at most {MAX_FILE_BYTES})",
                               hint="restore it from a backup or `kindfix rollback`")
        cache[path] = parse_document(fmt, raw, source, editable)
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
    """A finding per value found, and an `unknown` one per required location not found (one per
    file when the whole file is missing or unparseable)."""
    findings: list[Finding] = []
    docs: dict[str, Document] = {}
    unreadable: dict[str, str] = {}  # file -> why
    satisfied: set[str] = set()
    expected = ",".join(node.ips()) or "-"
    for loc in patches.locations_for(node.role):
        if loc.file in unreadable:
            continue
        try:
            doc = parse_file(snapshot, loc.file, loc.format, docs)
        except KindfixError as e:
            unreadable[loc.file] = e.message
            continue
        if doc is None:
            unreadable[loc.file] = MISSING
            continue
        for ref in doc.find(loc.path):
            value = ref.get()
            why = unjudgeable(loc, ref, value)
            if why is not None:
                status, actual = UNKNOWN, expected
            else:
                status, actual = judge(loc, value, node, cluster)
            if loc.requirement is not None:
                satisfied.add(loc.requirement)
            findings.append(Finding(node.name, loc.component, f"{loc.file}#{loc.id}", value[:200],
                                    actual, status, why or ""))
    return findings + _not_read(node, patches, satisfied, unreadable, expected)


def _not_read(node: ClusterNode, patches: Patches, satisfied: set[str],
              unreadable: Mapping[str, str], expected: str) -> list[Finding]:
    """`unknown` findings: each required location not found, and each file that could not be
    parsed (one finding per file, however much it should hold)."""
    findings: list[Finding] = []
    reported: set[str] = set()

    def file_finding(loc: Location) -> None:
        if loc.file not in reported:
            reported.add(loc.file)
            why = unreadable[loc.file]
            findings.append(Finding(node.name, loc.component, loc.file,
                                    "missing" if why == MISSING else "unreadable", expected,
                                    UNKNOWN, why))

    for requirement, locs in patches.requirements_for(node.role).items():
        if requirement in satisfied:
            continue
        if locs[0].file in unreadable:
            file_finding(locs[0])
            continue
        paths = " or ".join(lc.path for lc in locs)
        findings.append(Finding(node.name, locs[0].component, f"{locs[0].file}#{requirement}",
                                "not found", expected, UNKNOWN,
                                f"no value at {paths} (kubeadm/kind always write it: the file was "
                                "edited or restructured)"))
    # an optional file (old-ipv4) may be absent, but one that is there and cannot be parsed
    # holds something nobody can judge
    for loc in patches.locations_for(node.role):
        if unreadable.get(loc.file, MISSING) != MISSING:
            file_finding(loc)
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
            if len(raw) > MAX_FILE_BYTES:
                raise KindfixError(f"{len(raw)} bytes, more than any certificate")
            cert = parse_pem_certificates(raw)[0]
        except (KindfixError, IndexError) as e:
            # not "stale": nothing says its SANs are wrong, and regenerating a certificate
            # kindfix cannot read would replace something it does not understand
            why = e.message if isinstance(e, KindfixError) else "no certificate"
            findings.append(Finding(node.name, spec.component, spec.file, "unparseable",
                                    wanted or "-", UNKNOWN, f"not a PEM certificate: {why}"))
            continue
        sans = ",".join(cert.sans_ip)
        missing = [ip for ip in (wanted,) if ip and not any(same_ip(ip, s) for s in cert.sans_ip)]
        findings.append(Finding(node.name, spec.component, f"{spec.file}#SAN", sans or "-",
                                wanted or "-", STALE if missing else OK,
                                f"does not cover {', '.join(missing)}" if missing else ""))
    return findings


def etcd_state(cluster: Cluster, snapshots: Mapping[str, NodeSnapshot],
               findings: Sequence[Finding] = ()) -> EtcdState:
    """The members' answers, judged: a leader anywhere is quorum; a leaderless majority is
    quorum lost only with evidence in `findings` (stale etcd addresses or certificates) or in
    the member list; anything else is unknown (settle.py waits it out before a repair)."""
    answers: dict[str, probes.EtcdProbe] = {}
    for node in cluster.control_planes:
        snap = snapshots.get(node.name)
        result = snap.output(probes.ETCD_PROBE) if snap else None
        if result is not None:
            answers[node.name] = probes.parse_etcd_probe(result.text())
    if not answers:
        return EtcdState(quorum=None, size=len(cluster.control_planes))
    listing = next((p for p in answers.values() if p.reachable and p.members), None)
    with_leader = [n for n, p in answers.items()
                   if p.has_leader or (p.reachable and p.leader not in (None, "", "0"))]
    answering = tuple(n for n, p in answers.items() if p.reachable or p.has_leader is not None
                      or p.health is not None)
    leaderless = tuple(n for n in answering if n not in with_leader)
    revisions = {n: r for n, p in answers.items()
                 if (r := p.revision or p.metrics_revision) is not None}
    members = listing.members if listing else ()
    stale = tuple(m.name for m in members if not _member_current(m, cluster))
    evidence = tuple(dict.fromkeys(
        [f"{f.node}:{f.source}" for f in findings if f.component == "etcd" and f.status == STALE]
        + [f"etcd member list#{name}.peerURLs" for name in stale]))
    moved = tuple(dict.fromkeys(
        [f.node for f in findings if f.component == "etcd" and f.status == STALE
         and cluster.node(f.node) is not None] + list(stale)))
    size = len(members) or len(cluster.control_planes)
    state = EtcdState(quorum=True if with_leader else None, members=members,
                      stale_members=stale, revisions=revisions, size=size, answering=answering,
                      leaderless=leaderless, evidence=evidence, moved=moved)
    if state.leaderless_majority and evidence:
        return replace(state, quorum=False)
    return state


def _member_current(member: probes.EtcdMember, cluster: Cluster) -> bool:
    node = cluster.node(member.name)
    if node is None:
        return False
    current = by_family(node.ipv4, node.ipv6)
    lits = [lit for url in member.peer_urls for lit in node_ips(url)]
    return bool(lits) and all(same_ip(lit.text, current.get(lit.family)) for lit in lits)


def etcd_findings(state: EtcdState, cluster: Cluster) -> list[Finding]:
    if not state.members:
        if state.quorum is not False:  # unknown (still starting?) is not a finding
            return []
        return [Finding(n.name, "etcd", "etcd member list", "?", ",".join(n.ips()), UNREACHABLE,
                        "no leader: the member list cannot be read (quorum lost)")
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
    elif state.quorum is None and state.leaderless_majority:
        lines.append(f"etcd: {len(state.leaderless)} of {state.size} members run without a "
                     "leader (still electing one, or quorum lost: a repair waits to tell)")
    elif state.quorum is None and state.silent:
        lines.append(f"etcd: {state.silent} of {state.size} members do not answer (still "
                     "starting?): unknown, not broken")
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
    unknown = [f for f in findings if f.status == UNKNOWN]
    if unknown:
        nodes = sorted({f.node for f in unknown})
        lines.append(f"{len(unknown)} location(s) on {len(nodes)} node(s) could not be read or "
                     f"judged ({', '.join(nodes)}): not known to be consistent")
        # the reasons, which the findings table has no column for
        lines += [f"unknown: {f.node}:{f.source}: {f.detail}" for f in unknown[:UNKNOWN_SHOWN]]
        if len(unknown) > UNKNOWN_SHOWN:
            lines.append(f"unknown: ... and {len(unknown) - UNKNOWN_SHOWN} more (-o json)")
    if not lines:
        lines.append("all addresses consistent")
    return list(dict.fromkeys(lines))


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
