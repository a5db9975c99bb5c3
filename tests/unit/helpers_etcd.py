"""A fake etcd cluster answering the curl argv kindfix runs in a node (kindfix/etcd.py, verify.py).

It follows the shapes TESTBED.md measured on real etcd 3.5's JSON gateway: IDs and revisions as
decimal strings, `{"error", "code", "message"}` bodies for refused calls, a client port that
times out (curl exit 28) without quorum while 127.0.0.1:2381/metrics still answers, and
`curl: (7)` on a loopback the member does not listen on (kubeadm's IPv6 members listen on [::1]).
Also the control-plane /readyz and /healthz endpoints verify.py asks. Limits: no raft, no TLS, one
shared view of the member list for every node.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from kindfix.runtime import ExecResult
from tests.fakes import FakeNode


def _curl_error(code: int, text: str) -> ExecResult:
    return ExecResult(code, b"", f"curl: ({code}) {text}\n".encode())


@dataclass
class FakeEtcd:
    """Members as the gateway lists them; `leader` None means quorum is lost."""

    members: list[dict[str, Any]]
    leader: str | None = None
    revision: int = 1342
    loopback: str = "127.0.0.1"  # where the members listen (kubeadm: the advertise family's)
    cluster_id: str = "3470259701913743731"
    metrics_by_node: dict[str, dict[str, float]] = field(default_factory=dict)
    # (node name, port) for a node's own 127.0.0.1 endpoints, (host, port) for another host:
    # the body answered instead of "ok"
    unhealthy: dict[tuple[str, int], str] = field(default_factory=dict)
    # ports of a node's own components that listen on [::1] only (kubeadm's IPv6 scheduler)
    v6_loopback_only: set[int] = field(default_factory=set)
    refuse_add: int = 0  # how many member/add calls are refused ("unhealthy cluster")
    refuse_update: int = 0  # how many member/update calls are refused
    requests: list[tuple[str, str, dict[str, Any] | None]] = field(default_factory=list)
    # whether a node's member is up at all (None: every node's is); a stopped member refuses
    # connections on both ports, as when its static pod is gone
    serving: Callable[[FakeNode], bool] | None = None
    # called before every request, so a test can let the cluster react to files the code wrote
    before: Callable[[FakeEtcd], None] | None = None
    _next_id: int = 1000
    # the load balancer: backends haproxy marks DOWN, and whether curl shows serving certs
    lb_down: set[str] = field(default_factory=set)
    curl_shows_certs: bool = True
    _attached: dict[str, FakeNode] = field(default_factory=dict)

    def attach(self, *nodes: FakeNode) -> None:
        for node in nodes:
            node.on(("curl",), self._handle)
            node.on_script("through-lb", self._through_lb)
            self._attached[node.name] = node

    def _through_lb(self, node: FakeNode, argv: Sequence[str], _stdin: bytes | None
                    ) -> ExecResult:
        """through-lb.sh: argv[4] requests to argv[5], each printing its HTTP code and the
        serving chain (curl >= 7.88 %{certs}), then @@kindfix-request. Like kind's haproxy
        (mode tcp, balance roundrobin) each connection goes to the next backend not DOWN."""
        up = [n for n in self._attached if n not in self.lb_down]
        out = ""
        for i in range(int(argv[4])):
            body = self._handle(node, ["curl", "-sk", "--max-time", "3", argv[5]], None).stdout
            code = "200" if body == b"ok" and up else "503" if up else "000"
            pem = ""
            if up and self.curl_shows_certs:
                pem = self._attached[up[i % len(up)]].files.get(
                    "/etc/kubernetes/pki/apiserver.crt", b"").decode()
            out += f"{code}\n{pem}\n@@kindfix-request\n"
        return ExecResult(0, out.encode(), b"")

    def member_id(self, name: str) -> str:
        return next(str(m["ID"]) for m in self.members if m.get("name") == name)

    def _header(self, node: FakeNode) -> dict[str, str]:
        me = next((m for m in self.members if m.get("name") == node.name), {})
        return {"cluster_id": self.cluster_id, "member_id": str(me.get("ID", "0")),
                "revision": str(self.revision), "raft_term": "2"}

    def _handle(self, node: FakeNode, argv: Sequence[str],  # noqa: PLR0911
                _stdin: bytes | None) -> ExecResult:  # one answer per port and state
        url = urlsplit(argv[-1])
        host = url.hostname or ""
        body = json.loads(argv[argv.index("-d") + 1]) if "-d" in argv else None
        self.requests.append((node.name, url.path, body))
        if self.before is not None:
            self.before(self)
        down = self.serving is not None and not self.serving(node)
        if url.port in (2379, 2381) and (down or self.loopback not in (host, f"[{host}]")):
            return _curl_error(7, f"Failed to connect to {host} port {url.port}: "
                                  "Connection refused")
        if url.port == 2381:
            return self._metrics(node)
        if url.port == 2379:
            if self.leader is None:
                return _curl_error(28, "Operation timed out after 3001 milliseconds with 0 "
                                       "bytes received")
            return self._gateway(node, url.path, body or {})
        if host == "127.0.0.1" and url.port in self.v6_loopback_only:
            return _curl_error(7, f"Failed to connect to {host} port {url.port}: "
                                  "Connection refused")
        local = host in ("127.0.0.1", "::1", "localhost")
        bad = self.unhealthy.get((node.name if local else host, url.port or 0))
        if bad is not None:
            return ExecResult(0, bad.encode(), b"")
        return ExecResult(0, b"ok", b"")

    def _metrics(self, node: FakeNode) -> ExecResult:
        values = {"etcd_server_has_leader": 1 if self.leader else 0,
                  "etcd_debugging_mvcc_current_revision": self.revision,
                  "etcd_server_proposals_applied_total": self.revision + 117,
                  "etcd_mvcc_db_total_size_in_bytes": 2.113536e06}
        values.update(self.metrics_by_node.get(node.name, {}))
        text = "# HELP etcd_server_has_leader Whether or not a leader exists.\n" + "".join(
            f"{k} {v:g}\n" if isinstance(v, float) else f"{k} {v}\n" for k, v in values.items())
        return ExecResult(0, text.encode(), b"")

    def _answer(self, data: dict[str, Any]) -> ExecResult:
        return ExecResult(0, json.dumps(data).encode(), b"")

    def _gateway(self, node: FakeNode, path: str, body: dict[str, Any]  # noqa: PLR0911
                 ) -> ExecResult:  # one answer per gateway path
        header = self._header(node)
        if path == "/v3/cluster/member/list":
            return self._answer({"header": header, "members": self.members})
        if path == "/v3/maintenance/status":
            return self._answer({"header": header, "version": "3.5.10", "dbSize": "2113536",
                                 "leader": self.leader, "raftIndex": str(self.revision + 117),
                                 "raftTerm": "2"})
        if path == "/v3/cluster/member/update":
            if self.refuse_update:
                self.refuse_update -= 1
                return self._answer({"error": "etcdserver: request timed out", "code": 14,
                                     "message": "etcdserver: request timed out"})
            target = next((m for m in self.members if str(m["ID"]) == body.get("ID")), None)
            if target is None:
                return self._answer({"error": "etcdserver: member not found", "code": 5,
                                     "message": "etcdserver: member not found"})
            target["peerURLs"] = list(body["peerURLs"])
            return self._answer({"header": header, "members": self.members})
        if path == "/v3/cluster/member/add":
            if self.refuse_add:
                self.refuse_add -= 1
                return self._answer({"error": "etcdserver: unhealthy cluster", "code": 14,
                                     "message": "etcdserver: unhealthy cluster"})
            self._next_id += 1
            member = {"ID": str(self._next_id), "peerURLs": list(body["peerURLs"])}
            self.members.append(member)
            return self._answer({"header": header, "member": member, "members": self.members})
        return self._answer({"error": "Not Found", "code": 5, "message": "Not Found"})


def member(node_id: str, name: str, ip: str) -> dict[str, Any]:
    host = f"[{ip}]" if ":" in ip else ip
    return {"ID": node_id, "name": name, "peerURLs": [f"https://{host}:2380"],
            "clientURLs": [f"https://{host}:2379"]}
