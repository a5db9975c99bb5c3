"""What a user sees of a plan stays as it was: `repair --dry-run -o json|yaml` byte for byte
against outputs recorded before step kinds and etcd strategies became enums (issue #12), and
the vocabulary itself (kindfix/steps.py) keeps the strings kindfix has always written.

A deliberate change of a plan's content (a summary, a diff) regenerates the recordings:
KINDFIX_REGEN_GOLDEN=1 python3 -m pytest tests/unit/test_plan_output.py, then read the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kindfix.cli import Context, main
from kindfix.errors import KindfixError
from kindfix.plan import STRATEGIES, Plan, Step
from kindfix.render import as_json, as_yaml
from kindfix.steps import EtcdStrategy, StepKind
from tests.unit.helpers_nodes import runtime_from_dump
from tests.unit.test_plan import plan_for

GOLDEN = Path(__file__).parent / "golden"
DUMPS = ("single-cp-restart-v0.14", "ha-3cp-haproxy-literal")


@pytest.mark.parametrize("fmt", ["json", "yaml"])
@pytest.mark.parametrize("dump", DUMPS)
def test_dry_run_output_is_what_it_was(capsys: pytest.CaptureFixture[str], dump: str,
                                       fmt: str) -> None:
    rt = runtime_from_dump(dump)[0]
    with pytest.raises(SystemExit) as exit_info:
        main(["repair", "--dry-run", "-o", fmt], obj=Context(lambda: rt))
    captured = capsys.readouterr()
    assert exit_info.value.code in (0, None), captured.err
    golden = GOLDEN / f"repair-dry-run-{dump}.{fmt}"
    if os.environ.get("KINDFIX_REGEN_GOLDEN"):
        golden.write_text(captured.out)
    assert captured.out == golden.read_text()


def test_the_vocabulary_is_the_strings_kindfix_has_always_written() -> None:
    # journals on the nodes hold these strings (pending steps' "kind" and "phase"); a run
    # killed by an older kindfix is continued by this one
    assert [k.value for k in StepKind] == ["write-file", "regen-cert", "restart-pod",
                                          "restart-kubelet", "etcd", "start-lb", "fix-lb"]
    assert {s.value for s in EtcdStrategy} == {"none", "member-update", "force-new-cluster",
                                               "snapshot-restore", "decide", "restore-backup"}
    assert STRATEGIES == ("auto", "member-update", "force-new-cluster", "snapshot-restore")


def test_a_kind_compares_and_looks_up_as_its_string() -> None:
    # the applier's dispatch is keyed by these strings while it moves to the enum
    assert StepKind.ETCD == "etcd"
    assert {"etcd": 1}[StepKind.ETCD] == 1
    assert {StepKind.FIX_LB: 2}["fix-lb"] == 2
    assert f"{StepKind.RESTART_POD}" == str(StepKind.RESTART_POD) == "restart-pod"
    assert json.dumps([StepKind.WRITE_FILE, EtcdStrategy.DECIDE]) == '["write-file", "decide"]'


def test_a_step_made_with_a_string_holds_the_enum_and_an_unknown_kind_is_refused() -> None:
    step = Step("k", "restart-kubelet", "n", "restart the kubelet")  # type: ignore[arg-type]
    assert step.kind is StepKind.RESTART_KUBELET
    with pytest.raises(ValueError, match="reload-lb"):
        Step("k", "reload-lb", "n", "?")  # type: ignore[arg-type]
    plan = Plan("kind", (step,), "none")  # type: ignore[arg-type]
    assert plan.etcd_strategy is EtcdStrategy.NONE


def test_an_etcd_steps_strategy_is_its_phase() -> None:
    plan = plan_for("ha-3cp-permuted")
    [etcd] = [s for s in plan.steps if s.kind == StepKind.ETCD]
    assert etcd.strategy is EtcdStrategy.SNAPSHOT_RESTORE == plan.etcd_strategy
    assert etcd.phase == "snapshot-restore"
    assert all(s.strategy is EtcdStrategy.NONE for s in plan.steps if s is not etcd)


def test_plan_data_holds_plain_strings() -> None:
    """YAML (ruamel's safe dumper) cannot represent an enum member: a plan renders its kinds
    and strategy as their values."""
    plan = plan_for("ha-3cp-permuted")
    assert "kind: etcd" in as_yaml(plan) and "etcd_strategy: snapshot-restore" in as_yaml(plan)
    assert json.loads(as_json(plan))["etcd_strategy"] == "snapshot-restore"


def test_an_unknown_requested_strategy_is_one_error_line() -> None:
    with pytest.raises(KindfixError, match="'fast'") as e:
        plan_for("ha-3cp-permuted", "fast")
    assert "member-update" in (e.value.hint or "")
