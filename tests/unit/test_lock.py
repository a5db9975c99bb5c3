"""The cluster lock (kindfix/lock.py): its node scripts for real on the host's sh, the stale/live
rule, and every command that changes a cluster taking it; cluster names checked as kind does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kindfix import api, lock
from kindfix.cli import Context, main
from kindfix.errors import KindfixError
from kindfix.lock import Holder, Identity
from kindfix.names import validate_cluster_name
from kindfix.node import ContainerNode
from tests.fakes import FakeNode, FakeRuntime, container
from tests.unit.helpers_nodes import LocalRuntime, local_node

CP = "kind-control-plane"
ME = Identity("boot-1", "pid:[4026531836]", 4242, "1000")
ELSEWHERE = Identity("boot-2", "pid:[4026531836]", 4242, "1000")


@pytest.fixture
def lock_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "kind" / "kindfix" / "lock"
    monkeypatch.setattr(lock, "LOCK", str(path))
    return path


def never_alive(_pid: int) -> str | None:
    return None


def take(node: ContainerNode, me: Identity, command: str = "repair",
         progress: list[str] | None = None) -> str:
    return lock.acquire(node, "kind", command, (progress if progress is not None else []).append,
                        me=me, start_of=never_alive)


# --- the node scripts, for real ------------------------------------------------------------


def test_a_second_client_is_refused_with_the_owner_and_the_first_release_frees_it(
        lock_file: Path) -> None:
    node = local_node()
    token = take(node, ME)
    first, _, record = lock_file.read_text().partition("\n")
    assert first == token
    owner = json.loads(record.split("\n", 1)[1])
    assert owner["pid"] == ME.pid and owner["command"] == "repair"
    assert owner["boot_id"] == "boot-1"

    with pytest.raises(KindfixError) as refused:
        take(node, ELSEWHERE, "pin")
    msg = refused.value.message
    assert msg.startswith("another kindfix repair is already running on cluster 'kind': by ")
    assert f"@{owner['host']} (pid 4242) since " in msg
    assert msg.endswith("(0s ago)") or msg.endswith("(1s ago)")
    assert "kindfix unlock --name kind" in (refused.value.hint or "")
    assert lock_file.read_text().startswith(token)  # the refused client changed nothing

    assert lock.remove(node, token)
    assert not lock_file.exists()
    assert take(node, ELSEWHERE, "pin")


def test_no_temp_file_is_left_by_a_refused_or_granted_client(lock_file: Path) -> None:
    node = local_node()
    take(node, ME)
    with pytest.raises(KindfixError):
        take(node, ELSEWHERE)
    assert sorted(p.name for p in lock_file.parent.iterdir()) == ["lock"]


def test_remove_needs_the_holders_token(lock_file: Path) -> None:
    node = local_node()
    token = take(node, ME)
    assert not lock.remove(node, "0123456789abcdef")
    assert not lock.remove(node, "")
    assert lock_file.exists()
    assert lock.remove(node, token)
    assert not lock.remove(node, token)  # gone: nothing to remove, no error


def test_a_remover_killed_inside_the_mutex_does_not_block_forever(lock_file: Path) -> None:
    node = local_node()
    token = take(node, ME)
    mutex = Path(f"{lock_file}.break")
    mutex.mkdir()
    old = time.time() - 60
    os.utime(mutex, (old, old))
    started = time.monotonic()
    assert lock.remove(node, token)
    assert time.monotonic() - started < 10
    assert not mutex.exists()


def test_heartbeat_refreshes_the_lock_and_notices_when_it_is_taken_away(
        lock_file: Path) -> None:
    node = local_node()
    token = take(node, ME)
    old = time.time() - 600
    os.utime(lock_file, (old, old))
    beat = lock._Heartbeat(node, token, interval=0.05)
    beat.start()
    deadline = time.monotonic() + 10
    while lock_file.stat().st_mtime < old + 300 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lock_file.stat().st_mtime > old + 300
    assert lock.remove(node, token)
    take(node, ELSEWHERE)  # someone else's lock now
    while not beat.lost and time.monotonic() < deadline:
        time.sleep(0.05)
    beat.stop()
    assert beat.lost


# --- stale or live -------------------------------------------------------------------------


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait(timeout=30)
    return p.pid


def test_a_dead_holder_on_this_machine_is_broken_and_said_so(lock_file: Path) -> None:
    node = local_node()
    here = lock.this_process()
    if not (here.boot_id and here.pid_ns):
        pytest.skip("no /proc on this host")
    dead = Identity(here.boot_id, here.pid_ns, _dead_pid(), "12345")
    take(node, dead)
    said: list[str] = []
    token = lock.acquire(node, "kind", "rollback", said.append)  # the real identity and /proc
    assert lock_file.read_text().startswith(token)
    [line] = said
    assert line.startswith("breaking the lock of a kindfix repair that is no longer running")


def test_a_reused_pid_is_not_the_holder(lock_file: Path) -> None:
    here = lock.this_process()
    if not (here.boot_id and here.pid_ns):
        pytest.skip("no /proc on this host")
    holder = Holder("t", 0, 0, 0, {"boot_id": here.boot_id, "pid_ns": here.pid_ns,
                                   "pid": os.getpid(), "pid_start": "1"})
    assert lock.provably_dead(holder, here, lock.process_start)  # our pid, another start
    alive = Holder("t", 0, 0, 0, {"boot_id": here.boot_id, "pid_ns": here.pid_ns,
                                  "pid": os.getpid(), "pid_start": here.start})
    assert not lock.provably_dead(alive, here, lock.process_start)


@pytest.mark.parametrize("owner", [
    {"boot_id": "boot-2", "pid_ns": ME.pid_ns, "pid": 1},  # another machine
    {"boot_id": ME.boot_id, "pid_ns": "pid:[1]", "pid": 1},  # another PID namespace
    {"boot_id": "", "pid_ns": "", "pid": 1},  # a host without /proc (macOS)
    {},  # unreadable record
])
def test_a_holder_elsewhere_is_never_judged_dead_by_its_pid(owner: dict[str, object]) -> None:
    holder = Holder("t", 0, 0, 0, owner)
    assert not lock.provably_dead(holder, ME, never_alive)


def test_a_silent_holder_elsewhere_is_refused_with_the_unlock_hint_and_unlock_breaks_it(
        lock_file: Path) -> None:
    node = local_node()
    take(node, ELSEWHERE)
    old = time.time() - 600
    os.utime(lock_file, (old, old))
    with pytest.raises(KindfixError) as refused:
        take(node, ME)
    assert "no sign of life for 10m0" in refused.value.message
    assert "kindfix unlock --name kind" in (refused.value.hint or "")
    assert lock_file.exists()  # not broken automatically: the holder may only be frozen

    rt = FakeRuntime()
    rt.add(container(CP, "control-plane", "172.18.0.2"), FakeNode(CP))
    real = LocalRuntime()
    rt.exec = lambda _c, argv, stdin=None, timeout=None: real.exec(_c, argv, stdin, timeout)  # type: ignore[method-assign]
    holder = lock.unlock(rt, "kind", me=ME, start_of=never_alive)
    assert holder is not None and holder.owner["boot_id"] == "boot-2"
    assert not lock_file.exists()
    assert lock.unlock(rt, "kind", me=ME) is None  # nothing left


def test_unlock_refuses_a_live_holder_unless_forced(lock_file: Path) -> None:
    node = local_node()
    take(node, ELSEWHERE)
    rt = FakeRuntime()
    rt.add(container(CP, "control-plane", "172.18.0.2"), FakeNode(CP))
    real = LocalRuntime()
    rt.exec = lambda _c, argv, stdin=None, timeout=None: real.exec(_c, argv, stdin, timeout)  # type: ignore[method-assign]
    with pytest.raises(KindfixError) as refused:
        lock.unlock(rt, "kind", me=ME, start_of=never_alive)
    assert "looks alive" in refused.value.message
    assert "--force" in (refused.value.hint or "")
    assert lock_file.exists()
    assert lock.unlock(rt, "kind", force=True, me=ME, start_of=never_alive) is not None
    assert not lock_file.exists()


def test_parse_status_of_garbage_is_one_error_and_of_a_bad_record_an_unknown_owner() -> None:
    with pytest.raises(KindfixError, match="unexpected answer from the lock script"):
        lock.parse_status(b"sh: 1: ln: not found\n")
    state, holder = lock.parse_status(b"@@kindfix held 100 90\ntok\nnot-a-number\n{broken\n")
    assert state == "held" and holder is not None
    assert holder.token == "tok"
    assert holder.who() == "an unknown client (unreadable lock record)"
    assert (holder.age, holder.silence) == (10, 10)  # taken_at falls back to the mtime


@pytest.mark.parametrize(("seconds", "shown"), [(0, "0s"), (59, "59s"), (61, "1m01s"),
                                                (3600, "1h00m"), (7322, "2h02m")])
def test_duration(seconds: int, shown: str) -> None:
    assert lock.duration(seconds) == shown


# --- who takes it ---------------------------------------------------------------------------


def held_by_someone_else() -> tuple[FakeRuntime, FakeNode]:
    rt = FakeRuntime()
    node = FakeNode(CP)
    record = {"user": "alice", "host": "laptop", "pid": 77, "command": "repair",
              "boot_id": "other", "pid_ns": "x", "pid_start": "1"}
    node.files[lock.LOCK] = f"feedc0de\n{int(time.time()) - 130}\n{json.dumps(record)}\n".encode()
    rt.add(container(CP, "control-plane", "172.18.0.2"), node)
    rt.add(container("kind-worker", "worker", "172.18.0.3"), FakeNode("kind-worker", "worker"))
    return rt, node


@pytest.mark.parametrize("call", [
    lambda rt: api.pin(rt, "kind", lambda _: None),
    lambda rt: api.unpin(rt, "kind", lambda _: None),
    lambda rt: api.rollback(rt, "kind"),
    lambda rt: api.repair(rt, "kind"),
    lambda rt: api.prune_runs(rt, "kind", keep=1),
])
def test_every_command_that_changes_a_cluster_takes_its_lock(call) -> None:  # type: ignore[no-untyped-def]
    rt, node = held_by_someone_else()
    with pytest.raises(KindfixError) as refused:
        call(rt)
    assert refused.value.message.startswith(
        "another kindfix repair is already running on cluster 'kind': by alice@laptop (pid 77)")
    assert "(2m1" in refused.value.message  # taken 130 s ago
    assert rt.log == []  # no network change, no start, no signal
    assert node.files[lock.LOCK].startswith(b"feedc0de")


def test_the_cli_shows_the_owner_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    rt, _ = held_by_someone_else()
    with pytest.raises(SystemExit) as code:
        main(["pin"], obj=Context(lambda: rt))
    err = capsys.readouterr().err.splitlines()
    assert code.value.code == 1
    assert err[0].startswith("kindfix: error: another kindfix repair is already running on "
                             "cluster 'kind': by alice@laptop (pid 77) since ")
    assert err[1].startswith("  hint: wait for it to finish")
    assert len(err) == 2


def test_pin_releases_the_lock_when_done_and_when_it_fails() -> None:
    rt = FakeRuntime()
    node = FakeNode(CP)
    rt.add(container(CP, "control-plane", "172.18.0.2"), node)
    with pytest.raises(KindfixError, match="no network named kind"):
        api.pin(rt, "kind", lambda _: None)
    assert lock.LOCK not in node.files
    with lock.cluster_lock(rt, "kind", "pin", heartbeat=0) as lease:
        assert node.files[lock.LOCK].decode().startswith(lease.token)
    assert lock.LOCK not in node.files


def test_the_lock_lives_on_the_first_control_plane_and_needs_it_running() -> None:
    rt = FakeRuntime()
    first, second = FakeNode(CP), FakeNode("kind-control-plane2")
    rt.add(container("kind-control-plane2", "control-plane", "172.18.0.3"), second)
    rt.add(container(CP, "control-plane", "172.18.0.2"), first)
    with lock.cluster_lock(rt, "kind", "pin", heartbeat=0):
        assert lock.LOCK in first.files and lock.LOCK not in second.files
    rt.stop(CP)
    with pytest.raises(KindfixError, match="node kind-control-plane is exited, not running"), \
            lock.cluster_lock(rt, "kind", "pin", heartbeat=0):
        pass
    assert first.calls[-1] in first.ran("lock-remove")  # nothing ran on the stopped node


# --- cluster names, as kind checks them ------------------------------------------------------


@pytest.mark.parametrize("name", ["kind", "dev-1", "a.b", "0", "kb1a2b3c", "x" * 60])
def test_names_kind_accepts(name: str) -> None:
    assert validate_cluster_name(name) == name


@pytest.mark.parametrize("name", ["../etc", "a/b", "Kind", "dev_1", "", " kind", "kind\n",
                                  "k\x1b[31m", "kïnd"])
def test_names_kind_refuses_are_one_error_before_any_engine_call(
        name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(KindfixError, match="is not a valid kind cluster name"):
        validate_cluster_name(name)
    rt = FakeRuntime()
    for args in (["repair", "--yes", "--name", name], ["nodes", "-n", name],
                 ["unlock", "--name", name], ["runs", "--prune", "--name", name]):
        with pytest.raises(SystemExit) as code:
            main(args, obj=Context(lambda: rt))
        err = capsys.readouterr().err.splitlines()
        assert code.value.code == 1
        assert err[0].startswith("kindfix: error: ")
        assert "is not a valid kind cluster name: kind cluster names must match " \
               "`^[a-z0-9.-]+$`" in err[0]
        assert "\x1b" not in "".join(err)
    for call in (lambda: api.nodes(rt, name), lambda: api.runs(rt, name),
                 lambda: api.pin(rt, name, print), lambda: api.audit_live(rt, name)):
        with pytest.raises(KindfixError, match="is not a valid kind cluster name"):
            call()


def test_kind_cluster_name_from_the_environment_is_checked_too(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KIND_CLUSTER_NAME", "../../tmp/x")
    with pytest.raises(SystemExit) as code:
        main(["repair", "--yes"], obj=Context(FakeRuntime))
    assert code.value.code == 1
    assert "'../../tmp/x' is not a valid kind cluster name" in capsys.readouterr().err


def test_unlock_command(capsys: pytest.CaptureFixture[str]) -> None:
    rt, node = held_by_someone_else()
    with pytest.raises(SystemExit) as code:
        main(["unlock"], obj=Context(lambda: rt))
    err = capsys.readouterr().err
    assert code.value.code == 1
    assert "looks alive" in err and "--force" in err
    assert lock.LOCK in node.files
    with pytest.raises(SystemExit) as code:
        main(["unlock", "--force"], obj=Context(lambda: rt))
    assert code.value.code == 0
    assert capsys.readouterr().out.startswith(
        "removed the lock of kindfix repair by alice@laptop (pid 77), taken 2m1")
    assert lock.LOCK not in node.files
    with pytest.raises(SystemExit) as code:
        main(["unlock"], obj=Context(lambda: rt))
    assert capsys.readouterr().out == "cluster kind is not locked\n"
