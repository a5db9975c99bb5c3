"""Issue 9.7 on the live bed: a kind-shaped node audits with no `unknown` finding (the required
locations of patches/addresses.yaml are where the bed, like kind, puts them), and a manifest
restructured by hand is reported `unknown` while repair refuses to plan around it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from kindfix import api
from kindfix.docker_runtime import DockerRuntime
from kindfix.errors import KindfixError
from kindfix.findings import UNKNOWN
from testbed.bed import Bed

pytestmark = pytest.mark.docker

ETCD = "/etc/kubernetes/manifests/etcd.yaml"


def test_a_healthy_bed_has_nothing_unknown_and_a_restructured_manifest_is_refused(
        make_bed: Callable[..., Bed]) -> None:
    bed = make_bed(control_planes=1, workers=1, generation="v0.15")
    runtime = DockerRuntime()
    report = api.audit_live(runtime, bed.cluster)
    assert report.unknown == (), report.unknown
    assert sum(f.node == bed.control_planes[0] for f in report.findings) >= 15

    cp = bed.control_planes[0]
    # the etcd container renamed: kubeadm's flags are no longer where patches say they are
    bed.exec(cp, ["sh", "-c", f"cp {ETCD} /tmp/etcd.yaml && "
                  f"sed 's/^    name: etcd$/    name: etcd-renamed/' /tmp/etcd.yaml > {ETCD}.new"
                  f" && mv {ETCD}.new {ETCD}"])
    before = bed.exec(cp, ["cat", ETCD]).stdout
    assert "etcd-renamed" in before
    report = api.audit_live(runtime, bed.cluster)
    unknown = [f for f in report.findings if f.status == UNKNOWN]
    assert unknown and all(f.node == cp and f.source.startswith(ETCD) for f in unknown)
    assert not report.consistent
    with pytest.raises(KindfixError, match=f"will not plan a repair: {cp}:{ETCD}#"):
        api.repair(runtime, bed.cluster, dry_run=True)
    assert bed.exec(cp, ["cat", ETCD]).stdout == before
