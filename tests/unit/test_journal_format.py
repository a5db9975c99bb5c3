"""Journals written by older kindfix versions are still read, continued and rolled back, and
the JSON this one writes is the same as before the records were typed (kindfix/journal_format.py).

golden/journal-262b164-failed.json: the first format (no "pending"; "failed" for a run that
stopped). golden/journal-d9af88c-killed.json: written by kindfix at d9af88c (the last commit
with dict entries) for a killed run: file entries (a created file, a load balancer backup kept
beside its config) and pending restarts, etcd and load balancer work.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest

from kindfix import journal, resume
from kindfix.journal import (
    JOURNAL_DIR,
    FileEntry,
    Journal,
    PendingStep,
    load_journals,
    rollback,
    unfinished,
)
from kindfix.journal_format import parse_journal
from kindfix.plan import Plan
from kindfix.steps import EtcdStrategy, StepKind
from tests.fakes import FakeNode
from tests.unit.helpers_nodes import with_file_commands

GOLDEN = Path(__file__).parent / "golden"
OLDEST = GOLDEN / "journal-262b164-failed.json"
KILLED = GOLDEN / "journal-d9af88c-killed.json"
CP, LB = "kind-control-plane", "kind-external-load-balancer"
CFG = "/usr/local/etc/haproxy/haproxy.cfg"


def journal_node(*paths: Path) -> FakeNode:
    node = with_file_commands(FakeNode(CP))
    for p in paths:
        node.files[f"{JOURNAL_DIR}/{json.loads(p.read_bytes())['run_id']}.json"] = p.read_bytes()
    return node


@pytest.mark.parametrize("path", [OLDEST, KILLED])
def test_an_old_journal_is_read_as_typed_records(path: Path) -> None:
    [j] = load_journals(journal_node(path))
    data = json.loads(path.read_bytes())
    assert [e.to_dict() for e in j.files] == data["files"]
    assert all(isinstance(e, FileEntry) for e in j.files)
    assert [p.to_dict() for p in j.pending] == data.get("pending", [])
    assert (j.run_id, j.cluster, j.status, j.done, j.notes) == (
        data["run_id"], data["cluster"], data["status"], data["done"], data["notes"])


def test_the_json_written_is_byte_for_byte_what_the_old_kindfix_wrote() -> None:
    raw = KILLED.read_bytes()
    assert Journal.from_json(raw).to_json() == raw
    # the first format gains only an empty pending list, as the old kindfix's own re-save did
    old = json.loads(OLDEST.read_bytes())
    assert json.loads(Journal.from_json(OLDEST.read_bytes()).to_json()) == {**old, "pending": []}


def test_a_killed_run_of_the_old_kindfix_is_continued() -> None:
    node = journal_node(KILLED)
    j = unfinished(node, "kind")
    assert j is not None
    assert [(p.kind, p.phase) for p in j.pending] == [
        (StepKind.RESTART_POD, "kube-scheduler"), (StepKind.ETCD, "snapshot-restore"),
        (StepKind.FIX_LB, "")]
    assert resume.pending_etcd(j)
    plan = resume.with_unfinished_steps(Plan("kind", (), EtcdStrategy.NONE), j)
    assert [s.kind for s in plan.steps] == [StepKind.ETCD, StepKind.RESTART_POD,
                                            StepKind.FIX_LB]
    assert plan.etcd_strategy is EtcdStrategy.SNAPSHOT_RESTORE
    assert all(f"(unfinished in run {j.run_id})" in s.summary for s in plan.steps)


def test_a_run_of_the_old_kindfix_is_rolled_back() -> None:
    etcd_yaml = "/etc/kubernetes/manifests/etcd.yaml"
    created = "/etc/kubernetes/pki/etcd/extra.crt"
    [j] = load_journals(journal_node(KILLED))
    cp = with_file_commands(FakeNode(CP, files={
        etcd_yaml: b"etcd: rewritten\n", created: b"made by the run\n",
        j.files[0].backup: b"etcd: original\n"}))
    lb = FakeNode(LB, "external-load-balancer", files={  # no shell: the archive API
        CFG: b"backend new\n", f"{CFG}.kindfix-{j.run_id}": b"backend old\n"})
    restored = rollback({CP: cp, LB: lb}, j)
    assert restored == [f"{LB}:{CFG}", f"{CP}:{created}", f"{CP}:{etcd_yaml}"]
    assert cp.files[etcd_yaml] == b"etcd: original\n"
    assert cp.modes[etcd_yaml] == 0o600
    assert created not in cp.files
    assert lb.files[CFG] == b"backend old\n"


def test_an_entry_without_a_mode_is_restored_with_0644() -> None:
    data = json.loads(OLDEST.read_bytes())
    del data["files"][0]["mode"]
    j = Journal.from_json(json.dumps(data).encode())
    assert j.files[0].mode == "644" and j.files[0].mode_bits == 0o644
    node = with_file_commands(FakeNode(CP, files={"/kind/kubeadm.conf": b"rewritten\n",
                                                  j.files[0].backup: b"original\n"}))
    journal._restore_entry(node, j.files[0])
    assert node.modes["/kind/kubeadm.conf"] == 0o644


@pytest.mark.parametrize(("change", "why"), [
    (lambda d: d["files"][0].update(owner="root"),
     "written by a newer kindfix? a file entry has fields this version does not know (owner)"),
    (lambda d: d["pending"][0].update(kind="reload-lb"),
     "written by a newer kindfix? a pending step has a kind this version does not know "
     "(reload-lb)"),
    (lambda d: d["files"][0].pop("backup"), "incomplete (a file entry lacks backup)"),
    (lambda d: d["files"][0].update(existed="yes"), "incomplete (the file entry of"),
    (lambda d: d["files"][0].update(mode="rw-r--r--"), "incomplete (invalid literal"),
    (lambda d: d.update(files={}), "incomplete (files is dict, not a list)"),
    (lambda d: d["pending"][0].pop("phase"), "incomplete (a pending step lacks phase)"),
])
def test_a_journal_this_kindfix_cannot_fully_read_is_refused_with_why(
        caplog: pytest.LogCaptureFixture, change: object, why: str) -> None:
    data = json.loads(KILLED.read_bytes())
    change(data)  # type: ignore[operator]
    journal, problem = parse_journal(json.dumps(data).encode())
    assert journal is None
    assert problem.startswith(why), problem
    node = journal_node()
    node.files[f"{JOURNAL_DIR}/{data['run_id']}.json"] = json.dumps(data).encode()
    with caplog.at_level(logging.WARNING, logger="kindfix"):
        assert load_journals(node) == []
    assert why in caplog.text


def test_records_are_made_from_their_json_objects_and_read_by_the_old_keys() -> None:
    sha = hashlib.sha256(b"x").hexdigest()
    j = Journal("r", "kind", files=[{"node": CP, "path": "/x", "backup": "/b/x",  # type: ignore[list-item]
                                     "existed": True, "sha256": sha, "mode": "600"}],
                pending=[{"key": "k", "kind": "etcd", "node": CP,  # type: ignore[list-item]
                          "summary": "s", "phase": "member-update"}])
    assert j.files == [FileEntry(CP, "/x", "/b/x", True, sha, "600")]
    assert j.pending == [PendingStep("k", StepKind.ETCD, CP, "s", "member-update")]
    # tests of other modules still read them as they read the dicts
    assert (j.files[0]["backup"], j.pending[0]["kind"]) == ("/b/x", "etcd")


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_runs_output_shows_the_journal_as_it_is_stored(capsys: pytest.CaptureFixture[str],
                                                       fmt: str) -> None:
    from ruamel.yaml import YAML

    from kindfix.cli import Context, main
    from tests.fakes import FakeRuntime, container

    rt = FakeRuntime()
    rt.add(container(CP, "control-plane", "172.18.0.2"), journal_node(OLDEST, KILLED))
    with pytest.raises(SystemExit) as exit_info:
        main(["runs", "-o", fmt], obj=Context(lambda: rt))
    out = capsys.readouterr().out
    assert exit_info.value.code in (0, None)
    oldest = {**json.loads(OLDEST.read_bytes()), "pending": []}
    data = json.loads(out) if fmt == "json" else YAML(typ="safe").load(out)
    assert data == [oldest, json.loads(KILLED.read_bytes())]
