"""`kindfix repair` on the kind-shaped test bed (issue #4, "Done when").

kindfix runs as a user runs it (`python -m kindfix ... --name <cluster>` with
KIND_EXPERIMENTAL_DOCKER_NETWORK), the verdict comes from the bed's own checks (testbed.checks:
etcd member URLs, cert SANs, component health, haproxy backends), and "no key lost" compares every
key/value etcd served before the break with what every member serves after the repair.

Budget (2 cores, whole module <= 12 min): one 3-CP bed is shared by the HA cases and re-broken
with `permute` between them; each generation gets one small bed; extra kill points are `slow`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import docker
import pytest

from testbed import images as img
from testbed.bed import Bed, create_bed, put_files
from testbed.breaking import Permutation, permute
from testbed.checks import Report, check_bed

from .repair_helpers import (
    EtcdData,
    Fingerprint,
    Run,
    assert_no_key_lost,
    assert_one_error_line,
    etcd_data,
    fingerprint,
    journals,
    kindfix,
    live_repair,
    running_containers,
    sha256_in,
    skip_unless_slow,
    timed,
    wait_booted,
    wait_healthy,
)

pytestmark = pytest.mark.docker


# --- beds ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def module_beds(engine: docker.DockerClient, bed_images: img.Images
                ) -> Iterator[Callable[..., Bed]]:
    """Like conftest's make_bed, but the beds live for the whole module (shared, re-broken)."""
    beds: list[Bed] = []

    def make(**kwargs: object) -> Bed:
        t0 = time.monotonic()
        bed = create_bed(client=engine, images=bed_images, **kwargs)  # type: ignore[arg-type]
        beds.append(bed)
        timed(f"create bed {kwargs}", time.monotonic() - t0)
        return bed

    yield make
    for bed in beds:
        bed.destroy()


def _data(bed: Bed) -> list[EtcdData]:
    return [etcd_data(bed, n) for n in bed.control_planes]


def _permute(bed: Bed) -> Permutation:
    """Move every node, also on a bed permuted before: testbed's default order (always
    nodes[1:] + nodes[:1]) gives the same IPs again the second time, so rotate by current IP."""
    ips = bed.ips()
    by_ip = sorted(bed.nodes, key=lambda n: ipaddress.ip_address(ips[n] or "0.0.0.0"))
    perm = permute(bed, order=by_ip[1:] + by_ip[:1])
    assert sorted(perm.moved) == sorted(bed.nodes), perm
    wait_booted(bed)
    timed(f"permute {bed.cluster}", perm.seconds)
    return perm


def _assert_current(bed: Bed, report: Report) -> None:
    """What check_bed's verdict already implies, spelled out: URLs and SANs are the new IPs."""
    ips = bed.ips()
    assert sorted(m.name for m in report.members) == sorted(bed.control_planes)
    for m in report.members:
        assert m.peer_urls == (f"https://{ips[m.name]}:2380",), m
        assert m.client_urls == (f"https://{ips[m.name]}:2379",), m
    for c in report.certs:
        assert ips[c.node] in c.ips, c


@dataclass(frozen=True)
class HaRepair:
    """One 3-CP + LB bed (kind v0.15 image), permuted, dry-run, then repaired once."""

    bed: Bed
    before: list[EtcdData]
    perm: Permutation
    broken: Fingerprint
    broken_report: Report
    dry_run: Run
    after_dry_run: Fingerprint
    runs_after_dry_run: dict[str, dict[str, object]]
    repair: Run


@pytest.fixture(scope="module")
def ha_bed(module_beds: Callable[..., Bed]) -> Bed:
    return module_beds(control_planes=3, workers=0, generation="v0.15", lb="by-name",
                       seed_keys=100)


@pytest.fixture(scope="module")
def ha(ha_bed: Bed) -> HaRepair:
    bed = ha_bed
    before = _data(bed)
    perm = _permute(bed)
    broken = fingerprint(bed)
    broken_report = check_bed(bed)
    dry = kindfix(bed, "repair", "--dry-run")
    timed("3-CP repair --dry-run", dry.seconds)
    after_dry = fingerprint(bed)
    runs_after_dry = journals(bed)
    repair = kindfix(bed, "repair", "--yes")
    timed("3-CP repair --yes (permuted, quorum lost)", repair.seconds)
    return HaRepair(bed, before, perm, broken, broken_report, dry, after_dry, runs_after_dry,
                    repair)


