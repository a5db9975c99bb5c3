"""The files kubeadm and kind leave on a node, rendered in their real formats.

Sources whose output this copies (behaviour, not code):
- kind `pkg/cluster/internal/kubeadm/config.go` (ConfigTemplateBetaV3): /kind/kubeadm.conf with
  ClusterConfiguration, InitConfiguration, JoinConfiguration, KubeletConfiguration,
  KubeProxyConfiguration; certSANs [localhost, <apiServerAddress=127.0.0.1>].
- kubeadm `cmd/kubeadm/app/phases/etcd/local.go` and `phases/controlplane/manifests.go`
  (v1.29): static pod manifests and their flags; kubeadm marshals with sigs.k8s.io/yaml, which
  sorts keys, hence `sort_keys=True` below.
- kubeconfigs are rendered by `testbed.standins.pki.kubeconfig` (one implementation); which
  server each one names is in `testbed.node_files`.
- kubeadm `phases/kubelet/flags.go`: /var/lib/kubelet/kubeadm-flags.env.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from testbed.images import ETCD_IMAGE, kube_image

API_PORT = 6443
POD_SUBNET = "10.244.0.0/16"
SERVICE_SUBNET = "10.96.0.0/16"
CRI_SOCKET = "unix:///run/containerd/containerd.sock"
PKI = "/etc/kubernetes/pki"


@dataclass(frozen=True)
class NodeSpec:
    """What one node's files depend on."""

    cluster: str
    name: str
    role: str  # control-plane | worker
    ip: str
    endpoint: str  # control-plane endpoint host: <cluster>-control-plane or the LB name
    kube_version: str = "v1.29.2"


def _dump(obj: object) -> str:
    return yaml.safe_dump(obj, default_flow_style=False, sort_keys=True)


def _dump_all(docs: list[dict[str, object]]) -> str:
    return "---\n".join(yaml.safe_dump(d, default_flow_style=False, sort_keys=False) for d in docs)


def kubeadm_conf(node: NodeSpec) -> str:
    """/kind/kubeadm.conf as kind writes it (kubeadm API v1beta3, k8s 1.23-1.35)."""
    endpoint = f"{node.endpoint}:{API_PORT}"
    kubelet_args = {
        "node-ip": node.ip,
        "provider-id": f"kind://docker/{node.cluster}/{node.name}",
        "node-labels": "",
    }
    registration = {"criSocket": CRI_SOCKET, "kubeletExtraArgs": kubelet_args}
    meta = {"name": "config"}
    join: dict[str, object] = {
        "apiVersion": "kubeadm.k8s.io/v1beta3",
        "kind": "JoinConfiguration",
        "metadata": meta,
    }
    if node.role == "control-plane":
        join["controlPlane"] = {
            "localAPIEndpoint": {"advertiseAddress": node.ip, "bindPort": API_PORT}
        }
    join["nodeRegistration"] = registration
    join["discovery"] = {
        "bootstrapToken": {
            "apiServerEndpoint": endpoint,
            "token": "abcdef.0123456789abcdef",
            "unsafeSkipCAVerification": True,
        }
    }
    docs: list[dict[str, object]] = [
        {
            "apiVersion": "kubeadm.k8s.io/v1beta3",
            "kind": "ClusterConfiguration",
            "metadata": meta,
            "kubernetesVersion": node.kube_version,
            "clusterName": node.cluster,
            "controlPlaneEndpoint": endpoint,
            "apiServer": {
                "certSANs": ["localhost", "127.0.0.1"],
                "extraArgs": {"runtime-config": ""},
            },
            "controllerManager": {"extraArgs": {"enable-hostpath-provisioner": "true"}},
            "scheduler": {"extraArgs": {}},
            "networking": {"podSubnet": POD_SUBNET, "serviceSubnet": SERVICE_SUBNET},
        },
        {
            "apiVersion": "kubeadm.k8s.io/v1beta3",
            "kind": "InitConfiguration",
            "metadata": meta,
            "bootstrapTokens": [{"token": "abcdef.0123456789abcdef"}],
            "localAPIEndpoint": {"advertiseAddress": node.ip, "bindPort": API_PORT},
            "nodeRegistration": registration,
        },
        join,
        {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "metadata": meta,
            "cgroupDriver": "systemd",
            "cgroupRoot": "/kubelet",
            "failSwapOn": False,
            "imageGCHighThresholdPercent": 100,
            "evictionHard": {
                "nodefs.available": "0%",
                "nodefs.inodesFree": "0%",
                "imagefs.available": "0%",
            },
        },
        {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "metadata": meta,
            "mode": "iptables",
            "iptables": {"minSyncPeriod": "1s"},
            "conntrack": {"maxPerCore": 0},
        },
    ]
    return _dump_all(docs)


