"""Writing kind's external load balancer's config and making it read it again.

Through `sh` where the image has one (the journal's atomic replace); kind's haproxy image
v0.12-v0.31 is distroless (only haproxy, cp, mkdir, kill; kubernetes-sigs/kind
images/haproxy/Dockerfile), so there every read and write goes through the engine's archive API
(`docker cp`) and the reload is `kill -s HUP 1`, as kind's own loadbalancer action does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from kindfix.errors import CommandError, KindfixError
from kindfix.loadbalancer import HAPROXY_CFG
from kindfix.node import NO_SHELL, Node
from kindfix.runtime import Runtime

if TYPE_CHECKING:
    from kindfix.discovery import ClusterNode
    from kindfix.journal import RunRecorder

# A backup of a config written without a shell sits beside it: the archive API cannot create
# the missing /kind/kindfix/backups/... directories without resetting every parent's owner and
# mode, and the config's own directory exists. `kindfix rollback` restores it from there.
BACKUP_SUFFIX = ".kindfix-"


def has_shell(node: Node) -> bool:
    return node.exec(["sh", "-c", "true"], timeout=30).exit_code not in NO_SHELL


def _sha(content: bytes | None) -> str:
    return hashlib.sha256(content).hexdigest() if content is not None else "absent"


def write_configs(runtime: Runtime, node: Node, recorder: RunRecorder,
                  rewrites: Mapping[str, tuple[bytes, bytes]]) -> None:
    """Write each new config file of the load balancer, its original kept first."""
    if not rewrites:
        return
    if has_shell(node):
        for path, (old, new) in rewrites.items():
            # replaced by rename: the only change Envoy notices (DOMAIN.md)
            recorder.replace_file(node, path, old, new)
        return
    for path, (old, new) in rewrites.items():
        replace_by_archive(runtime, node, recorder, path, old, new)


def replace_by_archive(runtime: Runtime, node: Node, recorder: RunRecorder, path: str,
                       old: bytes, new: bytes) -> None:
    """No shell: journal the original, keep it beside the file (mode 0600), check it reads
    back, and only then write the new content, compare-and-swap: only over what was read."""
    lb = node.name
    backup = f"{path}{BACKUP_SUFFIX}{recorder.run_id}"
    # journaled (and saved) before anything changes: a run killed from here on is restorable
    entry = recorder.declare_beside(lb, path, backup, old)
    kept = runtime.get_file(lb, entry.backup)
    if kept is None:
        if _sha(old) != entry.sha256:
            raise KindfixError(f"{lb}:{path} is no longer the original the journal recorded, "
                               f"and its backup {entry.backup} is missing",
                               hint="check the load balancer's config by hand")
        runtime.put_file(lb, entry.backup, old, 0o600)
        kept = runtime.get_file(lb, entry.backup)
    if _sha(kept) != entry.sha256:
        raise KindfixError(f"the backup {lb}:{entry.backup} does not read back as the "
                           f"original of {path}; nothing was changed",
                           hint="check the load balancer's filesystem (full? read-only?)")
    if _sha(runtime.get_file(lb, path)) != _sha(old):
        raise KindfixError(f"{lb}:{path} changed since it was read; nothing was changed",
                           hint="run `kindfix repair` again: it plans from what it reads now")
    runtime.put_file(lb, path, new, 0o644)
    if _sha(runtime.get_file(lb, path)) != _sha(new):
        raise KindfixError(f"{lb}:{path} does not read back as written",
                           hint=f"`kindfix rollback {recorder.run_id}` restores the original")


def reload_haproxy(runtime: Runtime, node: Node) -> None:
    """haproxy reads its config again on SIGHUP to PID 1 (master-worker mode): `kill -s HUP 1`
    as kind's loadbalancer action does (the distroless image has kill); an image without the
    binary gets the signal through the engine (`docker kill -s HUP`)."""
    argv = ["kill", "-s", "HUP", "1"]
    result = node.exec(argv, timeout=30)
    if result.exit_code in NO_SHELL:
        runtime.signal(node.name, "SIGHUP")
    elif not result.ok:
        raise CommandError(argv, result.exit_code, result.stdout, result.stderr, node.name)


def reload_once_ready(runtime: Runtime, lb: ClusterNode, node: Node, haproxy: bool | None,
                      progress: Callable[[str], None]) -> None:
    """After a repair, once every apiserver is ready again: haproxy still marks the ones its
    health checks saw fail DOWN until two checks in a row pass (kind's haproxy.cfg keeps the
    defaults inter 2 s, rise 2): 2-4 s more of a load balancer that refuses or misroutes. A
    reload (as kind's loadbalancer action does) starts a new worker whose servers start UP,
    haproxy's initial state, and are checked from there: measured on the test bed's haproxy 2.6,
    every backend resolved and UP 70 ms after the signal. Envoy (kind v0.32) is left alone.
    `haproxy`: whether the LB has haproxy.cfg, None when not known (then read). Never raises:
    a failure is a progress line, the health checks still bring the backends back."""
    try:
        if haproxy is None:
            haproxy = node.read_file(HAPROXY_CFG) is not None
        if not haproxy:
            return
        reload_haproxy(runtime, node)
    except KindfixError as e:
        progress(f"[{lb.name}] could not reload haproxy ({e.message}); its health checks bring "
                 "the apiservers back within a few seconds")
        return
    progress(f"[{lb.name}] reloaded haproxy: every apiserver is ready, so it routes to them now "
             "rather than after two more health checks each (2-4 s)")
