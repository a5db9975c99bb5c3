"""`kindfix etcd members|health`: every etcd member as each control plane sees it, with or
without quorum, so a user can tell at a glance which member is most up to date and why quorum is
lost. Pure: built from the same snapshots (and audit report) as `kindfix audit`.

Without quorum a member's client port hangs and the member list cannot be asked (etcd FAQ); each
member's own metrics on 2381 still answer (revision, applied index, has-leader), and its
manifest says which peer URL it advertises. Rows say where each value came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kindfix import probes
from kindfix.addresses import node_ips, same_ip
from kindfix.audit import AuditReport, audit
from kindfix.discovery import Cluster, ClusterNode
from kindfix.findings import STALE
from kindfix.observe import NodeSnapshot

PEER_URL_SOURCE = "/etc/kubernetes/manifests/etcd.yaml#etcd.initial-advertise-peer-urls"
CLIENT_URL_SOURCE = "/etc/kubernetes/manifests/etcd.yaml#etcd.advertise-client-urls"

# what a member is doing, from what it answered
SERVING = "serving"  # has a leader and answered on its client port
NO_LEADER = "no leader"  # its metrics say it has no leader: it cannot serve
STARTING = "not answering"  # no metrics yet: not started, starting, or crash-looping
STOPPED = "node stopped"
NOT_PROBED = "not probed"


@dataclass(frozen=True)
class MemberRow:
    node: str  # the control plane this member runs on
    node_ip: str  # its current address in the family etcd advertises
    state: str  # SERVING | NO_LEADER | STARTING | STOPPED | NOT_PROBED
    member_id: str | None
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    urls_from: str  # "member list" (etcd's own data) or "etcd.yaml" (what the node advertises)
    urls_current: bool | None  # every URL literal is the node's current IP
    is_leader: bool | None
    has_leader: bool | None
    raft_term: int | None
    raft_index: int | None  # raftIndex from status, else applied proposals from metrics
    revision: int | None
    db_size: int | None
    seen_by: tuple[str, ...]  # control planes whose member list includes this member
    most_up_to_date: bool
    notes: tuple[str, ...]


@dataclass(frozen=True)
class ListView:
    """The member list one control plane returned, or why it returned none."""

    node: str
    members: tuple[str, ...]  # member names (or IDs) in its list
    cluster_id: str | None
    error: str | None


@dataclass(frozen=True)
class EtcdView:
    cluster: str
    quorum: bool | None  # as audit concludes it: None is unknown, never lost
    members: tuple[MemberRow, ...]
    views: tuple[ListView, ...]
    diagnosis: tuple[str, ...]

    __render_properties__ = ("healthy",)

    @property
    def healthy(self) -> bool:
        return self.quorum is True and all(
            m.state == SERVING and m.urls_current for m in self.members)


def _probe(snapshot: NodeSnapshot | None) -> probes.EtcdProbe | None:
    result = snapshot.output(probes.ETCD_PROBE) if snapshot else None
    return probes.parse_etcd_probe(result.text()) if result is not None else None


def _advertised(report: AuditReport, node: str, source: str) -> tuple[str, ...]:
    for f in report.findings:
        if f.node == node and f.source == source and f.advertised not in ("", "-", "?"):
            return tuple(u for u in f.advertised.split(",") if u)
    return ()


def _current(urls: tuple[str, ...], node: ClusterNode) -> bool | None:
    lits = [lit for url in urls for lit in node_ips(url)]
    if not lits:
        return None
    return all(any(same_ip(lit.text, ip) for ip in node.ips()) for lit in lits)


def _state(node: ClusterNode, probe: probes.EtcdProbe | None) -> str:
    if not node.running:
        return STOPPED
    if probe is None:
        return NOT_PROBED
    if probe.reachable and probe.leader not in (None, "", "0"):
        return SERVING
    if probe.has_leader is False:
        return NO_LEADER
    if probe.has_leader is None and probe.health is None:
        return STARTING
    return SERVING if probe.reachable else NO_LEADER


def _progress(p: probes.EtcdProbe | None) -> tuple[int, int]:
    if p is None:
        return (-1, -1)
    revision = p.revision if p.revision is not None else p.metrics_revision
    index = p.raft_index if p.raft_index is not None else p.applied_index
    return (revision if revision is not None else -1, index if index is not None else -1)


def _notes(report: AuditReport, node: ClusterNode, row_urls: tuple[str, ...],
           current: bool | None, family_ip: str) -> tuple[str, ...]:
    notes = []
    if current is False:
        notes.append(f"peer URL {','.join(row_urls)} is not this node's address {family_ip}")
    for f in report.findings:
        if f.node == node.name and f.component == "etcd" and f.status == STALE \
                and "#SAN" in f.source:
            name = f.source.split("#")[0].rsplit("/", 1)[-1]
            notes.append(f"{name} does not cover {f.actual}")
    return tuple(notes)


def _family_ip(node: ClusterNode, urls: tuple[str, ...]) -> str:
    lits = [lit for url in urls for lit in node_ips(url)]
    if lits and lits[0].family == 6 and node.ipv6:
        return node.ipv6
    return node.ipv4 or node.ipv6 or "-"


def etcd_view(cluster: Cluster, snapshots: Mapping[str, NodeSnapshot],
              report: AuditReport | None = None) -> EtcdView:
    report = report or audit(cluster, snapshots)
    answers = {cp.name: _probe(snapshots.get(cp.name)) for cp in cluster.control_planes}
    listed: dict[str, probes.EtcdMember] = {}
    views = []
    for cp in cluster.control_planes:
        p = answers[cp.name]
        if p is not None and p.reachable:
            views.append(ListView(cp.name, tuple(m.name or m.id for m in p.members),
                                  p.cluster_id, None))
            for m in p.members:
                listed.setdefault(m.name, m)
        else:
            why = "node stopped" if not cp.running else (
                p.error if p is not None and p.error else "not probed")
            views.append(ListView(cp.name, (), None, why))
    best = max((_progress(p) for p in answers.values()), default=(-1, -1))
    rows = []
    for cp in cluster.control_planes:
        p = answers[cp.name]
        member = listed.get(cp.name)
        if member is not None:
            peer, client, source = member.peer_urls, member.client_urls, "member list"
        else:
            peer = _advertised(report, cp.name, PEER_URL_SOURCE)
            client = _advertised(report, cp.name, CLIENT_URL_SOURCE)
            source = "etcd.yaml"
        current = _current(peer + client, cp)
        family_ip = _family_ip(cp, peer)
        revision, index = _progress(p)
        rows.append(MemberRow(
            node=cp.name, node_ip=family_ip, state=_state(cp, p),
            member_id=member.id if member else (p.member_id if p else None),
            peer_urls=peer, client_urls=client, urls_from=source, urls_current=current,
            is_leader=p.is_leader if p else None, has_leader=p.has_leader if p else None,
            raft_term=p.raft_term if p else None,
            raft_index=index if index >= 0 else None,
            revision=revision if revision >= 0 else None,
            db_size=p.db_size if p else None,
            seen_by=tuple(v.node for v in views if cp.name in v.members),
            most_up_to_date=best >= (0, 0) and (revision, index) == best,
            notes=_notes(report, cp, peer, current, family_ip)))
    for name, m in listed.items():  # listed members with no control plane of that name
        if cluster.node(name) is None:
            rows.append(MemberRow(name or m.id, "-", "unknown node", m.id, m.peer_urls,
                                  m.client_urls, "member list", None, None, None, None, None,
                                  None, None, tuple(v.node for v in views
                                                    if (name or m.id) in v.members),
                                  False, ("member has no node of that name in this cluster",)))
    return EtcdView(cluster.name, report.etcd.quorum, tuple(rows), tuple(views),
                    _diagnose(report.etcd.quorum, rows, views))


def _diagnose(quorum: bool | None, rows: list[MemberRow], views: list[ListView]
              ) -> tuple[str, ...]:
    lines = []
    size = len(rows)
    serving = [r.node for r in rows if r.state == SERVING]
    if quorum is True:
        lines.append(f"quorum: yes ({len(serving)} of {size} members serving)")
    elif quorum is False:
        lines.append(f"quorum: LOST ({size - len(serving)} of {size} members cannot serve; "
                     f"{size // 2 + 1} needed)")
    else:
        leaderless = [r.node for r in rows if r.state == NO_LEADER]
        silent = [r.node for r in rows if r.state in (STARTING, NOT_PROBED)]
        why = []
        if leaderless:
            why.append(f"{len(leaderless)} answer without a leader: electing one, or unable to "
                       "reach each other")
        if silent:
            why.append(f"{len(silent)} not answering yet: starting, or crash-looping")
        lines.append(f"quorum: unknown ({'; '.join(why) or 'no member answered'}); nothing in "
                     "the files shows it lost: ask again in a few seconds")
    for r in rows:
        for note in r.notes:
            lines.append(f"{r.node}: {note}")
    ids = {v.cluster_id for v in views if v.cluster_id}
    if len(ids) > 1:
        lines.append(f"members report {len(ids)} different cluster IDs: {', '.join(sorted(ids))}")
    best = [r.node for r in rows if r.most_up_to_date]
    if best:
        lines.append(f"most up to date: {', '.join(best)} (highest revision, then raft index)")
    return tuple(lines)
