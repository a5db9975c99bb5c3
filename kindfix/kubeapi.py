"""Requests to a cluster's apiserver from inside a node, with a kubeconfig's credentials.

kindfix has no client of its own for the Kubernetes API: a node runs kube-api.sh (curl with the
kubeconfig's CA, client certificate and key; inline *-data or file paths, as kubeadm and kind
write them), and the answer comes back with the node's clock, against which Lease times are
judged (kind's nodes share the host's clock).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from kindfix.node import Node
from kindfix.nodescripts import script

ADMIN_CONF = "/etc/kubernetes/admin.conf"


def lease_path(component: str) -> str:
    """The API path of a kube-system leader-election Lease."""
    return f"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{component}"


def node_server(node_name: str) -> str:
    """A control plane's own apiserver, by the name kubeadm puts in apiserver.crt."""
    return f"https://{node_name}:6443"


def holder_node(spec: dict[str, Any]) -> str:
    """The node of a Lease's holder: client-go's identity is <hostname>_<uuid>."""
    return str(spec.get("holderIdentity") or "").rsplit("_", 1)[0]


@dataclass(frozen=True)
class KubeGet:
    status: str  # the HTTP code, or "error <curl's message>"
    body: str
    now: float | None  # the node's clock


def parse_kube_get(text: str) -> KubeGet:
    """Pure: kube-api.sh's output."""
    _, _, rest = text.partition("@@status ")
    status, _, rest = rest.partition("\n")
    body, _, clock = rest.rpartition("@@now ")
    try:
        now: float | None = float(clock.strip())
    except ValueError:
        now = None
    return KubeGet(status.strip() or "no answer", body.strip(), now)


def kube_request(node: Node, kubeconfig: str, path: str, server: str = "", method: str = "GET",
                 body: bytes | None = None) -> KubeGet:
    """One request (`server` empty: the kubeconfig's own); a write sends `body` as JSON."""
    r = node.exec(["sh", "-c", script("kube-api"), "kindfix-kube-api", kubeconfig, server, path,
                   method], stdin=body, timeout=20)
    if r.exit_code == 127 or "@@status" not in r.text():
        return KubeGet(f"error {r.stderr.decode(errors='replace').strip()[:120]}", "", None)
    return parse_kube_get(r.text())


def kube_get(node: Node, kubeconfig: str, path: str, server: str = "") -> KubeGet:
    return kube_request(node, kubeconfig, path, server)


def micro_time(text: str) -> float | None:
    """metav1.MicroTime (RFC 3339, UTC, microseconds) as a Unix time."""
    try:
        return datetime.strptime(text.rstrip("Z")[:26].split("+")[0], "%Y-%m-%dT%H:%M:%S.%f"
                                 ).replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        try:
            return datetime.strptime(text.rstrip("Z")[:19], "%Y-%m-%dT%H:%M:%S").replace(
                tzinfo=timezone.utc).timestamp()
        except ValueError:
            return None


def format_micro_time(t: float) -> str:
    """A Unix time as metav1.MicroTime."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
