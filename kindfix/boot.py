"""The boot wait: a node must have finished kind's entrypoint and run systemd before a repair.

A kind node's PID 1 is kind's entrypoint until it has fixed what it fixes (it rewrites the old IP
in the manifests, kubeconfigs and kubeadm files, and regenerates apiserver.crt) and execs systemd
(/sbin/init); until then every `systemctl` fails with "System has not been booted with systemd as
init system (PID 1). Can't operate. Failed to connect to bus: Host is down". A user who runs
kindfix the moment Docker hands the nodes back (issue #10) meets that window, longer on a loaded
machine: a repair would read files the entrypoint is about to rewrite, and could not restart a
kubelet after writing a manifest (seen: it failed half way). So a repair first waits, bounded,
until systemd answers on every kind node, saying so as progress; one whose systemd still does not
answer is one error line before anything was read or changed. A node without systemctl is not
waited for (kubelet.py says what that means for the repair).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor

from kindfix.errors import KindfixError
from kindfix.node import NO_SHELL, Node

DEFAULT_WAIT = 90.0  # seconds: a kind node boots in seconds; a loaded machine takes tens
POLL_S = 0.25  # a booted node answers in ~0.1 s; each ask is one exec per node still booting
PROGRESS_EVERY = 5.0
# systemctl's words when PID 1 is not (yet) systemd or its bus is not up yet
_NOT_BOOTED = ("has not been booted with systemd", "Failed to connect to bus")


def systemd_answers(node: Node) -> bool:
    """True when systemctl reaches systemd (whatever the kubelet's state), or there is no
    systemctl to wait for; False while PID 1 is not systemd or its bus is not up."""
    r = node.exec(["systemctl", "is-active", "kubelet"], timeout=20)
    if r.exit_code in NO_SHELL:
        return True
    said = r.text() + r.stderr.decode(errors="replace")
    return not any(words in said for words in _NOT_BOOTED)


def wait_for_systemd(nodes: Mapping[str, Node], names: Collection[str], timeout: float,
                     progress: Callable[[str], None]) -> None:
    """Return once systemd answers on every node named; KindfixError after `timeout`."""
    waiting = sorted(names)
    start = time.monotonic()
    said = start
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(waiting)))) as pool:
        while waiting:
            answers = list(pool.map(lambda n: systemd_answers(nodes[n]), waiting))
            waiting = [n for n, ok in zip(waiting, answers, strict=True) if not ok]
            now = time.monotonic()
            if not waiting:
                break
            if now - start >= timeout:
                raise KindfixError(
                    f"systemd is not running on {', '.join(waiting)} after {timeout:.0f} s "
                    "(kind's entrypoint has not started it: the node is still booting, or its "
                    "boot failed); nothing was changed",
                    hint=f"look at `docker logs {waiting[0]}`, then run kindfix again")
            if now - said >= PROGRESS_EVERY or said == start:
                progress(f"waiting for systemd on {len(waiting)} node(s) still booting "
                         f"({', '.join(waiting)}), {now - start:.0f} s")
                said = now
            time.sleep(POLL_S)
