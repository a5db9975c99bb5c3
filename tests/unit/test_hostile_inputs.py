"""A corpus of malformed and hostile files inside nodes, through the CLI (issue 9.7/9.8).

Each case takes a healthy fixture cluster (fixtures/dumps), spoils ONE file on ONE node (odd
shapes, binary, huge lines, wrong types, YAML bombs, non-UTF-8, empty, a directory where a file
belongs) and runs `kindfix audit` (table and -o json) and `kindfix repair --dry-run` on the fake
engine. Every case must end in exactly one of two ways:

- "unknown": audit exits 4 (never "consistent") with an `unknown` finding for that node naming
  the file and why, and repair refuses to plan (exit 1, one line naming node and file);
- "error": both exit 1 with one line naming the file (a directory where a file belongs, a
  container that is not a kind node).

Never exit 3, never a traceback, never a change to a node. Malformed dumps (the dump files
themselves) are in test_bad_dumps.py.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from kindfix import node as node_mod
from kindfix.cli import Context, main
from kindfix.runtime import ExecResult
from tests.fakes import FakeNode, FakeRuntime, container
from tests.unit.test_cli import Result, Run, runtime_from_dump


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """test_cli.py's fixture, for several invocations in one test: each result is shown only
    when an assertion fails (printing it would land in the next invocation's output)."""
    def invoke(args: list[str], runtime: FakeRuntime | None = None) -> Result:
        with pytest.raises(SystemExit) as exit_info:
            main(args, obj=Context(lambda: runtime or FakeRuntime()))
        captured = capsys.readouterr()
        return Result(int(exit_info.value.code or 0), captured.out, captured.err)
    return invoke

CP, WORKER, LB = "kind-control-plane", "kind-worker", "kind-external-load-balancer"
MANIFESTS = "/etc/kubernetes/manifests"
ETCD = f"{MANIFESTS}/etcd.yaml"
APISERVER = f"{MANIFESTS}/kube-apiserver.yaml"
FLAGS = "/var/lib/kubelet/kubeadm-flags.env"
KUBEADM = "/kind/kubeadm.conf"
OLD_V4 = "/kind/old-ipv4"
PKI = "/etc/kubernetes/pki"
HAPROXY = "/usr/local/etc/haproxy/haproxy.cfg"

DIRECTORY = object()  # the path is a directory on the node
REMOVED = None
MIB = 1 << 20
BOMB = b"".join(  # "billion laughs": 9^8 items if expanded; aliases must stay shared
    f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9) if i else ', '.join(['lol'] * 9)}]\n".encode()
    for i in range(9))
NOT_UTF8 = b"\xff\xfe\xc3\x28 \x80\x81"

Content = Any  # bytes | None (removed) | DIRECTORY | a function of the old bytes


def sub(old: str, new: str) -> Callable[[bytes], bytes]:
    def change(content: bytes) -> bytes:
        assert old.encode() in content, f"fixture lacks {old!r}"
        return content.replace(old.encode(), new.encode())
    return change


def append(extra: bytes) -> Callable[[bytes], bytes]:
    return lambda content: content + extra


@dataclass(frozen=True)
class Case:
    id: str
    node: str
    path: str
    content: Content
    expect: str = "unknown"  # unknown | error
    dump: str = "single-cp-healthy"
    refuses_repair: bool = True  # load balancer config: audit reports, repair may still plan
    also_removed: tuple[str, ...] = ()


