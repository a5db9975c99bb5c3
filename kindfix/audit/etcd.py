"""etcd as its members describe it: quorum, membership, and whose peer URLs are stale."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from kindfix import probes
from kindfix.addresses import by_family, node_ips, same_ip
from kindfix.discovery import Cluster
from kindfix.findings import OK, STALE, UNREACHABLE, Finding
from kindfix.observe import NodeSnapshot


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
