"""One etcd recovery's working state over the step context: the members (control planes), the
journal's sub-stages (`etcd:<stage>`, so a killed run continues where it stopped) and notes
(`etcd-strategy=`, `etcd-best=`, `etcd-tool=`), what this process stopped, and the stop signal
of a preparation running beside the certificates. The strategies are functions over it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from kindfix.context import StepContext
from kindfix.discovery import ClusterNode
from kindfix.errors import KindfixError
from kindfix.lanes import map_all
from kindfix.node import NO_SYSTEMCTL
from kindfix.recovery.manifest import (
    MANIFEST,
    PARKED,
    advertised_family,
    etcd_image,
    peer_url,
)

WAIT = 120.0  # seconds for a member to start, lead or join


class NoRestoreTool(KindfixError):
    """The etcd image offers no tool that reads a member's data offline."""


class Cancelled(KindfixError):
    """A preparation stopped because the applier said so."""


class Recovery:
    """One run of a strategy (or of the preparation beside the certificates)."""

    def __init__(self, ctx: StepContext) -> None:
        self.ctx = ctx
        self.rec = ctx.recorder
        self.cps = list(ctx.cluster.control_planes)
        self.nodes = {n.name: ctx.nodes[n.name] for n in self.cps}
        self.cancel: threading.Event | None = None  # a preparation's stop signal
        self.parked_now: set[str] = set()  # members whose etcd this process stopped
        self.from_backup = False  # restoring a `kindfix backup`'s snapshot (`source`)
        self.source: bytes | None = None

    def peer_url(self, cp: ClusterNode) -> str:
        """In the family the member advertised before (the observed, unchanged etcd.yaml)."""
        snap = self.ctx.snapshots.get(cp.name)
        return peer_url(cp, advertised_family(snap.file(MANIFEST) if snap else None))

    def stage(self, key: str) -> bool:
        """True when the sub-stage still has to run."""
        return not self.rec.is_done(f"etcd:{key}")

    def done(self, key: str, save: bool = True) -> None:
        self.rec.mark_done(f"etcd:{key}", save=save)

    def each_saved_once(self, fn: Callable[[ClusterNode], object],
                        members: list[ClusterNode] | None = None) -> list[Any]:
        """each() whose jobs mark their stages done without a save of their own: one journal
        write once every member's job ended, failed or not (a killed run then redoes the last
        stages: each of them is harmless to redo)."""
        try:
            return self.each(fn, members)
        finally:
            self.rec.save()

    def say(self, text: str) -> None:
        self.ctx.say(f"etcd: {text}")

    def backup_dir(self, cp: ClusterNode) -> str:
        return f"{self.rec.backup_dir()}/etcd-{cp.name}"

    def note(self, key: str) -> str | None:
        """The latest value noted under key in the journal."""
        return self.rec.note(key)

    def add_note(self, key: str, value: str, save: bool = True) -> None:
        self.rec.add_note(f"{key}={value}", save=save)

    def each(self, fn: Callable[[ClusterNode], object],
             members: list[ClusterNode] | None = None) -> list[Any]:
        """fn on every member (or those of `members`) at once; every failure is named."""
        return map_all(fn, self.cps if members is None else members, what=lambda cp: cp.name)

    def check(self) -> None:
        """Between the stages of a preparation: stop when the applier said so."""
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("the etcd preparation was stopped")

    def parked(self, cp: ClusterNode) -> bytes:
        """The member's etcd.yaml as it was before the recovery stopped it."""
        node = self.nodes[cp.name]
        raw = node.read_file(PARKED) or node.read_file(MANIFEST)
        if raw is None:
            raise KindfixError(f"{cp.name} has neither {MANIFEST} nor {PARKED}",
                               hint="restore etcd.yaml with `kindfix rollback`")
        return raw

    def keep_manifest(self, cp: ClusterNode) -> None:
        """Recovery rewrites etcd.yaml: keep the original for rollback (nothing to do when the
        files phase already kept it)."""
        node = self.nodes[cp.name]
        if self.rec.has_backup(node, MANIFEST):
            return
        current = node.read_file(MANIFEST)
        if current is not None:
            self.rec.backup_file(node, MANIFEST, current, mode=0o600)

    def image(self) -> str:
        """The etcd image, from etcd.yaml as observed (parked or not), else as it is now."""
        first = self.cps[0].name
        snap = self.ctx.snapshots.get(first)
        observed = snap.file(MANIFEST) if snap else None
        if observed is not None:
            return etcd_image(observed, f"{first}:{MANIFEST}")
        return etcd_image(self.parked(self.cps[0]), f"{first}:{MANIFEST} (or {PARKED})")

    def no_systemctl(self, cp: ClusterNode, out: str) -> None:
        if NO_SYSTEMCTL in out:
            self.say(f"{cp.name} has no systemctl: its kubelet was not stopped after the "
                     "manifest was parked, so a back-off restart of the old etcd may still come "
                     "(the copy is checked and redone if it does)")
