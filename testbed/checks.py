"""What a bed looks like from the inside, as plain data, plus a `healthy` verdict with reasons.

Shared by the integration tests and the demo. TESTBED.md: health alone proves nothing (a
swapped cluster can report healthy with stale peer URLs), so the verdict compares every
advertised address with the container's current IP: etcd member peer/client URLs, cert SANs,
the load balancer's backend addresses; and it asks each component for its health.
kube-controller-manager and kube-scheduler answer /healthz `ok` whenever they are not the leader
(client-go LeaderElector.Check), so their health is proven otherwise: their Leases
kube-system/<component> (read through the apiserver with admin.conf's credentials) must be held
by a control plane of the bed and renewed within the lease duration, and no instance may have
logged `error retrieving resource lock` in the last 10 s (one cut off from the apiserver).
"""

from __future__ import annotations

import json
import time
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
ELECTED = ("kube-controller-manager", "kube-scheduler")
LEASE_DURATION = 15
# two components renew a Lease every 2 s: members read a moment apart may be a few revisions
# apart; diverged members (a restore from another snapshot) differ by far more
REVISION_SLACK = 10
# Reads each named Lease through this node's apiserver with admin.conf's inline credentials,
# then prints the node's clock (renewTime is compared with it)
READ_LEASES = r"""
d=$(mktemp -d); trap 'rm -rf "$d"' EXIT
for f in client-certificate-data:crt client-key-data:key certificate-authority-data:ca; do
  sed -n "s/^ *${f%%:*}: *//p" /etc/kubernetes/admin.conf | head -n1 | base64 -d > "$d/${f##*:}"
done
for l; do
  curl -sS --max-time 5 --cacert "$d/ca" --cert "$d/crt" --key "$d/key" \
    "https://$(hostname):6443/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/$l"
  echo; echo @@lease
done
date +%s
"""
LOCK_ERRORS = r"""
for c; do
  id=$(crictl ps -q --name "^$c\$" | head -n1)
  [ -n "$id" ] && crictl logs --since 10s "$id" 2>&1 |
    grep 'error retrieving resource lock' | tail -n1 | sed "s|^|$c: |"
done
true
"""


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
    read: bool = True  # False: no such file (kind's entrypoint removes apiserver.crt to remake it)


@dataclass(frozen=True)
class Health:
    node: str
    component: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str  # holderIdentity, "<hostname>_<uuid>"
    age: float | None  # seconds since renewTime, by the node's clock
    error: str = ""


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
    leases: tuple[Lease, ...] = ()
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
        read = res.ok and bool(res.stdout)
        dns, ips = pki.sans(pki.load_cert(res.stdout.encode())) if read else ([], [])
        out.append(CertSans(node, cert, tuple(dns), tuple(ips), read))
    return out


def _micro_time(text: str) -> float:
    from datetime import datetime, timezone

    return datetime.strptime(text.rstrip("Z")[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(
        tzinfo=timezone.utc).timestamp()


def parse_leases(text: str, names: tuple[str, ...] = ELECTED) -> tuple[Lease, ...]:
    """Pure: READ_LEASES' output."""
    *answers, clock = text.split("@@lease")
    try:
        now = float(clock.strip())
    except ValueError:
        now = time.time()
    out = []
    for name, raw in zip(names, answers):
        try:
            spec = json.loads(raw)["spec"]
            out.append(Lease(name, str(spec.get("holderIdentity", "")),
                             now - _micro_time(spec["renewTime"])))
        except (ValueError, KeyError, TypeError):
            out.append(Lease(name, "", None, raw.strip()[:200] or "no answer"))
    return tuple(out)


def leases(bed: Bed, node: str) -> tuple[Lease, ...]:
    res = bed.exec(node, ["sh", "-c", READ_LEASES, "read-leases", *ELECTED])
    return parse_leases(res.stdout)


def component_health(bed: Bed, node: str) -> list[Health]:
    out = []
    errors = bed.exec(node, ["sh", "-c", LOCK_ERRORS, "lock-errors", *ELECTED]).stdout
    for comp in ELECTED:
        line = next((ln for ln in errors.splitlines() if ln.startswith(f"{comp}: ")), "")
        out.append(Health(node, f"{comp} leader election", not line, line[:300]))
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
    if revisions and max(revisions) - min(revisions) > REVISION_SLACK:
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


def _lease_reasons(cps: list[str], r: Report) -> list[str]:
    reasons = []
    for lease in r.leases:
        holder = lease.holder.rsplit("_", 1)[0]
        if lease.error or lease.age is None:
            reasons.append(f"lease kube-system/{lease.name} unreadable: {lease.error}")
        elif holder not in cps:
            reasons.append(f"lease kube-system/{lease.name} held by {lease.holder!r}, "
                           "not a control plane")
        elif lease.age > LEASE_DURATION:
            reasons.append(f"lease kube-system/{lease.name} held by {holder} not renewed for "
                           f"{lease.age:.0f} s")
    return reasons


def verdict(bed: Bed, r: Report) -> tuple[str, ...]:
    """Pure: every reason the bed is not healthy (empty means healthy)."""
    reasons = [f"{name} is not running" for name, ip in r.ips.items() if ip is None]
    reasons += _etcd_reasons(bed.control_planes, bed.seeded_keys, r)
    reasons += [
        f"{c.node} {c.cert} SANs {list(c.ips)} lack its IP {r.ips[c.node]}" if c.read else
        f"{c.node} {c.cert} unreadable (none yet, or being remade)"
        for c in r.certs
        if r.ips.get(c.node) and r.ips[c.node] not in c.ips
    ]
    reasons += [f"{h.component} on {h.node} unhealthy: {h.detail}" for h in r.health if not h.ok]
    reasons += _lease_reasons(bed.control_planes, r)
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
        leases_f = pool.submit(leases, bed, running_cps[0]) if running_cps else None
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
            leases=leases_f.result() if leases_f else (),
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


def wait_healthy(bed: Bed, timeout_s: float) -> Report:
    """check_bed until healthy or `timeout_s` (every 2 s), the last report either way. The
    components settle for a few seconds after a repair: a controller-manager that failed to reach
    its apiserver while kindfix restarted it has logged lock errors within LOCK_ERRORS' 10 s."""
    deadline = time.monotonic() + timeout_s
    report = check_bed(bed)
    while not report.healthy and time.monotonic() < deadline:
        time.sleep(2)
        report = check_bed(bed)
    return report