CASES = [
    # --- static pod manifests -----------------------------------------------------------------
    Case("etcd-manifest-missing", CP, ETCD, REMOVED),
    Case("etcd-manifest-empty", CP, ETCD, b""),
    Case("etcd-manifest-binary", CP, ETCD, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 64),
    Case("etcd-manifest-invalid-yaml", CP, ETCD, b"spec: [unclosed\n  - {x"),
    Case("etcd-flags-under-args", CP, ETCD, sub("  - command:\n    - etcd\n",
                                                "  - command:\n    - etcd\n    args:\n")),
    Case("etcd-command-one-string", CP, ETCD, sub(
        "  - command:\n    - etcd\n    - --advertise-client-urls",
        "  - command: etcd --x=y\n    otherargs:\n    - --advertise-client-urls")),
    Case("etcd-container-renamed", CP, ETCD, sub("    name: etcd\n", "    name: etcd-main\n")),
    Case("etcd-manifest-is-a-list", CP, ETCD, b"- etcd\n- --advertise-client-urls=x\n"),
    Case("etcd-containers-wrong-type", CP, ETCD, b"spec:\n  containers:\n    etcd: 1\n"),
    Case("etcd-alias-bomb", CP, ETCD, BOMB + b"spec:\n  containers: *l8\n"),
    Case("etcd-deep-nesting", CP, ETCD, b"spec: " + b"[" * 5000 + b"]" * 5000 + b"\n"),
    Case("etcd-huge-line", CP, ETCD, append(b"# " + b"x" * (2 * MIB) + b"\n")),
    Case("etcd-duplicate-key", CP, ETCD, append(b"metadata: {}\n")),
    Case("etcd-python-tag", CP, ETCD,
         b"!!python/object/apply:os.system ['touch /tmp/kindfix-pwned']\n"),
    Case("etcd-initial-cluster-malformed", CP, ETCD, sub(
        "--initial-cluster=kind-control-plane=https://172.18.0.3:2380",
        "--initial-cluster=kind-control-plane=https://172.18.0:2380")),
    Case("apiserver-short-address", CP, APISERVER, sub("--advertise-address=172.18.0.3",
                                                       "--advertise-address=172.18.0")),
    Case("apiserver-octet-405", CP, APISERVER, sub("--advertise-address=172.18.0.3",
                                                   "--advertise-address=172.18.0.405")),
    Case("apiserver-leading-zero", CP, APISERVER, sub("--advertise-address=172.18.0.3",
                                                      "--advertise-address=172.018.0.3")),
    Case("apiserver-empty-advertise-address", CP, APISERVER, sub(
        "--advertise-address=172.18.0.3", "--advertise-address=")),
    Case("apiserver-5000-digit-int", CP, APISERVER, append(b"x: " + b"9" * 5000 + b"\n")),
    Case("apiserver-impossible-date", CP, APISERVER, append(b"x: 2001-13-45\n")),
    Case("apiserver-nul-byte", CP, APISERVER, append(b"x: a\x00b\n")),
    Case("apiserver-manifest-is-a-directory", CP, APISERVER, DIRECTORY, "error"),
    # --- kubeconfigs --------------------------------------------------------------------------
    Case("controller-manager-conf-missing", CP, "/etc/kubernetes/controller-manager.conf",
         REMOVED),
    Case("scheduler-conf-not-utf8", CP, "/etc/kubernetes/scheduler.conf",
         append(b"# " + NOT_UTF8 + b"\n")),
    Case("admin-conf-malformed-server", CP, "/etc/kubernetes/admin.conf",
         sub("server: https://", "server: https://172.18.0:6443#")),
    Case("kubelet-conf-no-clusters", WORKER, "/etc/kubernetes/kubelet.conf",
         b"apiVersion: v1\nkind: Config\nclusters: []\n"),
    Case("kubelet-conf-server-is-a-number", WORKER, "/etc/kubernetes/kubelet.conf",
         sub("server: https://kind-control-plane:6443", "server: 6443")),
    # --- kind's kubeadm config ----------------------------------------------------------------
    Case("kubeadm-conf-restructured", CP, KUBEADM, sub("kind: InitConfiguration",
                                                       "kind: InitConfig")),
    Case("kubeadm-conf-node-ip-removed", WORKER, KUBEADM, sub('    node-ip: "172.18.0.2"\n', "")),
    Case("kubeadm-conf-empty", WORKER, KUBEADM, b""),
    Case("kubeadm-conf-binary", WORKER, KUBEADM, NOT_UTF8 * 100),
    Case("kubeadm-conf-missing", WORKER, KUBEADM, REMOVED),
    Case("kubeadm-conf-is-a-directory", CP, KUBEADM, DIRECTORY, "error"),
    # --- kubelet flags ------------------------------------------------------------------------
    Case("flags-unbalanced-quote", WORKER, FLAGS, sub("--node-labels=", "--node-labels='x")),
    Case("flags-not-utf8", WORKER, FLAGS, append(NOT_UTF8)),
    Case("flags-empty", WORKER, FLAGS, b""),
    Case("flags-without-node-ip", WORKER, FLAGS, sub("--node-ip=172.18.0.2 ", "")),
    Case("flags-node-ip-999", WORKER, FLAGS, sub("--node-ip=172.18.0.2", "--node-ip=172.18.0.999")),
    Case("flags-huge-line", CP, FLAGS, append(b"\nX=" + b"y" * (2 * MIB))),
    # --- kind's old-ipv4 record ---------------------------------------------------------------
    Case("old-ipv4-not-utf8", CP, OLD_V4, NOT_UTF8),
    Case("old-ipv4-three-octets", WORKER, OLD_V4, b"172.18.0"),
    Case("old-ipv4-words", WORKER, OLD_V4, b"hello world\n"),
    Case("old-ipv4-holds-ipv6", CP, OLD_V4, b"fc00:f853:ccd:e793::3"),
    Case("old-ipv4-is-a-directory", WORKER, OLD_V4, DIRECTORY, "error"),
    # --- certificates -------------------------------------------------------------------------
    Case("apiserver-crt-garbage", CP, f"{PKI}/apiserver.crt", b"not a certificate\n"),
    Case("etcd-server-crt-empty", CP, f"{PKI}/etcd/server.crt", b""),
    Case("etcd-peer-crt-truncated", CP, f"{PKI}/etcd/peer.crt",
         lambda c: c[: len(c) // 2] + b"\n-----END CERTIFICATE-----\n"),
    Case("apiserver-crt-is-a-directory", CP, f"{PKI}/apiserver.crt", DIRECTORY, "error"),
    # --- kind's own files: the evidence of a kind node ----------------------------------------
    Case("entrypoint-missing", CP, "/usr/local/bin/entrypoint", REMOVED, "error"),
    Case("kind-files-missing", WORKER, "/kind/version", REMOVED, "error",
         also_removed=(KUBEADM,)),
    Case("entrypoint-is-a-directory", WORKER, "/usr/local/bin/entrypoint", DIRECTORY, "error"),
    # --- the load balancer --------------------------------------------------------------------
    Case("haproxy-cfg-missing", LB, HAPROXY, REMOVED, dump="ha-3cp-healthy",
         refuses_repair=False),
    Case("haproxy-cfg-binary", LB, HAPROXY, NOT_UTF8 * 50, dump="ha-3cp-healthy",
         refuses_repair=False),
]


def _answer_directories(node: FakeNode, directories: set[str]) -> None:
    """The batched read script's answer for a path that exists but is no regular file."""
    def read(fake: FakeNode, argv: Any, _stdin: bytes | None) -> ExecResult:
        out = []
        for i, path in enumerate(argv[4:]):
            if path in directories:
                out.append(f"@@kindfix unreadable {i}\n".encode())
            elif path in fake.files:
                out.append(f"@@kindfix ok {i}\n".encode() + base64.b64encode(fake.files[path])
                           + b"\n")
            else:
                out.append(f"@@kindfix missing {i}\n".encode())
        return ExecResult(0, b"".join(out), b"")
    node.on(("sh", "-c", node_mod._READ_FILES_SCRIPT), read)


def spoiled(case: Case) -> FakeRuntime:
    rt = runtime_from_dump(case.dump)
    node = rt.nodes[case.node]
    if case.content is DIRECTORY:
        node.files.pop(case.path, None)
        _answer_directories(node, {case.path})
    elif case.content is REMOVED:
        assert case.path in node.files, f"{case.dump} has no {case.node}:{case.path}"
        del node.files[case.path]
    elif callable(case.content):
        node.files[case.path] = case.content(node.files[case.path])
    else:
        node.files[case.path] = case.content
    for path in case.also_removed:
        del node.files[path]
    return rt


def _one_line_naming(r: Result, *names: str) -> None:
    lines = r.err.splitlines()
    assert lines and lines[0].startswith("kindfix: error: "), r.err
    for name in names:
        assert name in lines[0], (name, lines[0])
    assert len(lines) <= 2 and all(not ln or ln.startswith("  hint: ") for ln in lines[1:]), r.err
    assert len(lines[0]) < 400, "one readable line, not a dump of the file"


def _files(rt: FakeRuntime) -> dict[str, dict[str, bytes]]:
    return {name: dict(n.files) for name, n in rt.nodes.items()}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_hostile_node_file(case: Case, run: Run) -> None:
    rt = spoiled(case)
    before = _files(rt)
    started = time.monotonic()

    audit_json = run(["audit", "-o", "json"], rt)
    audit_table = run(["audit"], rt)
    dry_run = run(["repair", "--dry-run"], rt)

    for r in (audit_json, audit_table, dry_run):
        assert r.code != 3 and "Traceback" not in r.err and "internal error" not in r.err, r
    if case.expect == "error":
        for r in (audit_json, audit_table, dry_run):
            assert r.code == 1
            _one_line_naming(r, case.node, case.path)
    else:
        assert audit_json.code == 4, audit_json.err or audit_json.out[-3000:]
        data = json.loads(audit_json.out)
        assert data["consistent"] is False
        unknown = [f for f in data["findings"] if f["status"] == "unknown"
                   and f["node"] == case.node]
        assert unknown, data["findings"]
        assert any(case.path in f["source"] or case.path in f["detail"] for f in unknown)
        assert all(f["detail"] for f in unknown), "an unknown finding says why"
        assert audit_table.code == 4
        assert "all addresses consistent" not in audit_table.out
        assert "unknown" in audit_table.out
        if case.refuses_repair:
            assert dry_run.code == 1, dry_run
            _one_line_naming(dry_run, "will not plan a repair", case.node, case.path)
        else:
            assert dry_run.code in (0, 1)
    assert _files(rt) == before, "a dry run or an audit changed a node"
    assert time.monotonic() - started < 60, "bounded: no hostile file costs minutes"


def test_the_corpus_is_large_and_each_case_spoils_a_different_thing() -> None:
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)
    assert len({(c.node, c.path, repr(c.content)) for c in CASES}) == len(CASES)


def test_an_alias_bomb_is_not_expanded_into_the_output(run: Run) -> None:
    case = next(c for c in CASES if c.id == "etcd-alias-bomb")
    r = run(["audit", "-o", "json"], spoiled(case))
    assert r.code == 4
    assert len(r.out) < 200_000  # 9^8 "lol"s would be gigabytes


def test_a_python_tag_is_not_executed(run: Run, tmp_path: Any) -> None:
    case = next(c for c in CASES if c.id == "etcd-python-tag")
    run(["audit"], spoiled(case))
    assert not os.path.exists("/tmp/kindfix-pwned")  # the path the tag names


# --- whole containers that carry kind's labels but are no kind node ---------------------------


def labelled(files: dict[str, bytes], role: str = "control-plane") -> FakeRuntime:
    rt = FakeRuntime()
    node = FakeNode("kind-control-plane", role, files)
    rt.add(container("kind-control-plane", role, "172.18.0.2"), node)
    return rt


@pytest.mark.parametrize("files", [
    {},
    {"/etc/nginx/nginx.conf": b"events {}\n"},
    {"/usr/local/bin/entrypoint": b"#!/bin/sh\nexec nginx\n"},
], ids=["empty", "nginx", "entrypoint-only"])
def test_a_container_with_kind_labels_that_is_no_kind_node_is_refused(
        run: Run, files: dict[str, bytes]) -> None:
    rt = labelled(files)
    for args in (["audit"], ["repair", "--dry-run"]):
        r = run(args, rt)
        assert r.code == 1
        _one_line_naming(r, "kind-control-plane", "is not a kind node")
    assert all(not c[0].startswith("kubeadm") for c in rt.nodes["kind-control-plane"].calls)


def test_a_role_label_kind_never_sets_is_refused(run: Run) -> None:
    rt = runtime_from_dump("single-cp-healthy")
    info = rt.containers[WORKER]
    rt.containers[WORKER] = type(info)(**{**info.__dict__, "labels": {
        **info.labels, "io.x-k8s.kind.role": "database"}})
    r = run(["audit"], rt)
    assert r.code == 1
    _one_line_naming(r, WORKER, "'database'")


def test_the_healthy_base_dumps_stay_consistent(run: Run) -> None:
    """The corpus proves something only if the unspoiled cluster passes."""
    for dump in {c.dump for c in CASES}:
        r = run(["audit"], runtime_from_dump(dump))
        assert r.code == 0, dump
        assert "all addresses consistent" in r.out
