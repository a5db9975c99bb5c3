"""`make bench`: kindfix's wall times beside their floors, printed as a table.

Audit rows: `kindfix audit`'s gathering (one batched exec per node, every node concurrently)
against a floor of one no-op exec per node, run concurrently. Goal: audit <= 1.5x the floor.
Repair rows: repair of a bed whose IPs were all permuted, beside the time to create that bed.
Goal: 3 CP + LB with quorum lost in <= 15 s and <= 0.5x bed creation. Each bed is repaired
right after the permutation (its nodes still booting: kubelet, static pods and the kind
entrypoint compete for the 2 cores, as right after a Docker restart), and permuted again, after
SETTLE_S (what a user who looks first sees); each of these REPAIRS times (permuted again before
each), the row giving the median and the range: one repair on this shared 2-core machine varies
by +-2 s from one to the next. The 3 CP bed is then repaired once with --etcd-strategy
force-new-cluster (the slower strategy that keeps WAL-only entries).

Topologies that cannot be created live here (3 CP + LB + 50 workers is too heavy for 2 cores
next to the suite) run on fixture-backed nodes: the fixture dumps' files served by a node whose
every exec costs the median latency of a real `docker exec` measured on this machine. Such rows
are labelled "fixture".
"""

from __future__ import annotations

import functools
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kindfix.discovery import Cluster, ClusterNode
from kindfix.dump import load_dump
from kindfix.observe import NodeSnapshot, snapshot_cluster
from kindfix.runtime import ExecResult

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dumps"
REPEAT = 5
SETTLE_S = 20.0
REPAIRS = int(os.environ.get("KINDFIX_BENCH_REPAIRS", "3"))  # per "at once" / "after" row


class FixtureNode:
    """A node answering from a dump, each exec costing `latency` seconds like docker exec."""

    def __init__(self, snap: NodeSnapshot, role: str, latency: float) -> None:
        self.name, self.role, self._snap, self._latency = snap.name, role, snap, latency

    def exec(self, argv: Sequence[str], stdin: bytes | None = None,
             timeout: float | None = None) -> ExecResult:
        time.sleep(self._latency)
        return self._snap.output(argv) or ExecResult(0, b"", b"")

    def read_files(self, paths: Sequence[str]) -> dict[str, bytes | None]:
        time.sleep(self._latency)
        return {p: self._snap.file(p) for p in paths}

    def read_file(self, path: str) -> bytes | None:
        return self.read_files([path])[path]

    def write_file(self, path: str, content: bytes, mode: int = 0o644) -> None:
        raise NotImplementedError("benchmarks only read")


def _median(fn: Callable[[], object]) -> float:
    times = []
    for _ in range(REPEAT):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _floor(nodes: Sequence[object], run_noop: Callable[[object], object]) -> float:
    def once() -> None:
        with ThreadPoolExecutor(max_workers=min(16, len(nodes))) as pool:
            list(pool.map(run_noop, nodes))
    return _median(once)


def measured_exec_latency() -> float | None:
    """Median wall time of one `docker exec true` into a throwaway container, or None."""
    try:
        from kindfix.docker_runtime import DockerRuntime
        from testbed import engine, images
    except ImportError:
        return None
    try:
        client = engine.ensure_engine()
        node_image = images.ensure_images().images.node
        c = client.containers.run(node_image, entrypoint=["sleep", "60"], detach=True,
                                  labels={"dev.kindfix.testbed": "bench-latency"})
    except Exception as e:  # no engine: fall back to a nominal latency, and say so
        print(f"(no engine for the latency probe: {e}; using 60 ms)", file=sys.stderr)
        return None
    try:
        rt = DockerRuntime()
        return _median(lambda: rt.exec(c.name, ["true"]))
    finally:
        c.remove(force=True, v=True)


def with_workers(cluster: Cluster, snaps: dict[str, NodeSnapshot], extra: int
                 ) -> tuple[Cluster, dict[str, NodeSnapshot]]:
    """Clone the dump's worker `extra` times (3 CP + LB + 50 workers)."""
    worker = cluster.workers[0]
    nodes = list(cluster.nodes)
    snaps = dict(snaps)
    for i in range(2, extra + 2):
        name = f"{cluster.name}-worker{i}"
        nodes.append(replace(worker, name=name))
        snaps[name] = replace(snaps[worker.name], name=name)
    return replace(cluster, nodes=tuple(nodes)), snaps


def fixture_row(label: str, dump: str, latency: float, extra_workers: int = 0) -> tuple:
    cluster, snaps = load_dump(FIXTURES / dump)
    if extra_workers:
        cluster, snaps = with_workers(cluster, snaps, extra_workers)
    by_name = {n.name: n for n in cluster.nodes}

    def make(n: ClusterNode) -> FixtureNode:
        return FixtureNode(snaps[n.name], n.role, latency)

    nodes = [make(by_name[name]) for name in snaps]
    floor = _floor(nodes, lambda n: n.exec(["true"]))  # type: ignore[attr-defined]
    audit_t = _median(lambda: snapshot_cluster(cluster, make))
    return (label, "fixture", len(cluster.nodes), floor, audit_t)


