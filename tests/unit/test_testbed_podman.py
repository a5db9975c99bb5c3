"""testbed/podman.py's pure parts: kind's network shape, the ulimits drop-in, inspect parsing."""

from __future__ import annotations

import json
import resource
import subprocess
from pathlib import Path

import pytest

from testbed import podman

# kind's own table (pkg/cluster/internal/providers/docker/network_test.go; the podman provider
# uses the same generateULASubnetFromName)
KIND_ULA_CASES = [
    ("kind", 0, "fc00:f853:ccd:e793::/64"),
    ("foo", 1, "fc00:8edf:7f02:ec8f::/64"),
    ("foo", 2, "fc00:9968:306b:2c65::/64"),
    ("kind2", 0, "fc00:444c:147a:44ab::/64"),
    ("kin", 0, "fc00:fcd9:c2be:8e23::/64"),
    ("mysupernetwork", 0, "fc00:7ae1:1e0d:b4d4::/64"),
]

# `podman network inspect kind` as podman 4.3.1 printed it on this machine family
INSPECT = """[
     {
          "name": "kind",
          "id": "5de4005889c8531cfc395a321ec035e5103d3ba750478aef851eac581b05c07a",
          "driver": "bridge",
          "network_interface": "podman1",
          "subnets": [
               {"subnet": "fc00:f853:ccd:e793::/64", "gateway": "fc00:f853:ccd:e793::1"},
               {"subnet": "10.89.0.0/24", "gateway": "10.89.0.1"}
          ],
          "ipv6_enabled": true,
          "dns_enabled": true,
          "labels": {"dev.kindfix.testbed": "abc123"},
          "ipam_options": {"driver": "host-local"}
     }
]"""


@pytest.mark.parametrize(("name", "attempt", "subnet"), KIND_ULA_CASES)
def test_ula_subnet_is_kinds(name: str, attempt: int, subnet: str) -> None:
    assert podman.kind_ula_subnet(name, attempt) == subnet


def test_network_argv_is_kinds_plus_labels() -> None:
    argv = podman.kind_network_argv("kind", "fc00:f853:ccd:e793::/64", {"b": "2", "a": "1"})
    assert argv == ["podman", "network", "create", "-d=bridge", "--ipv6",
                    "--subnet", "fc00:f853:ccd:e793::/64",
                    "--label", "a=1", "--label", "b=2", "kind"]


def test_ulimits_stay_within_this_machine() -> None:
    text = podman.ulimits_conf(nofile=(1024, 20000), nproc=(96365, 96365))
    # soft = hard; nproc capped where podman 4.3 puts its own limit
    assert 'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]' in text
    assert "network_backend" not in text  # a podman already on CNI keeps its networks


def test_ulimits_low_nproc_kept_and_unlimited_left_out() -> None:
    inf = resource.RLIM_INFINITY
    assert '["nproc=4096:4096"]' in podman.ulimits_conf(nofile=(inf, inf), nproc=(1024, 4096))
    assert "default_ulimits = []" in podman.ulimits_conf(nofile=(inf, inf), nproc=(inf, inf))


def test_write_ulimits_conf_only_when_changed(tmp_path: Path) -> None:
    conf = tmp_path / "containers.conf.d" / "50-kindbed-ulimits.conf"
    assert podman.write_ulimits_conf(conf) is True
    assert "[containers]" in conf.read_text()
    assert podman.write_ulimits_conf(conf) is False
    conf.write_text("# edited\n")
    assert podman.write_ulimits_conf(conf) is True


def test_ipv4_subnet_of_dual_stack_network() -> None:
    assert podman.ipv4_subnet(json.loads(INSPECT)) == "10.89.0.0/24"


def test_ipv6_only_network_is_an_error() -> None:
    data = json.loads(INSPECT)
    data[0]["subnets"] = data[0]["subnets"][:1]
    with pytest.raises(podman.PodmanError, match="no IPv4 subnet"):
        podman.ipv4_subnet(data)


class FakePodmanCLI:
    """Answers `podman network inspect|create` as podman 4.3 does; records every argv."""

    def __init__(self, exists: bool = False, create_errors: tuple[str, ...] = ()) -> None:
        self.exists = exists
        self.create_errors = list(create_errors)
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str], timeout_s: float = 0) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(argv))
        if argv[2] == "inspect":
            if self.exists:
                return subprocess.CompletedProcess(argv, 0, INSPECT, "")
            return subprocess.CompletedProcess(argv, 125, "", "Error: network kind: not found")
        if self.create_errors:
            return subprocess.CompletedProcess(argv, 125, "", self.create_errors.pop(0))
        self.exists = True
        return subprocess.CompletedProcess(argv, 0, "kind\n", "")

    def creates(self) -> list[list[str]]:
        return [c for c in self.calls if c[2] == "create"]


def test_existing_kind_network_is_used_not_created(monkeypatch: pytest.MonkeyPatch) -> None:
    cli = FakePodmanCLI(exists=True)
    monkeypatch.setattr(podman, "_run", cli)
    assert podman.ensure_kind_network("kind", {"l": "1"}) == ("kind", "10.89.0.0/24")
    assert cli.creates() == []


def test_subnet_overlap_tries_kinds_next_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    cli = FakePodmanCLI(create_errors=(
        'Error: subnet fc00:f853:ccd:e793::/64 is already being used by a cni configuration',))
    monkeypatch.setattr(podman, "_run", cli)
    assert podman.ensure_kind_network("kind", {}) == ("kind", "10.89.0.0/24")
    subnets = [c[c.index("--subnet") + 1] for c in cli.creates()]
    assert subnets == [podman.kind_ula_subnet("kind", 0), podman.kind_ula_subnet("kind", 1)]


def test_other_create_errors_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    cli = FakePodmanCLI(create_errors=("Error: netavark: permission denied",))
    monkeypatch.setattr(podman, "_run", cli)
    with pytest.raises(podman.PodmanError, match="podman network create kind failed: .*denied"):
        podman.ensure_kind_network("kind", {})
    assert len(cli.creates()) == 1
