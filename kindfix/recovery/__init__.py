"""Repairing etcd membership after the node IPs moved: one module per strategy, and the parts
they share. Read top-down from strategy.py (which strategy, and when):

- strategy.py: the etcd step's entry, `repair(ctx, strategy)`.
- member_update.py, force_new.py, snapshot.py: the three strategies.
- preparation.py: the snapshot restore's first half beside the certificates, and its undo.
- stopping.py: parking etcd and copying a stopped member's data dir.
- leader.py: asking the members (leader, most up to date, joined).
- manifest.py: etcd.yaml (its paths, flags, image, peer URL).
- state.py: one recovery's members, journaled sub-stages and notes over the step context.

The node-side scripts are kindfix/scripts/etcd-*.sh. Every sub-stage is journaled, so a killed
run continues where it stopped.
"""
