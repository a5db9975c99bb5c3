"""Finding a kind cluster from the engine's labels and networks (kindfix/discovery.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kindfix.discovery import (
    default_cluster_name,
    discover,
    list_clusters,
    network_name,
    require_running,
)
from kindfix.errors import KindfixError
from kindfix.runtime import ContainerInfo, Endpoint
from tests.fakes import FakeRuntime, container

KIND_ORDER = ["dev-control-plane", "dev-control-plane2", "dev-control-plane3",
              "dev-control-plane10", "dev-external-load-balancer", "dev-worker", "dev-worker2",
              "dev-worker11"]


@pytest.fixture(autouse=True)
def _no_kind_network_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KIND_EXPERIMENTAL_DOCKER_NETWORK", raising=False)


def role_of(name: str) -> str:
    for role in ("control-plane", "external-load-balancer", "worker"):
        if role in name:
            return role
    raise AssertionError(name)


def test_nodes_are_ordered_as_kind_numbers_them() -> None:
    names = [KIND_ORDER[i] for i in (5, 3, 7, 0, 4, 2, 6, 1)]  # any order the engine lists
    rt = FakeRuntime()
    for i, name in enumerate(names):
        rt.add(container(name, role_of(name), f"172.18.0.{i + 2}", cluster="dev"))
    cluster = discover(rt, "dev")
    assert [n.name for n in cluster.nodes] == KIND_ORDER
    assert [n.name for n in cluster.control_planes][-1] == "dev-control-plane10"
    lb = cluster.load_balancer
    assert lb is not None
    assert lb.name == "dev-external-load-balancer"
    assert cluster.endpoint() == lb
    assert "dev-external-load-balancer" not in {n.name for n in cluster.kube_nodes}


def test_other_clusters_and_unlabelled_containers_are_ignored() -> None:
    rt = FakeRuntime()
    rt.add(container("kind-control-plane", "control-plane", "172.18.0.3"))
    rt.add(container("other-control-plane", "control-plane", "172.18.0.4", cluster="other"))
    rt.add(ContainerInfo("id-registry", "kind-registry", "registry:2", "running", {},
                         {"kind": Endpoint("kind", "172.18.0.9", None)}))
    cluster = discover(rt, "kind")
    assert [n.name for n in cluster.nodes] == ["kind-control-plane"]
    assert list_clusters(rt) == ["kind", "other"]


def test_unknown_cluster_error_lists_the_known_ones() -> None:
    rt = FakeRuntime().add(container("other-control-plane", "control-plane", "172.18.0.4",
                                     cluster="other"))
    with pytest.raises(KindfixError, match="no kind cluster named 'kind'") as e:
        discover(rt, "kind")
    assert e.value.hint is not None
    assert "other" in e.value.hint
    with pytest.raises(KindfixError) as empty:
        discover(FakeRuntime(), "kind")
    assert empty.value.hint is not None
    assert "DOCKER_HOST" in empty.value.hint


def test_network_and_cluster_name_from_kind_environment() -> None:
    assert network_name({}) == "kind"
    assert network_name({"KIND_EXPERIMENTAL_DOCKER_NETWORK": "kind-ci"}) == "kind-ci"
    assert default_cluster_name({}) == "kind"
    assert default_cluster_name({"KIND_CLUSTER_NAME": "dev"}) == "dev"


def test_experimental_network_variable_picks_the_network(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    rt = FakeRuntime()
    info = container("kind-control-plane", "control-plane", "10.0.0.3", network="kind-ci")
    nets = {**info.networks, "kind": Endpoint("kind", "172.18.0.3", None)}
    rt.add(replace(info, networks=nets))
    monkeypatch.setenv("KIND_EXPERIMENTAL_DOCKER_NETWORK", "kind-ci")
    cluster = discover(rt, "kind")
    assert cluster.network == "kind-ci"
    assert cluster.nodes[0].ipv4 == "10.0.0.3"
    monkeypatch.delenv("KIND_EXPERIMENTAL_DOCKER_NETWORK")
    assert discover(rt, "kind").nodes[0].ipv4 == "172.18.0.3"


def test_falls_back_to_the_only_network_the_cluster_is_on() -> None:
    rt = FakeRuntime()
    rt.add(container("kind-control-plane", "control-plane", "10.1.0.3", network="ci-net"))
    rt.add(container("kind-worker", "worker", "10.1.0.2", network="ci-net"))
    cluster = discover(rt, "kind")
    assert cluster.network == "ci-net"
    assert [n.ipv4 for n in cluster.nodes] == ["10.1.0.3", "10.1.0.2"]


def test_a_node_on_exactly_one_other_network_still_gets_its_address() -> None:
    rt = FakeRuntime()
    rt.add(container("kind-control-plane", "control-plane", "172.18.0.3"))
    rt.add(container("kind-worker", "worker", "10.1.0.2", network="ci-net"))
    cluster = discover(rt, "kind")
    assert cluster.network == "kind"
    assert cluster.node("kind-worker") is not None
    assert cluster.node("kind-worker").ipv4 == "10.1.0.2"  # type: ignore[union-attr]


def test_pinned_addresses_are_reported() -> None:
    rt = FakeRuntime()
    info = container("kind-control-plane", "control-plane", "172.18.0.3")
    rt.add(replace(info, networks={"kind": Endpoint("kind", "172.18.0.3", "fc00::3",
                                                    "172.18.0.3", None)}))
    [node] = discover(rt, "kind", "kind").nodes
    assert (node.pinned_ipv4, node.pinned_ipv6) == ("172.18.0.3", None)
    assert node.ips() == ("172.18.0.3", "fc00::3")


def test_require_running_names_the_stopped_node_and_the_fix() -> None:
    rt = FakeRuntime()
    rt.add(container("kind-control-plane", "control-plane", "172.18.0.3"))
    rt.add(container("kind-worker", "worker", None, state="exited"))
    with pytest.raises(KindfixError, match="node kind-worker is exited, not running") as e:
        require_running(discover(rt, "kind", "kind"))
    assert e.value.hint is not None
    assert "docker start kind-worker" in e.value.hint


def test_require_running_ignores_a_stopped_load_balancer_but_not_a_missing_address() -> None:
    rt = FakeRuntime()
    rt.add(container("kind-control-plane", "control-plane", "172.18.0.3"))
    rt.add(container("kind-external-load-balancer", "external-load-balancer", None,
                     state="exited"))
    require_running(discover(rt, "kind", "kind"))  # must not raise
    rt.add(container("kind-worker", "worker", None))
    with pytest.raises(KindfixError, match="kind-worker has no address on network 'kind'") as e:
        require_running(discover(rt, "kind", "kind"))
    assert e.value.hint is not None
    assert "KIND_EXPERIMENTAL_DOCKER_NETWORK" in e.value.hint


def _legacy(name: str, cluster: str, role: str) -> ContainerInfo:
    # kind v0.5 and older: io.k8s.sigs.kind.* labels (kind v0.6 moved to io.x-k8s.kind.*)
    return replace(container(name, role, "172.17.0.2"), labels={
        "io.k8s.sigs.kind.cluster": cluster, "io.k8s.sigs.kind.role": role})


def test_a_cluster_made_by_kind_0_5_or_older_is_named_unsupported() -> None:
    rt = FakeRuntime()
    rt.add(_legacy("old-control-plane", "old", "control-plane"))
    with pytest.raises(KindfixError, match=r"cluster 'old' was made by kind v0.5 or older "
                                           r"\(labels io.k8s.sigs.kind.\*\)") as e:
        discover(rt, "old")
    assert e.value.hint and "kind v0.6 or newer" in e.value.hint


def test_a_node_of_a_kind_0_5_cluster_given_as_the_name_points_at_its_cluster() -> None:
    rt = FakeRuntime()
    rt.add(_legacy("old-worker", "old", "worker"))
    with pytest.raises(KindfixError, match=r"old-worker is a node of cluster 'old', made by "
                                           r"kind v0.5 or older"):
        discover(rt, "old-worker")


def test_a_current_cluster_of_the_same_name_wins_over_a_legacy_one() -> None:
    rt = FakeRuntime()
    rt.add(_legacy("kind-control-plane-old", "kind", "control-plane"))
    rt.add(container("kind-control-plane", "control-plane", "172.18.0.2"))
    assert [n.name for n in discover(rt, "kind").nodes] == ["kind-control-plane"]
