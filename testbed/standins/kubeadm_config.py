"""The part of a kubeadm configuration file that decides certificate SANs.

Copies kubeadm's config loading for kubeadm.k8s.io/v1beta2, v1beta3 and v1beta4 (the fields are
at the same paths in all three): InitConfiguration.localAPIEndpoint.advertiseAddress and
nodeRegistration.name; JoinConfiguration.controlPlane.localAPIEndpoint.advertiseAddress when there
is no InitConfiguration; ClusterConfiguration.controlPlaneEndpoint, apiServer.certSANs,
etcd.local.serverCertSANs/peerCertSANs, networking.serviceSubnet (default 10.96.0.0/12) and
networking.dnsDomain (default cluster.local). Defaults like kubeadm's: node name = hostname,
advertise address = the address of the default-route interface.
Limits: other documents and fields are ignored, not validated.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass

import yaml

API_GROUP = "kubeadm.k8s.io/"
SUPPORTED = ("v1beta2", "v1beta3", "v1beta4")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class KubeadmConfig:
    node_name: str
    advertise_address: str
    control_plane_endpoint: str = ""
    cert_sans: tuple[str, ...] = ()
    service_subnet: str = "10.96.0.0/12"
    dns_domain: str = "cluster.local"
    etcd_server_sans: tuple[str, ...] = ()
    etcd_peer_sans: tuple[str, ...] = ()

    @property
    def apiserver_virtual_ip(self) -> str:
        """kubeadm GetAPIServerVirtualIP: the first address of the (first) service subnet."""
        try:
            net = ipaddress.ip_network(self.service_subnet.split(",")[0].strip(), strict=False)
        except ValueError as e:
            raise ConfigError(
                f"unable to get first IP address from the given CIDR: {self.service_subnet}"
            ) from e
        return str(net.network_address + 1)


def default_address() -> str:
    """The source address of the default route (no packet is sent by a UDP connect)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("192.0.2.1", 9))
        return str(s.getsockname()[0])
    except OSError:
        return socket.gethostbyname(socket.gethostname())
    finally:
        s.close()


def _sans(v: object) -> tuple[str, ...]:
    return tuple(str(x) for x in v) if isinstance(v, list) else ()


def parse(
    text: str,
    hostname: Callable[[], str] = socket.gethostname,
    address: Callable[[], str] = default_address,
) -> KubeadmConfig:
    docs = {}
    for doc in yaml.safe_load_all(text):
        if not isinstance(doc, dict):
            continue
        api = str(doc.get("apiVersion", ""))
        if api.startswith(API_GROUP):
            version = api[len(API_GROUP) :]
            if version not in SUPPORTED:
                raise ConfigError(
                    f'no kind "{doc.get("kind")}" is registered for version "{api}" in scheme'
                )
            docs[str(doc.get("kind"))] = doc
    if not docs:
        raise ConfigError(
            "no InitConfiguration or ClusterConfiguration kind was found in the YAML file"
        )
    init = docs.get("InitConfiguration") or {}
    join = docs.get("JoinConfiguration") or {}
    cluster = docs.get("ClusterConfiguration") or {}
    endpoint = (init.get("localAPIEndpoint") or {}).get("advertiseAddress") or (
        (join.get("controlPlane") or {}).get("localAPIEndpoint") or {}
    ).get("advertiseAddress")
    name = (
        (init.get("nodeRegistration") or {}).get("name")
        or (join.get("nodeRegistration") or {}).get("name")
        or hostname().lower()
    )
    net = cluster.get("networking") or {}
    local_etcd = (cluster.get("etcd") or {}).get("local") or {}
    return KubeadmConfig(
        node_name=str(name),
        advertise_address=str(endpoint or address()),
        control_plane_endpoint=str(cluster.get("controlPlaneEndpoint") or ""),
        cert_sans=_sans((cluster.get("apiServer") or {}).get("certSANs")),
        service_subnet=str(net.get("serviceSubnet") or "10.96.0.0/12"),
        dns_domain=str(net.get("dnsDomain") or "cluster.local"),
        etcd_server_sans=_sans(local_etcd.get("serverCertSANs")),
        etcd_peer_sans=_sans(local_etcd.get("peerCertSANs")),
    )
