"""Nodes for the unit tests: the host's own `sh` as a node (to run kindfix's node-side scripts
for real on tmp paths), and FakeNodes filled from a fixture dump that also answer the few
file commands kindfix runs (`rm -f`, `stat -c %a`, `ls -1`, and the journal's backup, replace,
regenerate and restore scripts, emulated on the dict with the contract test_journal.py checks on
a real filesystem)."""

from __future__ import annotations

import posixpath
import subprocess
from collections.abc import Sequence
from pathlib import Path

from kindfix import journal
from kindfix.actions import KUBEADM_CERTS
from kindfix.apply import Applier
from kindfix.discovery import Cluster
from kindfix.dump import load_dump
from kindfix.journal import Journal, RunRecorder
from kindfix.node import ContainerNode
from kindfix.observe import NodeSnapshot
from kindfix.runtime import ExecResult
from tests.fakes import FakeNode, FakeRuntime, container, fail, ok

DUMPS = Path(__file__).parents[2] / "fixtures" / "dumps"


class LocalRuntime:
    """Runs argv with the host's tools: the same argv a container would get (test_node.py)."""

    name = "local"

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def exec(self, container: str, argv: Sequence[str], stdin: bytes | None = None,
             timeout: float | None = None) -> ExecResult:
        self.calls.append(tuple(argv))
        p = subprocess.run(list(argv), input=stdin or b"", capture_output=True, timeout=30,
                           check=False)
        return ExecResult(p.returncode, p.stdout, p.stderr)


def local_node(name: str = "kind-control-plane", role: str = "control-plane") -> ContainerNode:
    return ContainerNode(LocalRuntime(), name, role)  # type: ignore[arg-type]


