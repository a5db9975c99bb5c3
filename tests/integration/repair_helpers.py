"""Helpers for the `kindfix repair` integration tests (issue #4): run kindfix as a user does,
fingerprint what a repair may touch, and read etcd's data before and after.

kindfix is driven as a subprocess (`python -m kindfix`) pointed at a bed by
KIND_EXPERIMENTAL_DOCKER_NETWORK and `--name`, so exit codes, stdout/stderr and SIGKILL behave as
they do for a user. Every wait is bounded.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from testbed import checks
from testbed.bed import Bed
from testbed.breaking import permute
from testbed.checks import Report

REPO = Path(__file__).resolve().parents[2]
ADDRESSES = REPO / "patches" / "addresses.yaml"
ETCD_DATA = "/var/lib/etcd"
JOURNAL_DIR = "/kind/kindfix/journal"
REPAIR_TIMEOUT_S = 300.0  # a 3-CP force-new-cluster repair takes about 60 s on 2 cores
HEALTHY_WAIT_S = 60.0
PROGRESS = re.compile(r"^\s*\d+\.\ds ")  # cli_common.py: f"{elapsed:6.1f}s {line}"


# --- running kindfix ------------------------------------------------------------------------


def kindfix_env(bed: Bed | None, **extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
    if bed is not None:
        env["KIND_EXPERIMENTAL_DOCKER_NETWORK"] = bed.network
    return env


def kindfix_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "kindfix", *args]


@dataclass(frozen=True)
class Run:
    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str
    seconds: float

    def __str__(self) -> str:  # what a failed assertion shows
        return (f"$ {' '.join(self.argv[2:])}\nexit {self.exit_code} after {self.seconds:.1f}s\n"
                f"--- stdout ---\n{self.stdout[-6000:]}\n--- stderr ---\n{self.stderr[-3000:]}")


def kindfix(bed: Bed | None, *args: str, name: str | None = None,
            timeout_s: float = REPAIR_TIMEOUT_S, **env: str) -> Run:
    """`python -m kindfix <args> --name <bed cluster>` with the bed's network, bounded in time."""
    argv = kindfix_argv(*args, "--name", name or (bed.cluster if bed else "kind"))
    t0 = time.monotonic()
    res = subprocess.run(argv, env=kindfix_env(bed, **env), capture_output=True, text=True,
                         timeout=timeout_s, check=False)
    run = Run(tuple(argv), res.returncode, res.stdout, res.stderr, time.monotonic() - t0)
    # progress lines carry elapsed seconds: shown with -s (and on failure), for timing reports
    print(f"$ kindfix {' '.join(args)} -> exit {run.exit_code} in {run.seconds:.1f}s")
    print("\n".join(ln for ln in run.stdout.splitlines() if PROGRESS.match(ln)))
    return run


class LiveRun:
    """A `kindfix repair` subprocess whose output lines are read as they come (bounded waits)."""

    def __init__(self, bed: Bed, *args: str) -> None:
        self.argv = kindfix_argv("repair", *args, "--name", bed.cluster)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.argv, env=kindfix_env(bed), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, marker: str, timeout_s: float = REPAIR_TIMEOUT_S) -> str:
        """The first new progress line (`  12.3s ...`, not the plan printed before) containing
        `marker`; fails the test when kindfix exits first or on timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                pytest.fail(f"no line with {marker!r} within {timeout_s:.0f}s:\n{self.output()}")
            try:
                line = self._queue.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if line is None:
                self.proc.wait(timeout=10)
                pytest.fail(f"kindfix exited {self.proc.returncode} before printing {marker!r}:"
                            f"\n{self.output()}")
            self.lines.append(line)
            if marker in line and PROGRESS.match(line):
                return line

    def kill(self) -> None:
        """SIGKILL, like a user's `kill -9` or a closed CI job; then drain the pipe."""
        if self.proc.poll() is None:
            self.proc.kill()
            print(f"SIGKILLed kindfix repair after {self.seconds:.1f}s; its last lines:")
            print("\n".join(self.lines[-4:]))
        self.proc.wait(timeout=30)
        self._reader.join(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)

    def finish(self, timeout_s: float = REPAIR_TIMEOUT_S) -> int:
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"kindfix repair did not finish within {timeout_s:.0f}s:\n{self.output()}")
        self.kill()  # drains
        return self.proc.returncode

    def output(self) -> str:
        return "\n".join(self.lines[-150:])

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started


