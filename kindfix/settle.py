"""The start-up wait: right after Docker hands the nodes back, etcd is often not running yet.

A kind node needs systemd, containerd and the kubelet before its static pods run: tens of seconds
after `docker start` (issue #10). An etcd member that does not answer yet, or that answers
without a leader for the second or two an election takes, says nothing about quorum. So when no
file shows a stale etcd address or certificate (`EtcdState.evidence`) and no member reports a
leader, a repair waits, bounded, before it plans anything for etcd:

- a member reports a leader: quorum intact (the wait ends at once);
- a majority of the members answer and none has a leader for `LEADERLESS_GRACE` seconds: they
  cannot reach each other, quorum is lost;
- otherwise, after `timeout`: still unknown, and unknown is never lost (etcd is left alone).

The bound: kubeadm's etcd startupProbe (24 x 10 s on /health?serializable=false) kills a member
that has no leader after about four minutes, and back-off follows (DOMAIN.md), so the default
wait stays well under that while leaving a slow node (tens of seconds) time to start.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from kindfix import probes
from kindfix.audit import AuditReport, EtcdState, diagnose, etcd_findings, etcd_state
from kindfix.discovery import Cluster
from kindfix.errors import KindfixError
from kindfix.node import Node
from kindfix.observe import NodeSnapshot

DEFAULT_WAIT = 120.0  # seconds; --etcd-start-wait
# An election takes about one election timeout (kubeadm keeps etcd's 1 s) once a majority of
# members run and reach each other; 20 s is many of them, even on a loaded machine.
LEADERLESS_GRACE = 20.0
POLL_INTERVAL = 2.0
PROGRESS_EVERY = 5.0

LEADER, LOST, UNKNOWN = "leader", "lost", "unknown"


@dataclass(frozen=True)
class Settled:
    """How the wait ended: the last state seen, the verdict and how long it took."""

    state: EtcdState
    verdict: str  # leader | lost | unknown
    waited: float


def needs_wait(state: EtcdState) -> bool:
    """No leader seen and no evidence that etcd's membership is broken: it may be starting."""
    return state.quorum is None and not state.evidence and state.size > 0


def poll_etcd(cluster: Cluster, nodes: Mapping[str, Node]) -> EtcdState:
    """Ask every control plane's etcd member at once (the audit probe, nothing else)."""
    cps = cluster.control_planes

    def ask(name: str) -> NodeSnapshot:
        try:
            result = nodes[name].exec(probes.ETCD_PROBE, timeout=30)
        except KindfixError:  # the node is (re)starting: no answer, like a silent member
            return NodeSnapshot(name, "control-plane", {})
        return NodeSnapshot(name, "control-plane", {}, {probes.ETCD_PROBE: result})

    with ThreadPoolExecutor(max_workers=max(1, len(cps))) as pool:
        snaps = {s.name: s for s in pool.map(ask, [cp.name for cp in cps])}
    return etcd_state(cluster, snaps)


def describe(state: EtcdState, elapsed: float) -> str:
    if state.silent:
        return (f"waiting for etcd to start on {state.silent} of {state.size} members, "
                f"{elapsed:.0f} s")
    return (f"waiting for etcd to elect a leader ({len(state.leaderless)} of {state.size} "
            f"members answer without one), {elapsed:.0f} s")


def wait_for_etcd(poll: Callable[[], EtcdState], timeout: float,
                  progress: Callable[[str], None] = lambda _: None, *,
                  grace: float = LEADERLESS_GRACE, interval: float = POLL_INTERVAL,
                  clock: Callable[[], float] | None = None,
                  sleep: Callable[[float], None] | None = None) -> Settled:
    """Poll until a leader appears, a leaderless majority outlasts `grace`, or `timeout` (plus
    at most `grace`, to finish judging a majority that went leaderless late) has passed."""
    clock = clock or time.monotonic
    sleep = sleep or time.sleep
    start = clock()
    leaderless_since: float | None = None
    said_at = -math.inf
    polls = 0
    # bounded in count too: a clock that does not move cannot keep the loop alive
    max_polls = int((timeout + grace) / max(interval, 0.01)) + 2
    while True:
        state = poll()
        polls += 1
        now = clock()
        elapsed = now - start
        if state.quorum is True:
            return Settled(replace(state, waited=elapsed), LEADER, elapsed)
        if state.leaderless_majority:
            leaderless_since = now if leaderless_since is None else leaderless_since
            if now - leaderless_since >= grace:
                return Settled(replace(state, quorum=False, waited=elapsed), LOST, elapsed)
            deadline = start + timeout + grace
        else:
            leaderless_since = None
            deadline = start + timeout
        if now >= deadline or polls >= max_polls:
            return Settled(replace(state, waited=elapsed), UNKNOWN, elapsed)
        if now - said_at >= PROGRESS_EVERY:
            progress(describe(state, elapsed))
            said_at = now
        sleep(max(0.0, min(interval, deadline - now)))


def conclude(report: AuditReport, cluster: Cluster, settled: Settled) -> AuditReport:
    """The report of the observation made after the wait, with what the wait established:
    a majority that stayed leaderless through it has lost quorum (if it still has no leader)."""
    state = replace(report.etcd, waited=settled.waited)
    if settled.verdict == LOST and state.quorum is None and state.leaderless_majority:
        state = replace(state, quorum=False)
    findings = [f for f in report.findings if not f.source.startswith("etcd member list")]
    findings += etcd_findings(state, cluster)
    return replace(report, etcd=state, findings=tuple(findings),
                   diagnosis=tuple(diagnose(findings, state, cluster)))
