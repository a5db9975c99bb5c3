"""etcd membership repair (kindfix/recovery/): manifest flags, choosing the member to
force, the node-side scripts (run for real with the host's sh), and both strategies over
FakeNodes talking to a fake etcd gateway."""

from __future__ import annotations

import os
import stat
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kindfix import nodescripts, probes
from kindfix.discovery import ClusterNode
from kindfix.errors import KindfixError
from kindfix.recovery import force_new, leader, member_update, state, strategy
from kindfix.recovery.manifest import DATA_DIR, MANIFEST, PARKED, peer_url, set_flags
from kindfix.recovery.state import Recovery
from kindfix.yamlpath import YamlDocument
from tests.fakes import FakeNode, fail, ok
from tests.unit.helpers_etcd import FakeEtcd, member
from tests.unit.helpers_nodes import applier, dump, sh

COMMAND = "spec.containers[name=etcd].command"


def etcd_command(manifest: bytes) -> list[str]:
    doc = YamlDocument(manifest, "etcd.yaml")
    return [str(x) for x in next(c for c in doc.data["spec"]["containers"]
                                 if c["name"] == "etcd")["command"]]


def flag(manifest: bytes, name: str) -> str | None:
    refs = YamlDocument(manifest, "etcd.yaml").find(f"{COMMAND}[flag={name}]")
    return refs[0].get() if refs else None


# --- set_flags on the fixtures' real etcd.yaml ---------------------------------------------

def _joiner_manifest() -> bytes:
    _, snaps, _ = dump("ha-3cp-permuted")
    raw = snaps["kind-control-plane2"].file(MANIFEST)
    assert raw is not None
    return raw


def test_set_flags_adds_removes_and_replaces() -> None:
    before = _joiner_manifest()
    assert flag(before, "--initial-cluster-state") == "existing"
    after = set_flags(before, {"--initial-cluster": "kind-control-plane2=https://172.18.0.3:2380",
                               "--initial-cluster-state": None,
                               "--force-new-cluster": ""}, "cp2:etcd.yaml")
    cmd = etcd_command(after)
    assert flag(after, "--initial-cluster") == "kind-control-plane2=https://172.18.0.3:2380"
    assert "--initial-cluster-state" not in " ".join(cmd)
    assert cmd.count("--force-new-cluster") == 1
    untouched = [c for c in etcd_command(before)
                 if not c.startswith(("--initial-cluster=", "--initial-cluster-state="))]
    assert [c for c in cmd if c != "--force-new-cluster"
            and not c.startswith("--initial-cluster=")] == untouched
    # the rest of the pod is still there and still valid YAML
    doc = YamlDocument(after, "etcd.yaml")
    assert doc.data["spec"]["containers"][0]["image"] == "registry.k8s.io/etcd:3.5.10-0"
    assert doc.find("spec.containers[name=etcd].livenessProbe.httpGet.host")[0].get() == \
        "127.0.0.1"


def test_set_flags_removal_is_exact_and_idempotent() -> None:
    forced = set_flags(_joiner_manifest(), {"--force-new-cluster": ""}, "x")
    once = set_flags(forced, {"--force-new-cluster": None, "--initial-cluster": None}, "x")
    twice = set_flags(once, {"--force-new-cluster": None, "--initial-cluster": None}, "x")
    assert once == twice
    assert "--force-new-cluster" not in etcd_command(once)
    assert flag(once, "--initial-cluster") is None
    assert flag(once, "--initial-cluster-state") == "existing"  # a longer flag is not a prefix


def test_set_flags_on_every_fixture_manifest_round_trips() -> None:
    for name in ("single-cp-healthy", "ipv6-healthy", "kubeadm-v1beta2-restart",
                 "kubeadm-v1beta4-healthy"):
        _, snaps, _ = dump(name)
        raw = snaps["kind-control-plane"].file(MANIFEST)
        assert raw is not None
        out = set_flags(raw, {"--initial-cluster-state": "existing"}, name)
        assert flag(out, "--initial-cluster-state") == "existing"
        assert flag(out, "--advertise-client-urls") == flag(raw, "--advertise-client-urls")


# --- peer URLs -----------------------------------------------------------------------------

