"""Dumps on disk: collect -> write -> load, redaction, errors (kindfix/dump.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from kindfix import probes
from kindfix.audit import audit
from kindfix.discovery import discover
from kindfix.dump import MANIFEST, collect, load_dump, write_dump
from kindfix.dump_load import _container_from_json
from kindfix.errors import CommandError, KindfixError
from kindfix.observe import NodeSnapshot, snapshot_cluster
from kindfix.redact import redact
from kindfix.runtime import ExecResult, NetworkInfo
from tests.fakes import FakeNode, FakeRuntime, container
from tests.unit import test_cli
from tests.unit.helpers_nodes import DUMPS, dump

Run = test_cli.Run
run = test_cli.run  # the one CLI fixture, shared

KEY_PEM = (b"-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo\n"
           b"4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u\n"
           b"-----END RSA PRIVATE KEY-----\n")
CERT_PEM = b"-----BEGIN CERTIFICATE-----\nMIIC7jCCAdagAwIBAgIINWy\n-----END CERTIFICATE-----\n"


@pytest.fixture(autouse=True)
def _no_kind_network_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KIND_EXPERIMENTAL_DOCKER_NETWORK", raising=False)


def engine_from_fixture(name: str) -> FakeRuntime:
    """A FakeRuntime holding a fixture dump's containers, network and (running) nodes, whose
    probes answer what the fixture recorded."""
    manifest = json.loads((DUMPS / name / MANIFEST).read_text())
    rt = FakeRuntime(networks={manifest["network"]["name"]: NetworkInfo(**manifest["network"])})
    _, snaps, nodes = dump(name)
    for raw in manifest["containers"]:
        info = _container_from_json(raw)
        node = nodes.get(info.name)
        if node is not None:
            for argv, result in snaps[info.name].commands.items():
                node.on(argv, result)
        else:  # a stopped container: the engine still gives its files (docker cp)
            root = DUMPS / name / "nodes" / info.name / "files"
            node = FakeNode(info.name, info.labels["io.x-k8s.kind.role"], files={
                "/" + f.relative_to(root).as_posix(): f.read_bytes()
                for f in root.rglob("*") if f.is_file()})
        rt.add(info, node)
    return rt


def test_collect_write_load_round_trip(tmp_path: Path) -> None:
    rt = engine_from_fixture("ha-3cp-permuted")
    cluster = discover(rt, "kind")
    snaps = snapshot_cluster(cluster, lambda n: rt.nodes[n.name])
    assert set(snaps) == {n.name for n in cluster.nodes if n.running}
    out = collect(rt, "kind", tmp_path / "dump", lambda n: rt.nodes[n.name])

    loaded, loaded_snaps = load_dump(out)
    assert loaded == cluster
    for name, snap in snaps.items():
        got = loaded_snaps[name]
        assert got.role == snap.role
        want = {p: redact(c, p) for p, c in snap.files.items()
                if c is not None and not p.endswith(".key")}
        assert {p: c for p, c in got.files.items() if c is not None} == want
        assert got.commands == snap.commands
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["network"]["subnets"] == ["172.18.0.0/16", "fc00:f853:ccd:e793::/64"]
    # audit reads the written dump exactly as it reads the original
    assert audit(loaded, loaded_snaps) == audit(*load_dump(DUMPS / "ha-3cp-permuted"))


def _one_node(files: dict[str, bytes | None], commands: dict[tuple[str, ...], ExecResult]
              ) -> tuple[FakeRuntime, dict[str, NodeSnapshot]]:
    rt = FakeRuntime().add(container("kind-control-plane", "control-plane", "172.18.0.3"),
                           FakeNode("kind-control-plane"))
    return rt, {"kind-control-plane": NodeSnapshot("kind-control-plane", "control-plane", files,
                                                   commands)}


def _write(rt: FakeRuntime, out: Path, snaps: dict[str, NodeSnapshot]) -> Path:
    return write_dump(out, "kind", None, rt.list_containers({}), snaps)


def test_secrets_are_redacted_and_key_files_never_written(tmp_path: Path) -> None:
    kubeconfig = (b"apiVersion: v1\nusers:\n- name: kubernetes-admin\n  user:\n"
                  b"    client-certificate-data: LS0tLS1CRUdJTiBDRVJU\n"
                  b"    client-key-data: LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVk\n"
                  b"- name: bot\n  user:\n    token: eyJhbGciOiJSUzI1NiJ9.payload.sig\n")
    files: dict[str, bytes | None] = {
        "/etc/kubernetes/admin.conf": kubeconfig,
        "/etc/kubernetes/pki/apiserver.crt": CERT_PEM + KEY_PEM,
        "/etc/kubernetes/pki/apiserver.key": KEY_PEM,
        "/kind/old-ipv6": None,
    }
    probe = ExecResult(0, b"token: s3cr3t\n" + KEY_PEM, b"")
    rt, snaps = _one_node(files, {("sh", "-c", "probe"): probe})
    out = _write(rt, tmp_path / "dump", snaps)

    written = {p.relative_to(out).as_posix(): p.read_bytes()
               for p in out.rglob("*") if p.is_file()}
    everything = b"".join(written.values())
    assert b"MIIEowIBAAKCAQEA" not in everything
    assert b"LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVk" not in everything
    assert b"eyJhbGciOiJSUzI1NiJ9" not in everything
    assert b"s3cr3t" not in everything
    assert "nodes/kind-control-plane/files/etc/kubernetes/pki/apiserver.key" not in written
    assert "nodes/kind-control-plane/files/kind/old-ipv6" not in written
    admin = written["nodes/kind-control-plane/files/etc/kubernetes/admin.conf"]
    assert b"client-key-data: REDACTED\n" in admin
    assert b"token: REDACTED\n" in admin
    assert b"client-certificate-data: LS0tLS1CRUdJTiBDRVJU" in admin  # not a secret: kept
    crt = written["nodes/kind-control-plane/files/etc/kubernetes/pki/apiserver.crt"]
    assert crt.startswith(CERT_PEM)  # the certificate itself is kept
    assert b"-----BEGIN RSA PRIVATE KEY-----\nREDACTED\n-----END RSA PRIVATE KEY-----" in crt


def test_load_dump_ignores_other_clusters_and_a_stopped_load_balancer(tmp_path: Path) -> None:
    ours = container("kind-control-plane", "control-plane", "172.18.0.3")
    lb = container("kind-external-load-balancer", "external-load-balancer", None, state="exited")
    theirs = container("other-control-plane", "control-plane", "172.18.0.4", cluster="other")
    snap = NodeSnapshot("kind-control-plane", "control-plane", {"/kind/old-ipv4": b"172.18.0.3"})
    write_dump(tmp_path, "kind", None, [ours, lb, theirs], {"kind-control-plane": snap})
    cluster, snaps = load_dump(tmp_path)
    assert [n.name for n in cluster.nodes] == ["kind-control-plane", "kind-external-load-balancer"]
    assert set(snaps) == {"kind-control-plane"}
    assert snaps["kind-control-plane"].file("/kind/old-ipv4") == b"172.18.0.3"
    assert snaps["kind-control-plane"].file("/kind/old-ipv6") is None


def _stopped_worker_cluster() -> FakeRuntime:
    rt = engine_from_fixture("single-cp-restart-v0.15")
    rt.containers["kind-worker"] = replace(rt.containers["kind-worker"], state="exited",
                                           networks={})
    return rt


class _Unreadable(FakeNode):
    def read_files(self, paths: Sequence[str]) -> dict[str, bytes | None]:
        raise CommandError(["sh", "-c", "..."], 125, b"", b"container is restarting", self.name)


def test_collect_dumps_a_cluster_with_a_stopped_node_and_records_its_state(
        tmp_path: Path, run: Run) -> None:
    rt = _stopped_worker_cluster()
    r = run(["collect", "--output", str(tmp_path / "dump")], rt)
    assert r.code == 0, r.err
    manifest = json.loads((tmp_path / "dump" / MANIFEST).read_text())
    [unread] = manifest["unread"]
    assert unread["node"] == "kind-worker"
    assert unread["state"] == "exited"
    assert "not running" in unread["reason"]
    # what a stopped container still gives (docker cp works on it) is in the dump
    kubelet = tmp_path / "dump/nodes/kind-worker/files/var/lib/kubelet/kubeadm-flags.env"
    assert kubelet.read_bytes() == rt.nodes["kind-worker"].files[
        "/var/lib/kubelet/kubeadm-flags.env"]
    assert (tmp_path / "dump/nodes/kind-control-plane/commands.json").is_file()


def test_a_dump_with_a_stopped_node_is_refused_as_a_live_audit_refuses_it(
        tmp_path: Path, run: Run) -> None:
    rt = _stopped_worker_cluster()
    live = run(["audit"], rt)
    assert live.code == 1
    assert "kind-worker is exited, not running" in live.err
    assert run(["collect", "--output", str(tmp_path / "dump")], rt).code == 0
    offline = run(["audit", "--from-dump", str(tmp_path / "dump")], rt)
    assert offline.code == 1  # was: exit 0, "consistent" for the nodes it had
    [line, hint] = offline.err.splitlines()
    assert line == (f"kindfix: error: {tmp_path / 'dump' / MANIFEST}: node kind-worker was "
                    "exited when the dump was collected, not running")
    assert "docker start kind-worker" in hint


def test_a_node_that_cannot_be_read_is_recorded_and_the_rest_dumped(tmp_path: Path) -> None:
    rt = engine_from_fixture("single-cp-restart-v0.15")
    out = collect(rt, "kind", tmp_path / "dump", lambda n: rt.nodes[n.name] if n.role !=
                  "worker" else _Unreadable(n.name, n.role))
    manifest = json.loads((out / MANIFEST).read_text())
    [unread] = manifest["unread"]
    assert unread["node"] == "kind-worker"
    assert "could not be read" in unread["reason"]
    assert (out / "nodes/kind-control-plane/files/etc/kubernetes/admin.conf").is_file()
    with pytest.raises(KindfixError, match="kind-worker could not be read"):
        load_dump(out)


def test_collect_refuses_a_non_empty_directory_and_mixes_nothing_in(tmp_path: Path,
                                                                     run: Run) -> None:
    rt = engine_from_fixture("single-cp-healthy")
    out = tmp_path / "dump"
    out.mkdir()
    (out / "old-note.txt").write_text("from an old dump\n")
    r = run(["collect", "--output", str(out)], rt)
    assert r.code == 1
    assert r.err.splitlines()[0] == (f"kindfix: error: {out} exists and is not an empty "
                                     "directory")
    assert sorted(p.name for p in out.iterdir()) == ["old-note.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_collect_never_writes_through_a_symlink(tmp_path: Path, run: Run) -> None:
    rt = engine_from_fixture("single-cp-healthy")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "dump").symlink_to(elsewhere)
    r = run(["collect", "--output", str(tmp_path / "dump")], rt)
    assert r.code == 1
    assert "is a symlink" in r.err
    assert list(elsewhere.iterdir()) == []


def test_collect_into_an_empty_directory_fills_it(tmp_path: Path) -> None:
    rt = engine_from_fixture("single-cp-healthy")
    (tmp_path / "dump").mkdir()
    out = collect(rt, "kind", tmp_path / "dump", lambda n: rt.nodes[n.name])
    assert (out / MANIFEST).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dump"]
    load_dump(out)


def test_a_directory_without_a_manifest_is_not_a_dump(tmp_path: Path) -> None:
    with pytest.raises(KindfixError, match="is not a kindfix dump") as e:
        load_dump(tmp_path)
    assert e.value.hint is not None
    assert "kindfix collect" in e.value.hint


def test_unknown_format_and_broken_json_are_refused(tmp_path: Path) -> None:
    manifest = json.loads((DUMPS / "single-cp-healthy" / MANIFEST).read_text())
    manifest["format"] = 2
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(KindfixError, match="unsupported dump format 2") as e:
        load_dump(tmp_path)
    assert e.value.hint == "this kindfix reads format 1"
    (tmp_path / MANIFEST).write_text('{"format": 1,')
    with pytest.raises(KindfixError, match="is not valid JSON"):
        load_dump(tmp_path)


def test_probe_outputs_survive_the_round_trip_byte_for_byte(tmp_path: Path) -> None:
    _, snaps, _ = dump("ipv6-healthy")
    out = snaps["kind-control-plane"].output(probes.ETCD_PROBE)
    assert out is not None
    rt, one = _one_node({}, {probes.ETCD_PROBE: out})
    _write(rt, tmp_path / "dump", one)
    _, loaded = load_dump(tmp_path / "dump")
    assert loaded["kind-control-plane"].output(probes.ETCD_PROBE) == out


def test_a_dump_recorded_by_an_older_kindfix_still_shows_its_etcd_probe(tmp_path: Path) -> None:
    # an older kindfix sent another text of the same node script (e.g. with a leading newline,
    # before the scripts were files): the probe's output is found by its $0 and arguments
    import shutil

    from kindfix import api

    fixtures = Path(__file__).resolve().parents[2] / "fixtures" / "dumps"
    old = tmp_path / "ha-3cp-permuted"
    shutil.copytree(fixtures / "ha-3cp-permuted", old)
    for commands in old.glob("nodes/*/commands.json"):
        recorded = json.loads(commands.read_text())
        for entry in recorded:
            if entry["argv"][:2] == ["sh", "-c"]:
                entry["argv"][2] = "\n" + entry["argv"][2] + "# as an older kindfix sent it\n"
        commands.write_text(json.dumps(recorded))
    now = api.audit_dump(fixtures / "ha-3cp-permuted")
    then = api.audit_dump(old)
    assert then.etcd == now.etcd
    assert then.etcd.size == 3 and then.etcd.revisions  # the probe's answers were read
