"""Malformed and hostile dumps (kindfix/dump_load.py): each is one error line naming the file, exit 1.

Every case starts from a copy of a good fixture dump and breaks one thing, then runs
`kindfix audit --from-dump` through the CLI fixture. Never exit 3 (a crash), never "consistent"
for a dump that could not be read. (Malformed files *inside* nodes are another module's corpus.)
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kindfix.dump import MANIFEST
from tests.unit import test_cli
from tests.unit.test_dump import DUMPS

Run = test_cli.Run
run = test_cli.run  # the one CLI fixture, shared

CP = "nodes/kind-control-plane"
COMMANDS = f"{CP}/commands.json"

Mutation = Callable[[Path], None]


def _edit_json(rel: str, change: Callable[[Any], Any]) -> Mutation:
    def mutate(d: Path) -> None:
        path = d / rel
        data = json.loads(path.read_text())
        path.write_text(json.dumps(change(data)))
    return mutate


def _manifest(change: Callable[[dict[str, Any]], Any]) -> Mutation:
    return _edit_json(MANIFEST, change)


def _container(change: Callable[[dict[str, Any]], Any], index: int = 0) -> Mutation:
    def edit(m: dict[str, Any]) -> dict[str, Any]:
        m["containers"][index] = change(m["containers"][index])
        return m
    return _manifest(edit)


def _entry(change: Callable[[dict[str, Any]], Any]) -> Mutation:
    def edit(cmds: list[Any]) -> list[Any]:
        cmds[0] = change(cmds[0])
        return cmds
    return _edit_json(COMMANDS, edit)


def _write(rel: str, data: bytes) -> Mutation:
    def mutate(d: Path) -> None:
        (d / rel).write_bytes(data)
    return mutate


def _truncate(rel: str, keep: int) -> Mutation:
    def mutate(d: Path) -> None:
        (d / rel).write_bytes((d / rel).read_bytes()[:keep])
    return mutate


def _remove(rel: str) -> Mutation:
    def mutate(d: Path) -> None:
        target = d / rel
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    return mutate


def _replace_with_link(rel: str, to: str) -> Mutation:
    def mutate(d: Path) -> None:
        target = d / rel
        shutil.rmtree(target) if target.is_dir() else target.unlink()
        target.symlink_to(to)
    return mutate


def _without(key: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def drop(obj: dict[str, Any]) -> dict[str, Any]:
        obj.pop(key)
        return obj
    return drop


def _with(key: str, value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def put(obj: dict[str, Any]) -> dict[str, Any]:
        obj[key] = value
        return obj
    return put


def _mkfifo(rel: str) -> Mutation:
    def mutate(d: Path) -> None:
        os.mkfifo(d / rel)
    return mutate


def _stop_worker(m: dict[str, Any]) -> dict[str, Any]:
    worker = next(c for c in m["containers"] if c["name"] == "kind-worker")
    worker["state"] = "exited"
    worker["networks"] = {}
    return m


def _unread(node: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return _with("unread", [{"node": node, "state": "running",
                             "reason": "could not be read: exec failed"}])


def _no_address(c: dict[str, Any]) -> dict[str, Any]:
    c["networks"]["kind"]["ipv4"] = None
    c["networks"]["kind"]["ipv6"] = None
    return c


# (case id, mutation, the file the error line must name, a fragment of the error)
CASES: list[tuple[str, Mutation, str, str]] = [
    # the manifest
    ("manifest-missing", _remove(MANIFEST), "", "is not a kindfix dump"),
    ("manifest-empty", _write(MANIFEST, b""), MANIFEST, "is not valid JSON"),
    ("manifest-truncated", _truncate(MANIFEST, 200), MANIFEST, "is not valid JSON"),
    ("manifest-not-utf8", _write(MANIFEST, b'{"format": 1, "cluster": "\xff\xfe"}'), MANIFEST,
     "is not UTF-8 JSON"),
    ("manifest-a-list", _manifest(lambda m: [m]), MANIFEST, "is not a JSON object"),
    ("manifest-nested-too-deep", _write(MANIFEST, b"[" * 100_000 + b"]" * 100_000), MANIFEST,
     "JSON"),
    ("manifest-a-directory", lambda d: ((d / MANIFEST).unlink(), (d / MANIFEST).mkdir()),
     MANIFEST, "cannot be read"),
    ("manifest-a-symlink", _replace_with_link(MANIFEST, "/etc/hostname"), MANIFEST, "symlink"),
    ("format-missing", _manifest(_without("format")), MANIFEST, "unsupported dump format"),
    ("format-2", _manifest(_with("format", 2)), MANIFEST, "unsupported dump format 2"),
    ("cluster-missing", _manifest(_without("cluster")), MANIFEST, "has no 'cluster'"),
    ("cluster-a-number", _manifest(_with("cluster", 7)), MANIFEST, "'cluster' is not a str"),
    ("cluster-matches-no-container", _manifest(_with("cluster", "other")), MANIFEST,
     "no container belongs to its cluster 'other'"),
    ("containers-missing", _manifest(_without("containers")), MANIFEST, "has no 'containers'"),
    ("containers-an-object", _manifest(_with("containers", {})), MANIFEST,
     "'containers' is not a list"),
    ("containers-empty", _manifest(_with("containers", [])), MANIFEST, "no container belongs"),
    ("network-a-list", _manifest(_with("network", ["kind"])), MANIFEST,
     "'network' is neither an object nor null"),
    ("container-a-string", _container(lambda _: "kind-control-plane"), MANIFEST,
     "containers[0] is not an object"),
    ("container-without-name", _container(_without("name")), MANIFEST, "no 'name' string"),
    ("container-without-state", _container(_without("state")), MANIFEST, "no 'state' string"),
    ("container-name-traversal", _container(_with("name", "../../../etc")), MANIFEST,
     "is not a container name"),
    ("container-image-a-list", _container(_with("image", ["x"])), MANIFEST,
     "'image' is not a string"),
    ("labels-a-list", _container(_with("labels", ["io.x-k8s.kind.cluster=kind"])), MANIFEST,
     "labels is not an object of strings"),
    ("label-value-a-number", _container(_with("labels", {"io.x-k8s.kind.cluster": 1})),
     MANIFEST, "labels is not an object of strings"),
    ("networks-a-list", _container(_with("networks", [])), MANIFEST,
     "networks is not an object"),
    ("endpoint-unknown-field", _container(_with("networks", {"kind": {
        "network": "kind", "ipv4": "172.18.0.3", "mac": "x"}})), MANIFEST,
     "is not an endpoint object"),
    ("endpoint-ipv4-a-number", _container(_with("networks", {"kind": {
        "network": "kind", "ipv4": 172}})), MANIFEST, "neither a string nor null"),
    ("endpoint-aliases-a-string", _container(_with("networks", {"kind": {
        "network": "kind", "ipv4": "172.18.0.3", "aliases": "kind-control-plane"}})), MANIFEST,
     "aliases is not a list of strings"),
    ("container-twice", _manifest(lambda m: {**m, "containers": m["containers"] * 2}),
     MANIFEST, "lists a container twice"),
    ("unread-an-object", _manifest(_with("unread", {})), MANIFEST, "'unread' is not a list"),
    ("unread-entry-without-node", _manifest(_with("unread", [{"state": "running"}])),
     MANIFEST, "unread[0]"),
    ("running-node-recorded-unread", _manifest(_unread("kind-control-plane")), MANIFEST,
     "kind-control-plane could not be read"),
    ("node-exited", _manifest(_stop_worker), MANIFEST,
     "node kind-worker was exited when the dump was collected, not running"),
    ("node-without-address", _container(_no_address), MANIFEST,
     "kind-control-plane had no address"),
    # a running node's directory
    ("node-dir-missing", _remove(CP), CP, "is missing"),
    ("node-dir-a-symlink", _replace_with_link(CP, "/etc"), CP, "is missing"),
    ("commands-missing", _remove(COMMANDS), COMMANDS, "is missing"),
    ("commands-truncated", _truncate(COMMANDS, 100), COMMANDS, "is not valid JSON"),
    ("commands-not-utf8", _write(COMMANDS, b'[{"argv": ["\xc3"]}]'), COMMANDS,
     "is not UTF-8 JSON"),
    ("commands-an-object", _edit_json(COMMANDS, lambda _: {"argv": []}), COMMANDS,
     "is not a JSON list"),
    ("entry-a-string", _edit_json(COMMANDS, lambda _: ["sh -c probe"]), COMMANDS,
     "entry 0 is not an object"),
    ("entry-without-exit-code", _entry(_without("exit_code")), COMMANDS,
     "entry 0 has no integer 'exit_code'"),
    ("exit-code-a-string", _entry(_with("exit_code", "0")), COMMANDS,
     "no integer 'exit_code'"),
    ("exit-code-a-bool", _entry(_with("exit_code", True)), COMMANDS, "no integer 'exit_code'"),
    ("entry-without-argv", _entry(_without("argv")), COMMANDS, "no 'argv' list of strings"),
    ("argv-a-string", _entry(_with("argv", "sh -c probe")), COMMANDS, "no 'argv' list"),
    ("entry-without-stdout", _entry(_without("stdout")), COMMANDS, "'stdout'/'stderr'"),
    ("stderr-a-number", _entry(_with("stderr", 1)), COMMANDS, "'stdout'/'stderr'"),
    ("files-a-file", lambda d: (_remove(f"{CP}/files")(d), _write(f"{CP}/files", b"x")(d)),
     f"{CP}/files", "is not a directory"),
    ("file-a-symlink-out-of-the-dump",
     _replace_with_link(f"{CP}/files/etc/kubernetes/admin.conf", "/etc/passwd"),
     f"{CP}/files/etc/kubernetes/admin.conf", "is a symlink"),
    ("directory-a-symlink", _replace_with_link(f"{CP}/files/etc/kubernetes/manifests", "/etc"),
     f"{CP}/files/etc/kubernetes/manifests", "is a symlink"),
    ("file-a-fifo", _mkfifo(f"{CP}/files/kind/extra"), f"{CP}/files/kind/extra",
     "is not a regular file"),
]


def _bad_dump(tmp_path: Path, mutate: Mutation) -> Path:
    d = tmp_path / "dump"
    shutil.copytree(DUMPS / "single-cp-healthy", d, symlinks=True)
    mutate(d)
    return d


@pytest.mark.parametrize(("mutate", "names", "fragment"),
                         [pytest.param(m, n, f, id=i) for i, m, n, f in CASES])
def test_a_malformed_dump_is_one_error_line_naming_the_file(
        tmp_path: Path, run: Run, mutate: Mutation, names: str, fragment: str) -> None:
    d = _bad_dump(tmp_path, mutate)
    r = run(["audit", "--from-dump", str(d)])
    assert r.code == 1, "a crash (3) or a verdict (0/4) for a dump that cannot be read"
    assert r.out == ""
    lines = r.err.splitlines()
    assert lines[0].startswith(f"kindfix: error: {d / names if names else d}")
    assert fragment in lines[0]
    assert all(line.startswith("  hint: ") for line in lines[1:]) and len(lines) <= 2


def test_the_corpus_is_large_enough() -> None:
    # issue #9: >= 40 malformed inputs together with the node-file corpus; this module's share
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)


def test_the_untouched_copy_is_a_good_dump(tmp_path: Path, run: Run) -> None:
    # the cases above break one thing each: without it the copy audits clean
    d = _bad_dump(tmp_path, lambda _: None)
    r = run(["audit", "--from-dump", str(d)])
    assert r.code == 0