# --- 1. 3 CP + LB, v0.15, permuted ---------------------------------------------------------------


def test_permuted_ha_bed_is_broken_before_repair(ha: HaRepair) -> None:
    """The cases below can fail: the bed really was broken (stale etcd peers, no quorum)."""
    assert sorted(ha.perm.moved) == sorted(ha.bed.control_planes)
    assert not ha.broken_report.healthy
    assert any("etcd" in r for r in ha.broken_report.reasons), ha.broken_report.reasons


def test_dry_run_prints_the_plan_and_changes_nothing(ha: HaRepair) -> None:
    assert ha.dry_run.exit_code == 0, ha.dry_run
    assert f"Plan for cluster {ha.bed.cluster}" in ha.dry_run.stdout, ha.dry_run
    assert "etcd membership" in ha.dry_run.stdout, ha.dry_run
    assert "(dry run: nothing changed)" in ha.dry_run.stdout, ha.dry_run
    assert ha.broken.changed_files(ha.after_dry_run) == []
    assert ha.broken.etcd_listing == ha.after_dry_run.etcd_listing
    assert ha.runs_after_dry_run == {}, "a dry run recorded a repair run"


def test_repair_heals_permuted_ha_bed_without_losing_a_key(ha: HaRepair) -> None:
    assert ha.repair.exit_code == 0, ha.repair
    assert f"Cluster {ha.bed.cluster} is healthy" in ha.repair.stdout, ha.repair
    report = wait_healthy(ha.bed)
    _assert_current(ha.bed, report)
    assert_no_key_lost(ha.bed, ha.before)
    assert len(ha.broken.changed_files(fingerprint(ha.bed, etcd_listing=False))) > 0


def test_second_repair_plans_nothing_and_changes_nothing(ha: HaRepair) -> None:
    bed = ha.bed
    wait_healthy(bed)
    before, pods, runs = fingerprint(bed), running_containers(bed), journals(bed)
    again = kindfix(bed, "repair", "--yes")
    timed("3-CP second repair (no-op)", again.seconds)
    assert again.exit_code == 0, again
    assert "nothing to do" in again.stdout, again
    after = fingerprint(bed)
    assert before.changed_files(after) == []
    assert before.etcd_listing == after.etcd_listing
    assert running_containers(bed) == pods, "a no-op repair restarted a static pod"
    assert journals(bed) == runs, "a no-op repair recorded a run"
    dry = kindfix(bed, "repair", "--dry-run")
    assert dry.exit_code == 0, dry
    assert "nothing to do" in dry.stdout, dry
    scripted = kindfix(bed, "repair", "--yes", "-o", "json")  # for scripts: one JSON document
    assert scripted.exit_code == 0, scripted
    outcome = json.loads(scripted.stdout)
    assert outcome["cluster"] == bed.cluster
    assert outcome["plan"]["steps"] == []
    assert outcome["verification"]["checks"], outcome
    assert all(c["ok"] for c in outcome["verification"]["checks"]), outcome


# --- 4. rollback ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RolledBack:
    run_id: str
    entries: list[dict[str, object]]
    run: Run


@pytest.fixture(scope="module")
def rolled_back(ha: HaRepair) -> RolledBack:
    """`kindfix rollback <run>` of the repair above (after the no-op repair, which made no run)."""
    runs = journals(ha.bed)
    assert runs, "the repair left no journal"
    run_id = max(runs)
    entries = runs[run_id]["files"]
    assert isinstance(entries, list), runs[run_id]
    rb = kindfix(ha.bed, "rollback", run_id)
    timed("3-CP rollback", rb.seconds)
    return RolledBack(run_id, entries, rb)


def test_rollback_restores_every_journaled_file_byte_for_byte(ha: HaRepair,
                                                              rolled_back: RolledBack) -> None:
    rb = rolled_back
    assert rb.run.exit_code == 0, rb.run
    assert f"rolled back run {rb.run_id}" in rb.run.stdout, rb.run
    assert rb.entries, "the repair journaled no file"
    for e in rb.entries:
        now = sha256_in(ha.bed, str(e["node"]), str(e["path"]))
        assert now == (e["sha256"] if e["existed"] else None), e


