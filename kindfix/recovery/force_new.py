"""force-new-cluster: quorum is lost. Stop etcd everywhere and copy every data dir, start the
most up-to-date member with --force-new-cluster, fix its own peer URL, restart it without the
flag, then re-add the others one by one as new members on their current addresses (etcd
op-guide/recovery; kubespray's recover_lost_quorum role does the same dance). Keeps writes
that only reached the WAL, which a snapshot restore would lose.
"""

from __future__ import annotations

import time

from kindfix import etcd, kubelet
from kindfix.discovery import ClusterNode
from kindfix.node import run
from kindfix.nodescripts import script
from kindfix.recovery import state
from kindfix.recovery.leader import choose, forced_running, has_leader, started, try_add
from kindfix.recovery.manifest import DATA_DIR, MANIFEST, PARKED, set_flags
from kindfix.recovery.state import Recovery
from kindfix.recovery.stopping import park_and_copy


def force_new_cluster(rec: Recovery) -> None:
    best_name = rec.note("etcd-best")
    if best_name is None:
        best_name = choose(rec).name
        rec.add_note("etcd-best", best_name)
    best = next(cp for cp in rec.cps if cp.name == best_name)
    others = [cp for cp in rec.cps if cp.name != best.name]
    # every member at once: stop it, then copy its data dir (each node independently)
    rec.each(lambda cp: park_and_copy(rec, cp))
    start_forced(rec, best)
    for cp in others:
        re_add(rec, best, cp)
    for cp in rec.cps:
        rec.nodes[cp.name].exec(["rm", "-f", PARKED])


def start_forced(rec: Recovery, best: ClusterNode) -> None:
    """The best member alone, forced, then its peer URL fixed, then unforced."""
    node = rec.nodes[best.name]
    url = rec.peer_url(best)
    base = {"--initial-cluster": f"{best.name}={url}", "--initial-cluster-state": None}
    if rec.stage("forced"):
        rec.say(f"starting {best.name} with --force-new-cluster")
        node.write_file(MANIFEST, set_flags(rec.parked(best), {
            **base, "--force-new-cluster": ""}, f"{best.name}:{PARKED}"), mode=0o600)
        kubelet.restart(node, "so it starts the forced etcd at once", rec.say)
        etcd.wait_until(lambda: has_leader(node), f"etcd on {best.name} to lead", state.WAIT,
                        0.5)
        rec.done("forced")
    if rec.stage("self-update"):
        for member in etcd.members(node):
            if list(member.peer_urls) != [url]:
                rec.say(f"member {best.name}: peer URL {','.join(member.peer_urls)} -> {url}")
                etcd.member_update(node, member.id, [url])
        rec.done("self-update")
    if rec.stage("unforced"):
        rec.say(f"restarting {best.name} without --force-new-cluster")
        node.write_file(MANIFEST, set_flags(rec.parked(best), {
            **base, "--force-new-cluster": None}, f"{best.name}:{PARKED}"), mode=0o600)
        # a changed manifest: a kubelet without an API server would keep the forced pod
        kubelet.refresh(node, ["etcd"], rec.say)
        time.sleep(2)  # let the kubelet replace the forced instance before asking
        etcd.wait_until(lambda: has_leader(node) and not forced_running(node),
                        f"etcd on {best.name} to come back", state.WAIT)
        rec.done("unforced")


def re_add(rec: Recovery, best: ClusterNode, cp: ClusterNode) -> None:
    """cp joins the forced cluster as a new member, its old member dir set aside."""
    if not rec.stage(f"added:{cp.name}"):
        return
    leader = rec.nodes[best.name]
    url = rec.peer_url(cp)
    members = etcd.members(leader)
    if not any(url in m.peer_urls for m in members):
        rec.say(f"adding {cp.name} as a new member ({url})")
        etcd.wait_until(lambda: try_add(leader, url), f"etcd to accept {cp.name}", 60, 2)
        members = etcd.members(leader)
    node = rec.nodes[cp.name]
    run(node, ["sh", "-c", script("etcd-set-aside"), "kindfix-aside", DATA_DIR,
               rec.backup_dir(cp)])
    initial = ",".join(f"{m.name or cp.name}={m.peer_urls[0]}" for m in members if m.peer_urls)
    node.write_file(MANIFEST, set_flags(rec.parked(cp), {
        "--initial-cluster": initial, "--initial-cluster-state": "existing",
        "--force-new-cluster": None}, f"{cp.name}:{PARKED}"), mode=0o600)
    kubelet.restart(node, "so it starts etcd as a new member at once", rec.say)
    etcd.wait_until(lambda: started(leader, url) and has_leader(node),
                    f"etcd on {cp.name} to join", state.WAIT)
    rec.say(f"{cp.name} joined")
    rec.done(f"added:{cp.name}")
