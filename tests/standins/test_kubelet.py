from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
import yaml
from conftest import NodeRoot, pod_manifest, wait_for

from testbed.standins import kubelet, state

SLEEPER = {"sleeper": 'echo "up $*"; echo "err $FOO" >&2; exec sleep 60\n'}


@pytest.fixture(autouse=True)
def api_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests copy a kubelet whose API server answers (pod sources ready); the one that
    started without it is test_kubelet_sources.py's."""
    monkeypatch.setenv(kubelet.SOURCES, "always")


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


def exited() -> list[state.Container]:
    return [c for c in state.load_containers() if c.state == state.EXITED]


def exit_of(attempt: int) -> float:
    """Wait for the container of this attempt to exit; its finishedAt in seconds (wall time)."""
    got = wait_for(f"attempt {attempt} exited",
                   lambda: [c for c in exited() if c.attempt == attempt and
                            c.status.get("finishedAt")])
    assert isinstance(got, list)
    return int(got[0].status["finishedAt"]) / 1e9


def attempts() -> list[int]:
    return sorted(c.attempt for c in state.load_containers())


def test_crash_loop_back_off_is_10s_doubling_from_the_second_exit(node: NodeRoot) -> None:
    """kuberuntime doBackOff: the first exit restarts at once, then 10 s, 20 s, ... each counted
    from the finish of the exited container."""
    node.image(tools={"crasher": "echo boom >&2; exit 3\n"})
    node.write("/etc/kubernetes/manifests/x.yaml", pod_manifest("x", ["crasher"]))
    k = kubelet.Kubelet("n1")
    k.sync_once()
    f0 = exit_of(0)
    assert exited()[0].status["exitCode"] == 3
    k.sync_once(now=f0 + 0.1)  # first exit: no back-off yet
    f1 = exit_of(1)
    k.sync_once(now=f1 + 9.5)
    assert max(attempts()) == 1  # 10 s back-off
    k.sync_once(now=f1 + 10.2)
    f2 = exit_of(2)
    assert attempts() == [1, 2]  # only the newest exited container is kept besides the current one
    k.sync_once(now=f2 + 19.5)
    assert max(attempts()) == 2  # doubled: 20 s
    k.sync_once(now=f2 + 20.2)
    exit_of(3)
    key = k.backoff_key(next(iter(k.pods.values())), "x")
    assert key.endswith("_x") and "_kube-system_" in key
    assert k.backoff.delay(key) == 40.0
    log = (node.root / "var/log/kindbed/kubelet.log")
    text = log.read_text() if log.exists() else ""
    assert "with CrashLoopBackOff" in text or text == ""  # kept greppable when logged to file


def test_back_off_caps_at_300s_and_is_forgotten_after_10_minutes_without_a_failure() -> None:
    b = kubelet.Backoff()
    delays = []
    t = 1000.0
    for _ in range(8):
        b.next("k", t, t)
        delays.append(b.delay("k"))
        t += 1
    assert delays == [10, 20, 40, 80, 160, 300, 300, 300]
    assert b.in_backoff_since("k", t, t + 299)
    assert not b.in_backoff_since("k", t, t + 301)
    b.next("k", t + 601, t + 601)  # more than 2 x 300 s after the last failure: starts over
    assert b.delay("k") == 10
    b.gc(t + 601 + 601)
    assert b.entries == {}


def test_back_off_is_kubelet_memory_a_new_kubelet_starts_an_exited_container_at_once(
    node: NodeRoot,
) -> None:
    node.image(tools={"crasher": "exit 1\n"})
    node.write("/etc/kubernetes/manifests/x.yaml", pod_manifest("x", ["crasher"]))
    k = kubelet.Kubelet("n1")
    k.sync_once()
    k.sync_once(now=exit_of(0) + 0.1)
    f1 = exit_of(1)
    k.sync_once(now=f1 + 1)
    assert max(attempts()) == 1  # this kubelet waits 10 s
    fresh = kubelet.Kubelet("n1")  # `systemctl restart kubelet`
    fresh.adopt()
    fresh.sync_once(now=f1 + 1)
    exit_of(2)


