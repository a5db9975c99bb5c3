from __future__ import annotations

import pytest

from kindfix.addresses import find_ips, malformed, node_ips, replace_ips, same_ip


@pytest.mark.parametrize(("value", "expected"), [
    ("https://172.18.0.3:2379", ["172.18.0.3"]),
    ("https://127.0.0.1:2379,https://172.18.0.21:2379", ["127.0.0.1", "172.18.0.21"]),
    ("https://[fc00:f853:ccd:e793::3]:2380", ["fc00:f853:ccd:e793::3"]),
    ("172.18.0.3,fc00:f853:ccd:e793::3", ["172.18.0.3", "fc00:f853:ccd:e793::3"]),
    ("registry.k8s.io/etcd:3.5.1-0", []),
    ("kind-control-plane", []),
    ("v1.29.2", []),
])
def test_find_ips(value: str, expected: list[str]) -> None:
    assert [lit.text for lit in find_ips(value)] == expected


def test_loopback_and_unspecified_are_not_node_ips() -> None:
    assert node_ips("https://127.0.0.1:2379,https://[::1]:2379,0.0.0.0") == []


def test_replace_is_positional_not_textual() -> None:
    # a permutation: .2 -> .3 and .3 -> .2 at once; a textual swap would collapse them
    mapping = {"172.18.0.2": "172.18.0.3", "172.18.0.3": "172.18.0.2"}
    value = "a=https://172.18.0.2:2380,b=https://172.18.0.3:2380,c=https://172.18.0.21:2380"
    out = replace_ips(value, lambda lit: mapping.get(lit.text))
    assert out == "a=https://172.18.0.3:2380,b=https://172.18.0.2:2380,c=https://172.18.0.21:2380"


def test_same_ip_normalises_ipv6() -> None:
    assert same_ip("fc00:0:0:0:0:0:0:3", "fc00::3")
    assert not same_ip("172.18.0.2", "172.18.0.21")
    assert not same_ip(None, "172.18.0.2")


@pytest.mark.parametrize(("value", "bad"), [
    ("172.18.0", ["172.18.0"]),
    ("172.18.0.405", ["172.18.0.405"]),
    ("172.018.0.3", ["172.018.0.3"]),  # leading zero: octal to some parsers, refused
    ("172.18.0.", ["172.18.0."]),
    ("https://172.18.0:6443", ["172.18.0"]),
    ("https://[fc00::zz]:2379", ["[fc00::zz]"]),
    ("https://[172.18.0.3]:2379", ["[172.18.0.3]"]),  # brackets hold IPv6 only
    ("172.18.0.3,fc00:::3", ["fc00:::3"]),
    ("a=https://172.18.0.3:2380,b=https://172.18.0.999:2380", ["172.18.0.999"]),
])
def test_malformed_addresses_are_found(value: str, bad: list[str]) -> None:
    assert malformed(value) == bad


@pytest.mark.parametrize("value", [
    "https://172.18.0.3:2379", "https://127.0.0.1:2379,https://172.18.0.3:2379",
    "https://[fc00:f853:ccd:e793::3]:2380", "172.18.0.3,fc00:f853:ccd:e793::3", "::", "::1",
    "https://kind-control-plane:6443", "https://kind-external-load-balancer:6443",
    "https://10.0.0.1.nip.io:6443", "kind-control-plane=https://172.18.0.3:2380",
    "https://[::ffff:172.18.0.3]:6443", "",
])
def test_valid_addresses_and_hostnames_are_not_malformed(value: str) -> None:
    assert malformed(value) == []
