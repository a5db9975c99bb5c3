"""Dumps on disk: collect -> write -> load, redaction, errors (kindfix/dump.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kindfix import probes
from kindfix.audit import audit
from kindfix.discovery import discover
from kindfix.dump import MANIFEST, _container_from_json, collect, load_dump, redact, write_dump
from kindfix.errors import KindfixError
from kindfix.observe import NodeSnapshot, snapshot_cluster
from kindfix.runtime import ExecResult, NetworkInfo
from tests.fakes import FakeNode, FakeRuntime, container
from tests.unit.helpers_nodes import DUMPS, dump

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
        rt.add(info, node)
    return rt


def test_collect_write_load_round_trip(tmp_path: Path) -> None:
    rt = engine_from_fixture("ha-3cp-permuted")
    cluster = discover(rt, "kind")
    snaps = snapshot_cluster(cluster, lambda n: rt.nodes[n.name])
    assert set(snaps) == {n.name for n in cluster.nodes if n.running}
    out = collect(rt, "kind", tmp_path / "dump", snaps)

    loaded, loaded_snaps = load_dump(out)
    assert loaded == cluster
    for name, snap in snaps.items():
        got = loaded_snaps[name]
        assert got.role == snap.role
        want = {p: redact(c) for p, c in snap.files.items()
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
    out = collect(rt, "kind", tmp_path, snaps)

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


def test_redact_leaves_ordinary_text_alone() -> None:
    text = b"server: https://172.18.0.3:6443\ntokens: 3\n# client-key-data is secret\n"
    assert redact(text) == text


def test_a_token_in_a_list_item_is_redacted() -> None:
    # kubeadm's bootstrapTokens in /kind/kubeadm.conf
    conf = b'bootstrapTokens:\n- token: "abcdef.0123456789abcdef"\n  ttl: 24h\n'
    assert b"0123456789abcdef" not in redact(conf)


def test_load_dump_ignores_other_clusters_and_stopped_nodes(tmp_path: Path) -> None:
    ours = container("kind-control-plane", "control-plane", "172.18.0.3")
    stopped = container("kind-worker", "worker", None, state="exited")
    theirs = container("other-control-plane", "control-plane", "172.18.0.4", cluster="other")
    snap = NodeSnapshot("kind-control-plane", "control-plane", {"/kind/old-ipv4": b"172.18.0.3"})
    worker = NodeSnapshot("kind-worker", "worker", {"/kind/old-ipv4": b"172.18.0.2"})
    write_dump(tmp_path, "kind", None, [ours, stopped, theirs],
               {"kind-control-plane": snap, "kind-worker": worker})
    cluster, snaps = load_dump(tmp_path)
    assert [n.name for n in cluster.nodes] == ["kind-control-plane", "kind-worker"]
    assert set(snaps) == {"kind-control-plane"}
    assert snaps["kind-control-plane"].file("/kind/old-ipv4") == b"172.18.0.3"
    assert snaps["kind-control-plane"].file("/kind/old-ipv6") is None


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
    collect(rt, "kind", tmp_path, one)
    _, loaded = load_dump(tmp_path)
    assert loaded["kind-control-plane"].output(probes.ETCD_PROBE) == out