def test_removing_the_exited_container_clears_its_back_off(node: NodeRoot) -> None:
    node.image(tools={"crasher": "exit 1\n"})
    node.write("/etc/kubernetes/manifests/x.yaml", pod_manifest("x", ["crasher"]))
    k = kubelet.Kubelet("n1")
    k.sync_once()
    k.sync_once(now=exit_of(0) + 0.1)
    f1 = exit_of(1)
    k.sync_once(now=f1 + 1)
    assert max(attempts()) == 1
    [gone] = [c for c in exited() if c.attempt == 1]
    r = node.run("crictl", "rm", gone.id)
    assert r.returncode == 0, r.stderr
    k.sync_once(now=f1 + 1)  # no exited container: nothing to back off from
    wait_for("a new container", state.load_containers)
    assert attempts() == [0]


def test_a_changed_manifest_is_a_new_uid_without_back_off(node: NodeRoot) -> None:
    node.image(tools={"crasher": "exit 1\n"})
    m = node.write("/etc/kubernetes/manifests/x.yaml", pod_manifest("x", ["crasher"]))
    k = kubelet.Kubelet("n1")
    k.sync_once()
    k.sync_once(now=exit_of(0) + 0.1)
    f1 = exit_of(1)
    m.write_text(pod_manifest("x", ["crasher", "--v=2"]))
    k.sync_once(now=f1 + 1)
    got = wait_for("new pod's container", lambda: [c for c in state.load_containers()
                                                   if c.config["argv"][-1] == "--v=2"])
    assert isinstance(got, list)
    assert got[0].attempt == 0


class _Health(BaseHTTPRequestHandler):
    codes: ClassVar[dict[str, int]] = {}

    def do_GET(self) -> None:
        code = self.codes.get(self.path.split("?")[0], 404)
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def health_port() -> Iterator[int]:
    """A loopback server answering each path with _Health.codes (the probes' target)."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield int(srv.server_address[1])
    finally:
        srv.shutdown()
        srv.server_close()


def probed_manifest(port: int, startup: str, liveness: str) -> str:
    def probe(path: str, threshold: int) -> dict[str, object]:
        return {"httpGet": {"host": "127.0.0.1", "path": path, "port": port, "scheme": "HTTP"},
                "initialDelaySeconds": 0, "periodSeconds": 0.2, "timeoutSeconds": 1,
                "failureThreshold": threshold}

    doc = yaml.safe_load(pod_manifest("etcd", ["sleeper"]))
    doc["spec"]["containers"][0]["startupProbe"] = probe(startup, 3)
    doc["spec"]["containers"][0]["livenessProbe"] = probe(liveness, 2)
    return str(yaml.safe_dump(doc))


def test_a_failing_startup_probe_restarts_the_container(node: NodeRoot,
                                                         health_port: int) -> None:
    """kubeadm's etcd startupProbe (/health?serializable=false): a member that never gets a
    leader is killed after failureThreshold x periodSeconds."""
    _Health.codes = {"/health": 503, "/livez": 200}
    node.image(tools=SLEEPER)
    node.write("/etc/kubernetes/manifests/etcd.yaml",
               probed_manifest(health_port, "/health", "/livez"))
    k = kubelet.Kubelet("n1")
    try:
        k.sync_once()
        first = one_running("etcd")
        wait_for("killed by the startup probe", exited, timeout=10)
        assert exited()[0].id == first.id
        exit_of(0)  # its exit recorded by the shim
        assert int(exited()[0].status["exitCode"]) in (137, 143)  # SIGKILL/SIGTERM, as runc
        k.sync_once()
        assert one_running("etcd").attempt == 1
    finally:
        k.stopping.set()


def test_a_passing_startup_probe_hands_over_to_the_liveness_probe(node: NodeRoot,
                                                                  health_port: int) -> None:
    _Health.codes = {"/health": 200, "/livez": 200}
    node.image(tools=SLEEPER)
    node.write("/etc/kubernetes/manifests/apiserver.yaml",
               probed_manifest(health_port, "/health", "/livez"))
    k = kubelet.Kubelet("n1")
    try:
        k.sync_once()
        first = one_running("etcd")
        time.sleep(1.5)  # startup passed, liveness passing: still the same container
        k.sync_once()
        assert [c.id for c in running("etcd")] == [first.id]
        _Health.codes = {"/health": 200, "/livez": 500}  # e.g. an apiserver that lost etcd
        wait_for("killed by the liveness probe", exited, timeout=10)
    finally:
        k.stopping.set()


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
