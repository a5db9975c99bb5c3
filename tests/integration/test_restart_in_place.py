"""A 3 CP + LB bed restarted WITHOUT an IP change, `kindfix repair --yes` run the moment Docker
hands the nodes back (issue #10 part 1, "Done when"). Nothing is wrong, so nothing may change:
an empty plan, the same etcd cluster ID, a healthy cluster.

The kubelets start static pods only KUBELET_START_DELAY_S after a node starts (the stand-in's
KINDBED_KUBELET_START_DELAY, CONTRACT.md): a real kind node needs systemd, containerd and the
kubelet first. Before issue #10 kindfix read "no member answered yet" as "quorum lost" and
restored etcd from a snapshot (a new cluster ID).
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from testbed.bed import Bed, put_files
from testbed.container import wait_running

from .repair_helpers import journals, kindfix, running_containers, timed, wait_healthy

pytestmark = pytest.mark.docker

# "tens of seconds" on a real node; the issue saw ~8 s on a loaded machine. Long enough that
# kindfix certainly starts before any etcd member runs.
KUBELET_START_DELAY_S = 20


def cluster_id(bed: Bed) -> str:
    for node in bed.control_planes:
        res = bed.etcdctl(node, "member", "list", "-w", "json")
        if res.ok:
            return str(json.loads(res.stdout)["header"]["cluster_id"])
    raise AssertionError("no etcd member answered `member list`")


def restart_in_place(bed: Bed) -> dict[str, str | None]:
    """Stop every node, start them again in the order of their addresses: Docker hands out the
    lowest free address first, so each gets its old one back (TESTBED.md). The LB keeps
    running, as when only the nodes restart."""
    before = bed.ips()
    order = sorted(bed.nodes, key=lambda n: ipaddress.ip_address(before[n] or "0.0.0.0"))
    with ThreadPoolExecutor(max_workers=len(order)) as pool:
        list(pool.map(lambda n: bed.client.containers.get(n).stop(timeout=10), order))
    for n in order:
        bed.client.containers.get(n).start()
        wait_running(bed.client, n, bed.network)
    after = bed.ips()
    assert after == before, f"the restart moved IPs: {before} -> {after}"
    return after


def test_restart_without_ip_change_is_left_alone(make_bed: Callable[..., Bed]) -> None:
    bed = make_bed(control_planes=3, workers=0, generation="v0.15", lb="by-name", seed_keys=20)
    wait_healthy(bed)
    before_id = cluster_id(bed)
    for node in bed.nodes:  # read by the kubelet stand-in at every start
        put_files(bed.client, node, {"/etc/default/kubelet": (
            f"KINDBED_KUBELET_START_DELAY={KUBELET_START_DELAY_S}\n".encode(), 0o644)})

    restart_in_place(bed)
    t0 = time.monotonic()
    run = kindfix(bed, "repair", "--yes")
    timed("3-CP repair right after a restart without IP change", run.seconds)

    assert run.exit_code == 0, run
    assert "nothing to do" in run.stdout, run
    # the case this test is about: kindfix really started before etcd did, and waited
    assert "waiting for etcd to start on" in run.stdout, run
    assert "a member has a leader" in run.stdout, run
    assert f"Cluster {bed.cluster} is healthy" in run.stdout, run
    assert journals(bed) == {}, "a repair with nothing to do recorded a run"
    assert run.seconds < KUBELET_START_DELAY_S + 120, run
    wait_healthy(bed)
    assert cluster_id(bed) == before_id, "etcd was rebuilt (new cluster ID)"
    # and nothing was restarted behind our back after the repair either
    pods = running_containers(bed)
    time.sleep(2)
    assert running_containers(bed) == pods
    timed("restart-in-place total", time.monotonic() - t0)
