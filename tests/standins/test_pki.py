from __future__ import annotations

import yaml

from testbed.standins import pki


def test_hostname_errors_copy_go_texts() -> None:
    ca = pki.make_ca("kubernetes")
    leaf = pki.make_leaf(
        ca,
        "kube-apiserver",
        dns_names=["kind-control-plane", "localhost"],
        ips=["10.96.0.1", "172.18.0.2", "127.0.0.1"],
    )
    assert pki.hostname_error(leaf.cert, "172.18.0.2") is None
    assert pki.hostname_error(leaf.cert, "KIND-control-plane") is None
    assert (
        pki.hostname_error(leaf.cert, "172.18.0.21")
        == "x509: certificate is valid for 10.96.0.1, 172.18.0.2, 127.0.0.1, not 172.18.0.21"
    )
    assert (
        pki.hostname_error(leaf.cert, "kind-worker")
        == "x509: certificate is valid for kind-control-plane, localhost, not kind-worker"
    )
    client = pki.make_client(ca, "admin")
    assert (
        pki.hostname_error(client.cert, "10.0.0.1")
        == "x509: cannot validate certificate for 10.0.0.1 because it doesn't contain any IP SANs"
    )


def test_wildcards_match_one_label() -> None:
    ca = pki.make_ca("x")
    leaf = pki.make_leaf(ca, "w", dns_names=["*.example.com"])
    assert pki.hostname_error(leaf.cert, "a.example.com") is None
    assert pki.hostname_error(leaf.cert, "a.b.example.com") is not None


def test_leaf_is_signed_by_its_ca_only_and_sans_deduplicated() -> None:
    ca, other = pki.make_ca("kubernetes"), pki.make_ca("kubernetes")
    leaf = pki.make_leaf(
        ca, "etcd", dns_names=["n", "localhost", "n"], ips=["127.0.0.1", "::1", "127.0.0.1"]
    )
    assert pki.signed_by(leaf.cert, ca.cert)
    assert not pki.signed_by(leaf.cert, other.cert)  # same subject, different key
    assert pki.sans(leaf.cert) == (["localhost", "n"], ["127.0.0.1", "::1"])
    assert pki.not_before(leaf.cert) == pki.not_before(ca.cert)


def test_kubeconfig_round_trip() -> None:
    ca = pki.make_ca("kubernetes")
    client = pki.make_client(ca, "system:kube-controller-manager")
    text = pki.kubeconfig(
        "https://172.18.0.2:6443", ca, client, user="system:kube-controller-manager"
    )
    doc = yaml.safe_load(text)
    assert doc["current-context"] == "system:kube-controller-manager@kubernetes"
    kc = pki.parse_kubeconfig(text)
    assert kc.server == "https://172.18.0.2:6443"
    assert pki.load_cert(kc.ca_pem) == ca.cert
    assert pki.load_cert(kc.cert_pem) == client.cert
    assert (
        pki.load_key(kc.key_pem).public_key().public_numbers()
        == client.key.public_key().public_numbers()
    )