def test_peer_url_brackets_ipv6_and_prefers_ipv4() -> None:
    v6 = ClusterNode("kind-control-plane", "control-plane", "running", None,
                     "fc00:f853:ccd:e793::3", "img")
    dual = ClusterNode("kind-control-plane", "control-plane", "running", "172.18.0.3",
                       "fc00:f853:ccd:e793::3", "img")
    assert peer_url(v6) == "https://[fc00:f853:ccd:e793::3]:2380"
    assert peer_url(dual) == "https://172.18.0.3:2380"


# --- choosing the member to force ------------------------------------------------------------

def _metrics_from_probe(node: FakeNode, probe_output: str) -> None:
    code, body = probes.split_sections(probe_output)["metrics"]
    assert code == 0
    node.on(("curl",), ok(body + "\n"))


def test_choose_picks_the_highest_revision_from_the_fixture_metrics() -> None:
    cluster, snaps, nodes = dump("ha-3cp-permuted")  # README: control-plane2 is the highest
    for name, node in nodes.items():
        if node.role == "control-plane":
            out = snaps[name].output(probes.ETCD_PROBE)
            assert out is not None
            _metrics_from_probe(node, out.text())
    ap, said = applier(cluster, nodes)
    assert leader.choose(Recovery(ap.context())).name == "kind-control-plane2"
    assert any("most up-to-date member: kind-control-plane2 (revision" in s for s in said)


def _three(revisions: dict[str, int | None]) -> tuple[Recovery, list[str]]:
    cluster, _, nodes = dump("ha-3cp-healthy")
    gw = FakeEtcd([], leader=None)
    for name, rev in revisions.items():
        if rev is None:
            nodes[name].on(("curl",), fail(7, "curl: (7) Failed to connect to 127.0.0.1 port 2381"))
        else:
            gw.metrics_by_node[name] = {"etcd_debugging_mvcc_current_revision": rev,
                                        "etcd_server_proposals_applied_total": 500}
            gw.attach(nodes[name])
    ap, said = applier(cluster, nodes)
    return Recovery(ap.context()), said


def test_choose_breaks_a_tie_by_control_plane_order() -> None:
    rec, _ = _three({"kind-control-plane": 900, "kind-control-plane2": 1000,
                     "kind-control-plane3": 1000})
    assert leader.choose(rec).name == "kind-control-plane2"
    rec, _ = _three({"kind-control-plane3": 7, "kind-control-plane2": 7, "kind-control-plane": 7})
    assert leader.choose(rec).name == "kind-control-plane"


def test_choose_without_any_metrics_takes_the_first_control_plane() -> None:
    rec, said = _three({"kind-control-plane": None, "kind-control-plane2": None,
                        "kind-control-plane3": None})
    assert leader.choose(rec).name == "kind-control-plane"
    assert any("metrics unavailable, first control plane" in s for s in said)


# --- node-side scripts, for real ------------------------------------------------------------

def test_park_moves_the_manifest_out_and_keeps_the_first_parked_copy(tmp_path: Path) -> None:
    manifests, parked = tmp_path / "manifests", tmp_path / "parked"
    manifests.mkdir()
    (manifests / "etcd.yaml").write_bytes(b"v1")
    assert sh(nodescripts.script("etcd-park"), str(manifests / "etcd.yaml"), str(parked)).returncode == 0
    assert not (manifests / "etcd.yaml").exists()
    assert (parked / "etcd.yaml").read_bytes() == b"v1"
    (manifests / "etcd.yaml").write_bytes(b"v2 written by a later stage")
    assert sh(nodescripts.script("etcd-park"), str(manifests / "etcd.yaml"), str(parked)).returncode == 0
    assert (parked / "etcd.yaml").read_bytes() == b"v1"
    assert sh(nodescripts.script("etcd-park"), str(manifests / "etcd.yaml"), str(parked)).returncode == 0


def _data_dir(root: Path) -> Path:
    data = root / "etcd"
    (data / "member" / "snap").mkdir(parents=True)
    (data / "member" / "wal").mkdir()
    (data / "member" / "snap" / "db").write_bytes(os.urandom(4096))
    (data / "member" / "wal" / "0000000000000000-0000000000000000.wal").write_bytes(b"w" * 999)
    return data


