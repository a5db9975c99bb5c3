"""Clearing the kubelet's restart back-off after a repair (kindfix/backoff.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from kindfix import backoff
from kindfix.discovery import Cluster, discover
from kindfix.nodescripts import script
from kindfix.runtime import ExecResult
from tests.fakes import FakeNode, FakeRuntime, container, fail, ok

CP, CP2 = "kind-control-plane", "kind-control-plane2"


class Crictl:
    """A node's containers by pod name -> state, answering the module's two scripts the way
    they behave (the scripts themselves run for real in the test at the end)."""

    def __init__(self, states: dict[str, str], rm_fails: bool = False,
                 comes_back: bool = True) -> None:
        self.states = states
        self.rm_fails = rm_fails
        self.comes_back = comes_back

    def clear(self, _node: FakeNode, argv: Sequence[str], _stdin: bytes | None) -> ExecResult:
        lines = []
        for pod in argv[4:]:
            st = self.states.get(pod, "absent")
            if st == "exited":
                st = "failed" if self.rm_fails else "cleared"
                if not self.rm_fails:
                    self.states[pod] = "running" if self.comes_back else "gone"
            lines.append(f"{pod} {st}")
        return ok("\n".join(lines) + "\n")

    def running(self, _node: FakeNode, argv: Sequence[str], _stdin: bytes | None) -> ExecResult:
        return ok("".join(f"{p}\n" for p in argv[4:] if self.states.get(p) == "running"))


def cluster_with(*crictls: Crictl) -> tuple[Cluster, dict[str, FakeNode]]:
    rt = FakeRuntime()
    nodes = {}
    for i, c in enumerate(crictls):
        name = CP if i == 0 else f"{CP}{i + 1}"
        node = FakeNode(name)
        node.on_script("backoff-clear", c.clear)
        node.on_script("backoff-running", c.running)
        node.on(("systemctl", "restart", "kubelet"), ok())
        rt.add(container(name, "control-plane", f"172.18.0.{i + 2}"), node)
        nodes[name] = node
    return discover(rt, "kind"), nodes


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backoff, "POLL_S", 0.0)


def test_parse_clear_keeps_known_pods_only() -> None:
    assert backoff.parse_clear("etcd running\nkube-apiserver cleared\nnoise\nfoo bar\n") == {
        "etcd": "running", "kube-apiserver": "cleared"}


def test_exited_control_plane_containers_are_removed_and_waited_for() -> None:
    c1 = Crictl({"etcd": "running", "kube-apiserver": "exited",
                 "kube-controller-manager": "running", "kube-scheduler": "exited"})
    c2 = Crictl(dict.fromkeys(backoff.PODS, "running"))
    cluster, nodes = cluster_with(c1, c2)
    said: list[str] = []
    done = backoff.clear(cluster, nodes, said.append, wait=5)
    assert [(d.node, d.pods, d.kubelet_restarted) for d in done] == [
        (CP, ("kube-apiserver", "kube-scheduler"), False), (CP2, (), False)]
    assert said == [f"[{CP}] cleared restart back-off of kube-apiserver, kube-scheduler "
                    "(removed exited containers)"]
    assert ("systemctl", "restart", "kubelet") not in nodes[CP].calls
    assert nodes[CP].ran("backoff-running")
    assert not nodes[CP2].ran("backoff-running")


def test_when_crictl_rm_fails_the_kubelet_is_restarted() -> None:
    c1 = Crictl({"kube-apiserver": "exited"}, rm_fails=True)
    cluster, nodes = cluster_with(c1)
    said: list[str] = []
    [done] = backoff.clear(cluster, nodes, said.append, wait=0)
    assert done.kubelet_restarted
    assert ("systemctl", "restart", "kubelet") in nodes[CP].calls
    assert said == [f"[{CP}] cleared restart back-off of kube-apiserver (restarted the kubelet)"]


def test_the_wait_is_bounded_and_shows_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backoff, "PROGRESS_EVERY_S", 0.0)
    c1 = Crictl({"kube-apiserver": "exited"}, comes_back=False)
    cluster, nodes = cluster_with(c1)
    said: list[str] = []
    backoff.clear(cluster, nodes, said.append, wait=0.3)
    assert said[0].startswith(f"[{CP}] cleared restart back-off of kube-apiserver")
    assert any(s.startswith("waiting for kube-apiserver to start on 1 node(s), ") for s in said)


def test_a_node_whose_script_fails_gets_its_kubelet_restarted() -> None:
    cluster, nodes = cluster_with(Crictl({}))
    nodes[CP].on_script("backoff-clear", fail(1, "crictl: not found"))
    [done] = backoff.clear(cluster, nodes, lambda _: None, wait=0)
    assert done.kubelet_restarted


FAKE_CRICTL = r'''#!/usr/bin/env python3
"""crictl for the scripts: containers in $CRICTL_STATE as lines "<id> <name> <state>"."""
import os, re, sys
path = os.environ["CRICTL_STATE"]
rows = [ln.split() for ln in open(path).read().splitlines() if ln.strip()]
args = sys.argv[1:]
if os.environ.get("CRICTL_LOG"):
    open(os.environ["CRICTL_LOG"], "a").write(" ".join(args) + "\n")
if args[0] == "ps" and args[1:] == ["-a"]:
    # crictl's table: CREATED has several words, STATE is title-case
    print("CONTAINER      IMAGE          CREATED              STATE    NAME   ATTEMPT   POD ID"
          "          POD")
    for cid, n, st in rows:
        print(f"{cid}  a1b2c3d4e5f6   About a minute ago   {st.title()}   {n}   1   "
              f"f0e1d2c3b4a5   {n}-node")
elif args[0] == "ps":
    state = args[args.index("--state") + 1] if "--state" in args else "running"
    name = args[args.index("--name") + 1] if "--name" in args else ".*"
    for cid, n, st in rows:
        if st == state and re.search(name, n):
            print(cid)
elif args[0] == "rm":
    if os.environ.get("CRICTL_RM_FAILS"):
        sys.exit(1)
    rows = [r for r in rows if r[0] not in args[1:]]
    open(path, "w").write("".join(" ".join(r) + "\n" for r in rows))
'''


def run_script(tmp_path: Path, name: str, state: str, *pods: str, **env: str) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    crictl = bin_dir / "crictl"
    crictl.write_text(FAKE_CRICTL.replace("/usr/bin/env python3", sys.executable))
    crictl.chmod(0o755)
    (tmp_path / "state").write_text(state)
    r = subprocess.run(["sh", "-c", script(name), "x", *pods], capture_output=True, text=True,
                       check=True, env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
                                        "CRICTL_STATE": str(tmp_path / "state"), **env})
    return r.stdout


def test_the_clear_script_removes_only_exited_containers_of_pods_not_running(
        tmp_path: Path) -> None:
    state = ("a1 kube-apiserver exited\na2 kube-apiserver exited\n"
             "e1 etcd running\ne0 etcd exited\n"
             "s1 kube-scheduler-extra exited\n")
    out = run_script(tmp_path, "backoff-clear", state, *backoff.PODS)
    assert backoff.parse_clear(out) == {"etcd": "running", "kube-apiserver": "cleared",
                                        "kube-controller-manager": "absent",
                                        "kube-scheduler": "absent"}
    # etcd runs: its old exited container stays (it is in no back-off that matters)
    assert (tmp_path / "state").read_text() == "e1 etcd running\ne0 etcd exited\n" \
        "s1 kube-scheduler-extra exited\n"
    out = run_script(tmp_path, "backoff-clear", "a1 kube-apiserver exited\n", "kube-apiserver",
                     CRICTL_RM_FAILS="1")
    assert out == "kube-apiserver failed\n"
    out = run_script(tmp_path, "backoff-running", "e1 etcd running\na1 kube-apiserver exited\n",
                     "etcd", "kube-apiserver")
    assert out == "etcd\n"


def test_the_scripts_ask_crictl_once_for_all_pods(tmp_path: Path) -> None:
    """One `crictl ps -a` per node, not two per pod: on a loaded node each crictl costs."""
    log = tmp_path / "calls"
    state = "a1 kube-apiserver exited\ne1 etcd running\n"
    run_script(tmp_path, "backoff-clear", state, *backoff.PODS, CRICTL_LOG=str(log))
    assert log.read_text().splitlines() == ["ps -a", "rm a1"]
    log.unlink()
    out = run_script(tmp_path, "backoff-running", state, *backoff.PODS, CRICTL_LOG=str(log))
    assert out == "etcd\n"
    assert log.read_text().splitlines() == ["ps -a"]
