"""The repair flow of kindfix/api.py over a FakeRuntime built from fixture dumps: when etcd is
waited for, what is planned after the wait (issue #10), which earlier run is continued
(issue #9), and an etcd manifest a killed run parked read where audit expects it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from kindfix import api, boot, journal, probes, resume, settle
from kindfix.audit import AuditReport
from kindfix.errors import KindfixError
from kindfix.journal import Journal
from kindfix.plan import Plan
from kindfix.runtime import ExecResult
from tests.fakes import FakeNode, FakeRuntime
from tests.unit.helpers_nodes import runtime_from_dump as from_dump

CPS = ("kind-control-plane", "kind-control-plane2", "kind-control-plane3")
TIMEOUT = "curl: (28) Operation timed out after 3001 milliseconds with 0 bytes received"


def section(name: str, rc: int, body: str) -> str:
    return f"\n@@kindfix-section {name} {rc}\n{body}"


def refused() -> ExecResult:
    """etcd not started yet: nothing listens on 2379 or 2381 (the probe's real shape)."""
    no = "curl: (7) Failed to connect to 127.0.0.1 port {} after 0 ms: Couldn't connect to server"
    return ExecResult(0, (section("member-list", 7, no.format(2379))
                          + section("status", 7, no.format(2379))
                          + section("health", 7, no.format(2381)) + section("metrics", 1, "")
                          + section("end", 0, "")).encode(), b"")


def leaderless() -> ExecResult:
    """etcd runs without a leader: 2381 answers, the client port was not asked."""
    skipped = "skipped: etcd reports no leader"
    return ExecResult(0, (section("member-list", 28, skipped) + section("status", 28, skipped)
                          + section("health", 0, '{"health":"false","reason":"RAFT NO LEADER"}')
                          + section("metrics", 0, "etcd_debugging_mvcc_current_revision 1342\n"
                                    "etcd_server_has_leader 0\netcd_server_is_leader 0")
                          + section("end", 0, "")).encode(), b"")


class Scripted:
    """Answers the etcd probe on every control plane from one script: each entry is what every
    member says at one poll ("up": what the dump recorded), the last entry repeats."""

    def __init__(self, script: Sequence[str], recorded: dict[str, ExecResult]) -> None:
        self.script = list(script)
        self.recorded = recorded
        self.asked: dict[str, int] = {}

    def __call__(self, node: FakeNode, _argv: Sequence[str], _stdin: bytes | None
                 ) -> ExecResult:
        n = self.asked.get(node.name, 0)
        self.asked[node.name] = n + 1
        what = self.script[min(n, len(self.script) - 1)]
        return {"silent": refused(), "leaderless": leaderless()}.get(what) or \
            self.recorded[node.name]


def runtime_from_dump(name: str, script: Sequence[str] = ("up",),
                      runs: Sequence[Journal] = ()) -> tuple[FakeRuntime, Scripted]:
    rt, snapshots = from_dump(name)
    recorded = {n: s.commands[probes.ETCD_PROBE] for n, s in snapshots.items()
                if probes.ETCD_PROBE in s.commands}
    probe = Scripted(script, recorded)
    for node in rt.nodes.values():
        node.on(probes.ETCD_PROBE, probe)
        node.on(("ls", "-1", journal.JOURNAL_DIR), _ls_journals)
    for j in runs:
        rt.nodes[CPS[0]].files[f"{journal.JOURNAL_DIR}/{j.run_id}.json"] = j.to_json()
    return rt, probe


def _ls_journals(node: FakeNode, _argv: Sequence[str], _stdin: bytes | None) -> ExecResult:
    prefix = journal.JOURNAL_DIR + "/"
    names = sorted(p[len(prefix):] for p in node.files if p.startswith(prefix))
    return ExecResult(0 if names else 2, "".join(n + "\n" for n in names).encode(), b"")


class FakeTime:
    """settle's clock: sleeping advances it, nothing really waits."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    clock = FakeTime()
    monkeypatch.setattr(settle, "time", clock)
    return clock


def prepare(rt: FakeRuntime, wait: float = settle.DEFAULT_WAIT
            ) -> tuple[Plan, Journal | None, tuple[str, ...], list[str], AuditReport]:
    said: list[str] = []
    _, _, _, report, plan, continued, warnings = api.prepare_repair(
        rt, "kind", etcd_wait=wait, progress=said.append)
    return plan, continued, warnings, said, report


# --- issue #10: unknown is never lost ---------------------------------------------------------


def test_etcd_still_starting_is_waited_for_then_observed_again_and_nothing_is_planned(
        fake_time: FakeTime) -> None:
    """Nodes restarted without an IP change: etcd does not answer for the first polls."""
    rt, probe = runtime_from_dump("ha-3cp-healthy", ["silent"] * 4 + ["leaderless", "up"])
    plan, _, _, said, report = prepare(rt)
    assert plan.empty, [s.summary for s in plan.steps]
    assert plan.etcd_strategy == "none"
    assert report.etcd.quorum is True  # from the observation made after the wait
    assert any(line.startswith("waiting for etcd to start on 3 of 3 members") for line in said)
    assert said[-1] == "etcd after 8 s: a member has a leader"
    # polled during the wait, and once more by the fresh observation after it
    assert all(probe.asked[cp] == 7 for cp in CPS), probe.asked
    assert fake_time.now == pytest.approx(8)  # 4 polls apart


def test_evidence_in_the_files_acts_at_once_without_waiting(fake_time: FakeTime) -> None:
    """Permuted IPs: stale etcd certificates; the members answer without a leader."""
    rt, probe = runtime_from_dump("ha-3cp-permuted", ["leaderless"])
    plan, _, _, said, report = prepare(rt)
    assert report.etcd.evidence
    assert plan.etcd_strategy == "snapshot-restore"
    assert not any("waiting" in line for line in said)
    assert all(probe.asked[cp] == 1 for cp in CPS), probe.asked
    assert fake_time.now == 0


def test_evidence_with_etcd_not_started_yet_acts_without_waiting(fake_time: FakeTime) -> None:
    """All members moved (permuted): they cannot elect, restore at once (as the bench needs);
    one of three moved: the other two may well have quorum, decide once the files are fixed."""
    rt, probe = runtime_from_dump("ha-3cp-permuted", ["silent"])
    plan, _, _, _, report = prepare(rt)
    assert report.etcd.quorum is None
    assert sorted(report.etcd.moved) == sorted(CPS)
    assert plan.etcd_strategy == "snapshot-restore"
    assert fake_time.now == 0 and all(probe.asked[cp] == 1 for cp in CPS)

    rt, probe = runtime_from_dump("ha-3cp-healthy", ["silent"])
    _move(rt, CPS[2], "172.18.0.77")
    plan, _, _, _, report = prepare(rt)
    assert report.etcd.moved == (CPS[2],)
    assert plan.etcd_strategy == "decide"
    assert fake_time.now == 0 and all(probe.asked[cp] == 1 for cp in CPS)


def _move(rt: FakeRuntime, name: str, ipv4: str) -> None:
    info = rt.containers[name]
    net = next(iter(info.networks))
    rt.containers[name] = replace(info, networks={net: replace(info.networks[net], ipv4=ipv4)})


def test_members_that_answer_without_a_leader_through_the_wait_have_lost_quorum(
        fake_time: FakeTime) -> None:
    """No file shows why, but a majority runs and never elects: quorum lost, after the wait."""
    rt, _ = runtime_from_dump("ha-3cp-healthy", ["leaderless"])
    plan, _, _, said, report = prepare(rt)
    assert report.etcd.quorum is False
    assert report.etcd.waited >= settle.LEADERLESS_GRACE
    assert plan.etcd_strategy == "snapshot-restore"
    assert [s.kind for s in plan.steps] == ["etcd"]
    assert "etcd lost quorum" in report.diagnosis
    assert any("waiting for etcd to elect a leader" in line for line in said)
    assert fake_time.now < settle.DEFAULT_WAIT  # the grace ended it, not the bound


def test_etcd_that_never_starts_is_left_alone(fake_time: FakeTime) -> None:
    rt, _ = runtime_from_dump("ha-3cp-healthy", ["silent"])
    plan, _, _, said, report = prepare(rt, wait=60)
    assert report.etcd.quorum is None
    assert plan.empty and plan.etcd_strategy == "none"
    assert "unknown is not lost" in plan.explanation[0]
    assert "within 60 s" in plan.explanation[0]
    assert 60 <= fake_time.now <= 60 + settle.POLL_INTERVAL
    assert said[-1].endswith("still not running; it is left alone")


def test_no_wait_asked_leaves_unknown_etcd_alone_at_once(fake_time: FakeTime) -> None:
    rt, probe = runtime_from_dump("ha-3cp-healthy", ["silent"])
    plan, _, _, _said, _ = prepare(rt, wait=0)
    assert plan.empty
    assert fake_time.now == 0 and all(probe.asked[cp] == 1 for cp in CPS)


# --- issue #9: an ended run is reported, a killed one continued -------------------------------

RUN = "20261126T100000Z-0001"


def _keys(name: str) -> list[str]:
    rt, _ = runtime_from_dump(name)
    plan, *_ = prepare(rt)
    assert not plan.empty
    return [s.key for s in plan.steps]


@pytest.mark.parametrize("status", [journal.UNHEALTHY, journal.FAILED])
def test_a_run_that_ended_not_healthy_is_reported_and_not_continued(status: str) -> None:
    """Its steps (here: every step of today's plan, under old-style keys too) must not count as
    done: the new repair plans from what it observes."""
    keys = _keys("single-cp-restart-v0.15")
    old_style = ["file:kind-control-plane:/etc/kubernetes/manifests/etcd.yaml", "etcd"]
    ended = Journal(RUN, "kind", status, done=keys + old_style,
                    pending=[{"key": "etcd", "kind": "etcd", "node": "kind-control-plane",
                              "summary": "etcd membership: member-update",
                              "phase": "member-update"}])
    rt, _ = runtime_from_dump("single-cp-restart-v0.15", runs=[ended])
    plan, continued, warnings, said, _ = prepare(rt)
    assert continued is None
    assert [s.key for s in plan.steps] == keys
    assert not any("unfinished in run" in s.summary for s in plan.steps)
    assert len(warnings) == 1 and f"run {RUN}, ended {status}" in warnings[0]
    assert f"kindfix rollback {RUN}" in warnings[0]
    assert warnings[0] in said


@pytest.mark.parametrize("status", [journal.RUNNING, journal.INTERRUPTED])
def test_a_killed_or_interrupted_run_is_continued(status: str) -> None:
    pending = {"key": "restart:kind-control-plane:kube-scheduler:0", "kind": "restart-pod",
               "node": "kind-control-plane", "summary": "restart kube-scheduler",
               "phase": "kube-scheduler"}
    killed = Journal(RUN, "kind", status, pending=[pending])
    rt, _ = runtime_from_dump("ha-3cp-healthy", runs=[killed])
    plan, continued, warnings, said, _ = prepare(rt)
    assert continued is not None and continued.run_id == RUN
    assert [s.key for s in plan.steps] == [pending["key"]]
    assert warnings == ()
    assert f"continuing run {RUN} ({status}: it did not finish)" in said


def test_a_file_stale_again_is_a_new_step_not_already_done() -> None:
    """A killed run rewrote the files for one set of IPs; the node moved again before the run
    was continued: every file step is new work, none is skipped as done."""
    first = _keys("single-cp-restart-v0.15")
    killed = Journal(RUN, "kind", journal.RUNNING, done=first)
    rt, _ = runtime_from_dump("single-cp-restart-v0.15", runs=[killed])
    _move(rt, CPS[0], "172.18.0.77")
    plan, continued, _, _, _ = prepare(rt)
    assert continued is not None
    files = [s for s in plan.steps if s.kind in ("write-file", "regen-cert")]
    assert files
    assert not {s.key for s in plan.steps} & set(killed.done)


def test_pending_work_of_a_continued_run_is_superseded_by_the_same_work_planned_now() -> None:
    """A killed run left its etcd repair pending for other addresses: the plan made from what
    the cluster shows now has one etcd step, its own, and the stale one leaves the journal."""
    stale = {"key": "etcd:planned-for-other-addresses", "kind": "etcd",
             "node": "kind-control-plane", "summary": "etcd membership: member-update",
             "phase": "member-update"}
    killed = Journal(RUN, "kind", journal.RUNNING, pending=[dict(stale)])
    rt, _ = runtime_from_dump("ha-3cp-permuted", ["leaderless"], runs=[killed])
    plan, continued, _, _, _ = prepare(rt)
    assert continued is not None
    etcd_steps = [s for s in plan.steps if s.kind == "etcd"]
    assert len(etcd_steps) == 1 and etcd_steps[0].key != stale["key"]
    resume.remember_pending(continued, plan)
    assert [p["key"] for p in continued.pending if p["kind"] == "etcd"] == [etcd_steps[0].key]


# --- a killed run's parked etcd manifest (resume.py through api's observation) ---------------


def test_an_etcd_manifest_a_killed_run_parked_is_observed_and_is_evidence(
        fake_time: FakeTime) -> None:
    """Killed while etcd was stopped: the manifests sit where the recovery parked them. They are
    read there (not `missing`, which would refuse the repair), the parking is evidence (no wait
    for an etcd that kindfix itself stopped), and the pending etcd work is continued."""
    pending = {"key": "etcd:killed", "kind": "etcd", "node": CPS[0],
               "summary": "etcd membership: snapshot-restore", "phase": "snapshot-restore"}
    killed = Journal(RUN, "kind", journal.INTERRUPTED, pending=[pending])
    rt, _ = runtime_from_dump("ha-3cp-healthy", ["silent"], runs=[killed])
    for cp in CPS:
        files = rt.nodes[cp].files
        files[resume.PARKED] = files.pop(resume.MANIFEST)
    plan, continued, _, said, report = prepare(rt)
    assert continued is not None
    assert sorted(report.etcd.evidence) == sorted(
        f"{cp}:{resume.PARKED} (etcd parked by an unfinished repair)" for cp in CPS)
    assert not report.unknown, report.unknown
    assert not any("waiting" in line for line in said)
    assert fake_time.now == 0
    # the etcd work planned from the evidence now supersedes the one the killed run left
    [etcd] = [s for s in plan.steps if s.kind == "etcd"]
    assert etcd.key != "etcd:killed" and plan.etcd_strategy == etcd.phase != "none"


def test_a_missing_etcd_manifest_with_nothing_parked_stays_unknown() -> None:
    rt, _ = runtime_from_dump("ha-3cp-healthy")
    del rt.nodes[CPS[1]].files[resume.MANIFEST]
    with pytest.raises(KindfixError, match=f"will not plan a repair: {CPS[1]}:"
                                           f"{resume.MANIFEST}"):
        prepare(rt)


# --- issue #10: nodes that Docker just started may not run systemd yet --------------------------

def test_a_repair_waits_for_systemd_and_changes_nothing_when_it_never_comes(
        fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch) -> None:
    rt, _ = runtime_from_dump("ha-3cp-permuted")
    monkeypatch.setattr(boot, "time", fake_time)
    not_booted = ExecResult(1, b"", b"System has not been booted with systemd as init system "
                            b"(PID 1). Can't operate.\nFailed to connect to bus: Host is down\n")
    for name in CPS:
        rt.nodes[name].on(("systemctl", "is-active", "kubelet"), not_booted)
    before = {name: dict(node.files) for name, node in rt.nodes.items()}
    said: list[str] = []
    with pytest.raises(KindfixError) as err:
        api.repair(rt, "kind", progress=said.append)
    assert err.value.message.startswith(f"systemd is not running on {', '.join(CPS)} after 90 s")
    assert any(s.startswith("waiting for systemd on 3 node(s) still booting") for s in said)
    assert {name: dict(node.files) for name, node in rt.nodes.items()} == before
    assert fake_time.now >= boot.DEFAULT_WAIT
