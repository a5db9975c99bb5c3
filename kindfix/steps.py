"""The vocabulary of a repair plan: what kind of work a step is, and how etcd is repaired.

A leaf module (it imports nothing of kindfix), so the planner, the journal, the applier and the
etcd recovery can all name these without importing one another.

Both are string enums whose values are the strings kindfix has always written (plan `-o json`,
journals on the nodes): `StepKind.ETCD == "etcd"`, and a dict keyed by the strings is looked up
by the members and the other way round.
"""

from __future__ import annotations

import sys
from enum import Enum

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # pragma: no cover - kindfix still installs on Python 3.9 (pyproject requires-python)
    class StrEnum(str, Enum):
        """enum.StrEnum before Python 3.11: a member prints as its value."""

        def __str__(self) -> str:
            return str(self.value)


class StepKind(StrEnum):
    """What a plan step does; in the order a plan lists them."""

    WRITE_FILE = "write-file"  # rewrite one file (compare-and-swap against what was read)
    REGEN_CERT = "regen-cert"  # kubeadm init phase certs <phase>, the old pair kept aside
    RESTART_POD = "restart-pod"  # a static pod that reads a changed file only at start
    RESTART_KUBELET = "restart-kubelet"
    ETCD = "etcd"  # etcd membership, with one of the strategies below
    START_LB = "start-lb"  # start the external load balancer container
    FIX_LB = "fix-lb"  # rewrite its config and reload it


class EtcdStrategy(StrEnum):
    """How the plan repairs etcd membership (Plan.etcd_strategy; an etcd step's phase)."""

    NONE = "none"  # no etcd work: the plan has no etcd step
    MEMBER_UPDATE = "member-update"  # quorum intact: update each stale peer URL
    FORCE_NEW_CLUSTER = "force-new-cluster"  # the best member alone, then the others join
    SNAPSHOT_RESTORE = "snapshot-restore"  # every member restored from the best member's data
    DECIDE = "decide"  # etcd not answering yet: chosen after the manifests are fixed
    RESTORE_BACKUP = "restore-backup"  # `kindfix restore`: snapshot restore from a backup


# What `--etcd-strategy` accepts: "auto" lets the plan choose from what the members said.
AUTO = "auto"
REQUESTABLE: tuple[str, ...] = (AUTO, EtcdStrategy.MEMBER_UPDATE.value,
                                EtcdStrategy.FORCE_NEW_CLUSTER.value,
                                EtcdStrategy.SNAPSHOT_RESTORE.value)