def kubeadm_flags_env(node: NodeSpec) -> str:
    args = (
        f"--container-runtime-endpoint={CRI_SOCKET} --node-ip={node.ip} --node-labels= "
        f"--pod-infra-container-image=registry.k8s.io/pause:3.9 "
        f"--provider-id=kind://docker/{node.cluster}/{node.name}"
    )
    return f'KUBELET_KUBEADM_ARGS="{args}"\n'


def crictl_yaml() -> str:
    return f"runtime-endpoint: {CRI_SOCKET}\n"


def _pod(
    name: str,
    command: list[str],
    image: str,
    volumes: list[tuple[str, str, str]],
    annotations: dict[str, str],
    probe: dict[str, object],
    startup_path: str | None = None,
) -> str:
    # kubeadm util/staticpod StartupProbe (k8s >= 1.25 for etcd): 10 s delay, every 10 s, 15 s
    # timeout, ceil(4 min / 10 s) = 24 failures; etcd's asks /health?serializable=false
    startup = {**probe, "path": startup_path or probe["path"]}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "annotations": annotations,
            "creationTimestamp": None,
            "labels": {"component": name, "tier": "control-plane"},
            "name": name,
            "namespace": "kube-system",
        },
        "spec": {
            "containers": [
                {
                    "command": command,
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "livenessProbe": {
                        "failureThreshold": 8,
                        "httpGet": probe,
                        "initialDelaySeconds": 10,
                        "periodSeconds": 10,
                        "timeoutSeconds": 15,
                    },
                    "name": name,
                    "startupProbe": {
                        "failureThreshold": 24,
                        "httpGet": startup,
                        "initialDelaySeconds": 10,
                        "periodSeconds": 10,
                        "timeoutSeconds": 15,
                    },
                    "resources": {"requests": {"cpu": "100m"}},
                    "volumeMounts": [{"mountPath": path, "name": vol} for vol, path, _ in volumes],
                }
            ],
            "hostNetwork": True,
            "priority": 2000001000,
            "priorityClassName": "system-node-critical",
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [
                {"hostPath": {"path": path, "type": kind}, "name": vol}
                for vol, path, kind in volumes
            ],
        },
        "status": {},
    }
    return _dump(pod)


def etcd_manifest(
    node: NodeSpec, initial_cluster: dict[str, str], existing: bool, image: str = ETCD_IMAGE
) -> str:
    """kubeadm's stacked-etcd static pod; `initial_cluster` maps member name -> IP."""
    ip = node.ip
    cluster = ",".join(f"{n}=https://{a}:2380" for n, a in initial_cluster.items())
    cmd = [
        "etcd",
        f"--advertise-client-urls=https://{ip}:2379",
        f"--cert-file={PKI}/etcd/server.crt",
        "--client-cert-auth=true",
        "--data-dir=/var/lib/etcd",
        "--experimental-initial-corrupt-check=true",
        "--experimental-watch-progress-notify-interval=5s",
        f"--initial-advertise-peer-urls=https://{ip}:2380",
        f"--initial-cluster={cluster}",
    ]
    if existing:
        cmd.append("--initial-cluster-state=existing")
    cmd += [
        f"--key-file={PKI}/etcd/server.key",
        f"--listen-client-urls=https://127.0.0.1:2379,https://{ip}:2379",
        "--listen-metrics-urls=http://127.0.0.1:2381",
        f"--listen-peer-urls=https://{ip}:2380",
        f"--name={node.name}",
        f"--peer-cert-file={PKI}/etcd/peer.crt",
        "--peer-client-cert-auth=true",
        f"--peer-key-file={PKI}/etcd/peer.key",
        f"--peer-trusted-ca-file={PKI}/etcd/ca.crt",
        "--snapshot-count=10000",
        f"--trusted-ca-file={PKI}/etcd/ca.crt",
    ]
    return _pod(
        "etcd",
        cmd,
        image,
        [
            ("etcd-certs", f"{PKI}/etcd", "DirectoryOrCreate"),
            ("etcd-data", "/var/lib/etcd", "DirectoryOrCreate"),
        ],
        {"kubeadm.kubernetes.io/etcd.advertise-client-urls": f"https://{ip}:2379"},
        {
            "host": "127.0.0.1",
            "path": "/health?exclude=NOSPACE&serializable=true",
            "port": 2381,
            "scheme": "HTTP",
        },
        startup_path="/health?serializable=false",
    )