@contextmanager
def live_repair(bed: Bed, *args: str) -> Iterator[LiveRun]:
    run = LiveRun(bed, *args)
    try:
        yield run
    finally:
        run.kill()


def assert_one_error_line(run: Run, *needles: str) -> None:
    """Exit 1, one `kindfix: error:` line (an optional hint line), no traceback."""
    assert run.exit_code == 1, run
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("kindfix: error:")]
    assert len(errors) == 1, run
    assert all(ln.startswith("kindfix: error:") or ln.startswith("  hint:") for ln in lines), run
    assert "Traceback" not in run.stdout + run.stderr, run
    for needle in needles:
        assert needle in errors[0], run


# --- what a repair may touch ---------------------------------------------------------------


def patched_files() -> dict[str, list[str]]:
    """role -> files, from the same data kindfix reads (patches/addresses.yaml `files:`)."""
    data = yaml.safe_load(ADDRESSES.read_text())
    return {role: list(paths) for role, paths in data["files"].items()}


def role_of(bed: Bed, name: str) -> str:
    if name in bed.control_planes:
        return "control-plane"
    return "worker" if name in bed.workers else "external-load-balancer"


_HASH_SCRIPT = r"""
for f in "$@"; do
  if [ -f "$f" ]; then sha256sum "$f"; else echo "absent  $f"; fi
done
"""
# etcd itself pre-allocates the next WAL segment as member/wal/<n>.tmp (wal/file_pipeline.go)
# whenever it (re)starts: not kindfix's doing, so left out of the listing
_LISTING_SCRIPT = f"cd {ETCD_DATA} 2>/dev/null && find . ! -name '*.tmp' | sort"


@dataclass(frozen=True)
class Fingerprint:
    """sha256 of every file kindfix may rewrite, per node, plus each etcd data dir's listing."""

    files: dict[tuple[str, str], str]
    etcd_listing: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def changed_files(self, other: Fingerprint) -> list[str]:
        keys = sorted(set(self.files) | set(other.files))
        return [f"{n}:{p}" for n, p in keys if self.files.get((n, p)) != other.files.get((n, p))]


def fingerprint(bed: Bed, etcd_listing: bool = True,
                skip: Sequence[str] = ()) -> Fingerprint:
    """Of every container of the bed but `skip` (a stopped node cannot be read)."""
    files = patched_files()
    hashes: dict[tuple[str, str], str] = {}
    listing: dict[str, tuple[str, ...]] = {}
    for name in (n for n in bed.containers if n not in skip):
        paths = files.get(role_of(bed, name), [])
        res = bed.exec(name, ["sh", "-c", _HASH_SCRIPT, "hash", *paths])
        assert res.ok, f"hashing files on {name}: {res.stderr}"
        for line in res.stdout.splitlines():
            digest, _, path = line.partition("  ")
            hashes[(name, path)] = digest
        if etcd_listing and name in bed.control_planes:
            out = bed.exec(name, ["sh", "-c", _LISTING_SCRIPT])
            listing[name] = tuple(out.stdout.split())
    return Fingerprint(hashes, listing)


def sha256_in(bed: Bed, node: str, path: str) -> str | None:
    res = bed.exec(node, ["sh", "-c", _HASH_SCRIPT, "hash", path])
    digest = res.stdout.split()[0] if res.ok and res.stdout.split() else "absent"
    return None if digest == "absent" else digest


def journals(bed: Bed) -> dict[str, dict[str, object]]:
    """run-id -> journal, from the first control plane. A journal that is not JSON (say, cut
    short by a killed run) comes back as {"status": "UNREADABLE", "raw": <what is there>}."""
    cp = bed.control_planes[0]
    names = bed.exec(cp, ["ls", "-1", JOURNAL_DIR]).stdout.split()
    out: dict[str, dict[str, object]] = {}
    for n in names:
        if n.endswith(".json"):
            res = bed.exec(cp, ["cat", f"{JOURNAL_DIR}/{n}"])
            try:
                out[n[: -len(".json")]] = json.loads(res.stdout)
            except ValueError:
                size = bed.exec(cp, ["stat", "-c", "%s", f"{JOURNAL_DIR}/{n}"]).stdout.strip()
                out[n[: -len(".json")]] = {"status": "UNREADABLE", "raw": res.stdout[:300],
                                           "bytes": size, "cat_exit": res.exit_code,
                                           "stderr": res.stderr[:300]}
    return out


