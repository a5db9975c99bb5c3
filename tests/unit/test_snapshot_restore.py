"""etcd snapshot restore (kindfix/recovery/snapshot.py): the node-side scripts run for real with the
host's sh against a fake `ctr` (containerd running the etcd image's etcdutl/etcdctl), and the
Recovery flow over FakeNodes on the ha-3cp-permuted fixture with quorum lost."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kindfix.apply import Applier
from kindfix.discovery import Cluster
from kindfix.errors import KindfixError
from kindfix.journal import JOURNAL_DIR, Journal, RunRecorder
from kindfix.nodescripts import script
from kindfix.observe import NodeSnapshot
from kindfix.plan import Plan, Step
from kindfix.recovery import force_new, preparation, snapshot, state, strategy
from kindfix.recovery.manifest import DATA_DIR, MANIFEST, PARKED, status_tools
from kindfix.recovery.state import Recovery
from kindfix.runtime import ExecResult
from tests.fakes import FakeNode, fail, ok, script_of
from tests.unit.helpers_certs import kubeadm
from tests.unit.helpers_etcd import FakeEtcd, member
from tests.unit.helpers_nodes import applier, dump

IMAGE = "registry.k8s.io/etcd:3.5.10-0"  # the fixtures' etcd image
DB = f"{DATA_DIR}/member/snap/db"
SNAPSHOT = f"{DATA_DIR}/.kindfix-snapshot.db"
STAGED = f"{DATA_DIR}/.kindfix-restore/member/snap/db"  # what the fake keeps of a staged member
RUN_ID = "20261125T180000Z-0001"  # helpers_nodes.applier's run
NOT_FOUND = ('ctr: failed to create shim task: OCI runtime create failed: runc create failed: '
             'unable to start container process: exec: "{}": executable file not found in '
             '$PATH: unknown')

# --- a fake ctr and etcd tool, for the scripts run for real ----------------------------------

_FAKE_CTR = r'''
import json
import os
import re
import shutil
import sys

NOT_FOUND = @NOT_FOUND@
BOOLEAN = {"--skip-hash-check", "--mark-compacted"}
VALUED = {"-w", "--write-out", "--data-dir", "--wal-dir", "--name", "--initial-cluster",
          "--initial-cluster-token", "--initial-advertise-peer-urls", "--bump-revision"}


def die(message):
    sys.stderr.write(message + "\n")
    sys.exit(1)


def parse(items):
    flags, items = {}, list(items)
    while items:
        item = items.pop(0)
        name, eq, value = item.partition("=")
        if name in BOOLEAN:
            flags[name] = "true"
        elif name in VALUED:
            flags[name] = value if eq else items.pop(0)
        else:
            die("Error: unknown flag: " + name)
    return flags


def seen(path, mounts):
    return any(path == m or path.startswith(m + "/") for m in mounts)


def ctr(args):
    with open(os.environ["FAKE_CTR_LOG"], "a") as log:
        log.write(json.dumps(args) + "\n")
    if args[:4] != ["-n", "k8s.io", "run", "--rm"]:
        die("fake ctr: expected `ctr -n k8s.io run --rm ...`, got: " + " ".join(args))
    rest, mounts = args[4:], []
    while rest and rest[0].startswith("--"):
        opt = rest.pop(0)
        if opt == "--mount":
            spec = dict(kv.split("=", 1) for kv in rest.pop(0).split(","))
            if spec.get("type") != "bind" or spec.get("src") != spec.get("dst") or \
                    "rw" not in spec.get("options", "").split(":"):
                die("ctr: mount not supported by the fake: %r" % (spec,))
            mounts.append(spec["dst"].rstrip("/"))
        elif opt != "--net-host":
            die("ctr: flag provided but not defined: " + opt)
    image, _cid, tool, *argv = rest
    if image != os.environ["FAKE_CTR_IMAGE"]:
        die('ctr: image "%s": not found' % image)
    if tool not in ("etcdutl", "etcdctl") or \
            tool in os.environ.get("FAKE_CTR_MISSING", "").split(","):
        die(NOT_FOUND.format(tool))
    etcd_tool(tool, argv, mounts)


def etcd_tool(tool, argv, mounts):
    if argv[:1] != ["snapshot"] or len(argv) < 3 or argv[1] not in ("status", "restore"):
        die("Error: unknown command %r for %r" % (" ".join(argv[:2]), tool))
    if tool == "etcdctl":
        sys.stderr.write("Deprecated: Use `etcdutl snapshot %s` instead.\n\n" % argv[1])
    db, flags = argv[2], parse(argv[3:])
    if not seen(db, mounts) or not os.path.isfile(db):
        die("Error: stat %s: no such file or directory" % db)
    with open(db, "rb") as f:
        head = re.match(rb"bolt rev=(\d+) keys=(\d+)\n", f.read())
    if head is None:
        die("Error: invalid database")
    if argv[1] == "status":
        if flags.get("-w", flags.get("--write-out")) != "json":
            die("fake etcd tool: only -w json")
        print(json.dumps({"hash": 1, "revision": int(head[1]), "totalKey": int(head[2]),
                          "totalSize": os.path.getsize(db)}, separators=(",", ":")))
        return
    if "--skip-hash-check" not in flags:  # a member's db has no hash appended
        die("Error: snapshot missing hash but --skip-hash-check=false")
    name = flags.get("--name", "default")
    peers = flags.get("--initial-advertise-peer-urls", "http://localhost:2380")
    cluster = {}
    for item in flags.get("--initial-cluster", "default=http://localhost:2380").split(","):
        n, _, url = item.partition("=")
        cluster.setdefault(n, []).append(url)
    if name not in cluster:
        die('Error: couldn\'t find local name "%s" in the initial cluster configuration' % name)
    if sorted(cluster[name]) != sorted(peers.split(",")):
        die("Error: --initial-cluster has %s=%s but missing from "
            "--initial-advertise-peer-urls=%s" % (name, ",".join(cluster[name]), peers))
    out = flags.get("--data-dir", name + ".etcd")
    if os.path.isdir(out) and os.listdir(out):
        die('Error: data-dir "%s" not empty or could not be read' % out)
    if not seen(out, mounts):
        return  # written into the container's own filesystem: gone with --rm
    os.makedirs(out + "/member/snap", mode=0o700)
    os.makedirs(out + "/member/wal", mode=0o700)
    shutil.copyfile(db, out + "/member/snap/db")
    with open(out + "/member/wal/0000000000000000-0000000000000000.wal", "w") as f:
        json.dump({"name": name, "initial-cluster": flags.get("--initial-cluster"),
                   "peer-urls": peers, "token": flags.get("--initial-cluster-token")}, f)


ctr(sys.argv[1:])
'''.replace("@NOT_FOUND@", repr(NOT_FOUND))


def bolt(revision: int, keys: int = 17, filler: bytes = b"") -> bytes:
    """A fake member backend the fake tool reads: its revision and key count, then data."""
    return f"bolt rev={revision} keys={keys}\n".encode() + (filler or os.urandom(2048))


@dataclass
class Ctr:
    """Runs kindfix's node scripts with the host's sh and a fake `ctr` first on PATH.

    The fake stands in for containerd's `ctr -n k8s.io run --rm --net-host --mount
    type=bind,src=S,dst=D,options=rbind:rw IMAGE ID TOOL ARGS...` on a kind node
    (testbed/standins/CONTRACT.md, "ctr") and for the etcd image's tools behind it. It copies:
    an unknown image fails with `ctr: image "REF": not found`; a tool the image lacks (3.4 images
    have no etcdutl; 3.6 moved snapshot status/restore to etcdutl) fails with runc's "executable
    file not found in $PATH"; inside the container only the bind mounts show the node's files,
    and a --data-dir outside them is written into the container and gone with --rm. etcdctl
    3.5 still runs `snapshot status|restore` but says on stderr it is deprecated. `snapshot status
    DB -w json` prints one line {"hash","revision","totalKey","totalSize"}. `snapshot restore DB
    --skip-hash-check --data-dir OUT --name N --initial-cluster C --initial-advertise-peer-urls
    U --initial-cluster-token T` refuses a non-empty OUT (`data-dir "OUT" not empty or could not
    be read`), needs --skip-hash-check for a member's db (no hash appended), checks that N is in
    C with U as its peer URLs, and writes OUT/member/snap/db (the db) and OUT/member/wal/*.wal
    (here: the flags as JSON). A db is `bolt(...)`; anything else is "invalid database".
    Every call's argv goes to a log; mktemp's files go to their own TMPDIR, checked empty.
    """

    bin_dir: Path
    tmp: Path
    log: Path
    missing: str = ""  # comma-separated tools the image lacks
    image: str = IMAGE  # the one image containerd has

    def run(self, script: str, *args: str) -> subprocess.CompletedProcess[bytes]:
        env = {**os.environ, "PATH": f"{self.bin_dir}:{os.environ['PATH']}",
               "FAKE_CTR_LOG": str(self.log), "FAKE_CTR_IMAGE": self.image,
               "FAKE_CTR_MISSING": self.missing, "TMPDIR": str(self.tmp)}
        p = subprocess.run(["sh", "-c", script, "kindfix-test", *args], capture_output=True,
                           timeout=30, env=env, check=False)
        assert list(self.tmp.iterdir()) == [], "the script left its stderr file behind"
        return p

    @property
    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def clock(self, step: int) -> None:
        """A `date +%s` that moves `step` seconds per call (0: every call in the same second)."""
        state = self.tmp.parent / "clock"
        state.write_text("1764093600\n")
        self._tool("date", f'#!/bin/sh\nn=$(cat "{state}")\necho "$n"\n'
                           f'echo $((n + {step})) > "{state}"\n')

    def _tool(self, name: str, text: str) -> None:
        path = self.bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def ctr(tmp_path: Path) -> Ctr:
    root = tmp_path / "ctr"
    (root / "bin").mkdir(parents=True)
    (root / "tmp").mkdir()
    fake = Ctr(root / "bin", root / "tmp", root / "calls.jsonl")
    fake._tool("ctr", f"#!{sys.executable} -IS\n{_FAKE_CTR}")  # -IS: starts in 0.1 s
    return fake


def data_dir(root: Path, db: bytes) -> Path:
    """A stopped member's data dir: backend and one WAL segment."""
    data = root / "etcd"
    (data / "member" / "snap").mkdir(parents=True)
    (data / "member" / "wal").mkdir()
    (data / "member" / "snap" / "db").write_bytes(db)
    (data / "member" / "wal" / "0000000000000000-0000000000000000.wal").write_bytes(b"w" * 999)
    return data


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def wal(member_dir: Path) -> dict[str, str]:
    """What the fake tool wrote into the restored member's WAL: the flags it got."""
    data: dict[str, str] = json.loads(
        (member_dir / "wal" / "0000000000000000-0000000000000000.wal").read_text())
    return data


# --- etcd-snapshot-status.sh -------------------------------------------------------------------

@pytest.mark.parametrize(("image", "tools"), [
    ("registry.k8s.io/etcd:3.4.13-0", "etcdctl etcdutl"),  # kind v0.11 (k8s 1.21)
    ("registry.k8s.io/etcd:3.5.1-0", "etcdctl etcdutl"),
    ("registry.k8s.io/etcd:3.5.21-0", "etcdctl etcdutl"),
    ("gcr.io/etcd-development/etcd:v3.5.9", "etcdctl etcdutl"),
    ("registry.k8s.io/etcd:3.6.5-0", "etcdutl etcdctl"),
    ("registry.k8s.io/etcd:3.10.0-0", "etcdutl etcdctl"),
    ("localhost:5000/etcd:3.5.1-0", "etcdctl etcdutl"),  # a registry port is not the tag
    ("localhost:5000/etcd", "etcdutl etcdctl"),  # untagged: the newest layout first
    ("registry.k8s.io/etcd@sha256:" + "a" * 64, "etcdutl etcdctl"),
    ("registry.k8s.io/etcd:3.5.1-0@sha256:" + "a" * 64, "etcdctl etcdutl"),
])
def test_status_tools_ask_the_likely_tool_first(image: str, tools: str) -> None:
    assert status_tools(image) == tools


def test_snapshot_status_runs_etcdutl_from_the_image_on_the_bind_mounted_data_dir(
        tmp_path: Path, ctr: Ctr) -> None:
    db = bolt(48999, keys=1234)
    data = data_dir(tmp_path, db)
    before = tree(data)
    p = ctr.run(script("etcd-snapshot-status"), str(data), IMAGE, "etcdutl etcdctl")
    assert p.returncode == 0, p.stderr
    tool, status = p.stdout.decode().splitlines()
    assert tool == "etcdutl"
    assert json.loads(status) == {"hash": 1, "revision": 48999, "totalKey": 1234,
                                  "totalSize": len(db)}
    [call] = ctr.calls
    assert call[:8] == ["-n", "k8s.io", "run", "--rm", "--net-host", "--mount",
                        f"type=bind,src={data},dst={data},options=rbind:rw", IMAGE]
    assert re.fullmatch(r"kindfix-etcd-\d+-etcdutl", call[8])
    assert call[9:] == ["etcdutl", "snapshot", "status", f"{data}/member/snap/db", "-w", "json"]
    assert tree(data) == before  # read only


def test_snapshot_status_falls_back_to_etcdctl_when_the_image_has_no_etcdutl(
        tmp_path: Path, ctr: Ctr) -> None:
    data = data_dir(tmp_path, bolt(7, keys=3))
    ctr.missing = "etcdutl"
    p = ctr.run(script("etcd-snapshot-status"), str(data), IMAGE, "etcdutl etcdctl")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.decode().splitlines()
    assert lines[0] == "etcdctl"
    assert len(lines) == 2  # etcdctl's deprecation notice is not in the answer
    assert json.loads(lines[1])["revision"] == 7
    assert [c[9] for c in ctr.calls] == ["etcdutl", "etcdctl"]
    assert len({c[8] for c in ctr.calls}) == 2  # one container ID per tool


def test_snapshot_status_does_not_read_a_backend_etcd_may_hold(tmp_path: Path, ctr: Ctr) -> None:
    """etcd.yaml there: the kubelet may run etcd on the data. bbolt (etcdutl/etcdctl `snapshot
    status`) opens the backend under a shared flock with no timeout, so while etcd holds its
    lock the tool would wait until kindfix's exec timed out (CI of stop 19: 120 s, twice)."""
    data = data_dir(tmp_path, bolt(7, keys=3))
    manifest = tmp_path / "etcd.yaml"
    manifest.write_text("kind: Pod\n")
    p = ctr.run(script("etcd-snapshot-status"), str(data), IMAGE, "etcdutl etcdctl",
                str(manifest))
    assert p.returncode == 4
    assert p.stdout == b""
    assert f"{manifest} is there" in p.stderr.decode()
    assert ctr.calls == []
    manifest.unlink()  # parked: read
    p = ctr.run(script("etcd-snapshot-status"), str(data), IMAGE, "etcdutl etcdctl",
                str(manifest))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.decode().splitlines()[1])["revision"] == 7


@pytest.mark.parametrize(("missing", "db", "error"), [
    ("etcdutl,etcdctl", bolt(7), "executable file not found in $PATH"),
    ("", b"not a bolt file", "Error: invalid database"),
])
def test_snapshot_status_without_a_working_tool_fails_with_both_tools_errors(
        tmp_path: Path, ctr: Ctr, missing: str, db: bytes, error: str) -> None:
    data = data_dir(tmp_path, db)
    ctr.missing = missing
    p = ctr.run(script("etcd-snapshot-status"), str(data), IMAGE, "etcdutl etcdctl")
    assert p.returncode == 3
    assert p.stdout == b""
    lines = p.stderr.decode().splitlines()
    assert [line.split(": ", 1)[0] for line in lines if line.startswith("etcd")] == \
        ["etcdutl", "etcdctl"]
    assert sum(error in line for line in lines) == 2, lines


@pytest.mark.parametrize(("image", "missing", "tool", "tried"), [
    ("registry.k8s.io/etcd:3.6.5-0", "", "etcdutl", ["etcdutl"]),
    ("registry.k8s.io/etcd:3.6.5-0", "etcdutl", "etcdctl", ["etcdutl", "etcdctl"]),
    # 3.5 images have no etcdutl: etcdctl is asked first, and one `ctr run` is saved
    (IMAGE, "etcdutl", "etcdctl", ["etcdctl"]),
    (IMAGE, "", "etcdctl", ["etcdctl"]),
])
def test_recovery_reads_what_the_status_script_prints(
        tmp_path: Path, ctr: Ctr, image: str, missing: str, tool: str, tried: list[str]) -> None:
    """The parser (recovery.snapshot.status) on the real script's output, tool line included,
    with the tools tried in the order the image's etcd version makes likely."""
    db = bolt(48999, keys=1234)
    data = data_dir(tmp_path, db)
    ctr.missing, ctr.image = missing, image
    cluster, _, nodes = dump("ha-3cp-permuted")
    node = nodes["kind-control-plane"]

    def on_host(_n: FakeNode, argv: Sequence[str], _stdin: bytes | None) -> ExecResult:
        assert argv[4] == DATA_DIR
        p = ctr.run(argv[2], str(data), *argv[5:])
        return ExecResult(p.returncode, p.stdout, p.stderr)

    node.on_script("etcd-snapshot-status", on_host)
    ap, said = applier(cluster, nodes)
    rec = Recovery(ap.context())
    st = snapshot.status(rec, cluster.control_planes[0], image)
    assert st == {"hash": 1, "revision": 48999, "totalKey": 1234, "totalSize": len(db),
                  "tool": tool}
    assert [c[9] for c in ctr.calls] == tried
    ctr.missing = "etcdutl,etcdctl"
    assert snapshot.status(rec, cluster.control_planes[0], image) is None
    [line] = [s for s in said if "cannot read" in s]
    first, second = tried[0], ({"etcdutl", "etcdctl"} - {tried[0]}).pop()
    assert line.startswith("      etcd: cannot read kind-control-plane's data with the etcd "
                           f"image's tools: {first}: ")
    assert "executable file not found" in line
    assert f"; {second}: ctr: failed to create shim task" in line  # cut at 300 characters


# --- etcd-restore.sh ---------------------------------------------------------------------------

RESTORE_FLAGS = ("--name", "kind-control-plane2",
                 "--initial-cluster", "kind-control-plane=https://172.18.0.5:2380,"
                 "kind-control-plane2=https://172.18.0.3:2380,"
                 "kind-control-plane3=https://172.18.0.4:2380",
                 "--initial-advertise-peer-urls", "https://172.18.0.3:2380",
                 "--initial-cluster-token", f"kindfix-{RUN_ID}")


def _restorable(tmp_path: Path) -> tuple[Path, Path, dict[str, bytes], bytes]:
    """A member's data dir with the snapshot staged beside it, and where stale members go."""
    data = data_dir(tmp_path, bolt(100, filler=b"old member"))
    snapshot = bolt(48999, filler=b"the best member's backend")
    (data / ".kindfix-snapshot.db").write_bytes(snapshot)
    return data, tmp_path / "backup" / "stale", tree(data / "member"), snapshot


def restore(ctr: Ctr, data: Path, stale: Path, tool: str = "etcdutl"
            ) -> subprocess.CompletedProcess[bytes]:
    """etcd-restore.sh with the member's backup dir `stale`'s parent (no checked copy there
    unless the test makes one: its own member is then set aside in `stale`)."""
    return ctr.run(script("etcd-restore"), str(data), IMAGE, str(stale.parent), tool,
                   *RESTORE_FLAGS)


def _assert_restored(data: Path, snapshot: bytes) -> None:
    assert (data / "member" / "snap" / "db").read_bytes() == snapshot
    assert wal(data / "member") == {
        "name": "kind-control-plane2", "initial-cluster": RESTORE_FLAGS[3],
        "peer-urls": "https://172.18.0.3:2380", "token": f"kindfix-{RUN_ID}"}
    assert sorted(p.name for p in data.iterdir()) == [".kindfix-snapshot.db", "member"]


def test_restore_swaps_in_the_restored_member_and_keeps_the_old_one(
        tmp_path: Path, ctr: Ctr) -> None:
    data, stale, old, snapshot = _restorable(tmp_path)
    p = restore(ctr, data, stale)
    assert p.returncode == 0, p.stderr
    _assert_restored(data, snapshot)  # no .kindfix-restore(.tmp) left
    [kept] = list(stale.iterdir())
    assert re.fullmatch(r"member-\d+-\w{6}", kept.name)
    assert tree(kept) == old
    [call] = ctr.calls
    assert call[6] == f"type=bind,src={data},dst={data},options=rbind:rw"
    assert call[9:] == ["etcdutl", "snapshot", "restore", f"{data}/.kindfix-snapshot.db",
                        "--skip-hash-check", "--data-dir", f"{data}/.kindfix-restore.tmp",
                        *RESTORE_FLAGS]


def test_restore_removes_a_member_its_checked_copy_keeps(tmp_path: Path, ctr: Ctr) -> None:
    """The member is the same as its checked copy in the backups (etcd stopped since): the copy
    is its backup, so it is removed rather than moved there too (on a kind node a move from
    /var to /kind copies every byte, 64 MB a WAL segment, at the swap, where a full disk must
    not stop it). One that differs is moved, as without a copy."""
    data, stale, old, snapshot = _restorable(tmp_path)
    copy = stale.parent / "data"
    shutil.copytree(data, copy)
    (copy / ".kindfix-snapshot.db").unlink()
    p = restore(ctr, data, stale)
    assert p.returncode == 0, p.stderr
    _assert_restored(data, snapshot)
    assert not stale.exists()
    assert tree(copy / "member") == old  # the copy stays, untouched
    # run again: the member now is the restored one, which differs from the copy: kept
    p = restore(ctr, data, stale)
    assert p.returncode == 0, p.stderr
    [kept] = list(stale.iterdir())
    assert tree(kept) != old


def test_restore_finishes_a_removal_cut_short(tmp_path: Path, ctr: Ctr) -> None:
    data, stale, old, snapshot = _restorable(tmp_path)
    (data / ".kindfix-gone" / "snap").mkdir(parents=True)  # killed inside its rm -rf
    (data / ".kindfix-gone" / "snap" / "db").write_bytes(b"half removed")
    p = restore(ctr, data, stale)
    assert p.returncode == 0, p.stderr
    _assert_restored(data, snapshot)  # no .kindfix-gone left
    [kept] = list(stale.iterdir())  # no copy here: its own member was moved, as before
    assert tree(kept) == old


def test_restore_with_etcdctl_from_an_image_without_etcdutl(tmp_path: Path, ctr: Ctr) -> None:
    data, stale, _, snapshot = _restorable(tmp_path)
    ctr.missing = "etcdutl"
    p = restore(ctr, data, stale, tool="etcdctl")
    assert p.returncode == 0, p.stderr
    _assert_restored(data, snapshot)
    assert [c[9] for c in ctr.calls] == ["etcdctl"]


def test_restore_run_again_after_it_finished_restores_again_and_sets_aside_again(
        tmp_path: Path, ctr: Ctr) -> None:
    data, stale, old, snapshot = _restorable(tmp_path)
    ctr.clock(step=7)  # a rerun comes seconds later
    assert restore(ctr, data, stale).returncode == 0
    first = tree(data / "member")
    p = restore(ctr, data, stale)
    assert p.returncode == 0, p.stderr
    _assert_restored(data, snapshot)
    kept = sorted(stale.iterdir())
    assert [tree(k) for k in kept] == [old, first]


def test_restore_run_three_times_in_one_second_keeps_every_set_aside_member_apart(
        tmp_path: Path, ctr: Ctr) -> None:
    """With member-$(date +%s) alone, the second set-aside moved the member into the first
    one and the third failed ('Directory not empty')."""
    data, stale, old, _ = _restorable(tmp_path)
    ctr.clock(step=0)
    assert restore(ctr, data, stale).returncode == 0
    first = tree(data / "member")
    assert restore(ctr, data, stale).returncode == 0
    second = tree(data / "member")
    p = restore(ctr, data, stale)
    assert p.returncode == 0, p.stderr
    kept = [tree(k) for k in sorted(stale.iterdir())]
    assert len(kept) == 3
    assert old in kept and first in kept and second in kept


@pytest.mark.parametrize("leftover", [
    ".kindfix-restore.tmp/member/snap/db",  # killed while the tool wrote
    ".kindfix-restore/",  # an empty one: killed before its rmdir
])
def test_restore_redoes_a_partial_earlier_attempt_cleanly(
        tmp_path: Path, ctr: Ctr, leftover: str) -> None:
    data, stale, old, snapshot = _restorable(tmp_path)
    if leftover.endswith("/"):
        (data / leftover).mkdir()
    else:
        (data / leftover).parent.mkdir(parents=True)
        (data / leftover).write_bytes(b"half written")
    p = restore(ctr, data, stale)
    assert p.returncode == 0, p.stderr
    _assert_restored(data, snapshot)
    [kept] = list(stale.iterdir())
    assert tree(kept) == old


def test_restore_killed_between_set_aside_and_move_in_finishes_without_the_tool(
        tmp_path: Path, ctr: Ctr) -> None:
    data, stale, old, snapshot = _restorable(tmp_path)
    assert restore(ctr, data, stale).returncode == 0
    restored = tree(data / "member")
    # the state after `mv "$data/member" "$stale/..."`, before the restored member moved in
    (data / ".kindfix-restore").mkdir()
    (data / "member").rename(data / ".kindfix-restore" / "member")
    p = restore(ctr, data, stale)
    assert p.returncode == 0, p.stderr
    assert tree(data / "member") == restored
    _assert_restored(data, snapshot)
    assert len(ctr.calls) == 1  # only the first run ran the tool
    [kept] = list(stale.iterdir())
    assert tree(kept) == old


def test_a_restore_staged_from_an_older_snapshot_is_made_again(tmp_path: Path, ctr: Ctr) -> None:
    """A node the undo could not reach keeps the member restored from the best member chosen
    then; the next run chooses again and puts its snapshot there: that is what is restored."""
    data, stale, _, _ = _restorable(tmp_path)
    ctr.run(script("etcd-stage-restore"), str(data), IMAGE, str(stale), "etcdutl",
            *RESTORE_FLAGS)
    newer = bolt(50123, filler=b"the best member chosen by the next run")
    (data / ".kindfix-snapshot.db").write_bytes(newer)
    later = (data / ".kindfix-restore").stat().st_mtime + 5
    os.utime(data / ".kindfix-snapshot.db", (later, later))
    p = restore(ctr, data, stale)
    assert p.returncode == 0, p.stderr
    assert (data / "member" / "snap" / "db").read_bytes() == newer
    assert len(ctr.calls) == 2  # staged, then again from the newer snapshot


@pytest.mark.parametrize(("missing", "snapshot", "error"), [
    ("etcdutl", None, "executable file not found in $PATH"),
    ("", b"truncated copy", "Error: invalid database"),
])
def test_restore_with_a_failing_tool_leaves_the_member_untouched(
        tmp_path: Path, ctr: Ctr, missing: str, snapshot: bytes | None, error: str) -> None:
    data, stale, old, good = _restorable(tmp_path)
    if snapshot is not None:
        (data / ".kindfix-snapshot.db").write_bytes(snapshot)
    ctr.missing = missing
    p = restore(ctr, data, stale)
    assert p.returncode == 3
    assert error in p.stderr.decode()
    assert tree(data / "member") == old
    assert not stale.exists()
    assert not (data / ".kindfix-restore").exists()
    # fixed (the other tool, a good snapshot): the next run restores
    (data / ".kindfix-snapshot.db").write_bytes(good)
    p = restore(ctr, data, stale, tool="etcdctl" if missing else "etcdutl")
    assert p.returncode == 0, p.stderr
    _assert_restored(data, good)


# --- etcd-keep-snapshot.sh ---------------------------------------------------------------------

def test_keep_snapshot_copies_the_backend_beside_the_member(tmp_path: Path) -> None:
    db = bolt(48999)
    data = data_dir(tmp_path, db)

    def keep() -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["sh", "-c", script("etcd-keep-snapshot"), "kindfix-snapshot",
                               str(data)], capture_output=True, timeout=30, check=False)

    assert keep().returncode == 0
    assert (data / ".kindfix-snapshot.db").read_bytes() == db
    assert (data / "member" / "snap" / "db").read_bytes() == db
    assert sorted(p.name for p in data.iterdir()) == [".kindfix-snapshot.db", "member"]
    (data / "member" / "snap" / "db").unlink()
    p = keep()
    assert p.returncode != 0
    assert (data / ".kindfix-snapshot.db").read_bytes() == db  # a failed copy replaces nothing
    assert not (data / ".kindfix-snapshot.db.tmp").exists()


# --- the flow over FakeNodes ------------------------------------------------------------------

CP, CP2, CP3 = "kind-control-plane", "kind-control-plane2", "kind-control-plane3"
CPS = (CP, CP2, CP3)
OLD = {CP: "172.18.0.3", CP2: "172.18.0.4", CP3: "172.18.0.5"}  # ha-3cp-permuted, at creation
CURRENT = {CP: "172.18.0.5", CP2: "172.18.0.3", CP3: "172.18.0.4"}  # and now
INITIAL = ",".join(f"{n}=https://{ip}:2380" for n, ip in CURRENT.items())
JOURNALED = ("park", "copy", "status", "keep", "put-snapshot", "restore")


class Killed(Exception):
    """A run stopped in the middle (Ctrl-C, a lost `docker exec`)."""


@dataclass
class Side:
    """What the nodes, the kubelet and etcd do with the commands of a snapshot restore.

    `revisions`: what `snapshot status` reads in each member's backend (None: no tool works).
    `kill_at`: (event, n) makes the n-th such event raise Killed instead of happening.
    """

    nodes: dict[str, FakeNode]
    revisions: dict[str, int | None]
    gw: FakeEtcd
    kill_at: tuple[str, int] | None = None
    tool: str = "etcdutl"  # the one the image has
    snapshots: dict[str, NodeSnapshot] = field(default_factory=dict)  # what observe saw
    events: list[tuple[str, str]] = field(default_factory=list)  # only what happened
    attempts: Counter[str] = field(default_factory=Counter)
    restores: dict[str, list[str]] = field(default_factory=dict)  # node: its restore argv
    staged: dict[str, list[str]] = field(default_factory=dict)  # node: its staging argv
    running_at_restore: list[str] = field(default_factory=list)
    hung_apiserver: set[str] = field(default_factory=set)  # etcd-quiet-apiserver.sh stops it
    starts: list[tuple[str, str]] = field(default_factory=list)  # quiet/start-member, in order
    start_args: list[tuple[str, str]] = field(default_factory=list)  # node, start-member's $4
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def event(self, what: str, node: str) -> None:
        with self._lock:
            self.attempts[what] += 1
            if self.kill_at == (what, self.attempts[what]):
                raise Killed(f"killed at {what} #{self.attempts[what]} on {node}")
            self.events.append((what, node))

    def counts(self, *what: str) -> Counter[tuple[str, str]]:
        return Counter(e for e in self.events if not what or e[0] in what)

    def first(self, what: str) -> int:
        return next(i for i, e in enumerate(self.events) if e[0] == what)

    def last(self, what: str) -> int:
        return max(i for i, e in enumerate(self.events) if e[0] == what)

    # --- handlers ---
    def running(self, node: FakeNode, *_: Any) -> ExecResult:
        return ok("3f9a\n" if MANIFEST in node.files else "")

    def park(self, node: FakeNode, argv: Sequence[str], _stdin: bytes | None) -> ExecResult:
        self.event("park", node.name)
        if argv[4] in node.files:
            node.files.setdefault(f"{argv[5]}/etcd.yaml", node.files.pop(argv[4]))
            return ok("@@kindfix-parked\n")
        return ok()

    def copy(self, node: FakeNode, argv: Sequence[str], _stdin: bytes | None) -> ExecResult:
        self.event("copy", node.name)
        node.files[f"{argv[5]}/member/snap/db"] = node.files[DB]
        return ok()

    def status(self, node: FakeNode, argv: Sequence[str], _stdin: bytes | None) -> ExecResult:
        """etcd-snapshot-status.sh (also prepare's status, once etcd is stopped)."""
        self.event("status", node.name)
        assert tuple(argv[4:7]) == (DATA_DIR, IMAGE, status_tools(IMAGE))
        if len(argv) > 7 and argv[7] in node.files:  # its guard: etcd.yaml is back
            return fail(4, f"kindfix: {argv[7]} is back\n")
        if MANIFEST in node.files:
            # etcd runs: bbolt's Open (read-only: a shared flock, no timeout) waits as long as
            # etcd holds its exclusive lock on member/snap/db
            raise KindfixError("command timed out after 120s: <kindfix-status>")
        rev = self.revisions[node.name]
        if rev is None:
            return fail(3, f"etcdutl: {NOT_FOUND.format('etcdutl')}\n"
                           f"etcdctl: {NOT_FOUND.format('etcdctl')}\n")
        return ok(f"{self.tool}\n" + json.dumps({"hash": 1, "revision": rev, "totalKey": rev // 10,
                                             "totalSize": len(node.files[DB])}) + "\n")

    def prepare(self, node: FakeNode, argv: Sequence[str], _stdin: bytes | None) -> ExecResult:
        """etcd-prepare-member.sh: park, wait until etcd is gone, copy, status."""
        manifest, parked, data, backup, image, tools = argv[4:10]
        head = tuple(argv[:4])
        parked_it = self.park(node, (*head, manifest, parked), None).stdout
        assert not self.running(node).stdout, "copied while etcd runs"
        self.copy(node, (*head, data, backup), None)
        status = self.status(node, (*head, data, image, tools), None)
        # lib/quiet-apiserver.sh, once park stopped the kubelet
        asked = b"@@kindfix apiserver-stopped\n" if node.name in self.hung_apiserver else \
            b"@@kindfix apiserver-asked\n"
        return ExecResult(status.exit_code,
                          parked_it + asked + b"@@kindfix-status\n" + status.stdout,
                          status.stderr)

    def keep(self, node: FakeNode, argv: Sequence[str], _stdin: bytes | None) -> ExecResult:
        self.event("keep", node.name)
        assert argv[4] == DATA_DIR
        node.files[SNAPSHOT] = node.files[DB]
        return ok()

    def stage(self, node: FakeNode, argv: Sequence[str], _stdin: bytes | None) -> ExecResult:
        """etcd-stage-restore.sh: the restored member waits beside the data."""
        self.event("stage", node.name)
        self.staged[node.name] = list(argv)
        node.files[STAGED] = node.files[SNAPSHOT]
        return ok()

    def unprepare(self, node: FakeNode, argv: Sequence[str], _stdin: bytes | None
                  ) -> ExecResult:
        """etcd-unprepare.sh: etcd back on its own data, the staged files gone."""
        self.event("unprepare", node.name)
        how, manifest, parked = argv[4:7]
        if how == "unpark" and parked in node.files and manifest not in node.files:
            node.files[manifest] = node.files.pop(parked)
        for path in (STAGED, SNAPSHOT):
            node.files.pop(path, None)
        return ok()

    def restore(self, node: FakeNode, argv: Sequence[str], _stdin: bytes | None) -> ExecResult:
        self.event("restore", node.name)
        node.files.pop(STAGED, None)
        if MANIFEST in node.files:
            self.running_at_restore.append(node.name)
        # lib/set-aside.sh: the member goes when its checked copy is the same, else to stale
        backup = argv[6]
        if node.files.get(f"{backup}/data/member/snap/db") != node.files[DB]:
            n = 1 + sum(p.startswith(f"{backup}/stale/member-") for p in node.files)
            node.files[f"{backup}/stale/member-{n}/snap/db"] = node.files[DB]
        node.files[DB] = node.files[SNAPSHOT]
        self.restores[node.name] = list(argv)
        return ok()

    def unpark(self, node: FakeNode, *_: Any) -> ExecResult:
        self.event("unpark", node.name)
        node.files.pop(PARKED, None)
        return ok()

    def start_member(self, node: FakeNode, argv: Sequence[str], _stdin: bytes | None
                     ) -> ExecResult:
        """etcd-start-member.sh: the parked copy goes, the kubelet restarts (etcd starts on the
        manifest kindfix put back), then with a wait the metrics are asked until they answer
        (bounded: 20 asks here)."""
        parked, wait, manifest = argv[4], int(argv[5]), argv[6]
        assert (parked, manifest) == (PARKED, MANIFEST)
        if PARKED in node.files:  # put back as it was parked (mode kept)
            node.write_file(MANIFEST, node.files[PARKED], node.modes.get(PARKED, 0o600))
        elif MANIFEST not in node.files:
            return ExecResult(5, b"", f"kindfix: neither {MANIFEST} nor {PARKED} is there\n"
                              .encode())
        assert len(argv) == 8
        self.starts.append(("start-member", node.name))
        self.start_args.append((node.name, argv[7]))
        self.unpark(node)
        if wait and any(self.gw.serving is None or self.gw.serving(node) for _ in range(20)):
            return ok("@@kindfix-serving\n")
        return ok()

    def quiet(self, node: FakeNode, *_: Any) -> ExecResult:
        """etcd-quiet-apiserver.sh: a kube-apiserver that answers no HTTP is stopped."""
        self.starts.append(("quiet", node.name))
        return ok("@@kindfix apiserver-stopped\n" if node.name in self.hung_apiserver else
                  "@@kindfix apiserver-asked\n")

    def react(self, gw: FakeEtcd) -> None:
        """The members elect a leader once each runs again on restored data."""
        with self._lock:
            self._elect(gw)

    def _elect(self, gw: FakeEtcd) -> None:
        if gw.leader is None and all(MANIFEST in self.nodes[n].files and n in self.restores
                                     for n in self.revisions):
            self.event("leader", "*")
            flags = self.restores[next(iter(self.restores))]
            urls = dict(e.split("=", 1) for e in flags[flags.index("--initial-cluster") + 1]
                        .split(","))
            gw.members = [member(str(9000 + i), name, url.split("//")[1].rsplit(":", 1)[0])
                          for i, (name, url) in enumerate(urls.items())]
            gw.leader = gw.members[0]["ID"]


def _restore_cluster(monkeypatch: pytest.MonkeyPatch, revisions: dict[str, int | None],
                     fixture: str = "ha-3cp-permuted", kill_at: tuple[str, int] | None = None
                     ) -> tuple[Cluster, dict[str, FakeNode], Side]:
    # bounded waits; sleeps skipped: the fakes answer at once
    monkeypatch.setattr(state, "WAIT", 1.0)
    monkeypatch.setattr(time, "sleep", lambda _s: None)
    cluster, snapshots, nodes = dump(fixture)
    gw = FakeEtcd([member(str(1000 + i), n, OLD.get(n, "172.18.0.9"))
                   for i, n in enumerate(revisions)], leader=None)
    side = Side(nodes, revisions, gw, kill_at, snapshots=snapshots)
    gw.serving = lambda n: MANIFEST in n.files
    gw.before = side.react
    for name in revisions:
        node = nodes[name]
        node.files[DB] = _db(name, revisions)
        gw.attach(node)
        node.on_script("etcd-park", side.park)
        node.on_script("etcd-copy-data", side.copy)
        node.on_script("etcd-copy-stopped", side.copy)
        node.on_script("etcd-snapshot-status", side.status)
        node.on_script("etcd-prepare-member", side.prepare)
        node.on_script("etcd-keep-snapshot", side.keep)
        node.on_script("etcd-restore", side.restore)
        node.on_script("etcd-stage-restore", side.stage)
        node.on_script("etcd-unprepare", side.unprepare)
        node.on(("systemctl", "restart", "kubelet"), ok())
        node.on(("rm", "-f", PARKED), side.unpark)
        node.on_script("etcd-start-member", side.start_member)
        node.on_script("etcd-quiet-apiserver", side.quiet)
        _watch_snapshot_writes(node, side)
    return cluster, nodes, side


def _watch_snapshot_writes(node: FakeNode, side: Side) -> None:
    real = node.write_file

    def write_file(path: str, content: bytes, mode: int = 0o644) -> None:
        if path == SNAPSHOT:
            side.event("put-snapshot", node.name)
        real(path, content, mode)

    node.write_file = write_file  # type: ignore[method-assign]


def resumed(cluster: Cluster, nodes: dict[str, FakeNode], side: Side
            ) -> tuple[Applier, list[str]]:
    """The next `kindfix repair`: a new Applier continuing the journal saved on the node."""
    ap, said = applier(cluster, nodes, side.snapshots)
    raw = nodes[CP].files[f"{JOURNAL_DIR}/{RUN_ID}.json"]
    ap.recorder = RunRecorder(Journal.from_json(raw), nodes[CP])
    return ap, said


def outcome(nodes: dict[str, FakeNode], side: Side, ap: Applier) -> dict[str, Any]:
    journal = ap.recorder.journal
    return {"files": {n: {p: c for p, c in nodes[n].files.items() if not p.startswith(JOURNAL_DIR)}
                      for n in CPS},
            "restores": side.restores, "done": sorted(journal.done), "notes": journal.notes,
            "members": sorted((m["name"], m["peerURLs"][0]) for m in side.gw.members)}


def _db(name: str, revisions: dict[str, int | None]) -> bytes:
    return bolt(revisions[name] or 1, filler=f"{name}'s backend".encode())


@pytest.mark.parametrize(("revisions", "best", "tool"), [
    ({CP: 48000, CP2: 48999, CP3: 48500}, CP2, "etcdutl"),
    ({CP: 48999, CP2: 48999, CP3: 48999}, CP, "etcdutl"),  # a tie: the first control plane
    ({CP: 700, CP2: None, CP3: 900}, CP3, "etcdctl"),  # a member no tool can read: not chosen
], ids=["highest", "tie", "unreadable"])
def test_snapshot_restore_rebuilds_every_member_from_the_most_up_to_date_backend(
        monkeypatch: pytest.MonkeyPatch, revisions: dict[str, int | None], best: str,
        tool: str) -> None:
    cluster, nodes, side = _restore_cluster(monkeypatch, revisions)
    side.tool = tool
    manifests = {n: nodes[n].files[MANIFEST] for n in CPS}
    ap, said = applier(cluster, nodes, side.snapshots)
    strategy.repair(ap.context(), "snapshot-restore")

    rev = revisions[best]
    assert rev is not None
    assert f"      etcd: most up-to-date member: {best} (revision {rev}, {rev // 10} keys; " \
           f"{tool} from {IMAGE})" in said
    assert ap.recorder.journal.notes == ["etcd-strategy=snapshot-restore", f"etcd-tool={tool}",
                                         f"etcd-best={best}"]
    backups = ap.recorder.backup_dir()
    for name in CPS:
        node = nodes[name]
        assert node.unhandled == []
        # the best member's backend, byte for byte, restored as this member at its current IP
        assert node.files[DB] == _db(best, revisions)
        argv = side.restores[name]
        assert argv[4:8] == [DATA_DIR, IMAGE, f"{backups}/etcd-{name}", tool]
        assert dict(zip(argv[8::2], argv[9::2])) == {
            "--name": name, "--initial-cluster": INITIAL,
            "--initial-advertise-peer-urls": f"https://{CURRENT[name]}:2380",
            "--initial-cluster-token": f"kindfix-{RUN_ID}"}
        # its own data: copied first and checked; the same at the swap, so not moved again
        assert node.files[f"{backups}/etcd-{name}/data/member/snap/db"] == _db(name, revisions)
        assert not any(p.startswith(f"{backups}/etcd-{name}/stale/") for p in node.files)
        # started again on the manifest it had; the staged snapshot is gone
        assert node.files[MANIFEST] == manifests[name]
        assert node.modes[MANIFEST] == 0o600
        assert PARKED not in node.files
        assert SNAPSHOT not in node.files
        assert f"      etcd: {name} is a member of the restored cluster" in said
        # the kubelet restarted once the restored manifest is back (realkind finding 1: one
        # that started without an API server may sit on it)
        assert f"      etcd: [{name}] restarting the kubelet (so it starts etcd on the " \
            "restored data at once" in " ".join(said)
        assert [c[4:] for c in node.ran("etcd-start-member")] == \
            [(PARKED, "0" if name == CPS[-1] else "15", MANIFEST, "stopped")]  # last: no wait
        if name != best:
            assert node.modes[SNAPSHOT] == 0o600
    if revisions[CP2] is None:
        assert any(s.startswith(f"      etcd: cannot read {CP2}'s data with the etcd image's "
                                "tools: etcdutl: ") for s in said)
    assert side.counts("keep") == Counter({("keep", best): 1})
    assert side.counts("put-snapshot") == Counter(("put-snapshot", n) for n in CPS if n != best)
    assert side.counts("park", "copy", "status", "restore", "unpark") == Counter(
        (w, n) for w in ("park", "copy", "status", "restore", "unpark") for n in CPS)
    done = set(ap.recorder.journal.done)
    assert {f"etcd:{s}:{n}" for s in ("park", "copy", "snapshot", "restored") for n in CPS} | \
        {"etcd:unparked"} <= done


def test_only_an_apiserver_that_answers_no_http_is_stopped_while_prepared_and_that_is_said(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, nodes, side = _restore_cluster(monkeypatch, {CP: 700, CP2: 800, CP3: 900})
    side.hung_apiserver = {CP2}
    ap, said = applier(cluster, nodes, side.snapshots)
    ctx = ap.context()  # one run: the preparation beside the certificates, then the etcd step
    preparation.prepare(ctx)
    strategy.repair(ctx, "snapshot-restore")
    # asked while each member was prepared (its kubelet stopped): not again before the starts
    assert ctx.apiservers_asked == set(CPS)
    assert side.starts == [("start-member", n) for n in CPS]
    # and their kubelets, stopped by this run's park, are not stopped again
    assert side.start_args == [(n, "stopped") for n in CPS]
    stopped = [s for s in said if "stopped its kube-apiserver" in s]
    assert len(stopped) == 1
    assert stopped[0].startswith(f"      etcd: [{CP2}] stopped its kube-apiserver while the "
                                 "kubelet is stopped: it answered no HTTP within 0.5 s")


def test_a_continued_run_asks_every_apiserver_before_the_first_member_starts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, nodes, side = _restore_cluster(monkeypatch, {CP: 700, CP2: 800, CP3: 900})
    ap, said = applier(cluster, nodes, side.snapshots)
    preparation.prepare(ap.context())
    side.hung_apiserver = {CP3}  # the kubelet may have run meanwhile: the answer is not known
    strategy.repair(ap.context(), "snapshot-restore")  # a new process's context
    assert sorted(side.starts[:3]) == [("quiet", n) for n in CPS]
    assert side.starts[3:] == [("start-member", n) for n in CPS]
    assert side.start_args == [(n, "stopped") for n in CPS]  # the quiet script stopped them
    assert [s.split("]")[0] for s in said if "stopped its kube-apiserver" in s] == \
        [f"      etcd: [{CP3}"]


def test_snapshot_restore_copies_all_data_before_restoring_anything_and_restores_stopped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, nodes, side = _restore_cluster(monkeypatch, {CP: 48000, CP2: 48999, CP3: 48500})
    ap, _ = applier(cluster, nodes, side.snapshots)
    strategy.repair(ap.context(), "snapshot-restore")
    for name in CPS:  # each member stopped, then copied
        assert side.events.index(("park", name)) < side.events.index(("copy", name))
    for name in CPS:  # each backend is read stopped and copied
        assert side.events.index(("copy", name)) < side.events.index(("status", name))
    assert side.last("status") < side.first("keep") < side.first("put-snapshot")
    assert side.last("put-snapshot") < side.first("restore")
    assert side.last("restore") < side.first("unpark")  # all restored, then all started
    assert side.running_at_restore == []
    assert side.last("unpark") < side.first("leader")


def _serving_after(side: Side, polls: int) -> None:
    """A started member's metrics answer only from its `polls`-th ask on (etcd still in its
    initial corruption check before that); the first answer is the event ("serves", node)."""
    asked: Counter[str] = Counter()

    def serving(node: FakeNode) -> bool:
        if MANIFEST not in node.files:
            asked[node.name] = 0
            return False
        asked[node.name] += 1
        if asked[node.name] == polls:
            side.event("serves", node.name)
        return asked[node.name] >= polls

    side.gw.serving = serving


def test_snapshot_restore_starts_each_member_once_the_one_before_serves(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Started together, members in etcd's initial corruption check wait 7 s on each other
    (seen on the bed's real etcd): the next member starts only once the one before serves."""
    cluster, nodes, side = _restore_cluster(monkeypatch, {CP: 48000, CP2: 48999, CP3: 48500})
    _serving_after(side, polls=3)
    ap, said = applier(cluster, nodes, side.snapshots)
    strategy.repair(ap.context(), "snapshot-restore")
    started = [n for what, n in side.events if what == "unpark"]
    assert started == list(CPS)
    for before, after in zip(CPS, CPS[1:]):
        assert side.events.index(("serves", before)) < side.events.index(("unpark", after))
    assert any(s.startswith("      etcd: starting the members on their restored data one at a "
                            "time") for s in said)
    assert not any("does not serve yet" in s for s in said)
    assert all(f"      etcd: {n} is a member of the restored cluster" in said for n in CPS)


def test_a_member_that_does_not_serve_in_time_does_not_hold_the_others_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, nodes, side = _restore_cluster(monkeypatch, {CP: 48000, CP2: 48999, CP3: 48500})
    serving = side.gw.serving
    assert serving is not None
    # the first member's metrics never answer (as if it had none); the others' do
    side.gw.serving = lambda n: n.name != CP and serving(n)
    ap, said = applier(cluster, nodes, side.snapshots)
    with pytest.raises(KindfixError, match=f"etcd on {CP} to have a leader"):
        strategy.repair(ap.context(), "snapshot-restore")
    assert f"      etcd: etcd on {CP} does not serve yet after 15 s; starting the next member " \
        "anyway" in said
    assert side.counts("unpark") == Counter(("unpark", n) for n in CPS)

def test_the_flags_the_flow_passes_satisfy_the_restore_tool(
        tmp_path: Path, ctr: Ctr, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each member's recorded _RESTORE argv, run for real against the fake etcdutl."""
    cluster, nodes, side = _restore_cluster(monkeypatch, {CP: 48000, CP2: 48999, CP3: 48500})
    ap, _ = applier(cluster, nodes, side.snapshots)
    strategy.repair(ap.context(), "snapshot-restore")
    for name in CPS:
        argv = side.restores[name]
        data = data_dir(tmp_path / name, bolt(5))
        (data / ".kindfix-snapshot.db").write_bytes(bolt(48999))
        p = ctr.run(argv[2], str(data), argv[5], str(tmp_path / name / "backup"), *argv[7:])
        assert p.returncode == 0, p.stderr
        assert wal(data / "member")["name"] == name


@pytest.mark.parametrize("kill_at", [
    ("copy", 2), ("keep", 1), ("put-snapshot", 1), ("restore", 2), ("unpark", 1),
    ("leader", 1)], ids=lambda k: f"{k[0]}-{k[1]}")
def test_a_killed_snapshot_restore_continues_where_it_stopped(
        monkeypatch: pytest.MonkeyPatch, kill_at: tuple[str, int]) -> None:
    revisions: dict[str, int | None] = {CP: 48000, CP2: 48999, CP3: 48500}
    cluster, nodes, clean = _restore_cluster(monkeypatch, revisions)
    ap, _ = applier(cluster, nodes, clean.snapshots)
    strategy.repair(ap.context(), "snapshot-restore")
    want = outcome(nodes, clean, ap)

    cluster, nodes, side = _restore_cluster(monkeypatch, revisions, kill_at=kill_at)
    ap, said = applier(cluster, nodes, side.snapshots)
    with pytest.raises(Killed):
        strategy.repair(ap.context(), "snapshot-restore")
    done_before = set(ap.recorder.journal.done)
    assert any(k.startswith("etcd:park:") for k in done_before)  # it got somewhere
    if kill_at[0] == "restore":  # the first restore finished, maybe the third
        assert len([k for k in done_before if k.startswith("etcd:restored:")]) in (1, 2)

    ap, said_again = resumed(cluster, nodes, side)
    strategy.repair(ap.context(), "snapshot-restore")
    assert outcome(nodes, side, ap) == want
    # no journaled stage ran twice: the same work as the uninterrupted run, except that a
    # member's one prepare exec (park, copy, status) is redone when it was cut: parking again
    # is a no-op, status only reads, the copy is kept once made
    once = [w for w in JOURNALED if w not in ("park", "status")]
    assert side.counts(*once) == clean.counts(*once)
    assert all(n <= 2 for n in side.counts("park", "status").values())
    assert set(side.counts("park", "status")) == set(clean.counts("park", "status"))
    assert sum("most up-to-date member" in s for s in said + said_again) == 1


def _journal_versions(node: FakeNode) -> list[Journal]:
    """Every journal the run writes on `node`, write by write."""
    versions: list[Journal] = []
    real = node.write_file

    def write_file(path: str, content: bytes, mode: int = 0o644) -> None:
        real(path, content, mode)
        if path == f"{JOURNAL_DIR}/{RUN_ID}.json":
            versions.append(Journal.from_json(content))

    node.write_file = write_file  # type: ignore[method-assign]
    return versions


def test_the_members_snapshot_and_restore_stages_go_out_in_one_journal_write_each(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each journal write is a `docker exec` (~50 ms of CPU on the bed, 27 in a repair): the
    members' marks of one stage are written together once every member's job ended, and the
    chosen tool with the chosen member."""
    cluster, nodes, side = _restore_cluster(monkeypatch, {CP: 48000, CP2: 48999, CP3: 48500})
    versions = _journal_versions(nodes[CP])
    ap, _ = applier(cluster, nodes, side.snapshots)
    strategy.repair(ap.context(), "snapshot-restore")
    for stage in ("snapshot", "restored"):
        keys = {f"etcd:{stage}:{n}" for n in CPS}
        seen = [keys & set(v.done) for v in versions if keys & set(v.done)]
        assert seen and all(k == keys for k in seen), (stage, seen)  # never some of them
    first = next(v.notes for v in versions if any(n.startswith("etcd-tool=") for n in v.notes))
    assert f"etcd-best={CP2}" in first


@pytest.mark.parametrize(("phase", "members"), [
    ("put-snapshot", 2),  # the best member keeps its own backend instead
    ("restore", 3)])
def test_a_run_killed_before_its_members_stages_were_written_ends_the_same(
        monkeypatch: pytest.MonkeyPatch, phase: str, members: int) -> None:
    """Killed (SIGKILL: no clean-up) after every member's snapshot was put, or its restored
    data swapped in, but before that stage's one journal write: the next run does the stage
    again, which is harmless (the snapshot is put again; the swap restores again from the
    snapshot, no member having started on its data), and the cluster ends the same."""
    revisions: dict[str, int | None] = {CP: 48000, CP2: 48999, CP3: 48500}
    cluster, nodes, side = _restore_cluster(monkeypatch, revisions)
    dead = threading.Event()
    real = nodes[CP].write_file

    def write_file(path: str, content: bytes, mode: int = 0o644) -> None:
        if path.startswith(JOURNAL_DIR) and (dead.is_set() or
                                             side.counts(phase).total() == members):
            dead.set()  # from here on the process is gone: nothing more is written
            raise Killed(f"killed before the journal write after {phase}")
        real(path, content, mode)

    nodes[CP].write_file = write_file  # type: ignore[method-assign]
    ap, _ = applier(cluster, nodes, side.snapshots)
    with pytest.raises(Killed):
        strategy.repair(ap.context(), "snapshot-restore")
    nodes[CP].write_file = real  # type: ignore[method-assign]
    ap, _ = resumed(cluster, nodes, side)
    strategy.repair(ap.context(), "snapshot-restore")
    assert side.counts(phase).total() == 2 * members  # each done again
    assert all(nodes[n].files[DB] == _db(CP2, revisions) for n in CPS)  # the best's data
    assert all(PARKED not in nodes[n].files and MANIFEST in nodes[n].files for n in CPS)
    assert side.gw.leader is not None


@pytest.mark.parametrize("prepared", [False, True])
def test_without_a_restore_tool_it_falls_back_to_force_new_cluster(
        monkeypatch: pytest.MonkeyPatch, prepared: bool) -> None:
    """force-new-cluster itself is tested in test_etcd_recovery.py: here it only records that
    it started, and with which notes."""
    cluster, nodes, side = _restore_cluster(monkeypatch, dict.fromkeys(CPS, None))
    started: list[list[str]] = []
    monkeypatch.setattr(force_new, "force_new_cluster",
                        lambda rec: started.append(list(rec.rec.journal.notes)))
    ap, said = applier(cluster, nodes, side.snapshots)
    if prepared:
        preparation.prepare(ap.context())
        assert started == []
    strategy.repair(ap.context(), "snapshot-restore")

    assert started == [["etcd-strategy=snapshot-restore", "etcd-strategy=force-new-cluster"]]
    assert said.count(
        "      etcd: neither etcdutl nor etcdctl could read a member's data through "
        f"`ctr run {IMAGE}`; using force-new-cluster instead (every data dir is copied)") == 1
    for name in CPS:
        assert any(s.startswith(f"      etcd: cannot read {name}'s data") for s in said)
    # every member stopped and copied (force-new-cluster relies on it); nothing restored
    assert side.counts() == Counter((w, n) for w in ("park", "copy", "status") for n in CPS)
    assert all(nodes[n].files[DB] == _db(n, side.revisions) for n in CPS)
    # the next `kindfix repair` (which prepares again beside the certificates) goes straight
    # to force-new-cluster
    ap, _ = resumed(cluster, nodes, side)
    preparation.prepare(ap.context())
    strategy.repair(ap.context(), "snapshot-restore")
    assert len(started) == 2
    assert side.counts("status") == Counter(("status", n) for n in CPS)


def test_the_preparation_saves_its_strategy_with_the_first_park_not_before_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """One journal save less before the first member is parked (0.1-0.3 s of every repair):
    the note goes out with the park's mark. Killed before that, the next run still has no
    leader and chooses snapshot-restore again."""
    cluster, nodes, side = _restore_cluster(monkeypatch, {CP: 48000, CP2: 48999, CP3: 48500})
    ap, _ = applier(cluster, nodes, side.snapshots)
    journal = f"{JOURNAL_DIR}/{RUN_ID}.json"
    for name in CPS:  # kept already, as the file wave and keep_beside do before it starts
        ap.recorder.backup_file(nodes[name], MANIFEST, nodes[name].files[MANIFEST], mode=0o600)
    saved_at_park: list[list[str]] = []
    real = side.prepare

    def prepare(node: FakeNode, argv: Sequence[str], stdin: bytes | None) -> ExecResult:
        saved_at_park.append(Journal.from_json(nodes[CP].files[journal]).notes)
        return real(node, argv, stdin)

    for name in CPS:
        nodes[name].on_script("etcd-prepare-member", prepare)
    preparation.prepare(ap.context())
    assert saved_at_park[0] == []  # nothing saved between the start and the first park
    assert "etcd-strategy=snapshot-restore" in Journal.from_json(nodes[CP].files[journal]).notes


def test_the_fall_back_forces_the_member_observe_saw_most_up_to_date(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the restore is abandoned every member is stopped, so no metrics answer:
    force-new-cluster chooses by the revisions observe saw (ha-3cp-permuted's probes:
    control-plane2 at 48213). It used to force the first control plane."""
    cluster, nodes, side = _restore_cluster(monkeypatch, dict.fromkeys(CPS, None))
    forced: list[str] = []

    def start_forced(_rec: Recovery, best: Any) -> None:
        forced.append(best.name)
        raise Killed("stop before the forced member starts")

    monkeypatch.setattr(force_new, "start_forced", start_forced)
    ap, said = applier(cluster, nodes, side.snapshots)
    with pytest.raises(Killed):
        strategy.repair(ap.context(), "snapshot-restore")
    assert forced == [CP2]
    assert "      etcd: most up-to-date member: kind-control-plane2 (revision 48213)" in said
    assert ap.recorder.journal.notes[-1] == f"etcd-best={CP2}"


def test_prepare_then_repair_restores_once(monkeypatch: pytest.MonkeyPatch) -> None:
    revisions: dict[str, int | None] = {CP: 48000, CP2: 48999, CP3: 48500}
    cluster, nodes, clean = _restore_cluster(monkeypatch, revisions)
    ap, _ = applier(cluster, nodes, clean.snapshots)
    strategy.repair(ap.context(), "snapshot-restore")
    want = outcome(nodes, clean, ap)

    cluster, nodes, side = _restore_cluster(monkeypatch, revisions)
    ap, said = applier(cluster, nodes, side.snapshots)
    preparation.prepare(ap.context())
    # prepared: every member restored beside its data and still stopped; no member's own data
    # swapped out yet (only the etcd step does that, once the certificates are made)
    assert all(MANIFEST not in nodes[n].files and PARKED in nodes[n].files for n in CPS)
    assert set(side.staged) == set(CPS)
    assert side.restores == {}
    assert all(nodes[n].files[DB] == _db(n, revisions) for n in CPS)
    assert "etcd:unparked" not in ap.recorder.journal.done
    prepared = side.counts()
    strategy.repair(ap.context(), "snapshot-restore")
    assert side.counts() - prepared == Counter(
        [("restore", n) for n in CPS] + [("unpark", n) for n in CPS] + [("leader", "*")])
    assert all(side.restores[n][4:] == side.staged[n][4:] for n in CPS)  # what was staged
    got = outcome(nodes, side, ap)
    assert got["done"] == sorted(want["done"] + [f"etcd:staged:{n}" for n in CPS])
    assert {**got, "done": want["done"]} == want
    assert said.count("      etcd: preparing the snapshot restore while the certificates are "
                      "made") == 1


def test_apply_prepares_the_restore_beside_the_certificates(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, nodes, side = _restore_cluster(monkeypatch, {CP: 48000, CP2: 48999, CP3: 48500})
    restoring = threading.Event()
    seen_restore: list[bool] = []
    real_stage = side.stage
    made = kubeadm({cp.name: cp.ips() for cp in cluster.control_planes})

    def stage_and_tell(node: FakeNode, argv: Sequence[str], stdin: bytes | None
                       ) -> ExecResult:
        result = real_stage(node, argv, stdin)
        restoring.set()
        return result

    def slow_kubeadm(node: FakeNode, argv: Sequence[str], stdin: bytes | None) -> ExecResult:
        # a slow kubeadm: the restore gets under way meanwhile (bounded wait)
        seen_restore.append(restoring.wait(5))
        side.event("cert", node.name)
        return made(node, argv, stdin)  # type: ignore[no-any-return]

    for name in CPS:
        nodes[name].on_script("etcd-stage-restore", stage_and_tell)
        nodes[name].on(("kubeadm", "init", "phase", "certs"), slow_kubeadm)
    steps = tuple(Step(f"cert:{n}:etcd-peer", "regen-cert", n, "regenerate peer.crt",
                       path="/etc/kubernetes/pki/etcd/peer.crt", phase="etcd-peer",
                       key_path="/etc/kubernetes/pki/etcd/peer.key") for n in CPS)
    etcd_step = Step("etcd", "etcd", CP, "etcd membership: snapshot-restore",
                     phase="snapshot-restore")
    ap, _ = applier(cluster, nodes, side.snapshots)
    done = ap.apply(Plan("kind", (*steps, etcd_step), "snapshot-restore"))

    assert done == [*(s.key for s in steps), "etcd"]
    assert seen_restore == [True] * 3  # prepared while kubeadm ran
    assert side.counts("stage", "restore") == Counter(
        (w, n) for w in ("stage", "restore") for n in CPS)
    # swapped in and started only after the certificates
    assert side.last("cert") < side.first("restore") < side.first("unpark")
    assert all(nodes[n].files[DB] == _db(CP2, side.revisions) for n in CPS)


def test_an_ipv6_cluster_is_restored_with_ipv6_peer_urls(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """kind ipFamily ipv6 nodes have an IPv4 address too, but etcd advertises, listens and has
    its peer certificate on IPv6 only: the restored membership must name the IPv6 peer URL."""
    cluster, nodes, side = _restore_cluster(monkeypatch, {CP: 1200}, fixture="ipv6-restart")
    manifest = nodes[CP].files[MANIFEST].decode()
    assert "--listen-peer-urls=https://[fc00:f853:ccd:e793::2]:2380" in manifest
    ap, _ = applier(cluster, nodes, side.snapshots)
    snapshot.prepare_restore(Recovery(ap.context()))
    argv = side.restores[CP]
    flags = dict(zip(argv[8::2], argv[9::2]))
    assert flags["--initial-advertise-peer-urls"] == "https://[fc00:f853:ccd:e793::2]:2380"
    assert flags["--initial-cluster"] == f"{CP}=https://[fc00:f853:ccd:e793::2]:2380"


def _cert_wave(cluster: Cluster, nodes: dict[str, FakeNode], side: Side,
               failing: str | None) -> Plan:
    """Each control plane's etcd-peer certificate then the etcd step, as a plan has them;
    kubeadm on `failing` exits 1 as it does on a kubeadm.conf it cannot read, once the
    preparation beside it has staged every member's restore (bounded wait)."""
    made = kubeadm({cp.name: cp.ips() for cp in cluster.control_planes})
    staged = threading.Event()
    real_stage = side.stage

    def stage(node: FakeNode, argv: Sequence[str], stdin: bytes | None) -> ExecResult:
        result = real_stage(node, argv, stdin)
        if set(side.staged) == set(CPS):
            staged.set()
        return result

    def run_kubeadm(node: FakeNode, argv: Sequence[str], stdin: bytes | None) -> ExecResult:
        side.event("cert", node.name)
        if node.name == failing:
            assert staged.wait(5)
            return fail(1, "unable to read config from \"/kind/kubeadm.conf\": no kind "
                           "\"ClusterConfiguration\" is registered for version "
                           "\"kubeadm.k8s.io/v9\"\nTo see the stack trace of this error "
                           "execute with --v=5 or higher\n")
        return made(node, argv, stdin)  # type: ignore[no-any-return]

    for name in CPS:
        nodes[name].on(("kubeadm", "init", "phase", "certs"), run_kubeadm)
        nodes[name].on_script("etcd-stage-restore", stage)
        nodes[name].files[PEER_CRT] = f"{name}'s old peer cert".encode()
        nodes[name].files[PEER_KEY] = f"{name}'s old peer key".encode()
    steps = tuple(Step(f"cert:{n}:etcd-peer", "regen-cert", n, "regenerate peer.crt",
                       path=PEER_CRT, phase="etcd-peer", key_path=PEER_KEY) for n in CPS)
    return Plan("kind", (*steps, Step("etcd", "etcd", CP, "etcd membership: snapshot-restore",
                                      phase="snapshot-restore")), "snapshot-restore")


PEER_CRT, PEER_KEY = "/etc/kubernetes/pki/etcd/peer.crt", "/etc/kubernetes/pki/etcd/peer.key"


def test_a_failing_kubeadm_leaves_etcd_as_it_was_and_the_next_run_finishes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue #9: kubeadm failing on one control plane while the restore was prepared beside the
    certificates left every etcd manifest parked, every member's data restored and the peer
    pair gone; a rerun failed at the same place. Now: one line naming the node and the file,
    the old pairs in place, etcd started again on its own data, and once kubeadm works the
    next run (continuing the journal) does the whole job."""
    revisions: dict[str, int | None] = {CP: 48000, CP2: 48999, CP3: 48500}
    cluster, nodes, side = _restore_cluster(monkeypatch, revisions)
    plan = _cert_wave(cluster, nodes, side, failing=CP2)
    manifests = {n: nodes[n].files[MANIFEST] for n in CPS}
    ap, _ = applier(cluster, nodes, side.snapshots)
    with pytest.raises(KindfixError) as e:
        ap.apply(plan)
    message = e.value.message
    assert message.startswith(f"{CP2}: regenerating {PEER_CRT} failed: exit 1: unable to read "
                              "config from \"/kind/kubeadm.conf\"")
    assert "etcd was started again on its own data" in message
    assert "\n" not in message
    assert e.value.hint is not None and "kindfix repair" in e.value.hint
    for name in CPS:
        node = nodes[name]
        assert node.files[DB] == _db(name, revisions)  # its own data, never swapped out
        assert node.files[MANIFEST] == manifests[name]  # etcd runs again
        assert PARKED not in node.files
        assert SNAPSHOT not in node.files and STAGED not in node.files
        assert not any(p.endswith(".kindfix-old") for p in node.files)
        if name == CP2:
            assert node.files[PEER_CRT] == f"{name}'s old peer cert".encode()
            assert node.files[PEER_KEY] == f"{name}'s old peer key".encode()
    assert side.restores == {}
    assert set(side.staged) == set(CPS)  # it had got that far
    assert side.counts("unprepare") == Counter(("unprepare", n) for n in CPS)
    assert not any(k.startswith("etcd:") for k in ap.recorder.journal.done)
    assert not any(n.startswith("etcd-") for n in ap.recorder.journal.notes)

    # kubeadm.conf fixed: the next repair continues the journal and finishes the job
    ap, _ = resumed(cluster, nodes, side)
    side.staged.clear()
    plan = _cert_wave(cluster, nodes, side, failing=None)
    done = ap.apply(plan)
    assert "etcd" in done
    assert all(nodes[n].files[DB] == _db(CP2, revisions) for n in CPS)
    assert all(PARKED not in nodes[n].files and MANIFEST in nodes[n].files for n in CPS)
    assert side.gw.leader is not None


def _cp3_prepare_fails(monkeypatch: pytest.MonkeyPatch,
                       answer: Callable[[ExecResult], ExecResult]
                       ) -> tuple[dict[str, FakeNode], dict[str, bytes], KindfixError]:
    """The certificate wave with CP3's prepare exec answering `answer(what it did)`; the
    nodes, the manifests before, and the error the apply ends with."""
    cluster, nodes, side = _restore_cluster(monkeypatch, {CP: 48000, CP2: 48999, CP3: 48500})
    plan = _cert_wave(cluster, nodes, side, failing=None)
    real = side.prepare

    def prepare(node: FakeNode, argv: Sequence[str], stdin: bytes | None) -> ExecResult:
        result = real(node, argv, stdin)
        return answer(result) if node.name == CP3 else result

    for name in CPS:
        nodes[name].on_script("etcd-prepare-member", prepare)
    manifests = {n: nodes[n].files[MANIFEST] for n in CPS}
    ap, _ = applier(cluster, nodes, side.snapshots)
    with pytest.raises(KindfixError) as e:
        ap.apply(plan)
    assert side.restores == {}
    return nodes, manifests, e.value


def test_a_failing_preparation_is_undone_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy that fails on one member (its disk full) while the certificates are made: the
    run stops with that error, and the members the preparation stopped run again."""
    nodes, manifests, error = _cp3_prepare_fails(monkeypatch, lambda result: ExecResult(
        4, result.stdout.split(b"@@kindfix-status")[0],  # parked, then the copy failed
        b"cp: error writing: No space left on device\n"))
    assert "No space left on device" in error.message
    assert CP3 in error.message
    assert "etcd was started again on its own data" in error.message
    assert {n: nodes[n].files.get(MANIFEST) for n in CPS} == manifests


def test_a_member_killed_after_its_park_said_nothing_is_started_again_too(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The node stopped while its prepare ran (exit 137): its manifest was parked, but no output
    came. Unknown is not "not parked": the undo puts the manifest back there too (seen on the
    bed: the node came back without etcd while kindfix said etcd was started again)."""
    nodes, manifests, error = _cp3_prepare_fails(
        monkeypatch, lambda _result: ExecResult(137, b"", b""))  # parked, killed, silent
    assert "etcd was started again on its own data" in error.message
    assert {n: nodes[n].files.get(MANIFEST) for n in CPS} == manifests  # CP3's too
    assert PARKED not in nodes[CP3].files

# --- etcd-start-member.sh under a real sh, over a fake systemctl and curl ------------------------

# logs its argv and whether etcd.yaml is there at that moment
FAKE_SYSTEMCTL = ('#!/bin/sh\nm=absent; [ ! -f "$MANIFEST" ] || m=there\n'
                  'echo "systemctl $* (etcd.yaml $m)" >> "$LOG"\n')
# answers (exit 0) from the $SERVE_AFTER-th ask on; before that "connection refused" (exit 7)
FAKE_METRICS_CURL = """#!/bin/sh
n=$(( $(cat "$COUNT" 2>/dev/null || echo 0) + 1 )); echo "$n" > "$COUNT"
echo "curl $*" >> "$LOG"
[ "$n" -ge "$SERVE_AFTER" ] || exit 7
"""
# one running kube-apiserver container, "api1"; logs every call
FAKE_CRICTL_API = """#!/bin/sh
echo "crictl $*" >> "$LOG"
[ "$1" != ps ] || echo api1
"""


def _start_member_sh(tmp_path: Path, wait: int, serve_after: int, systemctl: bool = True,
                     parked_text: str | None = "parked", manifest_text: str | None = None,
                     quiet: bool = False, stopped: bool = False
                     ) -> tuple[subprocess.CompletedProcess[bytes], list[str], Path]:
    """etcd-start-member.sh (or with `quiet` etcd-quiet-apiserver.sh) under a real sh."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tools = {"curl": FAKE_METRICS_CURL, "crictl": FAKE_CRICTL_API,
             **({"systemctl": FAKE_SYSTEMCTL} if systemctl else {})}
    for name, text in tools.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    parked = tmp_path / "parked" / "etcd.yaml"
    parked.parent.mkdir()
    if parked_text is not None:
        parked.write_text(parked_text)
        parked.chmod(0o600)
    manifest = tmp_path / "manifests" / "etcd.yaml"
    manifest.parent.mkdir()
    if manifest_text is not None:
        manifest.write_text(manifest_text)
    log = tmp_path / "log"
    # only the fakes and the coreutils the script and they use: no real systemctl or curl
    for tool in ("rm", "date", "sleep", "cat", "cp", "mv", "dirname", "sync"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    env = {"PATH": str(bin_dir), "LOG": str(log), "COUNT": str(tmp_path / "count"),
           "SERVE_AFTER": str(serve_after), "MANIFEST": str(manifest)}
    sh = shutil.which("sh")
    assert sh is not None
    argv = [sh, "-c", script("etcd-quiet-apiserver"), "kindfix-quiet-apiserver"] if quiet else \
        [sh, "-c", script("etcd-start-member"), "kindfix-start-member", str(parked), str(wait),
         str(manifest), "stopped" if stopped else ""]
    got = subprocess.run(argv, env=env, capture_output=True, timeout=30, check=False)
    return got, (log.read_text().splitlines() if log.exists() else []), parked


def test_start_member_script_puts_etcd_yaml_back_while_the_kubelet_is_stopped(
        tmp_path: Path) -> None:
    got, log, parked = _start_member_sh(tmp_path, wait=10, serve_after=5)
    assert got.returncode == 0, got.stderr
    assert got.stdout.decode() == "@@kindfix-serving\n"
    assert not parked.exists()
    manifest = tmp_path / "manifests" / "etcd.yaml"
    assert manifest.read_text() == "parked"  # put back before the kubelet restarted
    assert manifest.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in manifest.parent.iterdir()) == ["etcd.yaml"]
    # put back while no kubelet runs: only the one started after it sees it
    assert log[:2] == ["systemctl stop kubelet (etcd.yaml absent)",
                       "systemctl start kubelet (etcd.yaml there)"]
    asks = [line for line in log if line.startswith("curl ")]
    assert len(asks) == 5  # both loopbacks each round until the 5th ask answered
    assert asks[0].endswith("http://127.0.0.1:2381/metrics")
    assert asks[1].endswith("http://[::1]:2381/metrics")


def test_quiet_script_stops_an_apiserver_that_answers_no_http_with_no_kubelet_running(
        tmp_path: Path) -> None:
    got, log, _ = _start_member_sh(tmp_path, wait=0, serve_after=10**6, quiet=True)
    assert (got.returncode, got.stdout) == (0, b"@@kindfix apiserver-stopped\n")
    # stopped while no kubelet runs: none restarts it under the old one's back-off
    assert log == ["systemctl stop kubelet (etcd.yaml absent)",
                   "curl -sk --max-time 0.5 -o /dev/null https://127.0.0.1:6443/healthz",
                   "crictl ps -q --state running --name ^kube-apiserver$",
                   "crictl stop api1"]


def test_quiet_script_leaves_an_apiserver_that_answers(tmp_path: Path) -> None:
    got, log, _ = _start_member_sh(tmp_path, wait=0, serve_after=1, quiet=True)
    assert (got.returncode, got.stdout) == (0, b"@@kindfix apiserver-asked\n")
    assert log[0] == "systemctl stop kubelet (etcd.yaml absent)"
    assert not any(line.startswith("crictl") for line in log)


def test_start_member_script_leaves_a_kubelet_this_run_stopped_alone_until_it_starts_it(
        tmp_path: Path) -> None:
    got, log, _ = _start_member_sh(tmp_path, wait=0, serve_after=1, stopped=True)
    assert got.returncode == 0, got.stderr
    assert log == ["systemctl start kubelet (etcd.yaml there)"]


def test_start_member_script_touches_no_container(tmp_path: Path) -> None:
    got, log, _ = _start_member_sh(tmp_path, wait=0, serve_after=1)
    assert (got.returncode, got.stdout) == (0, b"")
    assert not any(line.startswith("crictl") for line in log)


def test_start_member_script_gives_up_quietly_after_its_wait(tmp_path: Path) -> None:
    start = time.monotonic()
    got, log, _ = _start_member_sh(tmp_path, wait=1, serve_after=10**6)
    assert got.returncode == 0, got.stderr
    assert got.stdout == b""
    assert time.monotonic() - start < 10
    assert sum(line.startswith("curl ") for line in log) >= 2


def test_start_member_script_without_a_wait_asks_nothing(tmp_path: Path) -> None:
    got, log, _ = _start_member_sh(tmp_path, wait=0, serve_after=1)
    assert (got.returncode, got.stdout) == (0, b"")
    assert log == ["systemctl stop kubelet (etcd.yaml absent)",
                   "systemctl start kubelet (etcd.yaml there)"]


def test_start_member_script_continued_with_the_manifest_back_already(tmp_path: Path) -> None:
    got, log, _ = _start_member_sh(tmp_path, wait=0, serve_after=1, parked_text=None,
                                   manifest_text="restored")
    assert (got.returncode, got.stdout) == (0, b"")
    assert (tmp_path / "manifests" / "etcd.yaml").read_text() == "restored"
    assert log == ["systemctl stop kubelet (etcd.yaml there)",
                   "systemctl start kubelet (etcd.yaml there)"]


def test_start_member_script_without_either_file_starts_the_kubelet_again(tmp_path: Path) -> None:
    got, log, _ = _start_member_sh(tmp_path, wait=0, serve_after=1, parked_text=None)
    assert got.returncode == 5
    assert b"neither" in got.stderr
    # the kubelet runs again all the same
    assert log == ["systemctl stop kubelet (etcd.yaml absent)",
                   "systemctl start kubelet (etcd.yaml absent)"]


def test_start_member_script_says_where_there_is_no_systemctl(tmp_path: Path) -> None:
    got, _, _ = _start_member_sh(tmp_path, wait=0, serve_after=1, systemctl=False)
    assert (got.returncode, got.stdout) == (0, b"@@kindfix no-systemctl\n")


def test_the_etcd_manifest_the_file_wave_leaves_alone_is_kept_beside_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Parking a member's etcd.yaml needs its backup first; for the one no step rewrites (the
    first control plane's, typically) that backup is made while the file wave runs, not on the
    way to parking it (~1 s on the bed)."""
    cluster, nodes, side = _restore_cluster(monkeypatch, {CP: 48000, CP2: 48999, CP3: 48500})
    kept = threading.Event()
    seen_kept: list[bool] = []
    backup_cp, exec_cp2 = nodes[CP].exec, nodes[CP2].exec

    def on_cp(argv: Sequence[str], stdin: bytes | None = None,
              timeout: float | None = None) -> ExecResult:
        result = backup_cp(argv, stdin, timeout)
        if script_of(argv) == "journal-backup" and argv[4] == MANIFEST:
            kept.set()
        return result

    def on_cp2(argv: Sequence[str], stdin: bytes | None = None,
               timeout: float | None = None) -> ExecResult:
        if script_of(argv) == "journal-replace":  # the file wave's write: slow (bounded)
            seen_kept.append(kept.wait(5))
        return exec_cp2(argv, stdin, timeout)

    monkeypatch.setattr(nodes[CP], "exec", on_cp)
    monkeypatch.setattr(nodes[CP2], "exec", on_cp2)
    rewritten = nodes[CP2].files[MANIFEST] + b"# rewritten\n"
    write = Step("files:cp2-etcd", "write-file", CP2, "rewrite etcd.yaml", path=MANIFEST,
                 content=rewritten)
    etcd_step = Step("etcd", "etcd", CP, "etcd membership: snapshot-restore",
                     phase="snapshot-restore")
    ap, _ = applier(cluster, nodes, side.snapshots)
    done = ap.apply(Plan("kind", (write, etcd_step), "snapshot-restore"))

    assert done == ["files:cp2-etcd", "etcd"]
    assert seen_kept == [True]  # CP's etcd.yaml was kept while CP2's was being written
    kept_files = {(e.node, e.path) for e in ap.recorder.journal.files}
    assert {(CP, MANIFEST), (CP2, MANIFEST), (CP3, MANIFEST)} <= kept_files
    assert len(ap.recorder.journal.files) == len(kept_files)  # each original once
    assert nodes[CP2].files[MANIFEST] == rewritten  # back after the restore, as written


def test_a_nodes_certificates_follow_its_own_files_and_the_preparation_all_files(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Files and certificates are one wave with a lane per node: the first control plane,
    whose files need no change, makes its certificates while another node still writes its
    etcd.yaml, and the preparation (it parks the rewritten etcd.yaml) starts only once every
    node's files are written."""
    cluster, nodes, side = _restore_cluster(monkeypatch, {CP: 48000, CP2: 48999, CP3: 48500})
    made = kubeadm({cp.name: cp.ips() for cp in cluster.control_planes})
    cp_cert = threading.Event()
    seen_cert: list[bool] = []
    exec_cp2 = nodes[CP2].exec

    def cert(node: FakeNode, argv: Sequence[str], stdin: bytes | None) -> ExecResult:
        side.event("cert", node.name)
        if node.name == CP:
            cp_cert.set()
        return made(node, argv, stdin)  # type: ignore[no-any-return]

    def on_cp2(argv: Sequence[str], stdin: bytes | None = None,
               timeout: float | None = None) -> ExecResult:
        if script_of(argv) == "journal-replace":  # CP2's write: slow (bounded wait)
            seen_cert.append(cp_cert.wait(5))
            side.event("written", CP2)
        return exec_cp2(argv, stdin, timeout)

    for name in CPS:
        nodes[name].on(("kubeadm", "init", "phase", "certs"), cert)
    monkeypatch.setattr(nodes[CP2], "exec", on_cp2)
    write = Step("files:cp2-etcd", "write-file", CP2, "rewrite etcd.yaml", path=MANIFEST,
                 content=nodes[CP2].files[MANIFEST] + b"# rewritten\n")
    certs = tuple(Step(f"cert:{n}:etcd-peer", "regen-cert", n, "regenerate peer.crt",
                       path=PEER_CRT, phase="etcd-peer", key_path=PEER_KEY) for n in CPS)
    etcd_step = Step("etcd", "etcd", CP, "etcd membership: snapshot-restore",
                     phase="snapshot-restore")
    ap, _ = applier(cluster, nodes, side.snapshots)
    done = ap.apply(Plan("kind", (write, *certs, etcd_step), "snapshot-restore"))

    assert sorted(done) == sorted([write.key, *(s.key for s in certs), "etcd"])
    assert seen_cert == [True]  # CP's certificates did not wait for CP2's file
    assert side.first("written") < side.first("park")  # nor did the preparation start before
    assert side.counts("cert") == Counter(("cert", n) for n in CPS)
    assert side.last("cert") < side.first("restore")  # swapped in after every certificate


def test_a_failed_file_write_starts_no_preparation(monkeypatch: pytest.MonkeyPatch) -> None:
    """The preparation parks the rewritten etcd.yaml: when a node's write fails, it never
    starts (nothing of etcd is stopped) and the run fails naming the file."""
    cluster, nodes, side = _restore_cluster(monkeypatch, {CP: 48000, CP2: 48999, CP3: 48500})
    nodes[CP2].on_script("journal-replace", lambda *_: fail(1, "No space left on device"))
    write = Step("files:cp2-etcd", "write-file", CP2, "rewrite etcd.yaml", path=MANIFEST,
                 content=nodes[CP2].files[MANIFEST] + b"# rewritten\n")
    etcd_step = Step("etcd", "etcd", CP, "etcd membership: snapshot-restore",
                     phase="snapshot-restore")
    ap, _ = applier(cluster, nodes, side.snapshots)
    with pytest.raises(KindfixError, match=f"{CP2}: writing {MANIFEST} failed"):
        ap.apply(Plan("kind", (write, etcd_step), "snapshot-restore"))
    assert side.counts("park", "copy") == Counter()
    assert not ap.apiservers_due.is_set()


def test_the_apiservers_are_due_once_the_restored_members_start(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The Lease release beside the repair (leases.py) waits for this: set once every member
    was started on its restored data, before the wait for their leader (not at the end of
    the repair: ~1 s later on the bed)."""
    cluster, nodes, side = _restore_cluster(monkeypatch, {CP: 48000, CP2: 48999, CP3: 48500})
    ap, _ = applier(cluster, nodes, side.snapshots)
    ctx = ap.context()
    due_when_waited: list[bool] = []
    real_wait = snapshot._wait_leader
    monkeypatch.setattr(snapshot, "_wait_leader", lambda rec, cp: (
        due_when_waited.append(ctx.apiservers_due.is_set()), real_wait(rec, cp)))
    assert not ctx.apiservers_due.is_set()
    strategy.repair(ctx, "snapshot-restore")
    assert side.counts("unpark") == Counter(("unpark", n) for n in CPS)
    assert due_when_waited == [True] * 3


def test_a_failed_file_write_starts_no_certificates_after_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A lane per node, but one wave: once a node's file write failed, another node still
    writing its files makes no certificates after them (as when certificates were a wave of
    their own), and its written file is journaled as done."""
    cluster, nodes, side = _restore_cluster(monkeypatch, {CP: 48000, CP2: 48999, CP3: 48500})
    cp3_failed = threading.Event()
    nodes[CP3].on_script("journal-replace",
                         lambda *_: (cp3_failed.set(), fail(1, "No space left on device"))[1])
    exec_cp2 = nodes[CP2].exec
    seen_failure: list[bool] = []

    def on_cp2(argv: Sequence[str], stdin: bytes | None = None,
               timeout: float | None = None) -> ExecResult:
        if script_of(argv) == "journal-replace":  # CP2 writes until CP3's write failed
            seen_failure.append(cp3_failed.wait(5))
            time.sleep(0.2)  # CP3's lane ends meanwhile
        return exec_cp2(argv, stdin, timeout)

    monkeypatch.setattr(nodes[CP2], "exec", on_cp2)
    nodes[CP2].on(("kubeadm", "init", "phase", "certs"), lambda *_: side.event("cert", CP2))
    writes = tuple(Step(f"files:{n}-etcd", "write-file", n, "rewrite etcd.yaml", path=MANIFEST,
                        content=nodes[n].files[MANIFEST] + b"# rewritten\n") for n in (CP2, CP3))
    certs = tuple(Step(f"cert:{n}:etcd-peer", "regen-cert", n, "regenerate peer.crt",
                       path=PEER_CRT, phase="etcd-peer", key_path=PEER_KEY) for n in (CP2, CP3))
    ap, _ = applier(cluster, nodes, side.snapshots)
    with pytest.raises(KindfixError, match=f"{CP3}: writing {MANIFEST} failed"):
        ap.apply(Plan("kind", (*writes, *certs), "none"))
    assert seen_failure == [True]
    assert side.counts("cert") == Counter()  # no certificate after the failure
    saved = nodes[CP].files[f"/kind/kindfix/journal/{ap.recorder.run_id}.json"]
    assert f"files:{CP2}-etcd".encode() in saved  # CP2's write: done, and saved so
