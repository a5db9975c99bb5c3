from __future__ import annotations

import signal
import time

import pytest
from conftest import NodeRoot, pod_manifest, run_main, wait_for

from testbed.standins import state, systemctl, unit


def test_init_supervises_kubelet_for_systemctl_and_stops_everything(
    node: NodeRoot, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_main(capsys, systemctl.main, "restart", "kubelet").returncode == 1  # no init yet
    node.image(tools={"sleeper": "exec sleep 60\n"})
    node.write("/etc/kubernetes/manifests/etcd.yaml", pod_manifest("etcd", ["sleeper"]))
    init = node.spawn("init", KINDBED_KUBELET_SYNC_PERIOD="0.2")
    try:
        wait_for(
            "etcd running", lambda: [c for c in state.load_containers() if c.state == state.RUNNING]
        )
        r = run_main(capsys, systemctl.main, "is-active", "kubelet")
        assert (r.returncode, r.stdout) == (0, "active\n")
        first = unit.read_status()["pid"]
        etcd = state.load_containers()[0]

        assert run_main(capsys, systemctl.main, "restart", "kubelet.service").returncode == 0
        assert unit.read_status()["pid"] != first
        assert state.pid_alive(etcd.pid, etcd.status.get("pidStart"))  # containers survive

        assert run_main(capsys, systemctl.main, "stop", "kubelet").returncode == 0
        r = run_main(capsys, systemctl.main, "is-active", "kubelet")
        assert (r.returncode, r.stdout) == (3, "inactive\n")
        assert run_main(capsys, systemctl.main, "status", "kubelet").returncode == 3
        assert run_main(capsys, systemctl.main, "start", "kubelet").returncode == 0
        assert (
            "Active: active (running)"
            in run_main(capsys, systemctl.main, "status", "kubelet").stdout
        )
        assert run_main(capsys, systemctl.main, "daemon-reload").returncode == 0
        assert run_main(capsys, systemctl.main, "is-active", "containerd").returncode == 3
    finally:
        t0 = time.monotonic()
        init.send_signal(signal.SIGTERM)
        code = init.wait(timeout=10)
        stopped_in = time.monotonic() - t0
    assert code == 137  # non-zero like a kind node, so on-failure:1 restarts it with dockerd
    assert stopped_in < 3.0
    assert not state.pid_alive(etcd.pid, etcd.status.get("pidStart"))


@pytest.mark.parametrize("verb", ["is-active", "status", "is-enabled", "restart", "daemon-reload"])
def test_every_verb_fails_like_systemctl_while_pid_1_is_not_systemd(
    node: NodeRoot, capsys: pytest.CaptureFixture[str], verb: str
) -> None:
    # kind's entrypoint is PID 1 until it execs systemd: no verb answers, not even is-active
    r = run_main(capsys, systemctl.main, *([verb] if verb == "daemon-reload" else [verb, "kubelet"]))
    assert r.returncode == 1
    assert r.stdout == ""
    assert "System has not been booted with systemd as init system (PID 1)" in r.stderr
    assert "Failed to connect to bus: Host is down" in r.stderr
