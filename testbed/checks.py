"""What a bed looks like from the inside, as plain data, plus a `healthy` verdict with reasons.

Shared by the integration tests and the demo. TESTBED.md: health alone proves nothing (a
swapped cluster can report healthy with stale peer URLs), so the verdict compares every
advertised address with the container's current IP: etcd member peer/client URLs, cert SANs,
the load balancer's backend addresses; and it asks each component for its health.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from testbed.bed import Bed
from testbed.lb_config import BACKEND, STATS_SOCKET
from testbed.standins import pki

SERVING_CERTS = ("apiserver.crt", "etcd/server.crt", "etcd/peer.crt")
COMPONENT_URLS = {
    "kube-apiserver": "https://127.0.0.1:6443/readyz",
    "kube-controller-manager": "https://127.0.0.1:10257/healthz",
    "kube-scheduler": "https://127.0.0.1:10259/healthz",
}
SEED_PREFIX = "/registry/kindbed/"


def _last_line(text: str) -> str:
    """etcdctl prints JSON retry logs first and the error last: keep the error."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


@dataclass(frozen=True)
class Member:
    id: str
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]


@dataclass(frozen=True)
class MemberData:
    node: str
    revision: int | None
    keys: int | None
    error: str = ""


@dataclass(frozen=True)
class CertSans:
    node: str
    cert: str
    dns: tuple[str, ...]
    ips: tuple[str, ...]


@dataclass(frozen=True)
class Health:
    node: str
    component: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class LbServer:
    name: str
    addr: str
    op_state: int  # haproxy srv_op_state: 0 stopped, 1 starting, 2 running (UP), 3 stopping


@dataclass(frozen=True)
class Report:
    ips: dict[str, str | None]
    members: tuple[Member, ...]
    member_list_error: str
    data: tuple[MemberData, ...]
    certs: tuple[CertSans, ...]
    health: tuple[Health, ...]
    lb: tuple[LbServer, ...]
    lb_error: str
    reasons: tuple[str, ...] = field(default=())

    @property
    def healthy(self) -> bool:
        return not self.reasons

    @property
    def ok(self) -> bool:
        return self.healthy


def member_list(bed: Bed) -> tuple[tuple[Member, ...], str]:
    """Ask every control plane at once; etcd answers only with quorum, so take any success."""
    with ThreadPoolExecutor(max_workers=len(bed.control_planes)) as pool:
        results = list(
            pool.map(
                lambda n: (n, bed.etcdctl(n, "member", "list", "-w", "json")), bed.control_planes
            )
        )
    for _node, res in results:
        if res.ok:
            try:  # etcdctl can exit 0 with nothing on stdout while the member is starting
                return parse_member_list(res.stdout), ""
            except (ValueError, KeyError, TypeError):
                continue
    node, res = results[-1]
    return (), f"{node}: {_last_line(res.stderr)}"


def parse_member_list(text: str) -> tuple[Member, ...]:
    data = json.loads(text)
    return tuple(
        Member(
            str(m["ID"]),
            m.get("name", ""),
            tuple(m.get("peerURLs", ())),
            tuple(m.get("clientURLs", ())),
        )
        for m in data.get("members", ())
    )


def member_data(bed: Bed, node: str) -> MemberData:
    """Revision and seeded-key count from this member's own store (serializable read)."""
    res = bed.etcdctl(
        node, "get", SEED_PREFIX, "--prefix", "--keys-only", "--consistency=s", "-w", "json"
    )
    if not res.ok:
        return MemberData(node, None, None, _last_line(res.stderr))
    try:  # etcdctl can exit 0 with nothing on stdout while the member is still starting
        data = json.loads(res.stdout)
        return MemberData(node, int(data["header"]["revision"]), int(data.get("count", 0)))
    except (ValueError, KeyError, TypeError):
        return MemberData(node, None, None, f"no JSON from etcdctl: {res.stdout[:80]!r} "
                                            f"{_last_line(res.stderr)}")


def cert_sans(bed: Bed, node: str) -> list[CertSans]:
    out = []
    for cert in SERVING_CERTS:
        res = bed.exec(node, ["cat", f"/etc/kubernetes/pki/{cert}"])
        dns, ips = (
            pki.sans(pki.load_cert(res.stdout.encode())) if res.ok and res.stdout else ([], [])
        )
        out.append(CertSans(node, cert, tuple(dns), tuple(ips)))
    return out


def component_health(bed: Bed, node: str) -> list[Health]:
    out = []
    for comp, url in COMPONENT_URLS.items():
        res = bed.exec(node, ["curl", "-sk", "--max-time", "3", "-w", "\n%{http_code}", url])
        body, _, code = res.stdout.rpartition("\n")
        failing = [ln for ln in body.splitlines() if ln.startswith("[-]")]  # verbose health output
        detail = "; ".join(failing) or (body.strip().splitlines() or [""])[0][:200]
        out.append(Health(node, comp, res.ok and code == "200", f"{code} {detail}".strip()))
    return out


