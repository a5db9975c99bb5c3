"""Releases leader-election Leases whose holder is gone, as client-go's own release does.

After a repair, the kube-controller-manager and kube-scheduler that run are new processes, but the
Leases kube-system/<component> in etcd still name the holders from before Docker restarted the
nodes. client-go (tools/leaderelection, tryAcquireOrRenew) lets a candidate take a Lease held by
another only once it has seen the record unchanged for leaseDurationSeconds (15 s) on its own
clock, so every such repair leaves the cluster without a controller-manager and scheduler for 15 s
after the apiserver first answers (verify waits for that).

A record whose renewTime is older than its duration has no live holder: a leader renews every
retry period (2 s) and stops leading when it cannot renew within its renew deadline (10 s; the
controller-manager and scheduler then exit). kindfix writes, for that holder, the record
LeaderElector.release writes on a clean shutdown (holderIdentity "", leaseDurationSeconds 1,
acquire/renew time now, transitions kept), with the resourceVersion it read: a holder that renewed
in between makes the write fail (409 Conflict) and nothing changes. A candidate takes a released
Lease at its next try. Age is judged with the node's clock against renewTime, written by a holder
on a node of the same cluster: kind's nodes share the host's clock (one kernel), so no slack is
added; the node's clock is read (`date +%s`, truncated) after the record, and the write comes
later still, so the record is older than its duration when it is written over.

A record renewed for the last time before its holder's node was started again (Docker's
StartedAt, from discovery) has no live holder either, whatever its age: the process that renewed
it ran in the container before, and stopping a container ends every process in it.

The Leases are read (and written) through the control planes' apiservers in turn, one request
each: right after a repair the first control plane's apiserver is not always the first to answer
(on the test bed one took 2.2 s for a GET that the others served in 0.3 s), and one that is slow
or down then costs one poll, not the release.

Best effort: a Lease that cannot be read or written is left to client-go's own 15 s; nothing here
fails a repair. Each release is said as progress and kept in the run's journal (the old record).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kindfix.discovery import Cluster
from kindfix.kubeapi import (
    ADMIN_CONF,
    format_micro_time,
    holder_node,
    kube_request,
    lease_path,
    micro_time,
    node_server,
)
from kindfix.node import Node
from kindfix.verify import ELECTED

POLL_S = 0.5


def released_record(lease: dict[str, Any], now: float) -> dict[str, Any]:
    """Pure: `lease` as client-go's LeaderElector.release leaves it (same resourceVersion, so the
    apiserver refuses it if the holder renewed after it was read)."""
    spec = dict(lease.get("spec") or {})
    spec.update(holderIdentity="", leaseDurationSeconds=1, acquireTime=format_micro_time(now),
                renewTime=format_micro_time(now))
    return {**lease, "spec": spec}


def gone_holder(lease: dict[str, Any], now: float, holders: Sequence[str],
                started: Mapping[str, float | None] | None = None) -> str | None:
    """Pure: the holder of `lease` when it runs on one of `holders` (node names) and has not
    renewed for longer than the lease lasts, or last renewed before its node was started again
    (`started`: node name -> when Docker last started it), else None."""
    spec = lease.get("spec") or {}
    if holder_node(spec) not in holders:
        return None
    renewed = micro_time(str(spec.get("renewTime") or ""))
    duration = float(spec.get("leaseDurationSeconds") or 15)
    if renewed is None:
        return None
    if now - renewed <= duration and not restarted_since(spec, renewed, started or {}):
        return None
    return str(spec["holderIdentity"])


def restarted_since(spec: dict[str, Any], renewed: float,
                    started: Mapping[str, float | None]) -> bool:
    """Pure: the holder's node was started (by Docker) after the holder last renewed: the
    process that renewed ran in the container before, and a container stop ends every process
    in it. A holder started since then renews after its start (every 2 s once it leads), so its
    renewTime is later. One clock: the containers and Docker share the host's kernel."""
    start = started.get(holder_node(spec) or "")
    return start is not None and start > renewed