def sh(script: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run one of kindfix's fixed node scripts with the host's sh, paths as arguments."""
    return subprocess.run(["sh", "-c", script, "kindfix-test", *args], capture_output=True,
                          timeout=30, check=False)


def _rm(node: FakeNode, argv: Sequence[str], _stdin: bytes | None) -> ExecResult:
    for path in argv[2:]:
        node.files.pop(path, None)
    return ok()


def _stat_mode(node: FakeNode, argv: Sequence[str], _stdin: bytes | None) -> ExecResult:
    path = argv[-1]
    if path not in node.files:
        return fail(1, f"stat: cannot statx '{path}': No such file or directory")
    return ok(f"{node.modes.get(path, 0o644):o}\n")


def _ls(node: FakeNode, argv: Sequence[str], _stdin: bytes | None) -> ExecResult:
    directory = argv[-1].rstrip("/") + "/"
    names = sorted({p[len(directory):].split("/")[0] for p in node.files
                    if p.startswith(directory)})
    if not names:
        return fail(2, f"ls: cannot access '{argv[-1]}': No such file or directory")
    return ok("".join(n + "\n" for n in names))


def _backup(node: FakeNode, argv: Sequence[str], _stdin: bytes | None) -> ExecResult:
    # the contract of kindfix/scripts/journal-backup.sh (run for real in test_journal.py)
    src, dst = argv[4], argv[5]
    if dst in node.files:
        return ok()
    if src not in node.files:
        return fail(1, f"cp: cannot stat '{src}': No such file or directory")
    node.files[dst] = node.files[src]
    node.modes[dst] = 0o600
    return ok()


def _restore(node: FakeNode, argv: Sequence[str], _stdin: bytes | None) -> ExecResult:
    backup, dst, mode = argv[4], argv[5], argv[6]
    if backup not in node.files:
        return fail(8, f"kindfix: no backup {backup}")
    node.files[dst] = node.files[backup]
    node.modes[dst] = int(mode, 8)
    return ok()


def _keep(node: FakeNode, src: str, dst: str) -> None:
    # scripts/lib/keep-original.sh: the first copy in a run wins; the mode travels in "<dst>.mode"
    if src in node.files and dst not in node.files:
        node.files[dst] = node.files[src]
        node.files[dst + ".mode"] = f"{node.modes.get(src, 0o644):o}\n".encode()
        node.modes[dst] = node.modes[dst + ".mode"] = 0o600


def _replace(node: FakeNode, argv: Sequence[str], stdin: bytes | None) -> ExecResult:
    # compare and swap: only over the content the plan was made from (argv[7])
    path, backup = argv[4], argv[5]
    if journal.content_id(node.files.get(path)) != argv[7]:
        return fail(journal.CHANGED, f"kindfix: {path} changed since it was read; run again")
    _keep(node, path, backup)
    mode = int(node.files.get(backup + ".mode", b"644").decode().strip(), 8)
    node.write_file(path, stdin or b"", mode)
    return ok()


def _regenerate(node: FakeNode, argv: Sequence[str], _stdin: bytes | None) -> ExecResult:
    # scripts/journal-regenerate.sh: a pair left aside comes back, each pair is kept and moved
    # aside, the command runs; when it fails every pair comes back
    n = int(argv[4])
    files = [(argv[5 + i], argv[6 + i]) for k in range(n) for i in (4 * k, 4 * k + 2)]
    aside = journal.ASIDE
    for path, _ in files:
        _move(node, path + aside, path)
    for path, backup in files:
        _keep(node, path, backup)
    for path, _ in files:
        _move(node, path, path + aside)
    result = node.exec(argv[5 + 4 * n:])
    if result.exit_code != 0:
        for path, _ in files:
            _move(node, path + aside, path)
    return result


def _move(node: FakeNode, src: str, dst: str) -> None:
    if src in node.files:
        node.files[dst] = node.files.pop(src)
        node.modes[dst] = node.modes.pop(src, 0o644)


def _settle(node: FakeNode, argv: Sequence[str], _stdin: bytes | None) -> ExecResult:
    how = argv[4]
    for path in argv[5:]:
        if how == "commit":
            node.files.pop(path + journal.ASIDE, None)
        else:
            _move(node, path + journal.ASIDE, path)
    return ok()


def _kubeadm_certs(node: FakeNode, argv: Sequence[str], _stdin: bytes | None) -> ExecResult:
    """apply.KUBEADM_CERTS: one `kubeadm init phase certs` per phase, stop at the first error."""
    config, phases = argv[4], argv[5:]
    for phase in phases:
        result = node.exec(["kubeadm", "init", "phase", "certs", phase, "--config", config])
        if result.exit_code != 0:
            return result
    return ok()


def _restore_with_mode(node: FakeNode, argv: Sequence[str], stdin: bytes | None) -> ExecResult:
    saved = node.files.get(argv[4] + ".mode")
    if saved is not None:
        argv = (*argv[:6], saved.decode().strip())
    return _restore(node, argv, stdin)


def with_file_commands(node: FakeNode) -> FakeNode:
    node.on(("rm", "-f"), _rm)
    node.on(("stat", "-c", "%a"), _stat_mode)
    node.on(("ls", "-1"), _ls)
    node.on_script("journal-backup", _backup)
    node.on_script("journal-restore", _restore_with_mode)
    node.on_script("journal-replace", _replace)
    node.on_script("journal-regenerate", _regenerate)
    node.on_script("journal-settle", _settle)
    node.on(("sh", "-c", KUBEADM_CERTS), _kubeadm_certs)
    return node


def fake_nodes(snapshots: dict[str, NodeSnapshot]) -> dict[str, FakeNode]:
    """A FakeNode per snapshot, holding the snapshot's files (mode 0600 under pki/)."""
    nodes = {}
    for name, snap in snapshots.items():
        files = {p: c for p, c in snap.files.items() if c is not None}
        modes = {p: 0o600 if "/pki/" in p or posixpath.basename(p).endswith(".conf") else 0o644
                 for p in files}
        nodes[name] = with_file_commands(FakeNode(name, snap.role, files, modes))
    return nodes


def dump(name: str) -> tuple[Cluster, dict[str, NodeSnapshot], dict[str, FakeNode]]:
    cluster, snapshots = load_dump(DUMPS / name)
    return cluster, snapshots, fake_nodes(snapshots)


class Engine(FakeRuntime):
    """FakeRuntime plus what the engine does without any binary in the container: signal PID 1
    (`docker kill -s`) and copy files in and out (`docker cp`, the archive API), on the
    FakeNode's dict. (Candidates for tests/fakes.py.)"""

    def signal(self, container: str, sig: str) -> None:
        self.log.append(f"signal {container} {sig}")

    def get_file(self, container: str, path: str) -> bytes | None:
        self.log.append(f"get {container} {path}")
        return self.nodes[container].files.get(path)

    def put_file(self, container: str, path: str, content: bytes, mode: int = 0o644) -> None:
        self.log.append(f"put {container} {path}")
        self.nodes[container].write_file(path, content, mode)


def applier(cluster: Cluster, nodes: dict[str, FakeNode],
            snapshots: dict[str, NodeSnapshot] | None = None,
            journal_node: FakeNode | None = None) -> tuple[Applier, list[str]]:
    """An Applier over FakeNodes (the engine knows them too) and the progress it prints."""
    runtime = Engine()
    for n in cluster.nodes:
        runtime.add(container(n.name, n.role, n.ipv4, cluster=cluster.name, state=n.state,
                              ipv6=n.ipv6), nodes.get(n.name))
    said: list[str] = []
    first = journal_node or nodes[cluster.control_planes[0].name]
    rec = RunRecorder(Journal("20261125T180000Z-0001", cluster.name), first)
    return Applier(runtime, cluster, nodes, snapshots or {}, rec, said.append), said


def runtime_from_dump(name: str) -> tuple[FakeRuntime, dict[str, NodeSnapshot]]:
    """The engine and nodes of a fixture dump: files from the dump, probes answered with the
    output the dump recorded for the same argv, no journal yet. The snapshots come along for
    tests that answer the probes their own way."""
    cluster, snapshots, nodes = dump(name)
    rt = FakeRuntime()
    for n in cluster.nodes:
        node = nodes.get(n.name)
        if node is not None:
            for argv, result in snapshots[n.name].commands.items():
                node.on(argv, result)
            node.on(("ls", "-1", journal.JOURNAL_DIR), ExecResult(2, b"", b"No such file"))
        rt.add(container(n.name, n.role, n.ipv4, cluster=cluster.name, state=n.state,
                         ipv6=n.ipv6), node)
    return rt, snapshots