def running_containers(bed: Bed) -> dict[str, tuple[str, ...]]:
    """CRI container ids per node: a restart of any static pod gives a new id."""
    return {n: tuple(sorted(bed.exec(n, ["crictl", "ps", "-q"]).stdout.split()))
            for n in bed.nodes}


# --- etcd data -----------------------------------------------------------------------------


@dataclass(frozen=True)
class EtcdData:
    """Every key/value one member serves (serializable read) and its revision."""

    node: str
    revision: int
    kvs: frozenset[tuple[str, str]]


def etcd_data(bed: Bed, node: str) -> EtcdData:
    res = bed.etcdctl(node, "get", "", "--prefix", "--consistency=s", "-w", "json")
    assert res.ok, f"etcd on {node} did not answer: {res.stderr[-500:]}"
    data = json.loads(res.stdout)
    kvs = frozenset((base64.b64decode(kv["key"]).decode(errors="replace"),
                     base64.b64decode(kv.get("value", "")).decode(errors="replace"))
                    for kv in data.get("kvs", ()))
    return EtcdData(node, int(data["header"]["revision"]), kvs)


def assert_no_key_lost(bed: Bed, before: Sequence[EtcdData]) -> None:
    """Every member now serves every key/value any member served before, at a revision not lower."""
    # the controller-manager's and scheduler's Leases are rewritten by them every 2 s: a renewed
    # Lease is not a lost key, so only its presence counts
    def kept(kvs: frozenset[tuple[str, str]]) -> frozenset[tuple[str, str]]:
        return frozenset((k, "" if k.startswith("/registry/leases/") else v) for k, v in kvs)

    want = kept(frozenset().union(*(d.kvs for d in before)))
    min_rev = max(d.revision for d in before)
    assert len(want) >= bed.seeded_keys
    for node in bed.control_planes:
        now = etcd_data(bed, node)
        lost = sorted(k for k, _ in want - kept(now.kvs))
        assert not lost, f"{node} lost {len(lost)} key(s): {lost[:10]}"
        assert now.revision >= min_rev, f"{node} went back to revision {now.revision} < {min_rev}"


BOOT_WAIT_S = 90.0


def _booted(cmdline: str) -> bool:
    # while the entrypoint runs, PID 1 is "bash /usr/local/bin/entrypoint .../kindbed-init"
    return "kindbed-init" in cmdline and "entrypoint" not in cmdline


def wait_booted(bed: Bed, timeout_s: float = BOOT_WAIT_S) -> None:
    """Until kind's entrypoint has finished on every node (it execs the init, PID 1's cmdline
    is kindbed-init alone): before that it may still be rewriting files (fix_certificate), and a
    fingerprint taken then would race with it."""
    deadline = time.monotonic() + timeout_s
    pending = list(bed.nodes)
    while pending and time.monotonic() < deadline:
        pending = [n for n in pending if not _booted(bed.exec(n, ["cat", "/proc/1/cmdline"]).stdout)]
        if pending:
            time.sleep(0.5)
    assert not pending, f"entrypoint still running after {timeout_s:.0f}s on {pending}"


def wait_healthy(bed: Bed, timeout_s: float = HEALTHY_WAIT_S) -> Report:
    """check_bed until healthy (components settle for a few seconds after a repair)."""
    report = checks.wait_healthy(bed, timeout_s)
    assert report.healthy, f"bed not healthy within {timeout_s:.0f}s: {list(report.reasons)}"
    return report


# --- timings, for the report ----------------------------------------------------------------

TIMINGS: dict[str, float] = {}


def timed(label: str, seconds: float) -> None:
    TIMINGS[label] = round(seconds, 1)
    print(f"[timing] {label}: {seconds:.1f}s")


# `slow` marks the long extras; the skipif keeps them out of `make test` until the KINDFIX_SLOW
# switch exists in a conftest (then the skipif can go)
skip_unless_slow = pytest.mark.skipif(os.environ.get("KINDFIX_SLOW") != "1",
                                      reason="long-running; set KINDFIX_SLOW=1")


def permute_all(bed: Bed) -> None:
    """Every node moves, also on a bed permuted before (rotate by current IP)."""
    ips = bed.ips()
    by_ip = sorted(bed.nodes, key=lambda n: ipaddress.ip_address(ips[n] or "0.0.0.0"))
    perm = permute(bed, order=by_ip[1:] + by_ip[:1])
    assert sorted(perm.moved) == sorted(bed.nodes), perm
    wait_booted(bed)
    timed("permute", perm.seconds)
