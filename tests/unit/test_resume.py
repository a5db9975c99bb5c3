"""Continuing a killed run, as pure functions (kindfix/resume.py): the journal's pending work,
the plan it is merged into, and the parked etcd manifest read where audit expects it."""

from __future__ import annotations

from kindfix import resume
from kindfix.journal import RUNNING, Journal
from kindfix.observe import NodeSnapshot
from kindfix.plan import Plan, Step

CP = "kind-control-plane"


def _plan(*steps: Step, strategy: str = "none") -> Plan:
    return Plan("kind", steps, strategy)


def _pending(key: str, kind: str, node: str = CP, phase: str = "") -> dict[str, str]:
    return {"key": key, "kind": kind, "node": node, "summary": f"do {key}", "phase": phase}


FILE = Step("file:a", "write-file", CP, "rewrite a", path="/a")
RESTART = Step("restart:new", "restart-pod", CP, "restart kube-scheduler", phase="kube-scheduler")
LB = Step("lb:config:new", "fix-lb", "kind-external-load-balancer", "fix the load balancer")


def test_unfinished_work_joins_the_plan_in_run_order_and_the_plans_own_step_wins() -> None:
    journal = Journal("r1", "kind", RUNNING, done=["kubelet:done"], pending=[
        _pending("etcd:old", "etcd", phase="member-update"),
        _pending("restart:old", "restart-pod", phase="kube-scheduler"),  # superseded
        _pending("restart:cm", "restart-pod", phase="kube-controller-manager"),
        _pending("kubelet:done", "restart-kubelet")])  # done: not again
    plan = resume.with_unfinished_steps(_plan(FILE, RESTART, LB), journal)
    assert [s.key for s in plan.steps] == [
        "file:a", "etcd:old", "restart:new", "restart:cm", "lb:config:new"]
    assert plan.etcd_strategy == "member-update"
    assert plan.steps[1].summary == "do etcd:old (unfinished in run r1)"


def test_nothing_unfinished_leaves_the_plan_as_it_is() -> None:
    plan = _plan(FILE, RESTART)
    journal = Journal("r1", "kind", RUNNING, pending=[_pending("restart:x", "restart-pod",
                                                              phase="kube-scheduler")])
    assert resume.with_unfinished_steps(plan, journal) is plan


def test_pending_work_the_plan_supersedes_leaves_the_journal() -> None:
    journal = Journal("r1", "kind", RUNNING, done=["lb:config:old"], pending=[
        _pending("restart:old", "restart-pod", phase="kube-scheduler"),
        _pending("lb:config:old", "fix-lb", node="kind-external-load-balancer"),
        _pending("kubelet:w", "restart-kubelet", node="kind-worker")])
    resume.remember_pending(journal, _plan(FILE, RESTART, LB))
    assert [p.key for p in journal.pending] == [
        "lb:config:old", "kubelet:w", "restart:new", "lb:config:new"]
    assert journal.pending[2].to_dict() == {"key": "restart:new", "kind": "restart-pod",
                                            "node": CP, "summary": "restart kube-scheduler",
                                            "phase": "kube-scheduler"}
    resume.remember_pending(journal, _plan(FILE, RESTART, LB))  # twice: no duplicate
    assert len(journal.pending) == 4


def test_pending_etcd_only_while_not_done() -> None:
    assert not resume.pending_etcd(None)
    journal = Journal("r1", "kind", RUNNING, pending=[_pending("etcd:x", "etcd")])
    assert resume.pending_etcd(journal)
    journal.done.append("etcd:x")
    assert not resume.pending_etcd(journal)


def test_the_parked_manifest_is_read_where_audit_expects_it() -> None:
    manifest = b"kind: Pod\n"
    snaps = {CP: NodeSnapshot(CP, "control-plane", {}),
             "cp2": NodeSnapshot("cp2", "control-plane", {resume.MANIFEST: b"own"}),
             "w": NodeSnapshot("w", "worker", {})}
    assert resume.parked_manifests_wanted(snaps) == [CP]
    out, parked_on = resume.with_parked_etcd(snaps, {CP: manifest, "cp2": b"ignored"})
    assert parked_on == (CP,)
    assert out[CP].file(resume.MANIFEST) == manifest
    assert out["cp2"].file(resume.MANIFEST) == b"own"
    assert out["w"] is snaps["w"]
    assert resume.with_parked_etcd(snaps, {CP: None}) == (snaps, ())
