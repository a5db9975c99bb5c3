"""The kubelet stand-in without an API server (pod sources not ready; realkind findings 1, 2):
it never terminates a static pod whose manifest changed or went, keeps restarting the old one's
containers, and leaves an earlier kubelet's pods alone; a new kubelet knows only the manifests
on disk. CONTRACT.md, kubelet row "sources ready"."""

from __future__ import annotations

import pytest
from conftest import NodeRoot, pod_manifest, wait_for

from testbed.standins import kubelet, state

SLEEPER = {"sleeper": "exec sleep 60\n"}
M = "/etc/kubernetes/manifests/etcd.yaml"


@pytest.fixture(autouse=True)
def no_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(kubelet.SOURCES, raising=False)


def running(argv_tail: str | None = None) -> list[state.Container]:
    return [c for c in state.load_containers() if c.state == state.RUNNING and
            (argv_tail is None or c.config["argv"][-1] == argv_tail)]


def test_a_changed_manifest_is_not_acted_on_and_the_old_pod_keeps_running(
        node: NodeRoot, capfd: pytest.CaptureFixture[str]) -> None:
    node.image(tools=SLEEPER)
    m = node.write(M, pod_manifest("etcd", ["sleeper", "--old"]))
    k = kubelet.Kubelet("n1")
    k.sync_once()
    [old] = wait_for("old etcd", lambda: running("--old"))  # type: ignore[misc]
    m.write_text(pod_manifest("etcd", ["sleeper", "--new"]))
    for _ in range(3):
        k.sync_once()
    assert [c.id for c in running()] == [old.id]  # the new pod waits for the old one
    assert "skipping delete because sources aren't ready yet" in capfd.readouterr().err
    # once the API server answered, the change is made
    k.sources_ready.set()
    k.sync_once()
    k.sync_once()
    wait_for("new etcd", lambda: running("--new"))
    assert not running("--old")


def test_a_removed_manifest_keeps_its_stopped_container_restarting(node: NodeRoot) -> None:
    node.image(tools=SLEEPER)
    m = node.write(M, pod_manifest("etcd", ["sleeper"]))
    k = kubelet.Kubelet("n1")
    k.sync_once()
    [c] = wait_for("etcd", running)  # type: ignore[misc]
    m.unlink()  # parked
    r = node.run("crictl", "stop", c.id)
    assert r.returncode == 0, r.stderr
    k.sync_once()  # the first exit is restarted at once; later ones under back-off
    again = wait_for("etcd restarted", lambda: [x for x in running() if x.attempt == 1])
    assert again


def test_a_new_kubelet_knows_only_the_manifests_on_disk(node: NodeRoot) -> None:
    node.image(tools=SLEEPER)
    m = node.write(M, pod_manifest("etcd", ["sleeper", "--old"]))
    k = kubelet.Kubelet("n1")
    k.sync_once()
    [old] = wait_for("old etcd", lambda: running("--old"))  # type: ignore[misc]
    m.unlink()
    fresh = kubelet.Kubelet("n1")  # `systemctl restart kubelet`
    fresh.adopt()
    fresh.sync_once()
    assert [c.id for c in running()] == [old.id]  # left running: housekeeping waits
    r = node.run("crictl", "stop", old.id)
    assert r.returncode == 0, r.stderr
    fresh.sync_once()
    fresh.sync_once()
    assert running() == []  # nobody restarts a pod no manifest wants
    m.write_text(pod_manifest("etcd", ["sleeper", "--new"]))  # unparked, restored
    fresh.sync_once()
    wait_for("new etcd", lambda: running("--new"))


def test_sources_become_ready_when_the_api_server_answers(
        node: NodeRoot, monkeypatch: pytest.MonkeyPatch) -> None:
    node.write("/etc/kubernetes/kubelet.conf",
               "clusters:\n- cluster:\n    server: https://[fc00::2]:6443\n  name: kind\n")
    asked: list[str] = []
    answers = iter([False, False, True])
    monkeypatch.setattr(kubelet, "SOURCES_POLL", 0.01)
    monkeypatch.setattr(kubelet, "api_answers", lambda s: asked.append(s) or next(answers))
    k = kubelet.Kubelet("n1")
    assert not k.sources_ready.is_set()
    k.watch_sources()
    assert k.sources_ready.is_set()
    assert asked == ["https://[fc00::2]:6443"] * 3


