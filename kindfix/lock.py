"""One change at a time per cluster: the lock lives IN the cluster, so every client sees it.

A lock on the host (a file under $XDG_RUNTIME_DIR) only excludes clients that share that
directory: the same user without XDG_RUNTIME_DIR, root and a user, or two hosts on one engine
would repair at once. So the lock is a file on the cluster's first control plane,
`/kind/kindfix/lock`, taken by `repair`, `rollback`, `pin`, `unpin` and `runs --prune`.

Taking it is atomic: the owner record is written to a temp file, then hard-linked to the lock
path (`ln` = link(2), which fails when the path exists). The record is complete before anyone
can see it. File layout: line 1 the holder's random token, line 2 the node's clock (epoch s)
when it was taken, then one JSON line: user, host, pid, command, and how to tell its process.

Stale or live: how kindfix decides (never on age alone: a repair may legitimately run long)
- The holder touches the lock every HEARTBEAT_S seconds (its mtime is the heartbeat, read on
  the node's clock like the age, so host clock skew does not matter).
- Provably dead: the holder ran on this machine (same kernel boot_id and PID namespace, so its
  pid is visible here) and that pid is gone or now belongs to a process that started at a
  different time (pid reuse). kindfix breaks such a lock by itself and says so.
- Probably dead: no heartbeat for STALE_AFTER_S (the holder was SIGKILLed on another host, or
  its host lost the engine). kindfix refuses and names it; `kindfix unlock` breaks it. It is not
  broken automatically: a holder that is only frozen (a laptop asleep) would wake up and carry
  on beside the new run.
- Live: anything else. `kindfix unlock --force` breaks even that (the user's call).
Every removal (release, break) checks the token under a short mutex (`mkdir <lock>.break`), so
a lock is never removed by someone who saw a different holder.
The node side is kindfix/scripts/lock-{acquire,status,remove,heartbeat}.sh.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kindfix import __version__
from kindfix.discovery import Cluster, discover
from kindfix.errors import KindfixError
from kindfix.names import validate_cluster_name
from kindfix.node import ContainerNode, Node, run
from kindfix.nodescripts import script
from kindfix.runtime import Runtime

LOCK = "/kind/kindfix/lock"
HEARTBEAT_S = 10.0
STALE_AFTER_S = 120  # 12 missed heartbeats: a loaded 2-core machine still makes one of them
MAX_HOLD_S = 6 * 3600  # the heartbeat stops after this; the lock then goes stale by itself
_ATTEMPTS = 3  # a lock released or broken between our try and our look: try again, bounded

_MARK = "@@kindfix"


@dataclass(frozen=True)
class Identity:
    """What tells a process apart on one machine: kernel boot, PID namespace, pid, start time.
    Empty strings where the host has no /proc (macOS): such a holder is never judged dead."""

    boot_id: str = ""
    pid_ns: str = ""
    pid: int = 0
    start: str = ""


@dataclass(frozen=True)
class Holder:
    """The lock as found on the node."""

    token: str
    taken_at: int  # node clock, epoch seconds
    heartbeat_at: int  # the lock's mtime, node clock
    now: int  # node clock when read
    owner: dict[str, Any]  # empty when the record cannot be read

    @property
    def age(self) -> int:
        return max(0, self.now - self.taken_at)

    @property
    def silence(self) -> int:
        return max(0, self.now - self.heartbeat_at)

    def identity(self) -> Identity:
        o = self.owner
        pid = o.get("pid")
        return Identity(str(o.get("boot_id") or ""), str(o.get("pid_ns") or ""),
                        pid if isinstance(pid, int) else 0, str(o.get("pid_start") or ""))

    def who(self) -> str:
        o = self.owner
        if not o:
            return "an unknown client (unreadable lock record)"
        user, host = o.get("user") or "?", o.get("host") or "?"
        return f"{user}@{host} (pid {o.get('pid', '?')})"

    def command(self) -> str:
        return str(self.owner.get("command") or "operation")


# --- pure parts ------------------------------------------------------------------------------


def parse_status(output: bytes) -> tuple[str, Holder | None]:
    """("acquired"|"free"|"retry"|"held", holder) from a lock script's output."""
    text = output.decode("utf-8", errors="replace")
    head, _, rest = text.partition("\n")
    parts = head.split()
    if len(parts) < 2 or parts[0] != _MARK:
        raise KindfixError(f"unexpected answer from the lock script: {head[:80]!a}")
    state = parts[1]
    if state != "held":
        return state, None
    now, mtime = (_int(p) for p in [*parts[2:4], "0", "0"][:2])
    lines = rest.split("\n")
    token = lines[0].strip() if lines else ""
    taken = _int(lines[1]) if len(lines) > 1 else 0
    try:
        owner = json.loads(lines[2]) if len(lines) > 2 else {}
    except ValueError:
        owner = {}
    if not isinstance(owner, dict):
        owner = {}
    return "held", Holder(token, taken or mtime, mtime, now, owner)


