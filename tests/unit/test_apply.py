"""Applying a plan with backups and a journal (kindfix/apply.py), over FakeNodes."""

from __future__ import annotations

import functools
import signal
import threading
import time
from collections.abc import Sequence

import pytest

from kindfix import journal
from kindfix import node as node_mod
from kindfix.actions import KUBEADM_CONFIG
from kindfix.apply import Applier
from kindfix.audit import audit
from kindfix.discovery import Cluster
from kindfix.dump import load_dump
from kindfix.errors import CommandError, KindfixError
from kindfix.loadbalancer import HAPROXY_CFG
from kindfix.node import RESTART_PODS, ContainerNode
from kindfix.observe import NodeSnapshot
from kindfix.plan import Plan, Step, make_plan
from kindfix.runtime import ExecResult
from tests.fakes import FakeNode, ok, script_of
from tests.unit.helpers_certs import cert_pem, kubeadm
from tests.unit.helpers_nodes import DUMPS, applier, dump, fake_nodes

CP = "kind-control-plane"
LB = "kind-external-load-balancer"


class Events:
    """Journal saves and file changes, in the order the nodes saw them."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str, object]] = []

    def watch(self, node: FakeNode) -> None:
        write, replace = node.handler("write-file"), node.handler("journal-replace")

        def on_write(n: FakeNode, argv: Sequence[str], stdin: bytes | None) -> ExecResult:
            if argv[4].startswith(journal.JOURNAL_DIR):
                saved = journal.Journal.from_json(stdin or b"")
                self.log.append(("journal", n.name, {(e["node"], e["path"]) for e in saved.files}))
            return write(n, argv, stdin)

        def on_replace(n: FakeNode, argv: Sequence[str], stdin: bytes | None) -> ExecResult:
            self.log.append(("replace", n.name, argv[4]))
            return replace(n, argv, stdin)

        node.on(("sh", "-c", node_mod._WRITE_FILE_SCRIPT), on_write)
        node.on_script("journal-replace", on_replace)


def through_the_engine(ap: Applier) -> None:
    """Let every node (journal node included) be a ContainerNode over the FakeRuntime, so each
    file write is an exec the FakeNode records, as on a real node."""
    wrapped = {name: ContainerNode(ap.runtime, name, n.role) for name, n in ap.nodes.items()}
    ap.nodes = wrapped
    ap.recorder._journal_node = wrapped[CP]


@functools.lru_cache(maxsize=1)
def _v014() -> tuple[Cluster, dict[str, NodeSnapshot], Plan]:
    # planning is pure and the snapshots are frozen: plan once for every test here
    cluster, snaps = load_dump(DUMPS / "single-cp-restart-v0.14")
    return cluster, snaps, make_plan(cluster, snaps, audit(cluster, snaps))


def plan_v014() -> tuple[Applier, dict[str, FakeNode], Plan, list[str]]:
    cluster, snaps, plan = _v014()
    nodes = fake_nodes(snaps)
    ap, said = applier(cluster, nodes, snaps)
    made = kubeadm({n.name: n.ips() for n in cluster.nodes})
    for n in nodes.values():
        n.on(("kubeadm", "init", "phase", "certs"), made)
        n.on(("sh", "-c", RESTART_PODS), ok())
        n.on(("systemctl", "restart", "kubelet"), ok())
    # etcd recovery has its own tests
    ap.recorder.journal.done.extend(s.key for s in plan.steps if s.kind == "etcd")
    return ap, nodes, plan, said


def test_write_file_journals_the_original_before_writing() -> None:
    ap, nodes, plan, _ = plan_v014()
    events = Events()
    for n in nodes.values():
        events.watch(n)
    through_the_engine(ap)
    ap.apply(plan)

    writes = [s for s in plan.steps if s.kind == "write-file"]
    assert writes
    for step in writes:
        node = nodes[step.node]
        assert node.files[step.path] == step.content
        i = events.log.index(("replace", step.node, step.path))
        assert any(kind == "journal" and (step.node, step.path) in files  # type: ignore[operator]
                   for kind, _, files in events.log[:i]), step.path
        [entry] = [e for e in ap.recorder.journal.files if (e["node"], e["path"]) ==
                   (step.node, step.path)]
        original = ap.snapshots[step.node].file(step.path)
        assert node.files[entry["backup"]] == original
    assert {s.key for s in plan.steps} <= set(ap.recorder.journal.done)


def test_a_step_already_done_is_skipped() -> None:
    ap, nodes, plan, said = plan_v014()
    first = next(s for s in plan.steps if s.kind == "write-file")
    ap.recorder.journal.done.append(first.key)
    before = nodes[first.node].files[first.path]
    done = ap.apply(plan)
    assert first.key not in done
    assert nodes[first.node].files[first.path] == before
    assert any(line.endswith(f"already done: {first.summary}") for line in said)
    assert not any(c[4] == first.path for c in nodes[first.node].ran("journal-replace"))


def test_regen_cert_moves_the_pair_to_the_backup_then_runs_kubeadm() -> None:
    ap, nodes, _, _ = plan_v014()
    node = nodes[CP]
    crt, key = "/etc/kubernetes/pki/etcd/peer.crt", "/etc/kubernetes/pki/etcd/peer.key"
    node.files[key] = b"-----BEGIN RSA PRIVATE KEY-----\nold\n"
    old_crt = node.files[crt]
    present_when_kubeadm_ran: list[bool] = []

    made = kubeadm({CP: ap.cluster.control_planes[0].ips()})

    def kubeadm_run(n: FakeNode, argv: Sequence[str], stdin: bytes | None) -> ExecResult:
        present_when_kubeadm_ran.append(crt in n.files or key in n.files)
        return made(n, argv, stdin)  # type: ignore[no-any-return]

    node.on(("kubeadm", "init", "phase", "certs"), kubeadm_run)
    step = Step(f"cert:{CP}:etcd-peer", "regen-cert", CP, "regenerate peer.crt", path=crt,
                phase="etcd-peer", key_path=key)
    ap.apply(Plan("kind", (step,), "none"))

    assert ("kubeadm", "init", "phase", "certs", "etcd-peer", "--config", KUBEADM_CONFIG) in \
        node.calls
    assert present_when_kubeadm_ran == [False]
    backups = {e["path"]: node.files[e["backup"]] for e in ap.recorder.journal.files}
    assert backups == {crt: old_crt, key: b"-----BEGIN RSA PRIVATE KEY-----\nold\n"}
    assert node.files[crt] == cert_pem(CP, tuple(ap.cluster.control_planes[0].ips()))
    assert not any(p.endswith(journal.ASIDE) for p in node.files)  # verified: old pair gone


def test_a_nodes_certificates_are_regenerated_in_one_exec_and_one_journal_save() -> None:
    ap, nodes, _, _ = plan_v014()
    node = nodes[CP]
    phases = {"etcd-server": "/etc/kubernetes/pki/etcd/server", "etcd-peer":
              "/etc/kubernetes/pki/etcd/peer"}
    ran: list[str] = []
    old_left: list[bool] = []

    made = kubeadm({CP: ap.cluster.control_planes[0].ips()})

    def kubeadm_run(n: FakeNode, argv: Sequence[str], stdin: bytes | None) -> ExecResult:
        old_left.append(any(p + ext in n.files for p in phases.values() for ext in (".crt",
                                                                                    ".key")))
        ran.append(argv[4])
        return made(n, argv, stdin)  # type: ignore[no-any-return]

    node.on(("kubeadm", "init", "phase", "certs"), kubeadm_run)
    steps = tuple(Step(f"cert:{CP}:{phase}", "regen-cert", CP, f"regenerate {phase}",
                       path=base + ".crt", phase=phase, key_path=base + ".key")
                  for phase, base in phases.items())
    journal_writes = len(nodes[CP].calls)
    ap.apply(Plan("kind", steps, "none"))
    calls = nodes[CP].calls[journal_writes:]
    assert len([c for c in calls if script_of(c) == "journal-regenerate"]) == 1
    assert ran == ["etcd-server", "etcd-peer"]
    assert old_left[0] is False  # both old pairs were moved before kubeadm first ran
    assert {s.key for s in steps} <= set(ap.recorder.journal.done)
    assert len(ap.recorder.journal.files) == 4  # both pairs kept


def test_restarts_follow_the_files_on_each_node() -> None:
    ap, nodes, plan, _ = plan_v014()
    ap.apply(plan)
    calls = nodes[CP].calls
    pods = [p for c in calls if c[:2] == ("sh", "-c") and c[3:4] == ("kindfix-restart",)
            for p in c[4:]]
    assert {"kube-controller-manager", "kube-scheduler"} <= set(pods)
    last_write = max(i for i, c in enumerate(calls) if script_of(c) == "journal-replace")
    first_restart = min(i for i, c in enumerate(calls) if c[3:4] == ("kindfix-restart",))
    assert last_write < first_restart


def test_steps_of_many_nodes_keep_each_nodes_plan_order() -> None:
    ap, nodes, plan, _ = plan_v014()  # control plane and worker both have stale files
    per_node = [s for s in plan.steps if s.kind == "write-file"]
    assert len({s.node for s in per_node}) >= 2
    ap.apply(Plan(plan.cluster, tuple(per_node), "none"))
    for name, node in nodes.items():
        wrote = [c[4] for c in node.calls if script_of(c) == "journal-replace"]
        assert wrote == [s.path for s in per_node if s.node == name]
        for s in per_node:
            if s.node == name:
                assert node.files[s.path] == s.content


RELOADS = (("kill", "-s", "HUP", "1"), ("sh", "-c", "kill -s HUP 1"))  # binary or builtin


def test_fix_lb_rewrites_literal_haproxy_backends_then_reloads() -> None:
    cluster, snaps, nodes = dump("ha-3cp-haproxy-literal")
    lb = nodes[LB]
    for argv in RELOADS:
        lb.on(argv, ok())
    ap, _ = applier(cluster, nodes, snaps)
    ap.apply(Plan("kind", (Step("lb:config", "fix-lb", LB, "fix the LB"),), "none"))
    new = lb.files[HAPROXY_CFG].decode()
    for cp in cluster.control_planes:
        assert f"server {cp.name} {cp.ipv4}:6443" in new
    replaced = next(i for i, c in enumerate(lb.calls) if script_of(c) == "journal-replace")
    reloads = [i for i, c in enumerate(lb.calls) if c in RELOADS]
    signalled = f"signal {LB} SIGHUP" in ap.runtime.log  # type: ignore[attr-defined]
    assert reloads or signalled  # haproxy reads its config again only on SIGHUP
    assert not reloads or min(reloads) > replaced
    [entry] = ap.recorder.journal.files
    assert lb.files[entry["backup"]] == snaps[LB].file(HAPROXY_CFG)


def test_start_lb_starts_the_container() -> None:
    cluster, snaps, nodes = dump("ha-3cp-permuted")
    ap, _ = applier(cluster, nodes, snaps)
    ap.apply(Plan("kind", (Step("lb:start", "start-lb", LB, "start the LB"),), "none"))
    assert ap.runtime.log == [f"start {LB}"]  # type: ignore[attr-defined]
    assert "lb:start" in ap.recorder.journal.done


def test_a_step_for_an_unknown_node_is_an_error() -> None:
    ap, _, _, _ = plan_v014()
    step = Step("file:ghost:/x", "write-file", "ghost", "rewrite /x", path="/x", content=b"y")
    with pytest.raises(KindfixError, match="node ghost is not part of cluster kind"):
        ap.apply(Plan("kind", (step,), "none"))
    assert "file:ghost:/x" not in ap.recorder.journal.done


def test_fix_lb_works_on_a_load_balancer_without_a_shell() -> None:
    # kind's haproxy image is distroless: kubernetes-sigs/kind images/haproxy/Dockerfile stages
    # only haproxy, cp, mkdir and kill, no sh
    cluster, snaps, nodes = dump("ha-3cp-healthy")
    lb = nodes[LB]
    for script in (node_mod._READ_FILES_SCRIPT, node_mod._WRITE_FILE_SCRIPT):
        lb.handlers.pop(("sh", "-c", script), None)
    for name in ("journal-replace", "journal-backup"):
        lb.forget_script(name)
    lb.on(("kill", "-s", "HUP", "1"), ok())
    before = dict(lb.files)
    ap, _ = applier(cluster, nodes, snaps)
    through_the_engine(ap)
    ap.apply(Plan("kind", (Step("lb:config", "fix-lb", LB, "fix the LB"),), "none"))
    assert lb.files == before  # by-name backends: nothing to rewrite
    reloaded = ("kill", "-s", "HUP", "1") in lb.calls or \
        f"signal {LB} SIGHUP" in ap.runtime.log  # type: ignore[attr-defined]
    assert reloaded
    assert "lb:config" in ap.recorder.journal.done


# --- failures: every node named, nothing overwritten, Ctrl-C does not wait -------------------

def _file_plan() -> tuple[Applier, dict[str, FakeNode], Plan]:
    ap, nodes, plan, _ = plan_v014()
    writes = tuple(s for s in plan.steps if s.kind == "write-file")
    assert len({s.node for s in writes}) >= 2
    return ap, nodes, Plan(plan.cluster, writes, "none")


def test_every_failed_node_step_is_reported_with_its_node_and_file() -> None:
    """Before: only the first lane's exception was raised, as a truncated shell script."""
    ap, nodes, plan = _file_plan()
    failing = {}
    for name, node in nodes.items():
        step = next(s for s in plan.steps if s.node == name)
        failing[name] = step.path

        def disk_full(n: FakeNode, argv: Sequence[str], _stdin: bytes | None,
                      path: str = step.path) -> ExecResult:
            if argv[4] == path:
                return ExecResult(1, b"", b"cat: write error: No space left on device\n")
            return ok()

        node.on_script("journal-replace", disk_full)
    with pytest.raises(KindfixError) as e:
        ap.apply(plan)
    message = e.value.message
    assert message.startswith(f"{len(nodes)} node steps failed: ")
    for name, path in failing.items():
        assert f"{name}: writing {path} failed: exit 1: cat: write error: No space left on " \
               "device" in message
    assert "set -e" not in message and "keep()" not in message
    assert "\n" not in message
    assert e.value.hint is not None
    assert "run `kindfix repair` again" in e.value.hint  # the run can be continued


