"""Break a bed the way Docker breaks kind clusters: permuted node IPs, an engine restart.

TESTBED.md: each container gets the lowest free address when it starts, so stopping all nodes
and starting them in a rotated order permutes their IPs deterministically (2,3,1 moves all
three); a single node moves when a placeholder takes its old address first.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from testbed import engine
from testbed.bed import BED_LABEL, OWNER_LABEL, Bed, BedError
from testbed.container import wait_running

STOP_TIMEOUT_S = 10


@dataclass(frozen=True)
class Permutation:
    before: dict[str, str | None]
    after: dict[str, str | None]
    seconds: float

    @property
    def moved(self) -> list[str]:
        return [n for n in self.before if self.before[n] != self.after.get(n)]


def _stop_all(bed: Bed, names: Sequence[str]) -> None:
    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        list(pool.map(lambda n: bed.client.containers.get(n).stop(timeout=STOP_TIMEOUT_S), names))


def permute(bed: Bed, order: Sequence[str] | None = None) -> Permutation:
    """Stop every node, start them in `order` (default: rotated by one), assert IPs moved.

    With the default order every node must move; with an explicit one at least one must.
    The load balancer keeps running (and its address), as it does when only nodes restart.
    """
    t0 = time.monotonic()
    nodes = bed.nodes
    before = {n: ip for n, ip in bed.ips().items() if n in nodes}
    # rotate the nodes ordered by their *current* address, so a bed permuted before moves again
    by_ip = sorted(nodes, key=lambda n: ipaddress.ip_address(before[n] or "0.0.0.0"))
    start = list(order) if order else by_ip[1:] + by_ip[:1]
    if sorted(start) != sorted(nodes):
        raise ValueError(f"order {start} is not a permutation of {nodes}")
    _stop_all(bed, nodes)
    placeholder = None
    if len(nodes) == 1 and not order:
        # one node: occupy its old address first so it must take the next one
        placeholder = bed.client.containers.run(
            bed.client.containers.get(nodes[0]).image,
            entrypoint=["sleep", "300"],
            detach=True,
            name=f"{bed.cluster}-placeholder",
            network=bed.network,
            labels={BED_LABEL: bed.id, OWNER_LABEL: bed.owner},
        )
        wait_running(bed.client, placeholder.name, bed.network)
    try:
        for n in start:
            bed.client.containers.get(n).start()
            wait_running(bed.client, n, bed.network)
    finally:
        if placeholder is not None:
            placeholder.remove(force=True, v=True)
    after = {n: ip for n, ip in bed.ips().items() if n in nodes}
    p = Permutation(before, after, time.monotonic() - t0)
    must_move = nodes if not order else []
    stuck = [n for n in must_move if n not in p.moved]
    if stuck or not p.moved:
        raise BedError(f"permutation did not move {stuck or nodes}: before {before}, after {after}")
    return p


def restart_engine(bed: Bed, settle_s: float = 30.0) -> Permutation:
    """Restart dockerd itself (opt-in: affects every container on the machine).

    Nodes come back by their restart policy in random order; the LB, whose haproxy exits 0 on
    SIGTERM, stays Exited (kind#1562). IPs may or may not move: the result says which did.
    """
    t0 = time.monotonic()
    before = {n: ip for n, ip in bed.ips().items() if n in bed.nodes}
    bed.client = engine.restart_engine()
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline:
        ips = bed.ips()
        if all(ips.get(n) for n in bed.nodes):
            break
        time.sleep(0.5)
    after = {n: ip for n, ip in bed.ips().items() if n in bed.nodes}
    return Permutation(before, after, time.monotonic() - t0)