class LeaseReleaser:
    """Watches the elected components' Leases for up to `wait` seconds (until each is held by a
    live holder or released) and releases those whose holder is gone. Runs beside the rest of
    a repair, from when its etcd members are started again (`due`), and beside verify."""

    def __init__(self, cluster: Cluster, nodes: Mapping[str, Node], say: Callable[[str], None],
                 keep: Callable[[str], None], wait: float,
                 due: threading.Event | None = None) -> None:
        """`due`: it begins once that is set (the repair's etcd members started), if given."""
        self._via = [(nodes[cp.name], node_server(cp.name)) for cp in cluster.control_planes]
        self._turn = itertools.count()  # next() is atomic: the two Leases' threads share it
        self._holders = [cp.name for cp in cluster.control_planes]
        self._started = {cp.name: cp.started_at for cp in cluster.control_planes}
        self._say, self._keep, self._wait = say, keep, wait
        self._stop = threading.Event()
        self._due = due
        self._thread = threading.Thread(target=self.run, name="kindfix-lease-release",
                                        daemon=True)
        self.released: list[str] = []
        self._first_seen: dict[str, Any] = {}

    def start(self) -> LeaseReleaser:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def run(self) -> None:
        while self._due is not None and not self._due.is_set() and not self._stop.is_set():
            self._due.wait(POLL_S)  # bounded: stop() ends it, whatever becomes of the repair
        pending = [component for component, _ in ELECTED]
        deadline = time.monotonic() + self._wait
        with ThreadPoolExecutor(max_workers=len(pending)) as pool:  # each Lease on its own
            while pending and not self._stop.is_set() and time.monotonic() < deadline:
                settled = list(pool.map(self._settle, pending))
                pending = [c for c, done in zip(pending, settled, strict=True) if not done]
                if pending:
                    self._stop.wait(POLL_S)

    def _read(self, component: str, node: Node, server: str
              ) -> tuple[dict[str, Any] | None, float]:
        """The Lease (empty when the answer is no Lease object) and the node's clock; None while
        the apiserver does not answer."""
        got = kube_request(node, ADMIN_CONF, lease_path(component), server)
        if got.status != "200" or got.now is None:
            return None, 0.0
        try:
            lease = json.loads(got.body)
        except ValueError:
            lease = {}
        return (lease if isinstance(lease, dict) else {}), got.now

    def _settle(self, component: str) -> bool:
        """True once the component's Lease needs nothing from us: renewed since we first read it
        (a live holder), released, held by no control plane of this cluster, or not a Lease."""
        node, server = self._via[next(self._turn) % len(self._via)]  # the next one in turn
        lease, now = self._read(component, node, server)
        if lease is None:
            return False  # apiserver not answering yet: look again
        spec = lease.get("spec") or {}
        first = self._first_seen.setdefault(component, spec.get("renewTime"))
        if holder_node(spec) not in self._holders or spec.get("renewTime") != first:
            return True
        holder = gone_holder(lease, now, self._holders, self._started)
        if holder is None:
            return False  # renewed lately by a holder that may be alive: until it renews or not
        body = json.dumps(released_record(lease, now)).encode()
        put = kube_request(node, ADMIN_CONF, lease_path(component), server, "PUT", body)
        if put.status != "200":
            return put.status == "409"  # renewed or taken meanwhile: someone is alive
        renewed = micro_time(str(spec.get("renewTime") or "")) or 0.0
        self._keep(f"lease-released:{component}={json.dumps(spec, sort_keys=True)}")
        why = (f"last renewed it {now - renewed:.0f} s ago, before {holder_node(spec)} was "
               "started again" if restarted_since(spec, renewed, self._started) else
               f"has not renewed it for {now - renewed:.0f} s")
        self._say(f"released the Lease kube-system/{component}: its holder {holder} {why} "
                  "(client-go would wait up to 15 s more)")
        self.released.append(component)
        return True
