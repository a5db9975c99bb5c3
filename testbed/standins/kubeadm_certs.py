"""kubeadm's certificate list and SAN rules, and its "use existing or generate" logic.

Copies kubeadm v1.29 (cmd/kubeadm/app/phases/certs/certlist.go, certs.go, pkiutil/pki_helpers.go
GetAPIServerAltNames / GetEtcdAltNames / GetEtcdPeerAltNames / appendSANsToAltNames, and
cmd/kubeadm/app/cmd/phases/init/certs.go runCAPhase / runCertPhase):
- apiserver SANs: node name, kubernetes, kubernetes.default, kubernetes.default.svc,
  kubernetes.default.svc.<dnsDomain>, the first service IP, the advertise address, the
  controlPlaneEndpoint host (IP or DNS), apiServer.certSANs.
- etcd/server and etcd/peer SANs: node name, localhost, advertise address, 127.0.0.1, ::1, plus
  etcd.local.serverCertSANs / peerCertSANs.
- `init phase certs <name>` (what kind's fix_certificate runs): a cert already on disk that
  loads and is signed by its CA is KEPT WHATEVER ITS SANs ("[certs] Using existing apiserver
  certificate and key on disk"): that is why kind deletes apiserver.crt/key first. One signed by
  another CA is refused. When the cert is missing the pair is generated, unless a key alone is
  left on disk (then "failure loading ... certificate").
- `join phase control-plane-prepare certs` (CreatePKIAssets): an existing cert missing an
  expected SAN is refused: "certificate apiserver is invalid: x509: certificate is valid for
  ..., not 172.18.0.5".
Limits: RSA only, no external CA / CSR modes, no expiry checks, no kubeconfig phase.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from . import pki
from .kubeadm_config import KubeadmConfig

ClusterAdminsGroup = "kubeadm:cluster-admins"
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_WILDCARD = re.compile(r"^\*\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

AltNames = tuple[list[str], list[str]]


class PhaseError(Exception):
    pass


def _append_sans(
    dns: list[str], ips: list[str], sans: tuple[str, ...], cert: str, warn: Callable[[str], None]
) -> None:
    for s in sans:
        try:
            ips.append(str(ipaddress.ip_address(s)))
        except ValueError:
            if (_DNS1123.match(s) or _WILDCARD.match(s)) and len(s) <= 253:
                dns.append(s)
            else:
                warn(
                    f"[certificates] WARNING: '{s}' was not added to the '{cert}' SAN, because it is "  # noqa: E501 - upstream's message, kept greppable
                    "not a valid IP or RFC-1123 compliant DNS entry"
                )


def _host_of(endpoint: str) -> str:
    """kubeadmutil.ParseHostPort: host of host:port, [v6]:port, or a bare host."""
    if endpoint.startswith("["):
        return endpoint[1:].partition("]")[0]
    if endpoint.count(":") == 1:
        return endpoint.partition(":")[0]
    return endpoint


def _advertise_ip(cfg: KubeadmConfig) -> str:
    try:
        return str(ipaddress.ip_address(cfg.advertise_address))
    except ValueError:
        raise PhaseError(
            f"error parsing LocalAPIEndpoint AdvertiseAddress {cfg.advertise_address}: "
            "is not a valid textual representation of an IP address"
        ) from None


def apiserver_alt_names(cfg: KubeadmConfig, warn: Callable[[str], None] = print) -> AltNames:
    adv = _advertise_ip(cfg)
    dns = [
        cfg.node_name,
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        f"kubernetes.default.svc.{cfg.dns_domain}",
    ]
    ips = [cfg.apiserver_virtual_ip, adv]
    if cfg.control_plane_endpoint:
        host = _host_of(cfg.control_plane_endpoint)
        try:
            ips.append(str(ipaddress.ip_address(host)))
        except ValueError:
            dns.append(host)
    _append_sans(dns, ips, cfg.cert_sans, "apiserver", warn)
    return pki.alt_names(dns, ips)


def etcd_alt_names(
    cfg: KubeadmConfig, extra: tuple[str, ...], cert: str, warn: Callable[[str], None] = print
) -> AltNames:
    adv = _advertise_ip(cfg)
    dns = [cfg.node_name, "localhost"]
    ips = [adv, "127.0.0.1", "::1"]
    _append_sans(dns, ips, extra, cert, warn)
    return pki.alt_names(dns, ips)


@dataclass(frozen=True)
class Spec:
    name: str  # the phase name: apiserver, etcd-server...
    base: str  # file base name under the pki dir: apiserver, etcd/server...
    ca: str | None  # name of the signing CA spec; None for a CA
    common_name: Callable[[KubeadmConfig], str]
    organizations: tuple[str, ...] = ()
    usages: tuple[str, ...] = ()
    alt_names: Callable[[KubeadmConfig], AltNames] | None = None


def _const(v: str) -> Callable[[KubeadmConfig], str]:
    return lambda _cfg: v


def _node(cfg: KubeadmConfig) -> str:
    return cfg.node_name


S, C = pki.SERVER, pki.CLIENT


def _client(name: str, ca: str, common_name: str, *organizations: str) -> Spec:
    """A client-only leaf; its files are named as its phase, except under etcd/."""
    base = f"etcd/{name[5:]}" if name.startswith("etcd-") else name
    return Spec(name, base, ca, _const(common_name), organizations, (C,))


def _etcd_serving(which: str, extra: Callable[[KubeadmConfig], tuple[str, ...]]) -> Spec:
    """etcd/server or etcd/peer: node-named, server and client auth, etcd SANs + extra."""
    base = f"etcd/{which}"
    return Spec(
        f"etcd-{which}",
        base,
        "etcd-ca",
        _node,
        usages=(S, C),
        alt_names=lambda c: etcd_alt_names(c, extra(c), base),
    )


SPECS: dict[str, Spec] = {
    s.name: s
    for s in [
        Spec("ca", "ca", None, _const("kubernetes")),
        Spec(
            "apiserver",
            "apiserver",
            "ca",
            _const("kube-apiserver"),
            usages=(S,),
            alt_names=apiserver_alt_names,
        ),
        _client(
            "apiserver-kubelet-client", "ca", "kube-apiserver-kubelet-client", ClusterAdminsGroup
        ),
        Spec("front-proxy-ca", "front-proxy-ca", None, _const("front-proxy-ca")),
        _client("front-proxy-client", "front-proxy-ca", "front-proxy-client"),
        Spec("etcd-ca", "etcd/ca", None, _const("etcd-ca")),
        _etcd_serving("server", lambda c: c.etcd_server_sans),
        _etcd_serving("peer", lambda c: c.etcd_peer_sans),
        _client("etcd-healthcheck-client", "etcd-ca", "kube-etcd-healthcheck-client"),
        _client("apiserver-etcd-client", "etcd-ca", "kube-apiserver-etcd-client"),
    ]
}
# `kubeadm init phase certs all` order (certlist.go GetDefaultCertList), then the sa key pair.
ALL = [
    "ca",
    "apiserver",
    "apiserver-kubelet-client",
    "front-proxy-ca",
    "front-proxy-client",
    "etcd-ca",
    "etcd-server",
    "etcd-peer",
    "etcd-healthcheck-client",
    "apiserver-etcd-client",
    "sa",
]
PHASES = [*ALL, "all"]


def _exists(pki_dir: Path, base: str, ext: str) -> bool:
    return (pki_dir / f"{base}.{ext}").exists()


def _load_ca(pki_dir: Path, ca: Spec) -> pki.CertKey:
    if not (_exists(pki_dir, ca.base, "crt") or _exists(pki_dir, ca.base, "key")):
        raise PhaseError(
            f"couldn't load CA certificate {ca.name}: couldn't load {ca.base} certificate "
            f"authority from {pki_dir}"
        )
    try:
        return pki.read_pair(pki_dir, ca.base)
    except (OSError, ValueError) as e:
        raise PhaseError(
            f"couldn't load CA certificate {ca.name}: failure loading {ca.base} "
            f"certificate authority: {e}"
        ) from None


def _generate(spec: Spec, ca: pki.CertKey, cfg: KubeadmConfig) -> tuple[pki.CertKey, AltNames]:
    dns, ips = spec.alt_names(cfg) if spec.alt_names else ([], [])
    pair = pki.make_leaf(
        ca, spec.common_name(cfg), spec.organizations, dns_names=dns, ips=ips, usages=spec.usages
    )
    return pair, (dns, ips)


def write_if_not_exist(
    pki_dir: Path, spec: Spec, cfg: KubeadmConfig, out: Callable[[str], None]
) -> None:
    """certs.go writeCertificateFilesIfNotExist (via CreateCertAndKeyFilesWithCA)."""
    assert spec.ca is not None
    ca = _load_ca(pki_dir, SPECS[spec.ca])
    if _exists(pki_dir, spec.base, "crt") or _exists(pki_dir, spec.base, "key"):
        try:
            existing = pki.read_pair(pki_dir, spec.base)
        except FileNotFoundError as e:
            what = "certificate" if str(e.filename).endswith(".crt") else "private key"
            raise PhaseError(
                f"failure loading {spec.base} certificate: couldn't load the {what} file "
                f"{e.filename}: open {e.filename}: no such file or directory"
            ) from None
        except (OSError, ValueError) as e:
            raise PhaseError(f"failure loading {spec.base} certificate: {e}") from None
        if not pki.signed_by(existing.cert, ca.cert):
            raise PhaseError(f"certificate {spec.base} is not signed by corresponding CA")
        dns, ips = spec.alt_names(cfg) if spec.alt_names else ([], [])
        for host in [*dns, *ips]:
            err = pki.hostname_error(existing.cert, host)
            if err:
                raise PhaseError(f"certificate {spec.base} is invalid: {err}")
        out(f'[certs] Using the existing "{spec.base}" certificate and key')
        return
    out(f'[certs] Generating "{spec.base}" certificate and key')
    pair, (dns, ips) = _generate(spec, ca, cfg)
    pki.write_pair(pki_dir, spec.base, pair)
    if pki.SERVER in spec.usages:
        out(
            f"[certs] {spec.base} serving cert is signed for DNS names [{' '.join(dns)}] and IPs [{' '.join(ips)}]"  # noqa: E501 - upstream's message, kept greppable
        )


def _ca_phase(pki_dir: Path, spec: Spec, out: Callable[[str], None]) -> None:
    if _exists(pki_dir, spec.base, "crt"):
        kind = "" if _exists(pki_dir, spec.base, "key") else " keyless"
        out(f"[certs] Using existing {spec.base}{kind} certificate authority")
        return
    out(f'[certs] Generating "{spec.base}" certificate and key')
    pki.write_pair(pki_dir, spec.base, pki.make_ca(spec.common_name(KubeadmConfig("", ""))))


def _cert_phase(pki_dir: Path, spec: Spec, cfg: KubeadmConfig, out: Callable[[str], None]) -> None:
    """phases/init/certs.go runCertPhase: an existing cert signed by its CA is kept as is."""
    assert spec.ca is not None
    ca_spec = SPECS[spec.ca]
    if _exists(pki_dir, spec.base, "crt"):
        try:
            cert = pki.load_cert((pki_dir / f"{spec.base}.crt").read_bytes())
        except ValueError:
            cert = None
        if cert is not None:
            try:
                ca_cert = pki.load_cert((pki_dir / f"{ca_spec.base}.crt").read_bytes())
            except (OSError, ValueError) as e:
                raise PhaseError(f"couldn't load CA certificate {ca_spec.name}: {e}") from None
            if not pki.signed_by(cert, ca_cert):
                raise PhaseError(
                    f"[certs] certificate {spec.base} not signed by CA certificate "
                    f"{ca_spec.base}: x509: certificate signed by unknown authority"
                )
            out(f"[certs] Using existing {spec.base} certificate and key on disk")
            return
    write_if_not_exist(pki_dir, spec, cfg, out)


def _sa_phase(pki_dir: Path, out: Callable[[str], None]) -> None:
    if _exists(pki_dir, "sa", "key"):
        out('[certs] Using the existing "sa" key')
        return
    out('[certs] Generating "sa" key and public key')
    key = pki.new_key()
    pki_dir.mkdir(parents=True, exist_ok=True)
    (pki_dir / "sa.key").write_bytes(pki.key_pem(key))
    (pki_dir / "sa.key").chmod(0o600)
    (pki_dir / "sa.pub").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def init_phase(
    pki_dir: Path, phase: str, cfg: KubeadmConfig, out: Callable[[str], None] = print
) -> None:
    """`kubeadm init phase certs <phase>`; raises PhaseError("certs/<phase>", ...) semantics."""
    for name in ALL if phase == "all" else [phase]:
        if name == "sa":
            _sa_phase(pki_dir, out)
        elif SPECS[name].ca is None:
            _ca_phase(pki_dir, SPECS[name], out)
        else:
            _cert_phase(pki_dir, SPECS[name], cfg, out)


def join_prepare(pki_dir: Path, cfg: KubeadmConfig, out: Callable[[str], None] = print) -> None:
    """`kubeadm join phase control-plane-prepare certs`: each leaf checked against its SANs."""
    for name in ALL:
        if name != "sa" and SPECS[name].ca is not None:
            write_if_not_exist(pki_dir, SPECS[name], cfg, out)