def parse_servers_state(text: str) -> tuple[LbServer, ...]:
    """Parse `show servers state` (format 1: a version line, a '# col ...' header, rows)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    header = next((ln[1:].split() for ln in lines if ln.startswith("#")), [])
    rows = []
    for ln in lines:
        if ln.startswith("#") or len(ln.split()) < len(header) or not header:
            continue
        row = dict(zip(header, ln.split()))
        rows.append(LbServer(row["srv_name"], row["srv_addr"], int(row["srv_op_state"])))
    return tuple(rows)


def lb_servers(bed: Bed) -> tuple[tuple[LbServer, ...], str]:
    if not bed.lb:
        return (), ""
    if bed.client.containers.get(bed.lb).status != "running":
        return (), f"{bed.lb} is not running"
    res = bed.exec(
        bed.lb,
        [
            "sh",
            "-c",
            f'echo "show servers state {BACKEND}" | socat stdio unix-connect:{STATS_SOCKET}',
        ],
    )
    if not res.ok:
        return (), res.stderr.strip()
    return parse_servers_state(res.stdout), ""


def _etcd_reasons(cps: list[str], seeded: int, r: Report) -> list[str]:
    reasons: list[str] = []
    if r.member_list_error:
        reasons.append(f"etcd member list failed (no quorum?): {r.member_list_error}")
    elif sorted(m.name for m in r.members) != sorted(cps):
        reasons.append(f"etcd members {[m.name for m in r.members]} != control planes {cps}")
    for m in r.members:
        ip = r.ips.get(m.name)
        if m.peer_urls != (f"https://{ip}:2380",):
            reasons.append(f"etcd member {m.name} peer URLs {list(m.peer_urls)}, node IP is {ip}")
        if m.client_urls != (f"https://{ip}:2379",):
            reasons.append(
                f"etcd member {m.name} client URLs {list(m.client_urls)}, node IP is {ip}"
            )
    for d in r.data:
        if d.error:
            reasons.append(f"etcd on {d.node} did not answer: {d.error}")
        elif (d.keys or 0) < seeded:
            reasons.append(f"etcd on {d.node} has {d.keys} seeded keys, expected {seeded}")
    revisions = {d.revision for d in r.data if d.revision is not None}
    if len(revisions) > 1:
        reasons.append(f"etcd revisions differ between members: {sorted(revisions)}")
    return reasons


def _lb_reasons(cps: list[str], r: Report) -> list[str]:
    if r.lb_error:
        return [f"load balancer: {r.lb_error}"]
    reasons: list[str] = []
    seen = {s.name: s for s in r.lb}
    for cp in cps:
        s = seen.get(cp)
        if s is None:
            reasons.append(f"load balancer has no backend {cp}")
        elif s.addr != r.ips.get(cp) or s.op_state != 2:
            reasons.append(
                f"load balancer backend {cp} -> {s.addr} (state {s.op_state}), "
                f"node IP is {r.ips.get(cp)}"
            )
    return reasons


def verdict(bed: Bed, r: Report) -> tuple[str, ...]:
    """Pure: every reason the bed is not healthy (empty means healthy)."""
    reasons = [f"{name} is not running" for name, ip in r.ips.items() if ip is None]
    reasons += _etcd_reasons(bed.control_planes, bed.seeded_keys, r)
    reasons += [
        f"{c.node} {c.cert} SANs {list(c.ips)} lack its IP {r.ips[c.node]}"
        for c in r.certs
        if r.ips.get(c.node) and r.ips[c.node] not in c.ips
    ]
    reasons += [f"{h.component} on {h.node} unhealthy: {h.detail}" for h in r.health if not h.ok]
    if bed.lb:
        reasons += _lb_reasons(bed.control_planes, r)
    return tuple(reasons)


def check_bed(bed: Bed) -> Report:
    """Observe everything (per-node probes in parallel: a broken etcd costs its timeouts once)."""
    ips = bed.ips()
    running_cps = [n for n in bed.control_planes if ips.get(n)]
    with ThreadPoolExecutor(max_workers=2 + 3 * max(1, len(running_cps))) as pool:
        members_f = pool.submit(member_list, bed)
        lb_f = pool.submit(lb_servers, bed)
        data_f = [pool.submit(member_data, bed, n) for n in running_cps]
        certs_f = [pool.submit(cert_sans, bed, n) for n in running_cps]
        health_f = [pool.submit(component_health, bed, n) for n in running_cps]
        members, err = members_f.result()
        lb, lb_err = lb_f.result()
        r = Report(
            ips=ips,
            members=members,
            member_list_error=err,
            data=tuple(f.result() for f in data_f),
            certs=tuple(c for f in certs_f for c in f.result()),
            health=tuple(h for f in health_f for h in f.result()),
            lb=lb,
            lb_error=lb_err,
        )
    return Report(**{**r.__dict__, "reasons": verdict(bed, r)})


def component_logs(bed: Bed, node: str, name: str) -> str:
    """Every attempt's log of static pod container `name` on `node`, oldest first.

    Read from the files the kubelet keeps (/var/log/pods/<ns>_<pod>_<uid>/<name>/<n>.log; one
    exec, and older attempts survive there after crictl forgets their containers); crictl
    logs when there are none.
    """
    pattern = f"/var/log/pods/kube-system_{name}-{node}_*/{name}/*.log"
    res = bed.exec(node, ["sh", "-c", f"ls -tr {pattern} 2>/dev/null | xargs -r cat"])
    if res.stdout.strip():
        return res.stdout
    ids = bed.exec(node, ["crictl", "ps", "-a", "--name", name, "-q"])
    out = []
    for cid in ids.stdout.split():
        logs = bed.exec(node, ["crictl", "logs", cid])
        out.append(logs.stdout + logs.stderr)
    return "\n".join(out)