def test_a_failed_write_names_the_script_by_name_and_the_file() -> None:
    ap, nodes, plan = _file_plan()
    through_the_engine(ap)
    step = plan.steps[0]
    nodes[step.node].on_script(
        "journal-replace", lambda *_: ExecResult(5, b"", b"kindfix: incomplete write refused\n"))
    with pytest.raises(KindfixError) as e:
        ap.apply(Plan(plan.cluster, (step,), "none"))
    [(failed, cause)] = e.value.failures  # type: ignore[attr-defined]
    assert failed == step
    assert isinstance(cause, CommandError)
    assert "'<kindfix-replace>' " + step.path in cause.message
    assert "set -e" not in cause.message


def test_a_file_changed_since_it_was_read_is_not_overwritten_and_stops_that_node() -> None:
    """kind's entrypoint rewrites files while a node boots: a write is a compare and swap
    against what observe read. Before: the change was overwritten and the backup held it, so
    rollback then failed its checksum."""
    ap, nodes, plan = _file_plan()
    first = plan.steps[0]
    node = nodes[first.node]
    node.files[first.path] = b"rewritten by the entrypoint meanwhile\n"
    later = [s for s in plan.steps if s.node == first.node][1:]
    before = {s.path: node.files.get(s.path) for s in later}
    with pytest.raises(KindfixError) as e:
        ap.apply(plan)
    assert e.value.message.startswith(f"{first.node}: writing {first.path} failed: exit "
                                      f"{journal.CHANGED}: kindfix: {first.path} changed since "
                                      "it was read; run again")
    assert e.value.hint is not None and "plans from what is there now" in e.value.hint
    assert node.files[first.path] == b"rewritten by the entrypoint meanwhile\n"
    assert {s.path: node.files.get(s.path) for s in later} == before  # that node stopped
    for other in {s.node for s in plan.steps} - {first.node}:  # the others went on
        assert all(nodes[other].files[s.path] == s.content for s in plan.steps
                   if s.node == other)
    # the journal names only files that were changed: rollback restores all of them
    journaled = {(x["node"], x["path"]) for x in ap.recorder.journal.files}
    assert (first.node, first.path) not in journaled
    restored = journal.rollback(nodes, ap.recorder.journal)
    assert sorted(restored) == sorted(f"{n}:{p}" for n, p in journaled)


