"""Stopping etcd on a member for good and copying its data dir, before either quorum-lost
strategy touches it: the manifest is parked and the kubelet stopped until etcd is to start
again (kindfix/scripts/etcd-park.sh, lib/park.sh says why), then the data dir
is copied once no etcd process is left, checked against the original
(kindfix/scripts/etcd-copy-stopped.sh). Each member's copy is its backup; nothing is deleted.
"""

from __future__ import annotations

from kindfix.discovery import ClusterNode
from kindfix.node import run
from kindfix.nodescripts import script
from kindfix.recovery.manifest import DATA_DIR, MANIFEST, PARKED_DIR
from kindfix.recovery.state import Recovery

PARKED_NOW = "@@kindfix-parked"  # etcd-park.sh: this call parked the manifest


def park_and_copy(rec: Recovery, cp: ClusterNode) -> None:
    """Park and stop, then copy (each a journaled sub-stage)."""
    if rec.stage(f"park:{cp.name}"):
        node = rec.nodes[cp.name]
        rec.say(f"stopping etcd on {cp.name} (manifest parked in {PARKED_DIR}, kubelet "
                "stopped until etcd starts again)")
        rec.keep_manifest(cp)
        out = run(node, ["sh", "-c", script("etcd-park"), "kindfix-park", MANIFEST, PARKED_DIR],
                  timeout=180).text()
        if PARKED_NOW in out:
            rec.parked_now.add(cp.name)
        rec.no_systemctl(cp, out)
        rec.done(f"park:{cp.name}")
    if rec.stage(f"copy:{cp.name}"):  # done: etcd there may already run again
        copy_stopped(rec, cp)
        rec.done(f"copy:{cp.name}")


def copy_stopped(rec: Recovery, cp: ClusterNode) -> None:
    node = rec.nodes[cp.name]
    rec.say(f"copying {cp.name}:{DATA_DIR} to {rec.backup_dir(cp)}/data (verified)")
    run(node, ["sh", "-c", script("etcd-copy-stopped"), "kindfix-copy", DATA_DIR,
               f"{rec.backup_dir(cp)}/data"], timeout=420)