def test_rollback_restores_every_file_the_repair_changed(ha: HaRepair,
                                                         rolled_back: RolledBack) -> None:
    """Independently of the journal: every file kindfix may touch is as before the repair."""
    assert rolled_back.run.exit_code == 0, rolled_back.run
    assert ha.broken.changed_files(fingerprint(ha.bed, etcd_listing=False)) == []


# --- 5. two repairs at once ----------------------------------------------------------------------


def test_two_repairs_at_once_one_runs_one_refuses(ha_bed: Bed) -> None:
    bed = ha_bed
    keys = _data_when_healthy_or_seeded(bed)
    _permute(bed)
    with live_repair(bed, "--yes") as first:
        first.wait_for("[1/", timeout_s=120)
        second = kindfix(bed, "repair", "--yes", timeout_s=60)
        assert_one_error_line(second, "another kindfix repair")
        code = first.finish()
        timed("3-CP repair while a second one is refused", first.seconds)
        assert code == 0, first.output()
    wait_healthy(bed)
    assert_no_key_lost(bed, keys)


def _data_when_healthy_or_seeded(bed: Bed) -> list[EtcdData]:
    """The bed's data as the cases before left it; when etcd is down (after a rollback) the
    seeded keys are the floor: compare against what the first member serves once healthy."""
    report = check_bed(bed)
    if report.healthy:
        return _data(bed)
    return [EtcdData(bed.control_planes[0], 0,
                     frozenset((f"/registry/kindbed/seed-{i}", f"value-{i}")
                               for i in range(1, bed.seeded_keys + 1)))]


# --- 3. killed repair, run again -----------------------------------------------------------------

# Progress lines of a repair that restores etcd from a snapshot (quorum lost: the automatic
# choice), in the order they appear; each kill point is a line after which kindfix is SIGKILLed
# (the action it announces is then half done or not yet). Each must still appear in the run
# that continues the killed one.
KILL_POINTS = (
    "[2/",  # after the first file rewrite
    "etcd: stopping etcd on",  # the first member's manifest is being parked (beside the certs)
    "etcd: restoring",  # the first member's data is being restored from the snapshot
    "etcd: starting the members",  # the manifests go back: each member starts restored
)
# The same for --etcd-strategy force-new-cluster (KINDFIX_SLOW=1)
FNC_KILL_POINTS = (
    "] etcd membership",  # the etcd step starts (file and certificate steps done)
    "etcd: stopping etcd on",
    "etcd: starting",  # "starting <best> with --force-new-cluster"
    "etcd: adding",  # "adding <member> as a new member"
)


def _kill_at(bed: Bed, marker: str, *args: str) -> list[str]:
    """Start `repair --yes`, SIGKILL it right after the first progress line with `marker`."""
    with live_repair(bed, "--yes", *args) as run:
        run.wait_for(marker)
        run.kill()
        return run.lines


@dataclass(frozen=True)
class KillChain:
    keys: list[EtcdData]
    runs_before: set[str]
    final: Run


@pytest.fixture(scope="module")
def kill_chain(ha_bed: Bed) -> KillChain:
    """One permutation, then a chain of runs each SIGKILLed a step later; the last completes."""
    bed = ha_bed
    keys = _data_when_healthy_or_seeded(bed)
    _permute(bed)
    runs_before = set(journals(bed))
    t0 = time.monotonic()
    for marker in KILL_POINTS:
        _kill_at(bed, marker)
    final = kindfix(bed, "repair", "--yes")
    timed(f"3-CP chain of {len(KILL_POINTS)} killed repairs + final", time.monotonic() - t0)
    return KillChain(keys, runs_before, final)


def test_repair_killed_at_each_step_in_turn_then_run_again_ends_healthy(
        ha_bed: Bed, kill_chain: KillChain) -> None:
    assert kill_chain.final.exit_code == 0, kill_chain.final
    report = wait_healthy(ha_bed)
    _assert_current(ha_bed, report)
    assert_no_key_lost(ha_bed, kill_chain.keys)


# Not strict: whether a SIGKILL lands while a journal is being written is timing (it did in
# every run here, 3 of 3), so a passing run does not prove the fix.
def test_killed_repairs_are_continued_as_one_run_with_a_readable_journal(
        ha_bed: Bed, kill_chain: KillChain) -> None:
    new = {k: v for k, v in journals(ha_bed).items() if k not in kill_chain.runs_before}
    unreadable = {k: v for k, v in new.items() if v["status"] == "UNREADABLE"}
    assert not unreadable, f"a killed run left a journal that is not JSON: {unreadable}"
    assert [v["status"] for v in new.values()] == ["done"], new


