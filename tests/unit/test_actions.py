"""The step table (kindfix/actions.py) and the context the applier hands to steps
(kindfix/context.py): every kind a plan can hold has an action, the applier dispatches through
the table (no method names built from strings), and a step sees the applier's state only
through its context."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from kindfix import actions
from kindfix.context import StepContext
from kindfix.errors import KindfixError
from kindfix.plan import Plan, Step
from kindfix.steps import StepKind
from tests.unit.helpers_nodes import applier, dump

LB = "kind-external-load-balancer"
PACKAGE = Path(actions.__file__).parent


def test_every_step_kind_has_an_action() -> None:
    assert set(StepKind) <= set(actions.STEPS)
    assert set(actions.BATCHED) <= set(actions.STEPS)
    assert {"write-file", "regen-cert", "restart-pod"} == set(actions.BATCHED)


def test_the_applier_dispatches_through_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, snaps, nodes = dump("ha-3cp-permuted")
    ap, _ = applier(cluster, nodes, snaps)
    seen: list[tuple[StepContext, str]] = []
    monkeypatch.setitem(actions.STEPS, "start-lb",
                        lambda ctx, step: seen.append((ctx, step.key)))
    ap.apply(Plan("kind", (Step("lb:start", StepKind.START_LB, LB, "start the LB"),), "none"))
    [(ctx, key)] = seen
    assert key == "lb:start"
    assert ap.runtime.log == []  # type: ignore[attr-defined]  # the real action did not run
    assert (ctx.runtime, ctx.cluster, ctx.recorder, ctx.stopping) == (
        ap.runtime, ap.cluster, ap.recorder, ap.stopping)
    assert "lb:start" in ap.recorder.journal.done


def test_a_nodes_steps_of_a_batched_kind_go_as_one_batch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, snaps, nodes = dump("ha-3cp-permuted")
    ap, _ = applier(cluster, nodes, snaps)
    batches: list[list[str]] = []
    monkeypatch.setitem(actions.BATCHED, "restart-pod",
                        lambda _ctx, steps: batches.append([s.key for s in steps]))
    node = cluster.control_planes[0].name
    steps = tuple(Step(f"restart:{node}:{pod}", StepKind.RESTART_POD, node, f"restart {pod}",
                       phase=pod) for pod in ("kube-apiserver", "etcd"))
    ap.apply(Plan("kind", steps, "none"))
    assert batches == [[f"restart:{node}:kube-apiserver", f"restart:{node}:etcd"]]


def test_no_step_is_dispatched_by_a_name_built_from_a_string() -> None:
    tree = ast.parse((PACKAGE / "apply.py").read_text())
    # getattr(self, "_" + step.kind...) was how it went before the table
    assert not [n.lineno for n in ast.walk(tree)
                if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                and n.func.id == "getattr" and isinstance(n.args[0], ast.Name)
                and n.args[0].id == "self"]


def test_the_context_names_the_node_or_says_it_is_not_in_the_cluster() -> None:
    cluster, snaps, nodes = dump("ha-3cp-permuted")
    ap, said = applier(cluster, nodes, snaps)
    ctx = ap.context()
    assert ctx.node("kind-control-plane") is nodes["kind-control-plane"]
    with pytest.raises(KindfixError, match="node ghost is not part of cluster kind"):
        ctx.node("ghost")
    ctx.say("hello")
    assert said == ["      hello"]