def _int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        return 0


def duration(seconds: int) -> str:
    """3s, 2m05s, 1h02m: short and exact enough for a lock's age."""
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def provably_dead(holder: Holder, here: Identity,
                  start_of: Callable[[int], str | None]) -> bool:
    """True only when the holder ran on this machine (same boot, same PID namespace) and its
    process is gone or its pid now names a process that started at another time."""
    them = holder.identity()
    if not (here.boot_id and here.pid_ns and them.boot_id and them.pid_ns and them.pid):
        return False
    if (them.boot_id, them.pid_ns) != (here.boot_id, here.pid_ns):
        return False
    return start_of(them.pid) != them.start


def refusal(cluster: str, holder: Holder) -> KindfixError:
    """The one line a client gets when someone else holds the lock."""
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(holder.taken_at))
    msg = (f"another kindfix {holder.command()} is already running on cluster {cluster!r}: "
           f"by {holder.who()} since {since} ({duration(holder.age)} ago)")
    if holder.silence >= STALE_AFTER_S:
        msg += f"; no sign of life for {duration(holder.silence)}"
        hint = (f"if that process is gone, break its lock with `kindfix unlock --name {cluster}`"
                " and run again")
    else:
        hint = ("wait for it to finish (the lock is freed when it ends); a holder that stops "
                f"refreshing it for {duration(STALE_AFTER_S)} can be unlocked with "
                f"`kindfix unlock --name {cluster}`")
    return KindfixError(msg, hint=hint)


# --- this process ----------------------------------------------------------------------------


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""


def process_start(pid: int) -> str | None:
    """Start time of `pid` in clock ticks since boot (/proc/<pid>/stat field 22), None when no
    such process is visible."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    # the command name (field 2) is in parentheses and may hold spaces: split after it
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else ""


def this_process() -> Identity:
    try:
        ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        ns = ""
    pid = os.getpid()
    return Identity(_read("/proc/sys/kernel/random/boot_id"), ns, pid, process_start(pid) or "")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container with an arbitrary uid)
        return f"uid {os.getuid()}"


def owner_record(command: str, me: Identity) -> dict[str, Any]:
    return {"user": _user(), "uid": os.getuid(), "host": socket.gethostname(),
            "pid": me.pid, "command": command, "kindfix": __version__,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "boot_id": me.boot_id, "pid_ns": me.pid_ns, "pid_start": me.start}


# --- on the node -----------------------------------------------------------------------------


def lock_node(runtime: Runtime, cluster: Cluster) -> Node:
    """The node that keeps the lock: the first control plane (it also keeps the journal)."""
    if not cluster.control_planes:
        raise KindfixError(f"cluster {cluster.name} has no control-plane node",
                           hint="is this a kind cluster? check `kindfix nodes`")
    cp = cluster.control_planes[0]
    if not cp.running:
        raise KindfixError(f"node {cp.name} is {cp.state}, not running",
                           hint=f"start it with `docker start {cp.name}` and run kindfix again")
    return ContainerNode(runtime, cp.name, cp.role)


def status(node: Node) -> Holder | None:
    out = run(node, ["sh", "-c", script("lock-status"), "kindfix-lock", LOCK]).stdout
    state, holder = parse_status(out)
    return holder if state == "held" else None


def remove(node: Node, token: str) -> bool:
    """Remove the lock if it still holds `token`; True when it did."""
    out = run(node, ["sh", "-c", script("lock-remove"), "kindfix-unlock", LOCK, token],
              timeout=30).stdout
    return parse_status(out)[0] == "removed"


class _Heartbeat:
    """Touches the lock every `interval` seconds while the lock is held (bounded by
    MAX_HOLD_S); notices when the lock is no longer ours."""

    def __init__(self, node: Node, token: str, interval: float) -> None:
        self._node, self._token, self._interval = node, token, interval
        self._stop = threading.Event()
        self.lost = False
        self._thread = threading.Thread(target=self._run, name="kindfix-lock-heartbeat",
                                        daemon=True)

    def start(self) -> None:
        if self._interval > 0:
            self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + MAX_HOLD_S
        while not self._stop.wait(self._interval) and time.monotonic() < deadline:
            try:
                out = self._node.exec(["sh", "-c", script("lock-heartbeat"), "kindfix-heartbeat",
                                       LOCK,
                                       self._token], timeout=30)
            except KindfixError:
                continue  # a slow or briefly unreachable node: the next beat tries again
            if out.ok and b"lost" in out.stdout:
                self.lost = True
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            # a beat stuck on a slow node must not hold up the end of the run (Ctrl-C): the
            # thread is a daemon, and a beat after the release finds the lock gone ("lost")
            self._thread.join(timeout=5)


@dataclass
class Lease:
    """A held lock: where, and whether it was still ours at the end."""

    cluster: str
    node: str
    token: str
    lost: bool = False


def acquire(node: Node, cluster: str, command: str,
            progress: Callable[[str], None] = lambda _: None,
            me: Identity | None = None,
            start_of: Callable[[int], str | None] = process_start) -> str:
    """Take the lock on `node` for `command`; its token. A provably dead holder's lock is
    broken (and said so); any other holder's is refused with one line naming it."""
    me = me or this_process()
    token = secrets.token_hex(8)
    record = json.dumps(owner_record(command, me), separators=(",", ":")).encode()
    for _ in range(_ATTEMPTS):
        out = run(node, ["sh", "-c", script("lock-acquire"), "kindfix-lock", LOCK, token],
                  stdin=record, timeout=30).stdout
        state, holder = parse_status(out)
        if state == "acquired":
            return token
        if holder is None:
            continue  # freed between our link and our look
        if holder.token == token:  # cannot happen (the link failed), but never break our own
            raise refusal(cluster, holder)
        if not provably_dead(holder, me, start_of):
            raise refusal(cluster, holder)
        progress(f"breaking the lock of a kindfix {holder.command()} that is no longer running "
                 f"({holder.who()}, taken {duration(holder.age)} ago)")
        remove(node, holder.token)
    raise KindfixError(f"could not take the lock on cluster {cluster!r} ({LOCK} on {node.name}) "
                       f"in {_ATTEMPTS} attempts", hint="another client keeps taking it; retry")


