"""Pruning old runs (kindfix/retention.py, `kindfix runs --prune`) and the warnings for journals
kindfix has to skip (kindfix/journal.py load_journals)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from kindfix import lock, retention
from kindfix.journal import JOURNAL_DIR, Journal
from kindfix.nodescripts import script
from kindfix.runtime import ExecResult
from tests.fakes import FakeNode, FakeRuntime, container, ok
from tests.unit.helpers_nodes import local_node, with_file_commands
from tests.unit.test_cli import Run
from tests.unit.test_cli import run as cli_run

run = cli_run  # the CLI fixture of test_cli.py, under the name the tests use

CP, WORKER = "kind-control-plane", "kind-worker"


def runs_of(*statuses: str, cluster: str = "kind") -> list[Journal]:
    return [Journal(f"202611{10 + i:02d}T100000Z-{i:04d}", cluster, status)
            for i, status in enumerate(statuses)]


def test_the_rule_keeps_the_newest_and_every_unfinished_run() -> None:
    journals = runs_of("done", "failed", "rolled-back", "unhealthy", "interrupted", "done",
                       "running", "done")
    journals.append(Journal("../../etc", "kind", "done"))
    got = {d.run_id[-4:] if d.run_id[0] == "2" else d.run_id: d.action
           for d in retention.decide(journals, keep=2)}
    assert got == {"0007": "keep", "0006": "keep",  # the newest two
                   "0005": "delete", "0000": "delete", "0002": "delete",  # finished, older
                   "0001": "keep", "0003": "keep", "0004": "keep",  # failed/unhealthy/interrupted
                   "../../etc": "keep"}  # never a path to delete


def _delete_handler(node: FakeNode, argv: Sequence[str], _stdin: bytes | None) -> ExecResult:
    # prune-backups.sh: rm -rf of each argument (run for real below)
    for path in argv[4:]:
        for p in [p for p in node.files if p == path or p.startswith(path.rstrip("/") + "/")]:
            del node.files[p]
    return ok()


def cluster_with_runs(statuses: Sequence[str]) -> tuple[FakeRuntime, FakeNode, FakeNode]:
    rt = FakeRuntime()
    cp, worker = with_file_commands(FakeNode(CP)), with_file_commands(FakeNode(WORKER, "worker"))
    for n in (cp, worker):
        n.on_script("prune-backups", _delete_handler)
    for j in runs_of(*statuses):
        cp.files[f"{JOURNAL_DIR}/{j.run_id}.json"] = j.to_json()
        for n in (cp, worker):
            n.files[f"/kind/kindfix/backups/{j.run_id}/files/etc/kubernetes/x.conf"] = b"old"
    rt.add(container(CP, "control-plane", "172.18.0.2"), cp)
    rt.add(container(WORKER, "worker", "172.18.0.3"), worker)
    return rt, cp, worker


def run_ids(node: FakeNode) -> set[str]:
    return {p.split("/")[4] for p in node.files if p.startswith("/kind/kindfix/backups/")} | {
        p.rsplit("/", 1)[1][:-5] for p in node.files if p.startswith(JOURNAL_DIR)}


def test_prune_dry_run_lists_and_deletes_nothing(run: Run) -> None:
    rt, cp, worker = cluster_with_runs(["done", "done", "failed", "done"])
    before = (dict(cp.files), dict(worker.files))
    r = run(["runs", "--prune", "--keep", "1", "--dry-run"], rt)
    assert r.code == 0
    lines = r.out.splitlines()
    assert [ln.split()[:3] for ln in lines[1:5]] == [
        ["20261113T100000Z-0003", "done", "kept"],
        ["20261112T100000Z-0002", "failed", "kept"],
        ["20261111T100000Z-0001", "done", "would"],
        ["20261110T100000Z-0000", "done", "would"]]
    assert lines[-1] == "2 run(s) would delete (dry run: nothing changed)"
    assert (cp.files, worker.files) == before
    assert not cp.ran("lock-acquire")  # a listing takes no lock


def test_prune_deletes_old_finished_runs_on_every_node_under_the_lock(run: Run) -> None:
    rt, cp, worker = cluster_with_runs(["done", "done", "failed", "done", "rolled-back"])
    r = run(["runs", "--prune", "--keep", "2", "-o", "json"], rt)
    assert r.code == 0
    data = json.loads(r.out)
    assert data["deleted"] == ["20261111T100000Z-0001", "20261110T100000Z-0000"]
    kept = {"20261114T100000Z-0004", "20261113T100000Z-0003", "20261112T100000Z-0002"}
    assert run_ids(cp) == kept
    assert run_ids(worker) == kept
    assert len(cp.ran("lock-acquire")) == 1
    assert lock.LOCK not in cp.files  # released
    assert [d["action"] for d in data["runs"]] == ["keep", "keep", "keep", "delete", "delete"]


def test_prune_keeps_the_journals_when_a_node_could_not_delete(run: Run) -> None:
    rt, cp, worker = cluster_with_runs(["done", "done", "done"])
    worker.on_script("prune-backups",
                     ExecResult(1, b"", b"rm: cannot remove '/kind/kindfix/backups': Read-only"))
    r = run(["runs", "--prune", "--keep", "1"], rt)
    assert r.code == 0
    assert "note: could not delete on kind-worker: rm: cannot remove" in r.out
    assert "journals kept" in r.out
    assert {p for p in cp.files if p.startswith(JOURNAL_DIR)} == {
        f"{JOURNAL_DIR}/2026111{i}T100000Z-000{i}.json" for i in range(3)}


def test_the_delete_script_for_real(tmp_path: Path) -> None:
    node = local_node()
    a = tmp_path / "backups" / "run one" / "files" / "x"
    a.parent.mkdir(parents=True)
    a.write_bytes(b"x")
    journal_file = tmp_path / "run.json"
    journal_file.write_bytes(b"{}")
    keep = tmp_path / "backups" / "other"
    keep.mkdir()
    node.exec(["sh", "-c", script("prune-backups"), "kindfix-prune",
               str(tmp_path / "backups" / "run one"), str(journal_file)])
    assert not (tmp_path / "backups" / "run one").exists()
    assert not journal_file.exists()
    assert keep.exists()


# --- journals kindfix has to skip are named -------------------------------------------------


@pytest.mark.parametrize(("content", "why"), [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe{}", "not valid JSON"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps({"run_id": "20261101T100000Z-0009", "cluster": "kind", "status": "done",
                 "files": [], "done": [], "notes": [], "pending": [],
                 "schema": 2}).encode(),
     "written by a newer kindfix? it has fields this version does not know (schema)"),
    (b'{"run_id": "20261101T100000Z-0009"}', "incomplete"),
])
def test_an_unusable_journal_is_skipped_with_a_warning_naming_it(
        run: Run, content: bytes, why: str) -> None:
    rt, cp, _ = cluster_with_runs(["done"])
    bad = f"{JOURNAL_DIR}/20261101T100000Z-0009.json"
    cp.files[bad] = content
    r = run(["runs"], rt)
    assert r.code == 0
    assert "20261110T100000Z-0000" in r.out  # the good one is listed
    [warning] = [ln for ln in r.err.splitlines() if "warning" in ln]
    assert warning.startswith(f"kindfix: warning: ignoring the journal {bad} on {CP}: {why}")