def _cold_audit(runtime: object, name: str) -> object:
    """One `kindfix audit` as a new process makes it: nothing parsed before."""
    from kindfix import api, yamlpath

    yamlpath._parse_read_only.cache_clear()  # as in a fresh process
    return api.audit_live(runtime, name)  # type: ignore[arg-type]


class Progress:
    """A repair's progress lines with their time; `--trace` prints them (stderr) as they come."""

    def __init__(self, label: str) -> None:
        self.label, self.start = label, time.perf_counter()
        self.lines: list[tuple[float, str]] = []

    def __call__(self, line: str) -> None:
        self.lines.append((self.elapsed(), line))
        if "--trace" in sys.argv:
            print(f"[{self.label}] {self.elapsed():6.1f}s {line}", file=sys.stderr, flush=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def verifying(self) -> float:
        """Seconds from the start of verification to now (the whole repair if it never began)."""
        began = next((t for t, line in self.lines if line.startswith("verifying")), 0.0)
        return self.elapsed() - began


def live_rows() -> list[tuple]:
    from kindfix import api
    from kindfix.docker_runtime import DockerRuntime
    from testbed import bed as bedmod
    from testbed import breaking

    rows = []
    audit_rows = []
    rt = DockerRuntime()
    for label, cps, workers in (("1 CP + 2 workers", 1, 2), ("3 CP + LB", 3, 0)):
        t = time.perf_counter()
        bed = bedmod.create_bed(cps, workers, generation="v0.15", lb="by-name", seed_keys=50)
        created = time.perf_counter() - t
        os.environ["KIND_EXPERIMENTAL_DOCKER_NETWORK"] = bed.network
        try:
            names = bed.containers
            floor = _floor(names, lambda n: rt.exec(n, ["true"]))
            audit_t = _median(functools.partial(_cold_audit, rt, bed.cluster))
            audit_rows.append((label, "live", len(names), floor, audit_t))
            cases = [("at once", "auto", 0.0, REPAIRS),
                     (f"after {SETTLE_S:.0f} s", "auto", SETTLE_S, REPAIRS)]
            if cps > 1:
                cases.append(("force-new-cluster", "force-new-cluster", SETTLE_S, 1))
            for when, strategy, settle, times in cases:
                runs = []
                for _ in range(times):
                    breaking.permute(bed)
                    time.sleep(settle)
                    progress = Progress(f"{label}, {when}")
                    outcome = api.repair(rt, bed.cluster, strategy=strategy, verify_wait=60,
                                         progress=progress)
                    runs.append((progress.elapsed(), progress.verifying(), outcome.healthy))
                repaired = [r[0] for r in runs]
                rows.append((f"{label}, {when}", statistics.median(repaired),
                             statistics.median(r[1] for r in runs), min(repaired),
                             max(repaired), created, all(r[2] for r in runs)))
        finally:
            bed.destroy()
    return audit_rows + [("repair", *r) for r in rows]


def main() -> int:
    latency = measured_exec_latency() or 0.06
    print(f"docker exec latency on this machine (median of {REPEAT}): {latency * 1000:.0f} ms\n")
    audit_rows = [
        fixture_row("1 CP + 1 worker", "single-cp-healthy", latency),
        fixture_row("3 CP + LB + 1 worker", "ha-3cp-healthy", latency),
        fixture_row("3 CP + LB + 50 workers", "ha-3cp-healthy", latency, extra_workers=49),
    ]
    repair_rows: list[tuple] = []
    if "--fixtures-only" not in sys.argv:
        for row in live_rows():
            (repair_rows if row[0] == "repair" else audit_rows).append(row)
    print(f"{'audit':26} {'nodes':>5} {'backing':8} {'floor s':>8} {'audit s':>8} "
          f"{'ratio':>6}  goal <= 1.5x")
    for label, backing, n, floor, audit_t in audit_rows:
        print(f"{label:26} {n:5d} {backing:8} {floor:8.3f} {audit_t:8.3f} {audit_t / floor:6.2f}")
    if repair_rows:
        print(f"\n{'repair (all IPs permuted)':36} {'repair s':>9} {'range s':>11} "
              f"{'verify s':>9} {'create s':>9} {'ratio':>6} {'healthy':>8}  "
              "goal 3 CP + LB <= 15 s and <= 0.5x")
        for _, label, repaired, verifying, low, high, created, healthy in repair_rows:
            spread = f"{low:.1f}-{high:.1f}" if high > low else ""
            print(f"{label:36} {repaired:9.1f} {spread:>11} {verifying:9.1f} {created:9.1f} "
                  f"{repaired / created:6.2f} {healthy!s:>8}")
        print(f"(repair s, verify s: the median of {REPAIRS} repairs, each after its own "
              "permutation, but force-new-cluster: one)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
