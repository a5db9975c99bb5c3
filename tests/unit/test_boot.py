"""kindfix.boot: a repair waits for systemd on every kind node (kind's entrypoint done), and
changes nothing when systemd never comes (issue #10: kindfix run the moment Docker starts)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from kindfix import boot
from kindfix.errors import KindfixError
from kindfix.runtime import ExecResult
from tests.fakes import FakeNode

NOT_BOOTED = ExecResult(1, b"", b"System has not been booted with systemd as init system (PID 1)."
                        b" Can't operate.\nFailed to connect to bus: Host is down\n")
INACTIVE = ExecResult(3, b"inactive\n", b"")
ACTIVE = ExecResult(0, b"active\n", b"")


@pytest.mark.parametrize(("answer", "up"), [
    (NOT_BOOTED, False), (INACTIVE, True), (ACTIVE, True),
    (ExecResult(127, b"", b"exec: systemctl: not found"), True),  # nothing to wait for
])
def test_systemd_answers(answer: ExecResult, up: bool) -> None:
    node = FakeNode("n").on(("systemctl", "is-active", "kubelet"), answer)
    assert boot.systemd_answers(node) is up


def booting(name: str, after: int) -> FakeNode:
    """A node whose systemd answers from its `after`-th question on."""
    asked: list[int] = []

    def answer(_n: FakeNode, _argv: Sequence[str], _stdin: bytes | None) -> ExecResult:
        asked.append(1)
        return ACTIVE if len(asked) > after else NOT_BOOTED

    return FakeNode(name).on(("systemctl", "is-active", "kubelet"), answer)


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(boot, "POLL_S", 0.0)


def test_the_wait_ends_when_every_node_answers_and_says_so() -> None:
    nodes = {"cp1": booting("cp1", 2), "cp2": booting("cp2", 0)}
    said: list[str] = []
    boot.wait_for_systemd(nodes, ["cp1", "cp2"], 30, said.append)
    assert said and said[0].startswith("waiting for systemd on 1 node(s) still booting (cp1)")
    assert len(nodes["cp1"].calls) == 3 and len(nodes["cp2"].calls) == 1


def test_systemd_that_never_comes_is_one_error_naming_the_node() -> None:
    nodes = {"cp1": booting("cp1", 10**6), "cp2": booting("cp2", 0)}
    with pytest.raises(KindfixError) as err:
        boot.wait_for_systemd(nodes, ["cp1", "cp2"], 0.05, lambda _: None)
    assert "systemd is not running on cp1 after 0 s" in err.value.message
    assert "nothing was changed" in err.value.message
    assert err.value.hint == "look at `docker logs cp1`, then run kindfix again"


def test_no_node_no_question() -> None:
    boot.wait_for_systemd({}, [], 0, lambda _: pytest.fail("nothing to wait for"))