def test_ctrl_c_starts_no_new_node_step_and_says_what_was_in_flight() -> None:
    """Before: the executor's `with` waited for every queued and running lane after Ctrl-C."""
    cluster, snaps, _ = _v014()
    nodes: dict[str, FakeNode] = {}
    steps = []
    release = threading.Event()
    started: list[str] = []
    for i in range(12):  # more lanes than run at once
        name = f"kind-worker{i}"
        node = fake_nodes({CP: snaps[CP]})[CP]
        node.name = name
        nodes[name] = node
        steps.append(Step(f"file:{name}:/x", "write-file", name, "rewrite /x", path="/x",
                          content=b"new"))

        def slow(n: FakeNode, _argv: Sequence[str], _stdin: bytes | None) -> ExecResult:
            started.append(n.name)
            if len(started) == 2:
                signal.raise_signal(signal.SIGINT)  # the user presses Ctrl-C
            release.wait(10)
            return ok()

        node.on_script("journal-replace", slow)
    ap, said = applier(cluster, nodes | {CP: fake_nodes({CP: snaps[CP]})[CP]}, {})
    ap.nodes = nodes
    t0 = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            ap.apply(Plan("kind", tuple(steps), "none"))
        waited = time.monotonic() - t0
        in_flight = list(started)
    finally:
        release.set()
    assert waited < 5  # did not wait for the writes in flight
    assert 2 <= len(in_flight) <= 8
    [line] = [s for s in said if s.startswith("interrupted; in flight")]
    for name in in_flight:
        assert f"{name}: writing /x" in line
    time.sleep(0.3)  # the released lanes finish; none picks up a new node
    assert len(started) == len(in_flight)