def _corrupting_cp(tmp_path: Path) -> dict[str, str]:
    """A `cp` on PATH that copies, then flips the copied db: a copy that differs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "cp"
    shim.write_text('#!/bin/sh\n/bin/cp "$@" || exit $?\n'
                    'prev=""; t=""; for a in "$@"; do [ "$prev" = -t ] && t="$a"; '
                    'prev="$a"; last="$a"; done\n'
                    '[ -n "$t" ] || t="$last"\n'
                    '[ ! -f "$t/member/snap/db" ] || printf x >> "$t/member/snap/db"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_copy_data_copies_and_verifies(tmp_path: Path) -> None:
    src = _data_dir(tmp_path)
    (src / "member" / "wal" / "0.tmp").write_bytes(bytes(4096))  # the preallocated next WAL
    dst = tmp_path / "backup" / "data"
    assert sh(nodescripts.script("etcd-copy-data"), str(src), str(dst)).returncode == 0
    for f in src.rglob("*"):
        if f.is_file() and f.name != "0.tmp":
            assert (dst / f.relative_to(src)).read_bytes() == f.read_bytes()
    assert not (dst / "member" / "wal" / "0.tmp").exists()
    assert oct(dst.stat().st_mode & 0o777) == "0o700"
    kept = dst.stat().st_ino
    assert sh(nodescripts.script("etcd-copy-data"), str(src), str(dst)).returncode == 0
    assert dst.stat().st_ino == kept  # a killed run's copy, still the same: not redone


def test_a_copy_the_data_moved_on_from_is_made_anew(tmp_path: Path) -> None:
    """A copy kept from before etcd ran again (a preparation undone, then continued: the
    backup would miss what etcd wrote in between) is replaced by a checked copy; a live copy
    (member update, etcd running) is kept as it is."""
    src = _data_dir(tmp_path)
    dst = tmp_path / "backup" / "data"
    assert sh(nodescripts.script("etcd-copy-data"), str(src), str(dst)).returncode == 0
    live = tmp_path / "backup" / "live"
    assert sh(nodescripts.script("etcd-copy-live"), str(src), str(live)).returncode == 0
    (src / "member" / "snap" / "db").write_bytes(b"newer")
    p = sh(nodescripts.script("etcd-copy-data"), str(src), str(dst))
    assert p.returncode == 0, p.stderr
    assert b"changed since it was copied" in p.stderr
    assert (dst / "member" / "snap" / "db").read_bytes() == b"newer"
    assert sorted(q.name for q in dst.parent.iterdir()) == ["data", "live"]  # no .old, no .tmp
    assert sh(nodescripts.script("etcd-copy-live"), str(src), str(live)).returncode == 0
    assert (live / "member" / "snap" / "db").read_bytes() != b"newer"


def test_copy_data_leaves_the_zeros_of_a_preallocated_wal_segment_as_holes(tmp_path: Path
                                                                         ) -> None:
    """etcd preallocates a WAL segment (64 MB) and writes records from its start: the copy
    holds the same bytes (checked by copy_data itself) without writing the zeros."""
    src = _data_dir(tmp_path)
    wal = src / "member" / "wal" / "0000000000000000-0000000000000000.wal"
    with wal.open("ab") as f:
        f.write(b"\0" * (8 << 20))  # written zeros: blocks allocated, as fallocate leaves them
        os.fsync(f.fileno())
    assert wal.stat().st_blocks * 512 >= 8 << 20
    dst = tmp_path / "backup" / "data"
    p = sh(nodescripts.script("etcd-copy-data"), str(src), str(dst))
    assert p.returncode == 0, p.stderr
    copied = dst / "member" / "wal" / wal.name
    assert copied.read_bytes() == wal.read_bytes()
    assert copied.stat().st_blocks * 512 < 1 << 20
    assert not (dst / ".kindfix-probe").exists()


def test_copy_data_fails_on_a_copy_that_differs(tmp_path: Path) -> None:
    src = _data_dir(tmp_path)
    dst = tmp_path / "backup" / "data"
    p = subprocess.run(["sh", "-c", nodescripts.script("etcd-copy-data"), "t", str(src), str(dst)],
                       capture_output=True, timeout=30, env=_corrupting_cp(tmp_path), check=False)
    assert p.returncode == 4, p.stderr
    assert b"differs from the original" in p.stderr
    assert not dst.exists()  # only dst.tmp: a later run copies again


def part(name: str) -> str:
    """A shared part of the node scripts (kindfix/scripts/lib/<name>.sh): its functions alone."""
    return nodescripts._part(name)[1]


def _stub(name: str, body: str) -> str:
    return f"{name}() {{\n{body}\n}}\n"


# etcd_running stub: prints a command line on the calls listed in $RUNNING_ON (1-based), counting
# its calls in the file $CALLS.
_ETCD_RUNNING_ON = _stub("etcd_running", r"""
n=$(($(cat "$CALLS" 2>/dev/null || echo 0) + 1)); echo "$n" > "$CALLS"
case " $RUNNING_ON " in *" $n "*) echo "etcd --data-dir=/var/lib/etcd";; esac""")


@pytest.mark.parametrize(("running_on", "quiet", "calls"), [
    ("", "4", 4),             # never ran: four quiet checks
    ("1 2", "4", 6),          # stopping: two busy checks, then four quiet ones
    ("1 3 5", "4", 9),        # restarted by the kubelet after a quiet check: quiet counts from 0
    ("", "2", 2),            # two
    ("1 3", "2", 5),         # busy, quiet, busy, then two quiet
    ("", "1", 1),            # after park stopped the kubelet: one
    ("1 2", "1", 3),         # still stopping: busy, busy, then one quiet
])
def test_wait_stopped_needs_its_quiet_checks_in_a_row(tmp_path: Path, running_on: str,
                                                      quiet: str, calls: int) -> None:
    counter, slept = tmp_path / "calls", tmp_path / "slept"
    p = subprocess.run(["sh", "-c", _ETCD_RUNNING_ON + part("wait-stopped")
                        + _stub("sleep", 'echo "$1" >> "$SLEPT"') + f"wait_stopped {quiet}\n"],
                       capture_output=True, timeout=30, check=False,
                       env={**os.environ, "CALLS": str(counter), "RUNNING_ON": running_on,
                            "SLEPT": str(slept)})
    assert p.returncode == 0, p.stderr
    assert int(counter.read_text()) == calls
    # 0.25 s between checks, none after the last: it ends as soon as the last check is quiet
    naps = slept.read_text().split() if slept.exists() else []
    assert naps == ["0.25"] * (calls - 1)


def _copy_checked(tmp_path: Path, copy_codes: str) -> tuple[subprocess.CompletedProcess[bytes],
                                                             list[str]]:
    """_COPY_CHECKED with copy_data answering the codes in $CODES in turn and a wait_stopped
    that records each call."""
    log = tmp_path / "log"
    stubs = (_stub("copy_data", r"""
