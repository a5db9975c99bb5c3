"""The kubelet restarts kindfix does so a kubelet without an API server acts (kindfix/kubelet.py,
the refresh after written manifests in kindfix/apply.py, RESTART_PODS / REFRESH_KUBELET)."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from kindfix import kubelet, nodescripts
from kindfix.actions import REFRESH
from kindfix.node import REFRESH_KUBELET, RESTART_PODS
from kindfix.plan import Plan, Step
from kindfix.runtime import ExecResult
from tests.fakes import FakeNode, ok
from tests.unit.test_apply import CP, plan_v014

APISERVER = "/etc/kubernetes/manifests/kube-apiserver.yaml"
ETCD = "/etc/kubernetes/manifests/etcd.yaml"


def test_manifest_pods_are_named_after_their_files() -> None:
    assert kubelet.manifest_pods([ETCD, "/etc/kubernetes/scheduler.conf", APISERVER, ETCD]) == \
        ["etcd", "kube-apiserver"]
    assert kubelet.manifest_pods(["/etc/kubernetes/manifests/x/y.yaml", "/kind/kubeadm.conf"]) \
        == []


def test_no_systemctl_is_said_not_failed() -> None:
    node = FakeNode("n1", "control-plane")  # unhandled: exit 127, as a missing binary
    said: list[str] = []
    assert kubelet.restart(node, "because", said.append) is False
    assert any("no systemctl on the node" in s for s in said)


def _manifest_plan(ap_nodes: dict[str, FakeNode]) -> Plan:
    old = ap_nodes[CP].files.get(APISERVER, b"")
    steps = (Step(f"file:{CP}:apiserver", "write-file", CP, "rewrite kube-apiserver.yaml",
                  path=APISERVER, content=old + b"# moved\n"),
             Step(f"file:{CP}:etcd", "write-file", CP, "rewrite etcd.yaml", path=ETCD,
                  content=ap_nodes[CP].files.get(ETCD, b"") + b"# moved\n"))
    return Plan("kind", steps, "none")


def test_written_manifests_make_the_kubelet_act_before_the_next_wave() -> None:
    ap, nodes, _, said = plan_v014()
    order: list[str] = []

    def refresh(n: FakeNode, argv: Sequence[str], stdin: bytes | None) -> ExecResult:
        assert n.files[APISERVER].endswith(b"# moved\n")  # after the writes
        order.append(" ".join(argv[4:]))
        return ok()

    nodes[CP].on_script("refresh-kubelet", refresh)
    plan = _manifest_plan(nodes)
    ap.apply(plan)
    assert order == ["kube-apiserver etcd"]
    assert any(s.endswith("restarting the kubelet so it acts on the changed manifests "
                          "(kube-apiserver, etcd; their old containers are stopped and removed "
                          "meanwhile)") for s in said)
    [key] = [k for k in ap.recorder.journal.done if k.startswith(REFRESH)]
    # a second run (all done) restarts nothing
    ap.apply(plan)
    assert order == ["kube-apiserver etcd"]
    assert key in ap.recorder.journal.done


def test_a_killed_run_restarts_the_kubelet_it_owed() -> None:
    ap, nodes, _, said = plan_v014()
    calls: list[list[str]] = []
    nodes[CP].on_script("refresh-kubelet", lambda _n, argv, _: calls.append(
        list(argv[4:])) or ok())
    # killed after writing the manifests: their steps done, the refresh not
    plan = _manifest_plan(nodes)
    key = f"{REFRESH}:{CP}:abc"
    ap.recorder.journal.notes.append(f"{REFRESH}={key} kube-apiserver,etcd")
    ap.recorder.journal.done.extend(s.key for s in plan.steps)
    ap.apply(plan)
    assert calls == [["kube-apiserver", "etcd"]]
    assert key in ap.recorder.journal.done
    assert f"continuing: the kubelet on {CP} has not acted on its changed manifests yet" in said


# --- the node scripts, run by a real sh over a fake crictl and systemctl ---------------------

def _tools(tmp_path: Path, crictl_ps: str) -> tuple[dict[str, str], Path]:
    """A PATH with a crictl and a systemctl that log their arguments; `crictl ps` answers
    crictl_ps for --state exited, its table for -a (etcd run1, kube-apiserver api1, both
    running) and "run1" otherwise."""
    log = tmp_path / "log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "crictl").write_text(
        f'#!/bin/sh\necho "crictl $*" >> {log}\n'
        'case "$*" in *"--state exited"*) echo "' + crictl_ps + '";;\n'
        # crictl's table (pod_containers): etcd run1 and kube-apiserver api1 running
        '"ps -a") echo "CONTAINER IMAGE CREATED STATE NAME ATTEMPT POD ID POD";\n'
        '  echo "run1 i1 About a minute ago Running etcd 0 p1 etcd-n";\n'
        '  echo "api1 i2 2 minutes ago Running kube-apiserver 1 p2 kube-apiserver-n";;\n'
        'ps*) echo run1;; esac\n')
    (bin_dir / "systemctl").write_text(f'#!/bin/sh\necho "systemctl $*" >> {log}\n')
    for f in bin_dir.iterdir():
        f.chmod(f.stat().st_mode | stat.S_IXUSR)
    return {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"}, log


def test_restart_pods_removes_the_exited_container_so_no_back_off_applies(tmp_path: Path
                                                                          ) -> None:
    env, log = _tools(tmp_path, "old1")
    subprocess.run(["sh", "-c", RESTART_PODS, "x", "kube-scheduler"], env=env, check=True)
    lines = log.read_text().splitlines()
    assert "crictl stop run1" in lines
    assert lines[-1] == "crictl rm old1"
    assert lines.index("crictl stop run1") < lines.index("crictl rm old1")


def _failing_stop(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """_tools whose crictl lists two running containers and whose `crictl stop` exits 3."""
    env, log = _tools(tmp_path, "old1")
    (tmp_path / "bin" / "crictl").write_text(
        f'#!/bin/sh\necho "crictl $*" >> {log}\n'
        'case "$*" in stop*) echo "stop refused" >&2; exit 3;; *"--state exited"*) echo old1;; '
        'ps*) printf "run1\\nrun2\\n";; esac\n')
    return env, log


def test_restart_pods_fails_the_step_when_a_stop_fails(tmp_path: Path) -> None:
    # both scripts share lib/stop-then-remove.sh; only this one fails on a failed stop
    env, log = _failing_stop(tmp_path)
    out = subprocess.run(["sh", "-c", RESTART_PODS, "x", "kube-scheduler", "etcd"], env=env,
                         capture_output=True, text=True, check=False)
    assert out.returncode == 3
    assert "stop refused" in out.stderr
    lines = log.read_text().splitlines()
    assert "crictl stop run1 run2" in lines  # one stop for all the pod's containers
    assert not any("etcd" in ln for ln in lines)  # the next pod is not touched


def test_refresh_goes_on_when_a_stop_fails(tmp_path: Path) -> None:
    env, log = _failing_stop(tmp_path)
    out = subprocess.run(["sh", "-c", REFRESH_KUBELET, "x", "kube-scheduler", "etcd"], env=env,
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0
    assert out.stderr == ""  # quiet
    lines = log.read_text().splitlines()
    assert "crictl stop --timeout 10 run1 run2" in lines
    assert lines.count("crictl rm old1") == 2  # both pods' exited containers removed
    assert lines[-1] == "systemctl start kubelet"


@pytest.mark.parametrize("crictl_ps", ["old1", ""])
def test_refresh_stops_the_kubelet_around_the_container_removal(tmp_path: Path,
                                                                crictl_ps: str) -> None:
    env, log = _tools(tmp_path, crictl_ps)
    subprocess.run(["sh", "-c", REFRESH_KUBELET, "x", "etcd"], env=env, check=True)
    lines = log.read_text().splitlines()
    assert lines[0] == "systemctl stop kubelet"
    assert lines[-1] == "systemctl start kubelet"
    assert "crictl stop --timeout 10 run1" in lines
    assert ("crictl rm old1" in lines) == bool(crictl_ps)


def test_refresh_starts_the_kubelet_again_when_interrupted(tmp_path: Path) -> None:
    env, log = _tools(tmp_path, "old1")
    # stopped while crictl hangs (the exec timed out): the kubelet must not stay stopped
    (tmp_path / "bin" / "crictl").write_text(f'#!/bin/sh\necho "crictl $*" >> {log}\n'
                                             'exec sleep 5\n')
    proc = subprocess.Popen(["sh", "-c", REFRESH_KUBELET, "x", "etcd"], env=env)
    deadline = time.monotonic() + 5
    while "crictl" not in (log.read_text() if log.exists() else "") and \
            time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 143
    assert log.read_text().splitlines()[-1] == "systemctl start kubelet"


def test_refresh_without_systemctl_says_so(tmp_path: Path) -> None:
    out = subprocess.run(["sh", "-c", REFRESH_KUBELET, "x", "etcd"],
                         env={**os.environ, "PATH": str(tmp_path)}, capture_output=True,
                         text=True, check=False, executable="/bin/sh")
    assert out.returncode == 0
    assert "@@kindfix no-systemctl" in out.stdout


def test_park_stops_the_kubelet_after_the_manifest_went_and_before_the_container_stop(
        tmp_path: Path) -> None:
    env, log = _tools(tmp_path, "")
    manifest = tmp_path / "etcd.yaml"
    manifest.write_text("kind: Pod\n")
    (tmp_path / "bin" / "systemctl").write_text(
        f'#!/bin/sh\necho "systemctl $* manifest=$(ls {manifest} 2>/dev/null)" >> {log}\n')
    out = subprocess.run(["sh", "-c", nodescripts.script("etcd-park"), "x", str(manifest),
                          str(tmp_path / "parked")], env=env, capture_output=True, text=True,
                         check=True)
    assert "@@kindfix-parked" in out.stdout
    lines = log.read_text().splitlines()
    # no kubelet is left to restart the stopped container, and none starts until etcd does
    assert lines.index("systemctl stop kubelet manifest=") < \
        lines.index("crictl stop --timeout 10 run1")
    assert not [line for line in lines if "start kubelet" in line]
    assert (tmp_path / "parked" / ".kindfix-kubelet-stopped").exists()
    assert (tmp_path / "parked" / "etcd.yaml").read_text() == "kind: Pod\n"


def _prepare_member(tmp_path: Path, apiserver_answers: bool,
                    before: Callable[[], None] | None = None) -> tuple[str, list[str]]:
    """etcd-prepare-member.sh under a real sh: park (fake systemctl, crictl), no etcd process
    (etcd_running, which scans /proc, stubbed), the real copy, the status stubbed; curl (the
    kube-apiserver's /healthz) answers or times out (exit 28). Its stdout and the tools' log."""
    env, log = _tools(tmp_path, "")
    (tmp_path / "bin" / "curl").write_text(
        f'#!/bin/sh\necho "curl $*" >> {log}\nexit {0 if apiserver_answers else 28}\n')
    (tmp_path / "bin" / "curl").chmod(0o755)
    manifest = tmp_path / "etcd.yaml"
    manifest.write_text("kind: Pod\n")
    data = tmp_path / "data" / "member" / "snap"
    data.mkdir(parents=True)
    (data / "db").write_bytes(b"backend")
    whole = nodescripts.script("etcd-prepare-member")
    body = nodescripts._split(nodescripts._read("etcd-prepare-member.sh"))[1]
    stubs = "etcd_running() { :; }\nsnapshot_status() { echo etcdutl; echo '{}'; }\n"
    text = whole[: -len(body)] + stubs + body
    if before is not None:
        before()
    out = subprocess.run(["sh", "-c", text, "x", str(manifest), str(tmp_path / "parked"),
                          str(tmp_path / "data"), str(tmp_path / "copy"), "etcd:3.6", "etcdutl"],
                         env=env, capture_output=True, text=True, timeout=30, check=True)
    assert (tmp_path / "copy" / "member" / "snap" / "db").read_bytes() == b"backend"
    return out.stdout, log.read_text().splitlines()


def test_prepare_stops_a_silent_apiserver_once_no_kubelet_runs_and_says_so_before_the_status(
        tmp_path: Path) -> None:
    out, lines = _prepare_member(tmp_path, apiserver_answers=False)
    assert out.index("@@kindfix-parked") < out.index("@@kindfix apiserver-stopped") < \
        out.index("@@kindfix-status")
    # asked while the kubelet stopped; stopped beside etcd once it had
    ask = "curl -sk --max-time 0.5 -o /dev/null https://127.0.0.1:6443/healthz"
    # etcd stopped gracefully (its backend flushed), the apiserver killed at once: a real one
    # still dialling etcd ignores the stop until its dial ends (realkind run 22: 10 s)
    assert lines[-3] == "crictl ps -a"
    assert sorted(lines[-2:]) == ["crictl stop --timeout 10 run1", "crictl stop api1"]
    assert sorted(lines[:-3]) == sorted(["systemctl stop kubelet", ask])


def test_prepare_stops_etcd_and_a_silent_apiserver_side_by_side(tmp_path: Path) -> None:
    """Two crictl calls (their grace periods differ), at once: the apiserver's stop starts
    while etcd's graceful stop still runs (it flushes the backend)."""
    log = tmp_path / "log"
    crictl = tmp_path / "bin" / "crictl"
    real = crictl.read_text() if crictl.exists() else ""
    assert real == ""  # _prepare_member makes the tools; this wraps its crictl below
    etcd_stop = tmp_path / "etcd-stop"

    def slow_etcd_stop() -> None:
        text = crictl.read_text()
        crictl.write_text(text.replace(
            "#!/bin/sh\n", "#!/bin/sh\n"
            f'case "$*" in "stop --timeout 10 run1") sleep 0.5; : > {etcd_stop};; esac\n'
            f'case "$*" in "stop api1") [ -e {etcd_stop} ] && echo late >> {log};; esac\n',
            1))

    out, lines = _prepare_member(tmp_path, apiserver_answers=False, before=slow_etcd_stop)
    assert "late" not in lines  # the apiserver's stop did not wait for etcd's
    assert etcd_stop.exists()  # etcd's stop ran to its end all the same
    assert out.index("@@kindfix apiserver-stopped") < out.index("@@kindfix-status")
    assert not [line for line in lines if "start kubelet" in line]


def test_prepare_leaves_an_apiserver_that_answers_http(tmp_path: Path) -> None:
    out, lines = _prepare_member(tmp_path, apiserver_answers=True)
    assert "@@kindfix apiserver-asked" in out.split("@@kindfix-status")[0]
    assert "apiserver-stopped" not in out
    assert "curl -sk --max-time 0.5 -o /dev/null https://127.0.0.1:6443/healthz" in lines
    assert lines[-1] == "crictl stop --timeout 10 run1"  # etcd only


def test_park_without_systemctl_says_so(tmp_path: Path) -> None:
    env, _ = _tools(tmp_path, "")
    (tmp_path / "bin" / "systemctl").unlink()
    core = tmp_path / "core"  # what the script needs, and no systemctl (the host may have one)
    core.mkdir()
    for tool in ("sh", "mkdir", "cp", "rm", "awk"):
        (core / tool).symlink_to(shutil.which(tool) or f"/bin/{tool}")
    env["PATH"] = f"{tmp_path / 'bin'}:{core}"
    out = subprocess.run(["sh", "-c", nodescripts.script("etcd-park"), "x",
                          str(tmp_path / "etcd.yaml"), str(tmp_path / "parked")], env=env,
                         capture_output=True, text=True, check=True)
    assert "@@kindfix no-systemctl" in out.stdout


def test_a_rewritten_etcd_manifest_is_left_to_an_etcd_step_that_parks_it() -> None:
    # snapshot restore / force-new-cluster stop every member, park etcd.yaml and restart the
    # kubelet themselves: no kubelet restart of its own for etcd.yaml in the file wave (#10)
    from kindfix import actions

    for written, refreshed in ((slice(0, 2), ["kube-apiserver"]), (slice(1, 2), [])):
        ap, nodes, _, _ = plan_v014()
        order: list[str] = []

        def refresh(_n: FakeNode, argv: Sequence[str], _stdin: bytes | None,
                    order: list[str] = order) -> ExecResult:
            order.append(" ".join(argv[4:]))
            return ok()

        nodes[CP].on_script("refresh-kubelet", refresh)
        steps = list(_manifest_plan(nodes).steps[written])
        actions.write_files(ap.context(etcd_parks=True), steps)
        assert order == refreshed
        assert nodes[CP].files[ETCD].endswith(b"# moved\n")  # written all the same
        owed = [n for n in ap.recorder.journal.notes if n.startswith(REFRESH)]
        assert all("etcd" not in n.split(" ", 1)[1].split(",") for n in owed)
        assert bool(owed) == bool(refreshed)


@pytest.mark.parametrize(("strategy", "done", "parks"), [
    ("snapshot-restore", False, True), ("force-new-cluster", False, True),
    ("restore-backup", False, True), ("member-update", False, False), ("decide", False, False),
    ("snapshot-restore", True, False),  # a continued run whose etcd step is done
])
def test_which_etcd_steps_park(strategy: str, done: bool, parks: bool) -> None:
    from kindfix.apply import parks_etcd

    ap, _, _, _ = plan_v014()
    step = Step("etcd:k", "etcd", CP, "etcd membership", phase=strategy)
    if done:
        ap.recorder.mark_done(step.key)
    assert parks_etcd(step, ap.recorder) is parks
    assert parks_etcd(None, ap.recorder) is False
