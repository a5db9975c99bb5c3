"""kindfix end to end on Podman (issue #8 point 4): kind's podman provider, rootful, through
podman's Docker-compatible API socket.

The set-up installs podman when missing (apt), configures its ulimits for this machine family,
starts `podman system service`, and moves the bed's node image over (`docker save | podman
load`). The cluster is 1 control plane + 1 worker shaped as kind's podman provider makes it:
network `kind` (dual-stack, kind's ULA subnet), kind's labels, no restart policy. Stopping both
nodes and starting them in rotated order moves both (podman's IPAM hands out the next address,
testbed/podman.py). kindfix then runs as a user runs it, with KIND_EXPERIMENTAL_PROVIDER=podman
and nothing else pointing it anywhere. `make podman-test` runs this module alone; set
KINDFIX_PODMAN=0 to leave it out of `make test`.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import docker
import pytest

from testbed import images as img
from testbed import podman
from testbed.bed import CLUSTER_LABEL, ROLE_LABEL, Bed, load_bed
from testbed.breaking import permute
from testbed.checks import check_bed
from testbed.container import wait_running

from .repair_helpers import (
    PROGRESS,
    EtcdData,
    Run,
    assert_no_key_lost,
    etcd_data,
    kindfix_argv,
    timed,
    wait_booted,
    wait_healthy,
)

pytestmark = [
    pytest.mark.docker,
    pytest.mark.podman,
    pytest.mark.skipif(os.environ.get("KINDFIX_PODMAN") == "0", reason="KINDFIX_PODMAN=0"),
]

KINDFIX_TIMEOUT_S = 300.0
# leader-election Leases are rewritten every few seconds by design: their values are not data
_RENEWED = "/registry/leases/"
# what would point kindfix somewhere other than where kind's podman provider works
_ENGINE_ENV = ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY",
               "KIND_EXPERIMENTAL_DOCKER_NETWORK", "KIND_EXPERIMENTAL_PODMAN_NETWORK")


def kindfix_as_user(*args: str, provider: str | None = "podman") -> Run:
    """`python -m kindfix <args>` with only KIND_EXPERIMENTAL_PROVIDER set, bounded in time."""
    env = {k: v for k, v in os.environ.items() if k not in _ENGINE_ENV}
    env.pop("KIND_EXPERIMENTAL_PROVIDER", None)
    if provider:
        env["KIND_EXPERIMENTAL_PROVIDER"] = provider
    env["PYTHONUNBUFFERED"] = "1"
    argv = kindfix_argv(*args)
    t0 = time.monotonic()
    res = subprocess.run(argv, env=env, capture_output=True, text=True,
                         timeout=KINDFIX_TIMEOUT_S, check=False)
    run = Run(tuple(argv), res.returncode, res.stdout, res.stderr, time.monotonic() - t0)
    print(f"$ KIND_EXPERIMENTAL_PROVIDER={provider or ''} kindfix {' '.join(args)} "
          f"-> exit {run.exit_code} in {run.seconds:.1f}s")
    print("\n".join(ln for ln in run.stdout.splitlines() if PROGRESS.match(ln)))
    return run


@pytest.fixture(scope="module")
def podman_engine() -> podman.PodmanEngine:
    t0 = time.monotonic()
    eng = podman.ensure_podman()
    for label, seconds in eng.timings.items():
        timed(f"podman {label}", seconds)
    timed("podman engine ready (install + configure + service)", time.monotonic() - t0)
    return eng


@pytest.fixture(scope="module")
def podman_images(podman_engine: podman.PodmanEngine, bed_images: img.Images) -> img.Images:
    seconds = podman.load_images([bed_images.node])
    timed("docker save | podman load (node image; 0 = already there)", seconds)
    podman.prune_old_images([bed_images.node])
    return bed_images


@pytest.fixture(scope="module")
def podman_bed(podman_engine: podman.PodmanEngine, podman_images: img.Images,
               engine: docker.DockerClient) -> Iterator[Bed]:
    # one bed for the module: the shape test reads it before the repair test breaks it.
    # `engine` (the Docker one) built the images; podman's sweep is create_bed's own
    bed = podman.create_podman_bed(podman_engine, podman_images, workers=1)
    try:
        timed("create 1 CP + 1 worker on podman", bed.timings["create_s"])
        yield bed
    finally:
        bed.destroy()


def test_bed_has_kinds_podman_shape(podman_bed: Bed) -> None:
    client = podman_bed.client
    assert podman_bed.network == "kind"
    net = client.networks.get("kind").attrs
    subnets = [s["Subnet"] for s in net["IPAM"]["Config"]]
    if net.get("Labels", {}).get("dev.kindfix.testbed") == podman_bed.id:  # made by this bed
        assert podman.kind_ula_subnet("kind") in subnets, subnets
    for name in podman_bed.nodes:
        attrs = client.containers.get(name).attrs
        labels = attrs["Config"]["Labels"]
        assert labels[CLUSTER_LABEL] == podman_bed.cluster
        assert labels[ROLE_LABEL] == ("control-plane" if "control-plane" in name else "worker")
        assert attrs["Config"]["Hostname"] == name
        assert attrs["HostConfig"]["RestartPolicy"]["Name"] in ("", "no"), attrs["HostConfig"]
        endpoint = attrs["NetworkSettings"]["Networks"]["kind"]
        assert endpoint["IPAddress"] and endpoint["GlobalIPv6Address"], endpoint
    # a handle rebuilt from the labels (`python -m testbed` does that) finds the same network
    assert load_bed(client, podman_bed.id).network == "kind"


def test_kindfix_repairs_a_podman_cluster_end_to_end(podman_bed: Bed) -> None:
    bed = podman_bed
    cp = bed.control_planes[0]
    data = etcd_data(bed, cp)
    before = [EtcdData(data.node, data.revision,
                       frozenset(kv for kv in data.kvs if not kv[0].startswith(_RENEWED)))]
    p = permute(bed)
    timed("permute on podman (stop both, start rotated)", p.seconds)
    assert sorted(p.moved) == sorted(bed.nodes), (p.before, p.after)
    wait_booted(bed)
    assert not check_bed(bed).healthy, "the permutation did not break the bed"

    clusters = kindfix_as_user("clusters")
    assert clusters.exit_code == 0, clusters
    assert bed.cluster in clusters.stdout.split(), clusters
    # the same kindfix without the provider asks Docker, which has no such cluster
    on_docker = kindfix_as_user("clusters", provider=None)
    assert bed.cluster not in on_docker.stdout.split(), on_docker

    audit = kindfix_as_user("audit", "--name", bed.cluster)
    timed("audit (broken) on podman", audit.seconds)
    assert audit.exit_code == 4, audit
    assert "stale" in audit.stdout and p.after[cp] in audit.stdout, audit

    repair = kindfix_as_user("repair", "--yes", "--name", bed.cluster)
    timed("repair on podman", repair.seconds)
    assert repair.exit_code == 0, repair

    after = kindfix_as_user("audit", "--name", bed.cluster)
    assert after.exit_code == 0, after
    wait_healthy(bed)
    assert_no_key_lost(bed, before)


def test_pin_keeps_addresses_across_a_restart_on_podman(podman_bed: Bed) -> None:
    # podman moves every node on every restart (testbed/podman.py): pinning matters more here
    bed = podman_bed
    pinned = kindfix_as_user("pin", "--name", bed.cluster)
    assert pinned.exit_code == 0, pinned
    before = bed.ips()
    for name in bed.nodes:
        bed.client.containers.get(name).stop(timeout=10)
    for name in reversed(bed.nodes):  # the other order: unpinned, both would move
        bed.client.containers.get(name).start()
        wait_running(bed.client, name, bed.network)
    assert bed.ips() == before
