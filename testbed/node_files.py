"""Which files a node gets before its components start, composed from kubeadm_files and the
stand-ins' PKI helpers (`testbed.standins.pki`: one implementation of kubeadm's cert rules).

Mirrors what `kubeadm init`/`join` plus kind leave behind: CAs (including etcd/ca.key) on every
control plane as kind copies them for control-plane joins, client certs, kubeconfigs (kubeadm
`phases/kubeconfig/kubeconfig.go`: controller-manager.conf and scheduler.conf name the node's
own IP since k8s 1.19.1, kubernetes#94398; admin.conf and kubelet.conf the endpoint; kubelet.conf
uses the rotated client cert file), kubelet flags, /kind files.
Serving certificates are NOT here: the kubeadm stand-in makes them inside the node.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml
from cryptography.hazmat.primitives import serialization

from testbed.container import Files
from testbed.kubeadm_files import (
    API_PORT,
    PKI,
    NodeSpec,
    apiserver_manifest,
    controller_manager_manifest,
    crictl_yaml,
    etcd_manifest,
    kubeadm_conf,
    kubeadm_flags_env,
    scheduler_manifest,
)
from testbed.standins import pki

KUBELET_CLIENT = "/var/lib/kubelet/pki/kubelet-client-current.pem"


@dataclass(frozen=True)
class ClusterPKI:
    """The once-per-cluster material kubeadm creates on the first control plane."""

    ca: pki.CertKey
    etcd_ca: pki.CertKey
    front_proxy_ca: pki.CertKey
    sa_key: bytes
    sa_pub: bytes
    clients: dict[str, pki.CertKey]  # pki-relative stem -> client pair

    @classmethod
    def generate(cls) -> ClusterPKI:
        ca, etcd_ca, fp_ca = (
            pki.make_ca("kubernetes"),
            pki.make_ca("etcd-ca"),
            pki.make_ca("front-proxy-ca"),
        )
        sa = pki.new_key()
        pub = sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        clients = {
            "apiserver-etcd-client": pki.make_client(etcd_ca, "kube-apiserver-etcd-client"),
            "apiserver-kubelet-client": pki.make_client(
                ca, "kube-apiserver-kubelet-client", ["kubeadm:cluster-admins"]
            ),
            "front-proxy-client": pki.make_client(fp_ca, "front-proxy-client"),
            "etcd/healthcheck-client": pki.make_client(etcd_ca, "kube-etcd-healthcheck-client"),
        }
        return cls(ca, etcd_ca, fp_ca, pki.key_pem(sa), pub, clients)


def _pair(files: Files, stem: str, pair: pki.CertKey) -> None:
    files[f"{PKI}/{stem}.crt"] = (pair.cert_pem(), 0o644)
    files[f"{PKI}/{stem}.key"] = (pair.key_pem(), 0o600)


def _kubelet(spec: NodeSpec, cp: ClusterPKI, files: Files) -> None:
    user = f"system:node:{spec.name}"
    node_cert = pki.make_client(cp.ca, user, ["system:nodes"])
    files[KUBELET_CLIENT] = (node_cert.cert_pem() + node_cert.key_pem(), 0o600)
    conf = yaml.safe_load(
        pki.kubeconfig(
            f"https://{spec.endpoint}:{API_PORT}", cp.ca, node_cert, user=user, cluster=spec.cluster
        )
    )
    conf["users"][0]["user"] = {"client-certificate": KUBELET_CLIENT, "client-key": KUBELET_CLIENT}
    files["/etc/kubernetes/kubelet.conf"] = (yaml.safe_dump(conf, sort_keys=False).encode(), 0o600)
    files["/var/lib/kubelet/kubeadm-flags.env"] = (kubeadm_flags_env(spec).encode(), 0o644)
    files["/kind/kubeadm.conf"] = (kubeadm_conf(spec).encode(), 0o644)
    files["/kind/old-ipv4"] = (spec.ip.encode(), 0o644)  # kind writes it without a newline
    files["/etc/crictl.yaml"] = (crictl_yaml().encode(), 0o644)
    files[f"{PKI}/ca.crt"] = (cp.ca.cert_pem(), 0o644)


def worker_files(spec: NodeSpec, cp: ClusterPKI) -> Files:
    files: Files = {}
    _kubelet(spec, cp, files)
    return files


def control_plane_files(spec: NodeSpec, cp: ClusterPKI) -> Files:
    """Everything but the serving certs and the static pod manifests."""
    files: Files = {}
    _kubelet(spec, cp, files)
    _pair(files, "ca", cp.ca)
    _pair(files, "etcd/ca", cp.etcd_ca)
    _pair(files, "front-proxy-ca", cp.front_proxy_ca)
    files[f"{PKI}/sa.pub"] = (cp.sa_pub, 0o644)
    files[f"{PKI}/sa.key"] = (cp.sa_key, 0o600)
    for stem, pair in cp.clients.items():
        _pair(files, stem, pair)
    own = f"https://{spec.ip}:{API_PORT}"
    for conf, user, orgs in (
        ("controller-manager.conf", "system:kube-controller-manager", []),
        ("scheduler.conf", "system:kube-scheduler", []),
        ("admin.conf", "kubernetes-admin", ["kubeadm:cluster-admins"]),
    ):
        server = f"https://{spec.endpoint}:{API_PORT}" if conf == "admin.conf" else own
        text = pki.kubeconfig(
            server, cp.ca, pki.make_client(cp.ca, user, orgs), user=user, cluster=spec.cluster
        )
        files[f"/etc/kubernetes/{conf}"] = (text.encode(), 0o600)
    return files


def manifests(
    spec: NodeSpec, initial_cluster: dict[str, str], existing: bool, etcd_image: str
) -> Files:
    d = "/etc/kubernetes/manifests"
    return {
        f"{d}/etcd.yaml": (
            etcd_manifest(spec, initial_cluster, existing, etcd_image).encode(),
            0o600,
        ),
        f"{d}/kube-apiserver.yaml": (apiserver_manifest(spec).encode(), 0o600),
        f"{d}/kube-controller-manager.yaml": (controller_manager_manifest(spec).encode(), 0o600),
        f"{d}/kube-scheduler.yaml": (scheduler_manifest(spec).encode(), 0o600),
    }
