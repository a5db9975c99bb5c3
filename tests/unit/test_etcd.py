"""The local etcd member through curl and the JSON gateway (kindfix/etcd.py)."""

from __future__ import annotations

import time

import pytest

from kindfix import etcd
from kindfix.errors import KindfixError
from tests.fakes import FakeNode, fail, ok
from tests.unit.helpers_etcd import FakeEtcd, member

CP = "kind-control-plane"


def cluster_of_one(loopback: str = "127.0.0.1") -> tuple[FakeNode, FakeEtcd]:
    node = FakeNode(CP)
    gw = FakeEtcd([member("7671205030997561825", CP, "172.18.0.3")],
                  leader="7671205030997561825", loopback=loopback)
    gw.attach(node)
    return node, gw


def test_call_posts_with_the_healthcheck_client_certificate() -> None:
    node, _ = cluster_of_one()
    data = etcd.call(node, "/v3/cluster/member/list")
    assert data["members"][0]["name"] == CP
    [argv] = node.calls
    assert argv[0] == "curl"
    assert argv[-1] == "https://127.0.0.1:2379/v3/cluster/member/list"
    flags = dict(zip(argv[1:-1], argv[2:-1]))
    assert flags["--cert"] == "/etc/kubernetes/pki/etcd/healthcheck-client.crt"
    assert flags["--key"] == "/etc/kubernetes/pki/etcd/healthcheck-client.key"
    assert flags["--cacert"] == "/etc/kubernetes/pki/etcd/ca.crt"
    assert flags["-d"] == "{}"


def test_call_reports_a_curl_failure_with_its_message() -> None:
    node, gw = cluster_of_one()
    gw.leader = None  # no quorum: the client port hangs until curl's --max-time
    with pytest.raises(KindfixError, match=r"etcd on kind-control-plane did not answer "
                       r"/v3/maintenance/status: curl: \(28\) Operation timed out"):
        etcd.call(node, "/v3/maintenance/status")
    assert len(node.calls) == 1  # a timeout is not a reason to try [::1]


def test_call_rejects_non_json_and_gateway_errors() -> None:
    node = FakeNode(CP).on(("curl",), ok("<html>404 page not found</html>"))
    with pytest.raises(KindfixError, match="non-JSON: <html>404"):
        etcd.call(node, "/v3/cluster/member/list")
    refused = FakeNode(CP).on(("curl",), ok(
        '{"error":"etcdserver: unhealthy cluster","code":14,'
        '"message":"etcdserver: unhealthy cluster"}'))
    with pytest.raises(KindfixError, match="refused /v3/cluster/member/add: etcdserver: "
                       "unhealthy cluster"):
        etcd.member_add(refused, ["https://172.18.0.4:2380"])


def test_ipv6_member_is_reached_on_loopback_v6_after_curl_exit_7() -> None:
    node, _ = cluster_of_one(loopback="[::1]")
    assert [m.name for m in etcd.members(node)] == [CP]
    assert [c[-1] for c in node.calls] == ["https://127.0.0.1:2379/v3/cluster/member/list",
                                          "https://[::1]:2379/v3/cluster/member/list"]


def test_nothing_listening_on_either_loopback_is_an_error() -> None:
    node = FakeNode(CP).on(("curl",), fail(7, "curl: (7) Failed to connect to ::1 port 2379"))
    with pytest.raises(KindfixError, match="did not answer"):
        etcd.call(node, "/v3/cluster/member/list")
    assert len(node.calls) == 2


def test_members_update_and_add_speak_decimal_string_ids() -> None:
    node, gw = cluster_of_one()
    [m] = etcd.members(node)
    assert (m.id, m.peer_urls, m.client_urls) == ("7671205030997561825",
                                                 ("https://172.18.0.3:2380",),
                                                 ("https://172.18.0.3:2379",))
    etcd.member_update(node, m.id, ["https://172.18.0.2:2380"])
    assert gw.requests[-1] == (CP, "/v3/cluster/member/update",
                               {"ID": "7671205030997561825",
                                "peerURLs": ["https://172.18.0.2:2380"]})
    assert etcd.members(node)[0].peer_urls == ("https://172.18.0.2:2380",)
    added = etcd.member_add(node, ["https://172.18.0.4:2380"])
    assert added.peer_urls == ("https://172.18.0.4:2380",)
    assert added.id.isdigit()
    assert added.name == ""  # not started yet: etcd lists an unnamed member


def test_status_and_healthy() -> None:
    node, gw = cluster_of_one()
    st = etcd.status(node)
    assert st is not None
    assert st["header"]["revision"] == "1342"
    assert etcd.healthy(node)
    gw.leader = "0"
    assert not etcd.healthy(node)
    gw.leader = None
    assert etcd.status(node) is None
    assert not etcd.healthy(node)


def test_metrics_are_read_even_without_a_leader() -> None:
    node, gw = cluster_of_one()
    gw.leader = None
    gw.metrics_by_node[CP] = {"etcd_debugging_mvcc_current_revision": 48211}
    m = etcd.metrics(node)
    assert m == {"etcd_server_has_leader": 0, "etcd_debugging_mvcc_current_revision": 48211,
                 "etcd_server_proposals_applied_total": 1459}


def test_metrics_parsing_skips_comments_labels_and_bad_values() -> None:
    text = ("# HELP etcd_server_has_leader Whether or not a leader exists.\n"
            "# TYPE etcd_server_has_leader gauge\n"
            "etcd_server_has_leader 1\n"
            "etcd_debugging_mvcc_keys_total 8.74e+02\n"
            'etcd_server_proposals_applied_total{x="y"} 5\n'
            "etcd_debugging_mvcc_current_revision NaNish\n")
    node = FakeNode(CP).on(("curl",), ok(text))
    assert etcd.metrics(node) == {"etcd_server_has_leader": 1,
                                  "etcd_debugging_mvcc_keys_total": 874}
    down = FakeNode(CP).on(("curl",), fail(7, "curl: (7) Failed to connect"))
    assert etcd.metrics(down) == {}


def test_wait_until_returns_as_soon_as_the_predicate_holds() -> None:
    answers = iter([False, False, True])
    etcd.wait_until(lambda: next(answers), "three tries", timeout=5, interval=0.01)
    assert next(answers, "drained") == "drained"


def test_wait_until_is_bounded_and_names_the_last_error() -> None:
    def refuse() -> bool:
        raise KindfixError("etcd on kind-control-plane did not answer")

    start = time.monotonic()
    with pytest.raises(KindfixError, match=r"timed out after 0s waiting for etcd to lead "
                       r"\(last error: etcd on kind-control-plane did not answer\)") as e:
        etcd.wait_until(refuse, "etcd to lead", timeout=0.2, interval=0.05)
    assert time.monotonic() - start < 2
    assert e.value.hint is not None
    assert "kindfix repair" in e.value.hint
