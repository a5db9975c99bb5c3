"""`kindfix etcd members|health` over fixture dumps: with quorum, without, and a member whose
peer URL is stale in etcd's own member list."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from kindfix.audit import audit
from kindfix.etcdview import NO_LEADER, SERVING, STARTING, etcd_view
from kindfix.observe import NodeSnapshot
from kindfix.probes import ETCD_PROBE
from kindfix.runtime import ExecResult
from tests.unit.helpers_nodes import dump
from tests.unit.test_cli import Run, run  # noqa: F401  (the CLI fixture)

FIXTURES = "fixtures/dumps"


def test_with_quorum_every_member_is_listed_by_every_control_plane() -> None:
    cluster, snapshots, _ = dump("ha-3cp-healthy")
    view = etcd_view(cluster, snapshots)
    assert view.quorum is True and view.healthy
    assert [m.state for m in view.members] == [SERVING] * 3
    assert all(m.urls_from == "member list" and m.urls_current for m in view.members)
    assert all(len(m.seen_by) == 3 for m in view.members)
    assert [m.is_leader for m in view.members] == [True, False, False]
    assert {v.cluster_id for v in view.views} == {"746639831928934902"}
    # highest revision ties (48213): the raft index decides
    newest = [m for m in view.members if m.most_up_to_date]
    assert [m.node for m in newest] == ["kind-control-plane3"]
    assert newest[0].raft_index == max(m.raft_index or 0 for m in view.members)


def test_without_quorum_metrics_and_manifests_stand_in_for_the_member_list() -> None:
    cluster, snapshots, _ = dump("ha-3cp-permuted")
    view = etcd_view(cluster, snapshots)
    assert view.quorum is False and not view.healthy
    assert [m.state for m in view.members] == [NO_LEADER] * 3
    assert all(m.urls_from == "etcd.yaml" and m.seen_by == () for m in view.members)
    assert all(v.error for v in view.views)
    newest = [m.node for m in view.members if m.most_up_to_date]
    revisions = {m.node: m.revision for m in view.members}
    assert newest == [max(revisions, key=lambda n: revisions[n])]
    assert any("LOST" in line for line in view.diagnosis)
    assert any("peer.crt does not cover" in line for line in view.diagnosis)


def _with_member_list(snapshots: dict[str, NodeSnapshot], node: str, peer: str
                      ) -> dict[str, NodeSnapshot]:
    """The node's probe output with the first listed member's peer URL replaced."""
    snap = snapshots[node]
    result = snap.commands[ETCD_PROBE]
    text = result.stdout.decode()
    head, _, rest = text.partition('"peerURLs":["')
    old, _, tail = rest.partition('"]')
    text = head + '"peerURLs":["' + peer + '"]' + tail
    commands = {**snap.commands, ETCD_PROBE: ExecResult(result.exit_code, text.encode(), b"")}
    assert old != peer
    return {**snapshots, node: replace(snap, commands=commands)}


def test_a_stale_peer_url_in_the_member_list_is_shown_and_named() -> None:
    cluster, snapshots, _ = dump("ha-3cp-healthy")
    # every control plane's list says kind-control-plane2 (listed first) peers on .9
    for cp in cluster.control_planes:
        snapshots = _with_member_list(snapshots, cp.name, "https://172.18.0.9:2380")
    view = etcd_view(cluster, snapshots)
    row = next(m for m in view.members if m.node == "kind-control-plane2")
    assert row.urls_current is False and row.urls_from == "member list"
    assert not view.healthy
    assert any("kind-control-plane2: peer URL https://172.18.0.9:2380 is not this node's "
               "address 172.18.0.4" in line for line in view.diagnosis)


def test_a_member_that_has_not_answered_yet_is_unknown_not_lost() -> None:
    cluster, snapshots, _ = dump("ha-3cp-healthy")
    silent = ExecResult(0, b"\n@@kindfix-section member-list 7\ncurl: (7) Failed to connect\n"
                        b"@@kindfix-section status 7\n\n@@kindfix-section health 7\n\n"
                        b"@@kindfix-section metrics 1\n\n@@kindfix-section end 0\n", b"")
    snapshots = {n: replace(s, commands={**s.commands, ETCD_PROBE: silent})
                 for n, s in snapshots.items()}
    view = etcd_view(cluster, snapshots, audit(cluster, snapshots))
    assert [m.state for m in view.members] == [STARTING] * 3
    assert view.quorum is not False
    assert any("unknown" in line for line in view.diagnosis)
    assert not any(m.most_up_to_date for m in view.members)


@pytest.mark.parametrize(("dump_name", "code"), [("ha-3cp-healthy", 0),
                                                  ("ha-3cp-permuted", 4)])
def test_cli_health_exit_code_and_json(run: Run, dump_name: str, code: int,  # noqa: F811
                                       capsys: pytest.CaptureFixture[str]) -> None:
    r = run(["etcd", "health", "--from-dump", f"{FIXTURES}/{dump_name}"])
    assert r.code == code
    capsys.readouterr()  # the fixture echoes each result
    r = run(["etcd", "members", "--from-dump", f"{FIXTURES}/{dump_name}", "-o", "json"])
    assert r.code == 0
    data = json.loads(r.out)
    assert data["healthy"] is (code == 0)
    assert len(data["members"]) == 3
    assert {"node", "state", "member_id", "peer_urls", "urls_current", "revision",
            "most_up_to_date", "seen_by"} <= set(data["members"][0])


def test_cli_members_table_names_the_newest_member(run: Run) -> None:  # noqa: F811
    r = run(["etcd", "members", "--from-dump", f"{FIXTURES}/ha-3cp-permuted"])
    assert r.code == 0
    assert "most up to date: kind-control-plane2" in r.out
    assert "(etcd.yaml)" in r.out and "no leader" in r.out


def test_leaderless_members_without_evidence_are_said_to_be_electing_not_lost() -> None:
    cluster, snapshots, _ = dump("ha-3cp-healthy")  # files all current: no evidence
    leaderless = ExecResult(0, b"\n@@kindfix-section member-list 28\nskipped: etcd reports no "
                            b"leader\n@@kindfix-section status 28\n\n@@kindfix-section health 0\n"
                            b'{"health":"false"}\n@@kindfix-section metrics 0\n'
                            b"etcd_server_has_leader 0\netcd_debugging_mvcc_current_revision 7\n"
                            b"@@kindfix-section end 0\n", b"")
    snapshots = {n: replace(s, commands={**s.commands, ETCD_PROBE: leaderless})
                 for n, s in snapshots.items()}
    view = etcd_view(cluster, snapshots)
    assert view.quorum is None
    assert [m.state for m in view.members] == [NO_LEADER] * 3
    assert "3 answer without a leader" in view.diagnosis[0]
    assert "LOST" not in view.diagnosis[0]
