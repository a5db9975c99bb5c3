from __future__ import annotations

import os
import signal
import time

from conftest import NodeRoot, pod_manifest, wait_for

from testbed.standins import kubelet, state

SLEEPER = {"sleeper": 'echo "up $*"; echo "err $FOO" >&2; exec sleep 60\n'}


def running(name: str) -> list[state.Container]:
    return [c for c in state.load_containers() if c.name == name and c.state == state.RUNNING]


def one_running(name: str) -> state.Container:
    got = wait_for(f"{name} running", lambda: running(name))
    assert isinstance(got, list)
    assert len(got) == 1
    return got[0]


def test_static_pod_runs_with_image_path_env_and_cri_labels(node: NodeRoot) -> None:
    node.image(tools=SLEEPER)
    node.write(
        "/etc/kubernetes/manifests/etcd.yaml",
        pod_manifest("etcd", ["sleeper", "--a=1"], env={"FOO": "bar"}),
    )
    k = kubelet.Kubelet("kind-control-plane")
    k.sync_once()
    c = one_running("etcd")
    assert len(c.id) == 64
    assert all(ch in "0123456789abcdef" for ch in c.id)
    assert c.attempt == 0
    assert c.config["labels"]["io.kubernetes.pod.name"] == "etcd-kind-control-plane"
    assert c.config["labels"]["io.kubernetes.pod.namespace"] == "kube-system"
    assert c.config["env"]["PATH"].split(":")[0].endswith("/registry.k8s.io_fake_1.0/bin")
    log = node.path(c.config["logPath"])
    wait_for("log lines", lambda: log.exists() and "err bar" in log.read_text())
    text = log.read_text()
    assert " stdout F up --a=1\n" in text
    assert " stderr F err bar\n" in text


def test_touch_keeps_content_change_recreates_removal_forgets(node: NodeRoot) -> None:
    node.image(tools=SLEEPER)
    m = node.write("/etc/kubernetes/manifests/kcm.yaml", pod_manifest("kcm", ["sleeper", "--x=1"]))
    k = kubelet.Kubelet("n1")
    k.sync_once()
    first = one_running("kcm")
    os.utime(m, (time.time() + 5, time.time() + 5))
    m.write_text(m.read_text())  # same content rewritten: still the same pod
    node.write("/etc/kubernetes/manifests/.kindfix.tmp123", "not: a pod")  # dotfiles are ignored
    k.sync_once()
    assert [c.id for c in running("kcm")] == [first.id]

    m.write_text(pod_manifest("kcm", ["sleeper", "--x=2"]))
    k.sync_once()
    second = one_running("kcm")
    assert second.id != first.id
    assert second.attempt == 0
    assert second.config["argv"] == ["sleeper", "--x=2"]
    assert state.load_container(first.id) is None  # the old pod is gone, not just stopped
    assert not state.pid_alive(first.pid, first.status.get("pidStart"))

    m.unlink()
    k.sync_once()
    assert state.load_containers() == []
    assert state.load_pods() == []
    assert not state.pid_alive(second.pid, second.status.get("pidStart"))


def test_exited_container_restarts_with_doubling_backoff(node: NodeRoot) -> None:
    node.image(tools={"crasher": "echo boom >&2; exit 3\n"})
    node.write("/etc/kubernetes/manifests/x.yaml", pod_manifest("x", ["crasher"]))
    k = kubelet.Kubelet("n1")
    k.sync_once(now=100.0)

    def exited() -> list[state.Container]:
        return [c for c in state.load_containers() if c.state == state.EXITED]

    wait_for("first exit", exited)
    assert exited()[0].status["exitCode"] == 3
    k.sync_once(now=100.5)  # back-off 1 s scheduled at 100.5
    assert len(state.load_containers()) == 1
    k.sync_once(now=101.6)  # due: attempt 1
    wait_for("attempt 1 exited", lambda: [c for c in exited() if c.attempt == 1])
    k.sync_once(now=101.7)  # back-off doubles: 2 s
    k.sync_once(now=103.0)
    assert max(c.attempt for c in state.load_containers()) == 1  # still backing off
    k.sync_once(now=103.8)
    wait_for("attempt 2 exited", lambda: [c for c in exited() if c.attempt == 2])
    attempts = sorted(c.attempt for c in state.load_containers())
    assert attempts == [1, 2]  # only the newest exited container is kept besides the current one
    assert k.pods[str(node.path("/etc/kubernetes/manifests/x.yaml"))].backoff["x"].delay == 2.0


def test_missing_image_creates_no_container(node: NodeRoot) -> None:
    node.write(
        "/etc/kubernetes/manifests/x.yaml",
        pod_manifest("x", ["sleep", "1"], image="registry.k8s.io/none:1"),
    )
    k = kubelet.Kubelet("n1")
    k.sync_once()
    assert state.load_containers() == []
    assert len(state.load_pods()) == 1


def test_kubelet_process_restart_adopts_running_containers(node: NodeRoot) -> None:
    node.image(tools=SLEEPER)
    node.write("/etc/kubernetes/manifests/etcd.yaml", pod_manifest("etcd", ["sleeper"]))
    node.write(
        "/var/lib/kubelet/kubeadm-flags.env",
        'KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/containerd/containerd.sock --node-ip=172.18.0.2"\n',
    )
    p = node.spawn(
        "kubelet", "--hostname-override=kind-control-plane", KINDBED_KUBELET_SYNC_PERIOD="0.2"
    )
    try:
        c = one_running("etcd")
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=5) == 0
        assert state.pid_alive(c.pid, c.status.get("pidStart"))  # containers outlive the kubelet
        p = node.spawn(
            "kubelet", "--hostname-override=kind-control-plane", KINDBED_KUBELET_SYNC_PERIOD="0.2"
        )
        time.sleep(0.8)
        assert [x.id for x in running("etcd")] == [c.id]  # adopted, not recreated
        os.killpg(c.pid, signal.SIGKILL)  # a crash: restarted with attempt 1
        again = wait_for(
            "restart", lambda: [x for x in running("etcd") if x.attempt == 1], timeout=6
        )
        assert isinstance(again, list)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=5)
    log = (node.root / "kubelet.log").read_text()
    assert 'nodeIP="172.18.0.2"' in log
    assert '"SyncLoop ADD" source="file" pods=["kube-system/etcd-kind-control-plane"]' in log


def test_node_ip_is_read_from_kubeadm_flags() -> None:
    text = 'KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///x --node-ip=172.18.0.7,fc00::7 --pod-infra-container-image=p"\n'
    assert kubelet.node_ip_from_flags(text) == "172.18.0.7,fc00::7"
    assert kubelet.node_ip_from_flags('KUBELET_KUBEADM_ARGS=""\n') is None
