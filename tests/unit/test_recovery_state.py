"""The journal API etcd recovery uses (kindfix/recovery/state.py over RunRecorder): notes read
back by key, latest first, and an undone preparation's stages and notes forgotten, saved."""

from __future__ import annotations

from kindfix.journal import JOURNAL_DIR, Journal, RunRecorder
from tests.fakes import FakeNode

RUN = "20261125T180000Z-0001"


def test_the_latest_note_of_a_key_is_read_back() -> None:
    rec = RunRecorder(Journal(RUN, "kind"), FakeNode("kind-control-plane"))
    assert rec.note("etcd-strategy") is None
    rec.add_note("etcd-strategy=snapshot-restore")
    rec.add_note("etcd-strategyx=other")
    rec.add_note("etcd-strategy=force-new-cluster")
    assert rec.note("etcd-strategy") == "force-new-cluster"
    assert rec.note("etcd") is None  # a key, not a prefix


def test_forget_drops_the_stages_picked_and_the_notes_by_prefix_and_saves() -> None:
    node = FakeNode("kind-control-plane")
    rec = RunRecorder(Journal(RUN, "kind"), node)
    rec.mark_done("file:a", "etcd:park:x", "etcd:copy:x", "etcd:park:y")
    rec.add_note("etcd-strategy=snapshot-restore")
    rec.add_note("kubelet-refresh=k etcd")
    rec.forget(lambda k: k.startswith("etcd:") and k != "etcd:park:y", note_prefix="etcd-")
    assert rec.journal.done == ["file:a", "etcd:park:y"]
    assert rec.journal.notes == ["kubelet-refresh=k etcd"]
    saved = Journal.from_json(node.files[f"{JOURNAL_DIR}/{RUN}.json"])
    assert (saved.done, saved.notes) == (["file:a", "etcd:park:y"], ["kubelet-refresh=k etcd"])
    rec.forget(lambda k: k == "file:a")  # no note prefix: the notes stay
    assert (rec.journal.done, rec.journal.notes) == (["etcd:park:y"], ["kubelet-refresh=k etcd"])