k=0; [ ! -f "$LOG" ] || k=$(grep -c copy "$LOG" || true)
set -- $CODES; shift "$k"
echo copy >> "$LOG"; return "$1" """)
             + _stub("wait_stopped", 'echo wait >> "$LOG"'))
    p = subprocess.run(["sh", "-c", stubs + part("copy-checked") + 'copy_checked "$1" "$2"\n', "t", "src", "dst"],
                       capture_output=True, timeout=30, check=False,
                       env={**os.environ, "LOG": str(log), "CODES": copy_codes})
    return p, log.read_text().split()


def test_copy_checked_copies_again_after_etcd_wrote_during_the_copy(tmp_path: Path) -> None:
    p, log = _copy_checked(tmp_path, "4 0")
    assert p.returncode == 0, p.stderr
    assert log == ["copy", "wait", "copy"]
    assert b"copying again once it is stopped" in p.stderr


def test_copy_checked_gives_up_after_three_differing_copies(tmp_path: Path) -> None:
    p, log = _copy_checked(tmp_path, "4 4 4 0")
    assert p.returncode == 4
    assert log == ["copy", "wait", "copy", "wait", "copy"]


def test_copy_checked_does_not_retry_other_failures(tmp_path: Path) -> None:
    p, log = _copy_checked(tmp_path, "3 0")
    assert p.returncode == 3
    assert log == ["copy"]


def test_copy_data_without_a_data_dir_fails(tmp_path: Path) -> None:
    p = sh(nodescripts.script("etcd-copy-data"), str(tmp_path / "none"), str(tmp_path / "dst"))
    assert p.returncode == 3
    assert b"no data dir" in p.stderr


def test_set_aside_moves_member_dir_away(tmp_path: Path) -> None:
    data = _data_dir(tmp_path)
    backup = tmp_path / "backup"  # no checked copy there
    stale = backup / "stale"
    assert sh(nodescripts.script("etcd-set-aside"), str(data), str(backup)).returncode == 0
    assert not (data / "member").exists()
    [moved] = list(stale.iterdir())
    assert moved.name.startswith("member-")
    assert (moved / "snap" / "db").exists()
    assert sh(nodescripts.script("etcd-set-aside"), str(data), str(backup)).returncode == 0  # nothing left
    assert len(list(stale.iterdir())) == 1


def test_set_aside_removes_a_member_the_same_as_its_checked_copy(tmp_path: Path) -> None:
    data = _data_dir(tmp_path)
    (data / "member" / "wal" / "1.tmp").write_bytes(bytes(4096))  # not in copies: not compared
    backup = tmp_path / "backup"
    assert sh(nodescripts.script("etcd-copy-data"), str(data), str(backup / "data")).returncode == 0
    copied = {p.relative_to(backup): p.read_bytes() for p in backup.rglob("*") if p.is_file()}
    assert sh(nodescripts.script("etcd-set-aside"), str(data), str(backup)).returncode == 0
    assert sorted(p.name for p in data.iterdir()) == []  # gone, no .kindfix-gone left
    assert {p.relative_to(backup): p.read_bytes() for p in backup.rglob("*")
            if p.is_file()} == copied  # the copy untouched, nothing in stale


# --- member-update, over FakeNodes --------------------------------------------------------

def test_member_update_fixes_the_stale_peer_url_and_copies_data_unverified(
        tmp_path: Path) -> None:
    cluster, _, nodes = dump("single-cp-restart-v0.15")  # member still at .3, node now .2
    node = nodes["kind-control-plane"]
    gw = FakeEtcd([member("7671205030997561825", "kind-control-plane", "172.18.0.3")],
                  leader="7671205030997561825")
    gw.attach(node)
    node.on(("sh", "-c"), ok())  # data copy, restart of the etcd container
    ap, _ = applier(cluster, nodes)
    member_update.member_update(Recovery(ap.context()))

    assert gw.members[0]["peerURLs"] == ["https://172.18.0.2:2380"]
    done = ap.recorder.journal.done
    assert {"etcd:copy:kind-control-plane", "etcd:restart:kind-control-plane"} <= set(done)
    [copy] = [c for c in node.calls if c[:2] == ("sh", "-c") and "kindfix-copy" in c]
    assert copy[-2:] == (DATA_DIR, f"{ap.recorder.backup_dir()}/etcd-kind-control-plane/data")
    # etcd is running during member-update: the copy must not insist on identical checksums
    src = _data_dir(tmp_path)
    p = subprocess.run(["sh", "-c", copy[2], "t", str(src), str(tmp_path / "d")],
                       capture_output=True, timeout=30, env=_corrupting_cp(tmp_path), check=False)
    assert p.returncode == 0, p.stderr


# --- force-new-cluster, over FakeNodes ------------------------------------------------------

OLD = {"kind-control-plane": "172.18.0.3", "kind-control-plane2": "172.18.0.4",
       "kind-control-plane3": "172.18.0.5"}  # ha-3cp-permuted's creation addresses


def _etcd_side(nodes: dict[str, FakeNode], gw: FakeEtcd) -> None:
    """What the kubelet and etcd do with the manifests kindfix writes."""
    def react(g: FakeEtcd) -> None:
        for name, node in nodes.items():
            text = node.files.get(MANIFEST, b"").decode()
            if "--force-new-cluster" in text and g.leader is None:
                g.members = [m for m in g.members if m["name"] == name]
                g.leader = g.members[0]["ID"]
            if "--initial-cluster-state=existing" in text:
                for m in g.members:
                    if not m.get("name") and any(name == n and m["peerURLs"][0].endswith(
                            f"{ip}:2380") for n, ip in CURRENT.items()):
                        m["name"] = name
                        m["clientURLs"] = [m["peerURLs"][0].replace("2380", "2379")]

    gw.before = react
    gw.serving = lambda n: MANIFEST in n.files

    def forced_running(node: FakeNode, *_: Any) -> Any:  # the scan of /proc
        forced = b"--force-new-cluster" in node.files.get(MANIFEST, b"")
        return ok("1\n" if forced else "0\n")

    def park(node: FakeNode, argv: Any, _stdin: Any) -> Any:
        if argv[4] in node.files:
            node.files.setdefault(f"{argv[5]}/etcd.yaml", node.files[argv[4]])
            del node.files[argv[4]]
        return ok()

    def unpark(node: FakeNode, *_: Any) -> Any:
        node.files.pop(PARKED, None)
        return ok()

    for node in nodes.values():
        if node.role != "control-plane":
            continue
        gw.attach(node)
        node.on(("sh", "-c"), ok())  # data copy, set-aside, stop of the etcd container
        node.on_script("etcd-forced-running", forced_running)
        node.on_script("etcd-park", park)
        node.on(("rm", "-f", PARKED), unpark)


CURRENT: dict[str, str] = {}


def _permuted(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, dict[str, FakeNode], FakeEtcd]:
    # bounded waits; sleeps skipped: the fake answers at once
    monkeypatch.setattr(state, "WAIT", 1.0)
    monkeypatch.setattr(force_new.time, "sleep", lambda _s: None)
    cluster, _, nodes = dump("ha-3cp-permuted")
    CURRENT.clear()
    CURRENT.update({n.name: str(n.ipv4) for n in cluster.control_planes})
    gw = FakeEtcd([member(str(1000 + i), name, ip) for i, (name, ip) in enumerate(OLD.items())],
                  leader=None, refuse_add=1)
    gw._next_id = 2000
    gw.metrics_by_node["kind-control-plane2"] = {"etcd_debugging_mvcc_current_revision": 48999}
    _etcd_side(nodes, gw)
    return cluster, nodes, gw


def test_force_new_cluster_rebuilds_membership_on_current_ips(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, nodes, gw = _permuted(monkeypatch)
    ap, said = applier(cluster, nodes)
    strategy.repair(ap.context(), "force-new-cluster")
    _assert_rebuilt(ap, nodes, gw)
    assert any("kind-control-plane joined" in s for s in said)


def test_force_new_cluster_continues_after_a_run_killed_once_the_forced_member_runs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, nodes, gw = _permuted(monkeypatch)
    gw.refuse_update = 1  # the first run dies at the self-update, after "forced"
    ap, _ = applier(cluster, nodes)
    with pytest.raises(KindfixError, match="refused /v3/cluster/member/update"):
        strategy.repair(ap.context(), "force-new-cluster")
    assert "etcd:forced" in ap.recorder.journal.done
    strategy.repair(ap.context(), "force-new-cluster")  # the next `kindfix repair` continues
    _assert_rebuilt(ap, nodes, gw)


def _assert_rebuilt(ap: Any, nodes: dict[str, FakeNode], gw: FakeEtcd) -> None:
    assert "etcd-best=kind-control-plane2" in ap.recorder.journal.notes
    want = {n: f"https://{ip}:2380" for n, ip in CURRENT.items()}
    assert {m["name"]: m["peerURLs"][0] for m in gw.members} == want
    for name, node in nodes.items():
        if node.role != "control-plane":
            continue
        manifest = node.files[MANIFEST]
        assert "--force-new-cluster" not in etcd_command(manifest)
        assert PARKED not in node.files
        if name == "kind-control-plane2":
            assert flag(manifest, "--initial-cluster") == f"{name}={want[name]}"
        else:
            assert flag(manifest, "--initial-cluster-state") == "existing"
            members = dict(e.split("=", 1) for e in str(flag(manifest, "--initial-cluster"))
                           .split(","))
            assert members[name] == want[name]
            assert set(members.items()) <= set(want.items())
    best_calls = nodes["kind-control-plane2"].calls
    assert any(c[:2] == ("sh", "-c") and "[-]-force-new-cluster" in c[2] for c in best_calls)
    done = set(ap.recorder.journal.done)
    assert {"etcd:forced", "etcd:self-update", "etcd:unforced", "etcd:added:kind-control-plane",
            "etcd:added:kind-control-plane3"} <= done


class FakeClock:
    """time.monotonic/time.sleep for recovery/leader.py: sleeping advances the clock at once."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_deciding_gives_up_early_when_every_member_runs_without_a_leader(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(leader, "time", clock)
    cluster, _, nodes = dump("ha-3cp-permuted")
    gw = FakeEtcd([member(str(1000 + i), name, ip) for i, (name, ip) in enumerate(OLD.items())],
                  leader=None)
    gw.attach(*(nodes[c.name] for c in cluster.control_planes))
    ap, _ = applier(cluster, nodes)
    rec = Recovery(ap)
    assert leader.leader_within(rec, 30, give_up_without_leader=5) is None
    assert 1005 <= clock.now < 1010  # not the whole 30 s
    # the client port (which hangs without a leader) was never asked
    assert not any(path.startswith("/v3/") for _, path, _ in gw.requests)
    clock.now = 1000.0
    assert leader.leader_within(rec, 30) is None  # without the early exit: the full wait
    assert clock.now >= 1030