@pytest.mark.slow
@skip_unless_slow
@pytest.mark.parametrize(("marker", "strategy"), [(m, "auto") for m in KILL_POINTS]
                         + [(m, "force-new-cluster") for m in FNC_KILL_POINTS])
def test_repair_killed_once_then_run_again_ends_healthy(ha_bed: Bed, marker: str,
                                                        strategy: str) -> None:
    bed = ha_bed
    keys = _data_when_healthy_or_seeded(bed)
    _permute(bed)
    _kill_at(bed, marker, "--etcd-strategy", strategy)
    final = kindfix(bed, "repair", "--yes")
    timed(f"3-CP repair after a kill at {marker!r} ({strategy})", final.seconds)
    assert final.exit_code == 0, final
    wait_healthy(bed)
    assert_no_key_lost(bed, keys)


def test_force_new_cluster_on_request_heals_without_losing_a_key(ha_bed: Bed) -> None:
    """The slower strategy that keeps WAL-only entries, chosen with --etcd-strategy."""
    bed = ha_bed
    keys = _data_when_healthy_or_seeded(bed)
    _permute(bed)
    run = kindfix(bed, "repair", "--yes", "--etcd-strategy", "force-new-cluster")
    timed("3-CP repair --etcd-strategy force-new-cluster", run.seconds)
    assert run.exit_code == 0, run
    assert "with --force-new-cluster" in run.stdout, run
    assert "as a new member" in run.stdout, run
    report = wait_healthy(bed)
    _assert_current(bed, report)
    assert_no_key_lost(bed, keys)


# --- 2. 1 CP + 2 workers, every kind image generation --------------------------------------------


@pytest.mark.parametrize("generation", ["none", "v0.8", "v0.15", "v0.30"])
def test_repair_heals_permuted_single_control_plane_bed(make_bed: Callable[..., Bed],
                                                        generation: str) -> None:
    t0 = time.monotonic()
    bed = make_bed(control_planes=1, workers=2, generation=generation, seed_keys=50)
    timed(f"create 1CP+2W {generation}", time.monotonic() - t0)
    before = _data(bed)
    perm = _permute(bed)
    assert sorted(perm.moved) == sorted(bed.nodes)
    res = kindfix(bed, "repair", "--yes")
    timed(f"1CP+2W {generation} repair", res.seconds)
    assert res.exit_code == 0, res
    report = wait_healthy(bed)
    _assert_current(bed, report)
    assert_no_key_lost(bed, before)
    ips = bed.ips()
    for node in bed.nodes:  # kind's entrypoint must not rewrite again on the next boot
        assert bed.exec(node, ["cat", "/kind/old-ipv4"]).stdout.strip() == ips[node]
        flags = bed.exec(node, ["cat", "/var/lib/kubelet/kubeadm-flags.env"]).stdout
        assert f"--node-ip={ips[node]}" in flags, (node, flags)


# --- 6. bad input: one clear error, nothing changed ----------------------------------------------


@pytest.fixture(scope="module")
def small_bed(module_beds: Callable[..., Bed]) -> Bed:
    """1 CP + 1 worker, permuted: a repair would change files, so 'nothing changed' means it."""
    bed = module_beds(control_planes=1, workers=1, generation="v0.15", seed_keys=20)
    _permute(bed)
    return bed


def test_unknown_cluster_is_one_clear_error(small_bed: Bed) -> None:
    before = fingerprint(small_bed)
    res = kindfix(small_bed, "repair", "--yes", name="kb-no-such-cluster", timeout_s=60)
    assert_one_error_line(res, "kb-no-such-cluster")
    assert before.changed_files(fingerprint(small_bed)) == []


def test_engine_down_is_one_clear_error(small_bed: Bed) -> None:
    before = fingerprint(small_bed)
    res = kindfix(small_bed, "repair", "--yes", timeout_s=60,
                  DOCKER_HOST="unix:///nonexistent.sock")
    assert_one_error_line(res)
    assert before.changed_files(fingerprint(small_bed)) == []


