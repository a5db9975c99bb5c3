"""Asking the members whether etcd works: has a member a leader (metrics first, then a
linearizable read through the client port), which member is the most up to date, has a new
member joined, does a forced member still run. Used to choose a strategy and to wait for each
of its stages.
"""

from __future__ import annotations

import time

from kindfix import etcd, probes
from kindfix.discovery import ClusterNode
from kindfix.node import Node
from kindfix.nodescripts import script
from kindfix.recovery.state import Recovery


def leader_within(rec: Recovery, seconds: float, give_up_without_leader: float | None = None
                  ) -> Node | None:
    """A member that has a leader, polled for `seconds`. With give_up_without_leader: stop
    early once every member runs (metrics answer) and reports no leader for that long."""
    deadline = time.monotonic() + seconds
    leaderless_since: float | None = None
    while time.monotonic() < deadline:
        # metrics first: the client port of a member without leader hangs until curl gives up
        said = [etcd.metrics(rec.nodes[cp.name]).get("etcd_server_has_leader")
                for cp in rec.cps]
        for cp, has_leader in zip(rec.cps, said):
            if confirmed(rec.nodes[cp.name], has_leader):
                return rec.nodes[cp.name]
        if give_up_without_leader is not None and all(h == 0 for h in said):
            leaderless_since = leaderless_since or time.monotonic()
            if time.monotonic() - leaderless_since >= give_up_without_leader:
                return None
        else:
            leaderless_since = None
        time.sleep(1)
    return None


def has_leader(node: Node) -> bool:
    """Metrics first (they answer at once; the client port of a member without leader hangs
    until curl gives up), then a linearizable status through the leader. While the metrics
    endpoint does not answer (etcd still starting, or none configured) the status alone, with
    a short timeout."""
    return confirmed(node, etcd.metrics(node).get("etcd_server_has_leader"))


def confirmed(node: Node, has_leader: int | None) -> bool:
    """What the metrics said (None: no answer), confirmed through the client port."""
    if has_leader is None:
        return etcd.healthy(node, timeout=1)
    return has_leader == 1 and etcd.healthy(node)


def choose(rec: Recovery) -> ClusterNode:
    """The most up-to-date member: the highest revision (then applied proposals) its metrics
    report; when none answers (every member stopped), the revision observe saw."""
    ranks = {cp.name: _metrics_rank(rec.nodes[cp.name], i) for i, cp in enumerate(rec.cps)}
    if all(r[0] < 0 for r in ranks.values()):  # every member stopped: what observe saw
        ranks = {cp.name: (_observed_revision(rec, cp), -1, -i) for i, cp in enumerate(rec.cps)}
    best = max(rec.cps, key=lambda cp: ranks[cp.name])
    rev = ranks[best.name][0]
    rec.say(f"most up-to-date member: {best.name} (revision "
            f"{rev if rev >= 0 else 'unknown: metrics unavailable, first control plane'})")
    return best


def _metrics_rank(node: Node, order: int) -> tuple[int, int, int]:
    m = etcd.metrics(node)
    return (m.get("etcd_debugging_mvcc_current_revision", -1),
            m.get("etcd_server_proposals_applied_total", -1), -order)


def _observed_revision(rec: Recovery, cp: ClusterNode) -> int:
    snap = rec.ctx.snapshots.get(cp.name)
    out = snap.output(probes.ETCD_PROBE) if snap else None
    if out is None:
        return -1
    probe = probes.parse_etcd_probe(out.text())
    return max(probe.metrics_revision or -1, probe.revision or -1)


def try_add(leader: Node, url: str) -> bool:
    if any(url in m.peer_urls for m in etcd.members(leader)):
        return True
    etcd.member_add(leader, [url])  # refused for ~5 s after a join: "unhealthy cluster"
    return True


def started(leader: Node, url: str) -> bool:
    return any(url in m.peer_urls and m.name for m in etcd.members(leader))


def forced_running(node: Node) -> bool:
    """Whether an etcd started with --force-new-cluster still runs on the node."""
    out = node.exec(["sh", "-c", script("etcd-forced-running")]).text()
    return out.strip() not in ("", "0")