def test_deciding_finds_a_member_with_a_leader(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leader, "time", FakeClock())
    cluster, _, nodes = dump("ha-3cp-permuted")
    gw = FakeEtcd([member(str(1000 + i), name, ip) for i, (name, ip) in enumerate(OLD.items())],
                  leader="1000")
    gw.attach(*(nodes[c.name] for c in cluster.control_planes))
    ap, _ = applier(cluster, nodes)
    assert leader.leader_within(Recovery(ap.context()), 30, give_up_without_leader=5) is nodes["kind-control-plane"]


def test_member_update_restarts_each_etcd_through_the_pod_restart_script() -> None:
    from kindfix.node import RESTART_PODS

    cluster, _, nodes = dump("single-cp-restart-v0.15")
    node = nodes["kind-control-plane"]
    gw = FakeEtcd([member("7671205030997561825", "kind-control-plane", "172.18.0.3")],
                  leader="7671205030997561825")
    gw.attach(node)
    node.on(("sh", "-c"), ok())
    ap, _ = applier(cluster, nodes)
    member_update.member_update(Recovery(ap.context()))
    assert ("sh", "-c", RESTART_PODS, "kindfix-restart", "etcd") in node.calls


# --- an odd etcd.yaml during apply: one line naming the file (issue #9) -----------------------

