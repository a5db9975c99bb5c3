"""`kindfix repair` the instant Docker hands a permuted 3 CP + LB bed back (issue #10), with the
faithful stand-ins: the apiservers crash-loop while etcd has no quorum (storage init), the
kubelet backs off 10 s, 20 s, ... and kindfix must clear that back-off so the repaired cluster
answers at once rather than minutes later. kind's entrypoint is still PID 1 for a while after
the start (its boot fix-ups; the bed's knob makes that 8 s): it rewrites the old IP in the files
kindfix reads, and systemctl does not answer until it execs systemd, so kindfix must wait."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from testbed.bed import Bed
from testbed.breaking import permute

from .repair_helpers import assert_no_key_lost, etcd_data, kindfix, wait_healthy

pytestmark = pytest.mark.docker
BOOT_DELAY_S = 8


def test_repair_started_while_the_nodes_boot_ends_healthy_without_losing_a_key(
        make_bed: Callable[..., Bed]) -> None:
    bed = make_bed(control_planes=3, workers=0, generation="v0.15", lb="by-name",
                   seed_keys=100)
    before = [etcd_data(bed, n) for n in bed.control_planes]
    for n in bed.nodes:  # testbed/standins/CONTRACT.md: the entrypoint's boot-delay knob
        assert bed.exec(n, ["sh", "-c", f"echo {BOOT_DELAY_S} > /kind/kindbed-boot-delay"]).ok
    perm = permute(bed)  # returns once the IPs moved: the nodes are still booting
    assert sorted(perm.moved) == sorted(bed.nodes), perm
    run = kindfix(bed, "repair", "--yes")
    assert run.exit_code == 0, run
    assert "waiting for systemd on" in run.stderr + run.stdout, run
    assert f"Cluster {bed.cluster} is healthy" in run.stdout, run
    for line in ("controller-manager holds and renews its Lease",
                 "kube-scheduler holds and renews its Lease"):
        assert line in run.stdout, run
    wait_healthy(bed, timeout_s=30)  # the bed's own verdict, leases included
    assert_no_key_lost(bed, before)
