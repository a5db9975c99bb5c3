from __future__ import annotations

import json
import time

import pytest
from conftest import NodeRoot, Result, pod_manifest, run_main, wait_for

from testbed.standins import crictl, kubelet, state

TOOLS = {"sleeper": 'echo "line one"; echo "to stderr" >&2; echo "line two"; exec sleep 60\n'}


def crictl_in_process(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    """crictl's main in this process (fast); `exec` needs a real process (it execs)."""
    return run_main(capsys, crictl.main, *args)


def start_pods(node: NodeRoot, *names: str) -> dict[str, state.Container]:
    node.image(tools=TOOLS)
    for n in names:
        node.write(
            f"/etc/kubernetes/manifests/{n}.yaml",
            pod_manifest(n, ["sleeper"], env={"ETCDCTL_API": "3"}),
        )
    kubelet.Kubelet("kind-control-plane").sync_once()
    wait_for(
        "all running",
        lambda: len([c for c in state.load_containers() if c.state == state.RUNNING]) == len(names),
    )
    return {c.name: c for c in state.load_containers()}


def test_ps_json_has_real_crictl_shape(node: NodeRoot, capsys: pytest.CaptureFixture[str]) -> None:
    cs = start_pods(node, "etcd", "kube-apiserver")
    r = crictl_in_process(capsys, "ps", "-o", "json", "--name", "^etcd$")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [c["id"] for c in doc["containers"]] == [cs["etcd"].id]
    c = doc["containers"][0]
    assert set(c) >= {
        "id",
        "podSandboxId",
        "metadata",
        "image",
        "imageRef",
        "state",
        "createdAt",
        "labels",
        "annotations",
    }
    assert c["metadata"] == {"name": "etcd", "attempt": 0}
    assert c["state"] == "CONTAINER_RUNNING"
    assert isinstance(c["createdAt"], str)
    assert c["createdAt"].isdigit()
    assert c["image"]["image"].startswith("sha256:")
    assert c["labels"]["io.kubernetes.pod.name"] == "etcd-kind-control-plane"
    assert c["labels"]["io.kubernetes.container.name"] == "etcd"


def test_ps_table_quiet_state_filters(node: NodeRoot, capsys: pytest.CaptureFixture[str]) -> None:
    cs = start_pods(node, "etcd", "kube-scheduler")
    table = crictl_in_process(capsys, "ps").stdout.splitlines()
    assert table[0].split() == [
        "CONTAINER",
        "IMAGE",
        "CREATED",
        "STATE",
        "NAME",
        "ATTEMPT",
        "POD",
        "ID",
        "POD",
    ]
    assert len(table) == 3
    etcd_row = next(r for r in table if " etcd " in r)
    assert etcd_row.startswith(cs["etcd"].id[:13] + " ")
    assert "Running" in etcd_row
    assert "etcd-kind-control-plane" in etcd_row
    assert (
        crictl_in_process(capsys, "ps", "-q", "--name", "sched").stdout
        == cs["kube-scheduler"].id + "\n"
    )
    # stop with the default timeout kills at once; ps hides exited containers unless -a / --state
    r = crictl_in_process(capsys, "stop", cs["etcd"].id[:5])
    assert r.returncode == 0
    assert r.stdout == cs["etcd"].id[:5] + "\n"
    assert crictl_in_process(capsys, "ps", "-q").stdout == cs["kube-scheduler"].id + "\n"
    assert cs["etcd"].id in crictl_in_process(capsys, "ps", "-a", "-q").stdout
    assert crictl_in_process(capsys, "ps", "-q", "--state", "exited").stdout == cs["etcd"].id + "\n"
    # the shim records the real exit code when the process is gone: wait for it (bounded)
    deadline = time.monotonic() + 10
    while (state.load_container(cs["etcd"].id).status.get("exitCode") != 137  # type: ignore[union-attr]
           and time.monotonic() < deadline):
        time.sleep(0.1)
    assert state.load_container(cs["etcd"].id).status["exitCode"] == 137  # type: ignore[union-attr]


def test_unknown_and_ambiguous_ids_fail_like_crictl(
    node: NodeRoot, capsys: pytest.CaptureFixture[str]
) -> None:
    start_pods(node, "etcd")
    r = crictl_in_process(capsys, "stop", "zzzz")
    assert r.returncode == 1
    assert r.stderr.startswith(
        'FATA[0000] stopping the container "zzzz": rpc error: code = NotFound'
    )
    try:
        state.resolve("ab", ["abc1", "abd2"])
    except state.AmbiguousError:
        pass
    else:
        raise AssertionError("an ambiguous prefix must not resolve")
    assert state.resolve("abc", ["abc1", "abd2"]) == "abc1"


def test_exec_runs_in_container_env_passes_stdin_and_exit_code(node: NodeRoot) -> None:
    cs = start_pods(node, "etcd")
    node.image(tools={**TOOLS, "etcdctl": 'echo "etcdctl $ETCDCTL_API $*"; cat; exit 5\n'})
    r = node.run(
        "crictl", "exec", "-i", cs["etcd"].id[:8], "etcdctl", "member", "list", stdin="from-stdin\n"
    )
    assert r.returncode == 5
    assert r.stdout == "etcdctl 3 member list\nfrom-stdin\n"
    r = node.run("crictl", "exec", cs["etcd"].id, "sh", "-c", "cat; echo done", stdin="ignored\n")
    assert (r.returncode, r.stdout) == (0, "done\n")  # no -i: stdin is not attached
    r = node.run("crictl", "exec", cs["etcd"].id, "etcdutl", "version")
    assert r.returncode != 0
    assert "executable file not found in $PATH" in r.stderr


def test_logs_split_streams_and_tail(node: NodeRoot, capsys: pytest.CaptureFixture[str]) -> None:
    cs = start_pods(node, "etcd")
    log = node.path(cs["etcd"].config["logPath"])
    wait_for("log", lambda: log.exists() and log.read_text().count("\n") >= 3)
    r = crictl_in_process(capsys, "logs", cs["etcd"].id)
    assert (r.stdout, r.stderr) == ("line one\nline two\n", "to stderr\n")
    r = crictl_in_process(capsys, "logs", "--tail", "1", cs["etcd"].id)
    assert r.stdout + r.stderr in ("line two\n", "to stderr\n")  # the two pipes race; one line
    r = crictl_in_process(capsys, "logs", "--tail", "0", cs["etcd"].id)
    assert r.stdout + r.stderr == ""
    # --since: only lines written in the last N seconds (kindfix's check of a component's
    # recent leader-election errors relies on it)
    r = crictl_in_process(capsys, "logs", "--since", "60s", cs["etcd"].id)
    assert (r.stdout, r.stderr) == ("line one\nline two\n", "to stderr\n")
    text = log.read_text()
    log.write_text("".join("2001-01-01T00:00:00.000000000Z" + ln.partition(" ")[1] +
                           ln.partition(" ")[2] for ln in text.splitlines(keepends=True)))
    r = crictl_in_process(capsys, "logs", "--since", "10s", cs["etcd"].id)
    assert r.stdout + r.stderr == ""
    r = crictl_in_process(capsys, "logs", "--since", "2000-12-31T23:00:00Z", cs["etcd"].id)
    assert r.stdout == "line one\nline two\n"


def test_pods_and_inspect(node: NodeRoot, capsys: pytest.CaptureFixture[str]) -> None:
    cs = start_pods(node, "etcd")
    pods = json.loads(crictl_in_process(capsys, "pods", "-o", "json").stdout)["items"]
    assert [p["metadata"]["name"] for p in pods] == ["etcd-kind-control-plane"]
    assert pods[0]["id"] == cs["etcd"].pod_id
    info = json.loads(crictl_in_process(capsys, "inspect", cs["etcd"].id).stdout)
    assert info["status"]["image"]["image"] == "registry.k8s.io/fake:1.0"
    assert info["info"]["pid"] == cs["etcd"].pid


def test_table_and_duration_formatting() -> None:
    assert crictl.human_duration(0.2) == "Less than a second"
    assert crictl.human_duration(45) == "45 seconds"
    assert crictl.human_duration(90) == "About a minute"
    assert crictl.human_duration(600) == "10 minutes"
    out = crictl.table(["A", "B"], [["x" * 25, "y"]])
    assert out.splitlines()[1] == "x" * 25 + "   y"
    assert out.splitlines()[0] == "A" + " " * 27 + "B"