ODD_MANIFESTS = {
    "no spec": b"apiVersion: v1\nkind: Pod\nmetadata: {name: etcd}\n",
    "containers not a list": b"apiVersion: v1\nkind: Pod\nspec: {containers: etcd}\n",
    "no etcd container": b"apiVersion: v1\nkind: Pod\nspec:\n  containers:\n"
                        b"  - name: etcd-sidecar\n    image: busybox\n",
    "a list at the top": b"- spec: {}\n",
    "no image": b"spec:\n  containers:\n  - name: etcd\n    command: [etcd]\n",
    "command as one string": b"spec:\n  containers:\n  - name: etcd\n    image: e\n"
                             b"    command: etcd --name=x\n",
}


NO_COMMAND = {k: v for k, v in ODD_MANIFESTS.items() if k != "no image"}


@pytest.mark.parametrize("raw", NO_COMMAND.values(), ids=NO_COMMAND.keys())
def test_set_flags_on_an_odd_manifest_is_one_line_naming_the_file(raw: bytes) -> None:
    """Before: StopIteration, KeyError or TypeError (exit 3, a traceback)."""
    with pytest.raises(KindfixError) as e:
        set_flags(raw, {"--force-new-cluster": ""}, "kind-control-plane:/kind/kindfix/parked/"
                  "etcd.yaml")
    assert e.value.message.startswith("kind-control-plane:/kind/kindfix/parked/etcd.yaml ") \
        or e.value.message.startswith("kind-control-plane:/kind/kindfix/parked/etcd.yaml: ")
    assert "\n" not in e.value.message


@pytest.mark.parametrize("raw", [v for k, v in ODD_MANIFESTS.items()
                                 if k != "command as one string"],
                         ids=[k for k in ODD_MANIFESTS if k != "command as one string"])
def test_a_snapshot_restore_over_an_odd_observed_manifest_stops_naming_the_file(
        raw: bytes) -> None:
    """The etcd image comes from the observed etcd.yaml: an odd one is a one-line error
    before any member is stopped."""
    cluster, snaps, nodes = dump("ha-3cp-permuted")
    first = cluster.control_planes[0].name
    snaps = {**snaps, first: replace(snaps[first], files={**snaps[first].files, MANIFEST: raw})}
    ap, _ = applier(cluster, nodes, snaps)
    with pytest.raises(KindfixError) as e:
        strategy.repair(ap.context(), "snapshot-restore")
    assert e.value.message.startswith((f"{first}:{MANIFEST}: ", f"{first}:{MANIFEST} "))
    assert "\n" not in e.value.message
    assert all(PARKED not in n.files for n in nodes.values())  # nothing stopped
