"""The start-up wait for etcd (kindfix/settle.py) over scripted member states and a fake clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kindfix import settle
from kindfix.audit.etcd import EtcdState

CPS = ("cp1", "cp2", "cp3")


def silent() -> EtcdState:
    return EtcdState(quorum=None, size=3)


def starting(answering: tuple[str, ...]) -> EtcdState:
    """Some members run (no leader yet), the rest do not answer."""
    return EtcdState(quorum=None, size=3, answering=answering, leaderless=answering)


def with_leader() -> EtcdState:
    return EtcdState(quorum=True, size=3, answering=CPS)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


def run(states: Iterator[EtcdState], timeout: float = 120, **kw: float
        ) -> tuple[settle.Settled, Clock, list[str]]:
    clock, said = Clock(), []
    result = settle.wait_for_etcd(lambda: next(states), timeout, said.append, clock=clock,
                                  sleep=clock.sleep, **kw)
    return result, clock, said


def forever(state: EtcdState) -> Iterator[EtcdState]:
    while True:
        yield state


def test_needs_wait_only_without_evidence_and_without_a_leader() -> None:
    assert settle.needs_wait(silent())
    assert settle.needs_wait(starting(CPS))
    assert not settle.needs_wait(with_leader())
    assert not settle.needs_wait(EtcdState(quorum=None, size=3, evidence=("cp1:peer.crt#SAN",)))
    assert not settle.needs_wait(EtcdState(quorum=False, size=3, evidence=("x",)))
    assert not settle.needs_wait(EtcdState(quorum=None, size=0))  # no control plane


def test_a_leader_ends_the_wait_at_once() -> None:
    states = iter([silent(), starting(("cp1",)), with_leader()])
    result, _clock, said = run(states)
    assert result.verdict == settle.LEADER
    assert result.state.quorum is True
    assert result.waited == pytest.approx(4.0)  # two polls at POLL_INTERVAL
    assert said and said[0] == "waiting for etcd to start on 3 of 3 members, 0 s"


def test_silent_members_are_unknown_after_the_bound_never_lost() -> None:
    result, clock, said = run(forever(silent()), timeout=30)
    assert result.verdict == settle.UNKNOWN
    assert result.state.quorum is None
    assert 30 <= result.waited <= 30 + settle.POLL_INTERVAL
    assert all(s <= settle.POLL_INTERVAL for s in clock.sleeps)
    assert len(said) <= 30 / settle.PROGRESS_EVERY + 1  # progress, not a line per poll
    assert said[-1].startswith("waiting for etcd to start on 3 of 3 members, ")


def test_a_leaderless_majority_that_outlasts_the_grace_has_lost_quorum() -> None:
    result, _clock, said = run(forever(starting(CPS)), timeout=120)
    assert result.verdict == settle.LOST
    assert result.state.quorum is False
    # ended by the grace, long before the bound
    assert settle.LEADERLESS_GRACE <= result.waited < settle.LEADERLESS_GRACE + 2 * \
        settle.POLL_INTERVAL
    assert "waiting for etcd to elect a leader (3 of 3 members answer without one)" in said[0]


def test_a_leaderless_minority_is_not_lost() -> None:
    # one member up alone cannot elect: that is a member waiting for its peers
    result, _, _ = run(forever(starting(("cp1",))), timeout=60)
    assert result.verdict == settle.UNKNOWN
    assert result.state.quorum is None


def test_the_grace_restarts_when_the_majority_breaks_up() -> None:
    # leaderless majority for 10 s, then a member restarts (silent), then leaderless again
    states = iter([starting(CPS)] * 6 + [starting(("cp1",))] + [starting(CPS)] * 30)
    result, _, _ = run(states, timeout=120)
    assert result.verdict == settle.LOST
    assert result.waited >= 12 + settle.LEADERLESS_GRACE


def test_a_majority_that_goes_leaderless_late_is_judged_within_timeout_plus_grace() -> None:
    states = iter([silent()] * 14 + [starting(CPS)] * 100)  # members answer after ~28 s
    result, _, _ = run(states, timeout=30)
    assert result.verdict == settle.LOST
    assert result.waited <= 30 + settle.LEADERLESS_GRACE + settle.POLL_INTERVAL


def test_a_clock_that_does_not_move_still_ends() -> None:
    polls = []

    def poll() -> EtcdState:
        polls.append(1)
        return silent()

    result = settle.wait_for_etcd(poll, 10, clock=lambda: 5.0, sleep=lambda _: None)
    assert result.verdict == settle.UNKNOWN
    assert len(polls) <= (10 + settle.LEADERLESS_GRACE) / settle.POLL_INTERVAL + 2
