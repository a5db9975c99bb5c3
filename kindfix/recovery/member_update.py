"""member-update: quorum is intact, so the cluster itself is asked to change each stale member's
peer URL (etcd's /v3/cluster/member/update through a member with a leader). Each data dir is
copied first while etcd runs (kindfix/scripts/etcd-copy-live.sh: not compared), then
every member restarts in turn to pick up its regenerated certificates.
"""

from __future__ import annotations

from kindfix import etcd
from kindfix.discovery import ClusterNode
from kindfix.errors import KindfixError
from kindfix.node import RESTART_PODS, run
from kindfix.nodescripts import script
from kindfix.recovery import state
from kindfix.recovery.leader import has_leader, leader_within
from kindfix.recovery.manifest import DATA_DIR
from kindfix.recovery.state import Recovery


def member_update(rec: Recovery) -> None:
    leader = leader_within(rec, state.WAIT)
    if leader is None:
        raise KindfixError("etcd has no leader, so member update is impossible",
                           hint="rerun with --etcd-strategy snapshot-restore (or "
                                "force-new-cluster, which also keeps WAL-only writes)")
    for cp in rec.cps:
        if rec.stage(f"copy:{cp.name}"):
            rec.say(f"copying {cp.name}'s data dir to {rec.backup_dir(cp)}/data")
            run(rec.nodes[cp.name], ["sh", "-c", script("etcd-copy-live"), "kindfix-copy",
                                     DATA_DIR, f"{rec.backup_dir(cp)}/data"], timeout=300)
            rec.done(f"copy:{cp.name}")
    for member in etcd.members(leader):
        node = rec.ctx.cluster.node(member.name)
        if node is None:
            continue
        want = [rec.peer_url(node)]
        if list(member.peer_urls) != want:
            old = ",".join(member.peer_urls)
            rec.say(f"member {member.name}: peer URL {old} -> {want[0]}")
            etcd.member_update(leader, member.id, want)
    for cp in rec.cps:  # pick up regenerated certificates, one member at a time
        if rec.stage(f"restart:{cp.name}"):
            _restart_member(rec, cp)
            rec.done(f"restart:{cp.name}")


def _restart_member(rec: Recovery, cp: ClusterNode) -> None:
    member = rec.nodes[cp.name]
    run(member, ["sh", "-c", RESTART_PODS, "kindfix-restart", "etcd"])
    etcd.wait_until(lambda: has_leader(member), f"etcd on {cp.name} to be healthy", state.WAIT,
                    0.5)