@contextmanager
def cluster_lock(runtime: Runtime, name: str, command: str,
                 progress: Callable[[str], None] = lambda _: None,
                 heartbeat: float = HEARTBEAT_S) -> Iterator[Lease]:
    """Hold the cluster's lock for the duration of the block (see the module docstring)."""
    validate_cluster_name(name)
    runtime.ping()
    node = lock_node(runtime, discover(runtime, name))
    token = acquire(node, name, command, progress)
    lease = Lease(name, node.name, token)
    beat = _Heartbeat(node, token, heartbeat)
    beat.start()
    try:
        yield lease
    finally:
        beat.stop()
        lease.lost = beat.lost
        try:
            if not remove(node, token) and not lease.lost:
                lease.lost = True
        except KindfixError as e:  # never hide the block's own error behind the release's
            progress(f"warning: could not release the lock {LOCK} on {node.name}: {e.message}"
                     " (the next kindfix run on this machine breaks it)")
        if lease.lost:
            progress(f"warning: the lock on cluster {name!r} was broken by another client "
                     "while this run held it")


def unlock(runtime: Runtime, name: str, force: bool = False,
           me: Identity | None = None,
           start_of: Callable[[int], str | None] = process_start) -> Holder | None:
    """Break the cluster's lock when its holder is dead (provably, or silent for
    STALE_AFTER_S); with `force`, whatever its state. The holder that was removed, None when
    there was no lock."""
    validate_cluster_name(name)
    runtime.ping()
    node = lock_node(runtime, discover(runtime, name))
    holder = status(node)
    if holder is None:
        return None
    dead = provably_dead(holder, me or this_process(), start_of)
    if not (force or dead or holder.silence >= STALE_AFTER_S):
        err = refusal(name, holder)
        raise KindfixError(err.message + f"; it refreshed the lock {duration(holder.silence)} "
                           "ago, so it looks alive",
                           hint="let it finish; `kindfix unlock --force` breaks a live lock "
                                "(two runs may then change the cluster at once)")
    if not remove(node, holder.token):
        raise KindfixError(f"the lock on cluster {name!r} changed hands while it was being "
                           "broken; nothing was removed", hint="look again: `kindfix unlock`")
    return holder

