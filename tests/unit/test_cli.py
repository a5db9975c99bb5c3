"""The command line through one fixture: exit codes, one-line errors with hints, no change."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from kindfix.cli import Context, main
from kindfix.runtime import ExecResult
from tests.fakes import FakeNode, FakeRuntime, container


@dataclass
class Result:
    code: int
    out: str
    err: str


Run = Callable[..., Result]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    def invoke(args: list[str], runtime: FakeRuntime | None = None) -> Result:
        obj = Context(lambda: runtime or FakeRuntime())
        with pytest.raises(SystemExit) as exit_info:
            main(args, obj=obj)
        captured = capsys.readouterr()
        result = Result(int(exit_info.value.code or 0), captured.out, captured.err)
        print(result)  # shown by pytest when an assertion fails
        return result
    return invoke


def two_clusters() -> FakeRuntime:
    rt = FakeRuntime()
    rt.add(container("kind-control-plane", "control-plane", "172.18.0.2"), FakeNode("kind-control-plane"))
    rt.add(container("dev-control-plane", "control-plane", "172.18.0.3", cluster="dev"))
    return rt


def test_clusters_lists_names_like_kind(run: Run) -> None:
    r = run(["clusters"], two_clusters())
    assert r.code == 0
    assert r.out.split() == ["dev", "kind"]


def test_unknown_cluster_is_one_line_with_hint(run: Run) -> None:
    r = run(["audit", "--name", "nope"], two_clusters())
    assert r.code == 1
    assert r.err.splitlines()[0] == "kindfix: error: no kind cluster named 'nope'"
    assert "known clusters: dev, kind" in r.err
    assert "Traceback" not in r.err


def test_engine_down(run: Run) -> None:
    rt = FakeRuntime(up=False)
    r = run(["audit"], rt)
    assert r.code == 1
    assert "Cannot reach the Docker engine" in r.err


def test_stopped_node_is_an_error_and_nothing_is_executed(run: Run) -> None:
    rt = FakeRuntime()
    node = FakeNode("kind-control-plane")
    rt.add(container("kind-control-plane", "control-plane", None, state="exited"), node)
    r = run(["repair", "--yes"], rt)
    assert r.code == 1
    assert "node kind-control-plane is exited, not running" in r.err
    assert "docker start kind-control-plane" in r.err
    assert node.calls == []


def test_corrupted_manifest_is_one_clear_error_and_no_change(run: Run) -> None:
    rt = FakeRuntime()
    node = FakeNode("kind-control-plane", files={
        "/etc/kubernetes/manifests/etcd.yaml": b"spec: [unclosed\n  - {x",
        # what makes it a kind node (audit refuses containers that only carry kind's labels)
        "/usr/local/bin/entrypoint": b"#!/bin/bash\n", "/kind/version": b"v1.29.2\n",
    })
    before = dict(node.files)
    rt.add(container("kind-control-plane", "control-plane", "172.18.0.2"), node)
    r = run(["repair", "--yes"], rt)
    assert r.code == 1
    assert "etcd.yaml is not valid YAML" in r.err
    assert node.files == before


def test_nodes_table_shows_roles_and_ips(run: Run) -> None:
    r = run(["nodes", "--name", "dev"], two_clusters())
    assert r.code == 0
    assert "dev-control-plane" in r.out and "172.18.0.3" in r.out


def test_internal_error_is_exit_3_with_hint(run: Run) -> None:
    class Broken(FakeRuntime):
        def list_containers(self, labels):  # type: ignore[no-untyped-def]
            raise RuntimeError("boom")

    r = run(["clusters"], Broken())
    assert r.code == 3
    assert "internal error: RuntimeError: boom" in r.err
    assert "-v" in r.err


def test_bad_usage_is_exit_2(run: Run) -> None:
    r = run(["audit", "--output", "xml"])
    assert r.code == 2


def test_a_non_kind_container_is_named_as_such(run: Run) -> None:
    rt = two_clusters()
    rt.add(container("my-nginx", "", "172.18.0.9"))
    rt.containers["my-nginx"] = rt.containers["my-nginx"].__class__(
        **{**rt.containers["my-nginx"].__dict__, "labels": {}})
    r = run(["audit", "--name", "my-nginx"], rt)
    assert r.code == 1
    assert "container my-nginx is not a kind node" in r.err


def test_a_node_name_given_as_cluster_points_at_the_cluster(run: Run) -> None:
    r = run(["audit", "--name", "dev-control-plane"], two_clusters())
    assert r.code == 1
    assert "use --name dev" in r.err


def runtime_from_dump(name: str) -> FakeRuntime:
    """The engine and nodes of a fixture dump (helpers_nodes.runtime_from_dump)."""
    from tests.unit.helpers_nodes import runtime_from_dump as from_dump

    return from_dump(name)[0]


def test_repair_dry_run_json_reports_the_plan_and_changes_nothing(run: Run) -> None:
    rt = runtime_from_dump("single-cp-restart-v0.14")
    before = {name: dict(node.files) for name, node in rt.nodes.items()}
    r = run(["repair", "--dry-run", "-o", "json"], rt)
    assert r.code == 0
    data = json.loads(r.out)
    assert data["dry_run"] is True
    kinds = [s["kind"] for s in data["plan"]["steps"]]
    assert {"write-file", "regen-cert", "etcd", "restart-pod"} <= set(kinds)
    assert data["plan"]["etcd_strategy"] == "member-update"
    assert {name: dict(node.files) for name, node in rt.nodes.items()} == before
    assert all(not call[0].startswith("kubeadm") for n in rt.nodes.values() for call in n.calls)
    assert "content" not in data["plan"]["steps"][0]  # may hold client-key-data
    assert "client-key-data: LS0" not in r.out


# --- nothing from a node reaches the terminal raw (issue #9.10) ------------------------------

ESC = "\x1b]0;pwned\x07\x1b[2J\u202e"  # retitle the terminal, clear it, reverse the text


def test_escape_sequences_in_an_error_from_a_node_are_shown_escaped(run: Run) -> None:
    rt = FakeRuntime()
    node = FakeNode("kind-control-plane")
    from kindfix import node as node_mod
    node.on(("sh", "-c", node_mod._READ_FILES_SCRIPT),
            ExecResult(2, b"", f"cat: {ESC}\nboom{ESC}".encode()))
    rt.add(container("kind-control-plane", "control-plane", "172.18.0.2"), node)
    r = run(["audit"], rt)
    assert r.code == 1
    assert not any(c in r.err for c in "\x1b\x07\u202e")
    assert "boom\\x1b]0;pwned\\x07\\x1b[2J\\u202e" in r.err
    assert len(r.err.splitlines()) == 1  # still one error line


def journal_runtime(notes: list[str], run_id: str = "20261120T100000Z-0001") -> FakeRuntime:
    from kindfix.journal import JOURNAL_DIR, Journal
    from tests.unit.helpers_nodes import with_file_commands

    rt = FakeRuntime()
    node = with_file_commands(FakeNode("kind-control-plane"))
    node.files[f"{JOURNAL_DIR}/x.json"] = Journal(run_id, "kind", "done", notes=notes).to_json()
    rt.add(container("kind-control-plane", "control-plane", "172.18.0.2"), node)
    return rt


def test_tables_escape_control_characters_and_newlines(run: Run) -> None:
    r = run(["runs"], journal_runtime([], run_id=f"2026{ESC}\nFAKE  done  0  0"))
    assert r.code == 0
    assert not any(c in r.out for c in "\x1b\x07\u202e")
    [_, row] = r.out.splitlines()  # the newline did not make a second row
    assert row.startswith("2026\\x1b]0;pwned\\x07\\x1b[2J\\u202e\\x0aFAKE")


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_json_and_yaml_keep_the_exact_value_escaped_by_the_format(run: Run, fmt: str) -> None:
    from ruamel.yaml import YAML

    r = run(["runs", "-o", fmt], journal_runtime([f"note {ESC}"]))
    assert r.code == 0
    assert not any(c in r.out for c in "\x1b\x07\u202e")
    data = json.loads(r.out) if fmt == "json" else YAML(typ="safe").load(r.out)
    assert data[0]["notes"] == [f"note {ESC}"]