def apiserver_manifest(node: NodeSpec) -> str:
    ip = node.ip
    cmd = [
        "kube-apiserver",
        f"--advertise-address={ip}",
        "--allow-privileged=true",
        "--authorization-mode=Node,RBAC",
        f"--client-ca-file={PKI}/ca.crt",
        "--enable-admission-plugins=NodeRestriction",
        "--enable-bootstrap-token-auth=true",
        f"--etcd-cafile={PKI}/etcd/ca.crt",
        f"--etcd-certfile={PKI}/apiserver-etcd-client.crt",
        f"--etcd-keyfile={PKI}/apiserver-etcd-client.key",
        "--etcd-servers=https://127.0.0.1:2379",
        f"--kubelet-client-certificate={PKI}/apiserver-kubelet-client.crt",
        f"--kubelet-client-key={PKI}/apiserver-kubelet-client.key",
        "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
        f"--proxy-client-cert-file={PKI}/front-proxy-client.crt",
        f"--proxy-client-key-file={PKI}/front-proxy-client.key",
        "--requestheader-allowed-names=front-proxy-client",
        f"--requestheader-client-ca-file={PKI}/front-proxy-ca.crt",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-username-headers=X-Remote-User",
        "--runtime-config=",
        f"--secure-port={API_PORT}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={PKI}/sa.pub",
        f"--service-account-signing-key-file={PKI}/sa.key",
        f"--service-cluster-ip-range={SERVICE_SUBNET}",
        f"--tls-cert-file={PKI}/apiserver.crt",
        f"--tls-private-key-file={PKI}/apiserver.key",
    ]
    return _pod(
        "kube-apiserver",
        cmd,
        kube_image("kube-apiserver"),
        [
            ("ca-certs", "/etc/ssl/certs", "DirectoryOrCreate"),
            ("k8s-certs", PKI, "DirectoryOrCreate"),
        ],
        {"kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint": f"{ip}:{API_PORT}"},
        {"host": ip, "path": "/livez", "port": API_PORT, "scheme": "HTTPS"},
    )


def controller_manager_manifest(node: NodeSpec) -> str:
    conf = "/etc/kubernetes/controller-manager.conf"
    cmd = [
        "kube-controller-manager",
        "--allocate-node-cidrs=true",
        f"--authentication-kubeconfig={conf}",
        f"--authorization-kubeconfig={conf}",
        "--bind-address=127.0.0.1",
        f"--client-ca-file={PKI}/ca.crt",
        f"--cluster-cidr={POD_SUBNET}",
        f"--cluster-name={node.cluster}",
        f"--cluster-signing-cert-file={PKI}/ca.crt",
        f"--cluster-signing-key-file={PKI}/ca.key",
        "--controllers=*,bootstrapsigner,tokencleaner",
        "--enable-hostpath-provisioner=true",
        f"--kubeconfig={conf}",
        "--leader-elect=true",
        f"--requestheader-client-ca-file={PKI}/front-proxy-ca.crt",
        f"--root-ca-file={PKI}/ca.crt",
        f"--service-account-private-key-file={PKI}/sa.key",
        f"--service-cluster-ip-range={SERVICE_SUBNET}",
        "--use-service-account-credentials=true",
    ]
    return _pod(
        "kube-controller-manager",
        cmd,
        kube_image("kube-controller-manager"),
        [("k8s-certs", PKI, "DirectoryOrCreate"), ("kubeconfig", conf, "FileOrCreate")],
        {},
        {"host": "127.0.0.1", "path": "/healthz", "port": 10257, "scheme": "HTTPS"},
    )


def scheduler_manifest(node: NodeSpec) -> str:  # noqa: ARG001 - same signature as its siblings
    conf = "/etc/kubernetes/scheduler.conf"
    cmd = [
        "kube-scheduler",
        f"--authentication-kubeconfig={conf}",
        f"--authorization-kubeconfig={conf}",
        "--bind-address=127.0.0.1",
        f"--kubeconfig={conf}",
        "--leader-elect=true",
    ]
    return _pod(
        "kube-scheduler",
        cmd,
        kube_image("kube-scheduler"),
        [("kubeconfig", conf, "FileOrCreate")],
        {},
        {"host": "127.0.0.1", "path": "/healthz", "port": 10259, "scheme": "HTTPS"},
    )
