"""kindfix's verification against the faithful stand-ins (issue #10): a controller-manager cut off
from the apiserver answers /healthz `ok` (client-go LeaderElector.Check: not the leader), and
verify must still say the cluster is not healthy."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from testbed.bed import Bed
from testbed.checks import check_bed
from testbed.standins import pki

from .repair_helpers import kindfix, wait_healthy

pytestmark = pytest.mark.docker

CONF = "/etc/kubernetes/controller-manager.conf"


def test_a_controller_manager_with_a_stale_kubeconfig_fails_verify_though_healthz_is_ok(
        make_bed: Callable[..., Bed]) -> None:
    bed = make_bed(control_planes=1, workers=0, generation="v0.15", seed_keys=10)
    cp = bed.control_planes[0]
    wait_healthy(bed)
    # a kubeconfig left from before a CA rotation: the apiserver's certificate is signed by
    # a CA it does not trust (no stale IP in it, so no repair step touches it)
    pem = pki.make_ca("kubernetes").cert.public_bytes(Encoding.PEM)
    stale_ca = base64.b64encode(pem).decode()
    res = bed.exec(cp, ["sh", "-c", f'sed -i "s|certificate-authority-data: .*|'
                                    f'certificate-authority-data: {stale_ca}|" {CONF} && '
                                    "crictl stop $(crictl ps -q --name kube-controller-manager)"])
    assert res.ok, res.stderr

    def healthz() -> str:
        r = bed.exec(cp, ["curl", "-sk", "--max-time", "3", "https://127.0.0.1:10257/healthz"])
        return r.stdout.strip()

    for _ in range(30):  # restarted by the kubelet (its first exit: at once)
        if healthz() == "ok" and "error retrieving resource lock" in bed.exec(
                cp, ["sh", "-c", "crictl logs $(crictl ps -q --name kube-controller-manager)"]
        ).stderr:
            break
        bed.exec(cp, ["sleep", "1"])
    assert healthz() == "ok"  # what kindfix trusted before: proves nothing

    run = kindfix(bed, "repair", "--yes", "--verify-timeout", "8")
    assert run.exit_code == 4, run
    assert f"{cp}: kube-controller-manager reaches the apiserver" in run.stdout + run.stderr, run
    report = check_bed(bed)  # the bed's own verdict agrees (its log shows the lock errors)
    assert any("kube-controller-manager leader election" in r for r in report.reasons), \
        report.reasons