def test_always_is_the_kinder_stand_in(monkeypatch: pytest.MonkeyPatch, node: NodeRoot) -> None:
    monkeypatch.setenv(kubelet.SOURCES, "always")
    assert kubelet.Kubelet("n1").sources_ready.is_set()
    monkeypatch.delenv(kubelet.SOURCES)
    node.write(kubelet.DEFAULTS_FILE, f"{kubelet.SOURCES}=always\n")
    assert kubelet.sources_always_ready()


def test_api_server_of_a_kubeconfig() -> None:
    conf = "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: x\n" \
           "    server: https://kind-control-plane:6443\n  name: kind\n"
    assert kubelet.api_server(conf) == "https://kind-control-plane:6443"
    assert kubelet.api_server("clusters: []\n") is None
    assert kubelet.api_answers("https://no-port-here") is False


def sandboxes_of(uid: str) -> list[dict[str, object]]:
    return [s for s in state.load_pods() if s["metadata"]["uid"] == uid]  # type: ignore[index]


def etcd_running(node: NodeRoot, arg: str) -> tuple[kubelet.Kubelet, state.Container, str]:
    """A kubelet running the etcd pod (a sleeper given `arg`): it, the container, the pod's UID."""
    node.image(tools=SLEEPER)
    m = node.write(M, pod_manifest("etcd", ["sleeper", arg]))
    k = kubelet.Kubelet("n1")
    k.sync_once()
    [c] = wait_for("etcd", running)  # type: ignore[misc]
    return k, c, k.pods[str(m)].pod.config_hash


def test_a_manifest_put_back_unchanged_gets_its_parked_pod_back(node: NodeRoot) -> None:
    """kindfix parks etcd.yaml, restarts the kubelet, stops etcd, and later puts the same file
    back and restarts the kubelet again; the kubelet running when the file comes back may start
    etcd first. A real kubelet finds the pod's one sandbox by UID in the runtime and reuses it
    (podSandboxChanged), so the kubelet after it adopts that etcd. The stand-in made a second
    sandbox: the next kubelet adopted one of the two, restarted etcd in it (port in use, back-off)
    and killed the other as an orphan once the API server answered: etcd down ~10 s."""
    _, old, uid = etcd_running(node, "--same")
    m = node.path(M)
    content = m.read_text()
    m.unlink()  # parked
    parked = kubelet.Kubelet("n1")  # park restarts the kubelet
    parked.adopt()
    assert node.run("crictl", "stop", old.id).returncode == 0
    parked.sync_once()
    assert running() == [] and len(sandboxes_of(uid)) == 1  # the stopped pod's sandbox stays
    m.write_text(content)  # put back, unchanged
    parked.sync_once()  # this kubelet sees it before kindfix restarts it
    [again] = wait_for("etcd again", running)  # type: ignore[misc]
    assert len(sandboxes_of(uid)) == 1 and again.attempt == old.attempt + 1
    fresh = kubelet.Kubelet("n1")  # kindfix's restart
    fresh.adopt()
    fresh.sync_once()
    fresh.sources_ready.set()  # the API server answers: housekeeping runs
    fresh.sync_once()
    fresh.sync_once()
    assert [c.id for c in running()] == [again.id]  # adopted, neither restarted nor killed
    assert len(sandboxes_of(uid)) == 1


def test_two_sandboxes_of_one_pod_are_both_killed_and_one_new_is_made(node: NodeRoot) -> None:
    """podSandboxChanged: "Multiple sandboxes are ready for Pod. Need to reconcile them"."""
    k, first, uid = etcd_running(node, "--two")
    k._new_sandbox(k.pods[str(node.path(M))].pod)  # a second sandbox of the same UID

    fresh = kubelet.Kubelet("n1")
    fresh.adopt()
    assert running() == [] and len(sandboxes_of(uid)) == 1
    assert sandboxes_of(uid)[0]["id"] not in (first.pod_id,)
    fresh.sync_once()
    [made] = wait_for("etcd in the new sandbox", running)  # type: ignore[misc]
    assert made.pod_id == sandboxes_of(uid)[0]["id"]
