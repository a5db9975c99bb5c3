"""KINDBED_KUBELET_START_DELAY (CONTRACT.md): the kubelet stand-in runs no static pod until that
many seconds after it started, as a booting kind node does (kindfix issue #10)."""

from __future__ import annotations

import signal
import time

import pytest
from conftest import NodeRoot, pod_manifest, wait_for

from testbed.standins import kubelet, state

SLEEPER = {"sleeper": "exec sleep 60\n"}


def test_the_delay_comes_from_the_environment_else_from_etc_default_kubelet(
        node: NodeRoot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(kubelet.START_DELAY, raising=False)
    assert kubelet.start_delay() == 0.0
    node.write(kubelet.DEFAULTS_FILE, 'KUBELET_EXTRA_ARGS=\nKINDBED_KUBELET_START_DELAY="12"\n')
    assert kubelet.start_delay() == 12.0
    assert kubelet.start_delay({kubelet.START_DELAY: "3.5"}) == 3.5  # the environment wins
    assert kubelet.start_delay({kubelet.START_DELAY: "soon"}) == 0.0
    assert kubelet.start_delay({kubelet.START_DELAY: "-4"}) == 0.0


@pytest.mark.parametrize("delay", [0.0, 2.5])
def test_no_static_pod_runs_before_the_delay_is_over(node: NodeRoot, delay: float) -> None:
    node.image(tools=SLEEPER)
    node.write("/etc/kubernetes/manifests/etcd.yaml", pod_manifest("etcd", ["sleeper"]))
    node.write(kubelet.DEFAULTS_FILE, f"KINDBED_KUBELET_START_DELAY={delay}\n")
    t0 = time.monotonic()
    proc = node.spawn("kubelet", "--hostname-override=n1", KINDBED_KUBELET_SYNC_PERIOD="0.1")
    try:
        wait_for("etcd running", lambda: [c for c in state.load_containers()
                                          if c.name == "etcd" and c.state == state.RUNNING],
                 timeout=delay + 8)
        took = time.monotonic() - t0
        assert took >= delay
        assert delay > 0 or took < 2.5  # without the knob: at once, as before
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