def test_corrupted_manifest_is_one_clear_error_and_changes_nothing(small_bed: Bed) -> None:
    bed = small_bed
    cp = bed.control_planes[0]
    path = "/etc/kubernetes/manifests/etcd.yaml"
    original = bed.exec(cp, ["cat", path]).stdout.encode()
    put_files(bed.client, cp, {path: (b"spec: [this is: not {a manifest\n\t- :\n", 0o600)})
    try:
        before = fingerprint(bed)
        res = kindfix(bed, "repair", "--yes", timeout_s=120)
        assert_one_error_line(res, "etcd.yaml")
        assert before.changed_files(fingerprint(bed)) == []
    finally:
        put_files(bed.client, cp, {path: (original, 0o600)})


def test_stopped_node_is_one_clear_error_and_changes_nothing(small_bed: Bed) -> None:
    bed = small_bed
    worker = bed.workers[0]
    bed.client.containers.get(worker).stop(timeout=10)
    try:
        before = fingerprint(bed, skip=[worker])
        res = kindfix(bed, "repair", "--yes", timeout_s=60)
        assert_one_error_line(res, worker)
        assert before.changed_files(fingerprint(bed, skip=[worker])) == []
    finally:
        bed.client.containers.get(worker).start()


# --- 7. HA beds of the other generations: v0.8 (literal-IP haproxy), pre-v0.8 (no fixup), v0.30 --


# The pre-v0.8 bed's etcd image also ships etcdutl and is tagged 3.6 (as etcd >= 3.6 images):
# the snapshot is read and restored with etcdutl there, with etcdctl (etcd 3.5 images) on the
# other.
@pytest.mark.parametrize(("generation", "lb", "tool"), [("v0.8", "literal", "etcdctl"),
                                                        ("none", "by-name", "etcdutl"),
                                                        ("v0.30", "by-name", "etcdctl")])
def test_repair_points_every_lb_backend_at_its_control_plane(
        make_bed: Callable[..., Bed], generation: str, lb: str, tool: str) -> None:
    t0 = time.monotonic()
    bed = make_bed(control_planes=3, workers=0, generation=generation, lb=lb, seed_keys=50,
                   etcdutl=tool == "etcdutl")
    timed(f"create 3CP {generation} {lb} LB", time.monotonic() - t0)
    before = _data(bed)
    _permute(bed)
    broken = check_bed(bed)
    assert not broken.healthy
    if lb == "literal":
        assert any("load balancer backend" in r for r in broken.reasons), broken.reasons
    res = kindfix(bed, "repair", "--yes")
    timed(f"3-CP {generation} {lb} LB repair", res.seconds)
    assert res.exit_code == 0, res
    assert f"; {tool} from registry.k8s.io/etcd:" in res.stdout, res
    report = wait_healthy(bed)
    ips = bed.ips()
    servers = {s.name: s for s in report.lb}
    assert sorted(servers) == sorted(bed.control_planes)
    for cp in bed.control_planes:
        assert servers[cp].addr == ips[cp], servers[cp]
        assert servers[cp].op_state == 2, servers[cp]
    assert_no_key_lost(bed, before)


# --- after an engine restart (opt-in: it restarts dockerd for the whole machine) -----------------


@pytest.mark.engine_restart
@pytest.mark.skipif(os.environ.get("KINDFIX_ENGINE_RESTART") != "1",
                    reason="restarts the Docker engine for the whole machine; "
                           "set KINDFIX_ENGINE_RESTART=1")
def test_repair_after_an_engine_restart_starts_the_lb_and_ends_healthy(
        make_bed: Callable[..., Bed]) -> None:
    from testbed.breaking import restart_engine

    bed = make_bed(control_planes=3, workers=0, generation="v0.15", lb="by-name")
    keys = [etcd_data(bed, bed.control_planes[0])]
    restart_engine(bed)  # nodes come back (exit 137 -> on-failure:1), the LB (exit 0) does not
    wait_booted(bed)
    audit = kindfix(bed, "audit")
    assert audit.exit_code == 4, audit
    assert "load balancer container is Exited" in audit.stdout
    run = kindfix(bed, "repair", "--yes")
    assert run.exit_code == 0, run
    assert "start the load balancer container" in run.stdout
    report = wait_healthy(bed)
    assert report.healthy, report.reasons
    assert_no_key_lost(bed, keys)
