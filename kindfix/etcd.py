"""Talks to one node's local etcd member through curl (on every kind node) and etcd's JSON
gateway (etcd v3 API, grpc-gateway). etcdctl lives only inside the etcd image, so it is not needed.

Member IDs travel as decimal strings (the gateway's uint64 encoding).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from typing import Any

from kindfix import probes
from kindfix.errors import KindfixError
from kindfix.node import Node

PKI = probes.ETCD_PKI
# kubeadm makes an IPv6 member listen on [::1], never on 127.0.0.1: try both
LOOPBACKS = ("127.0.0.1", "[::1]")
CURL_COULD_NOT_CONNECT = 7


def _curl(node: Node, url: str, body: dict[str, Any] | None, timeout: float) -> tuple[int, str]:
    """url is a path template with {host}; loopbacks are tried in order."""
    argv = ["curl", "-sS", "--max-time", str(max(1, math.ceil(timeout)))]  # 0 = no limit
    if url.startswith("https"):
        argv += ["--cacert", f"{PKI}/ca.crt", "--cert", f"{PKI}/healthcheck-client.crt",
                 "--key", f"{PKI}/healthcheck-client.key"]
    if body is not None:
        argv += ["-X", "POST", "-d", json.dumps(body)]
    rc, text = CURL_COULD_NOT_CONNECT, ""
    for host in LOOPBACKS:
        result = node.exec([*argv, url.format(host=host)], timeout=timeout + 10)
        rc, text = result.exit_code, result.text() or result.stderr.decode(errors="replace")
        if rc != CURL_COULD_NOT_CONNECT:
            break
    return rc, text


def call(node: Node, path: str, body: dict[str, Any] | None = None, timeout: float = 5
         ) -> dict[str, Any]:
    """POST to the local member's v3 JSON gateway; KindfixError when it does not answer."""
    rc, text = _curl(node, "https://{host}:2379" + path, body or {}, timeout)
    if rc != 0:
        raise KindfixError(f"etcd on {node.name} did not answer {path}: {text.strip()[:200]}")
    try:
        data = json.loads(text)
    except ValueError:
        raise KindfixError(f"etcd on {node.name} answered {path} with non-JSON: {text[:200]}"
                           ) from None
    if isinstance(data, dict) and ("error" in data or "code" in data) and "header" not in data:
        raise KindfixError(f"etcd on {node.name} refused {path}: "
                           f"{data.get('message') or data.get('error')}")
    return data if isinstance(data, dict) else {}


def members(node: Node) -> list[probes.EtcdMember]:
    data = call(node, "/v3/cluster/member/list")
    return [probes.EtcdMember(str(m.get("ID", "")), str(m.get("name", "")),
                              tuple(m.get("peerURLs", ())), tuple(m.get("clientURLs", ())),
                              bool(m.get("isLearner", False)))
            for m in data.get("members", [])]


def member_update(node: Node, member_id: str, peer_urls: Sequence[str]) -> None:
    call(node, "/v3/cluster/member/update", {"ID": member_id, "peerURLs": list(peer_urls)})


def member_add(node: Node, peer_urls: Sequence[str]) -> probes.EtcdMember:
    data = call(node, "/v3/cluster/member/add", {"peerURLs": list(peer_urls)})
    m = data.get("member", {})
    return probes.EtcdMember(str(m.get("ID", "")), str(m.get("name", "")),
                             tuple(m.get("peerURLs", ())), tuple(m.get("clientURLs", ())))


def member_remove(node: Node, member_id: str) -> None:
    call(node, "/v3/cluster/member/remove", {"ID": member_id})


def status(node: Node, timeout: float = 3) -> dict[str, Any] | None:
    try:
        return call(node, "/v3/maintenance/status", timeout=timeout)
    except KindfixError:
        return None


def metrics(node: Node) -> dict[str, int]:
    """Selected metrics from 127.0.0.1:2381, which answers even without a leader."""
    rc, text = _curl(node, "http://{host}:2381/metrics", None, 3)
    if rc != 0:
        return {}
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("etcd_server_has_leader", "etcd_debugging_mvcc_current_revision",
                    "etcd_server_proposals_applied_total", "etcd_debugging_mvcc_keys_total"):
            try:
                out[name] = int(float(value))
            except ValueError:
                continue
    return out


def healthy(node: Node, timeout: float = 3) -> bool:
    """The member has a leader and serves a linearizable request (status via the leader)."""
    st = status(node, timeout)
    return bool(st and str(st.get("leader", "0")) not in ("", "0"))


def wait_until(predicate: Any, what: str, timeout: float = 60, interval: float = 1) -> None:
    """Poll a predicate, bounded in time; KindfixError naming what never happened."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except KindfixError as e:
            last_error = f" (last error: {e.message})"
        time.sleep(interval)
    raise KindfixError(f"timed out after {timeout:.0f}s waiting for {what}{last_error}",
                       hint="rerun `kindfix repair`: it continues where it stopped")
