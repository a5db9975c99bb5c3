"""Create and destroy kind-shaped beds: containers + network labelled for sweeping.

Flow mirrors kind + kubeadm: containers start first (so Docker picks IPs as it does for kind),
then the kubeadm files go in, the first control plane's etcd comes up alone, and every further
member is added the kubeadm way (`member add`, then start with `--initial-cluster-state=existing`;
kubeadm `cmd/kubeadm/app/phases/etcd/local.go` CreateStackedEtcdStaticPodManifestFile).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import socket
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import docker
from docker.errors import APIError, NotFound

from testbed import images as img
from testbed import network as netmod
from testbed.container import ContainerError, Exec, Files, put_files, run_exec, wait_running
from testbed.kubeadm_files import NodeSpec
from testbed.lb_config import haproxy_cfg
from testbed.node_files import ClusterPKI, control_plane_files, manifests, worker_files

BED_LABEL = "dev.kindfix.testbed"
OWNER_LABEL = "dev.kindfix.testbed.owner"  # "<hostname>:<pid>": lets sweep_stale spot dead runs
KEEP = "keep"  # owner of beds that outlive their creator (the CLI's)
META_LABEL = "dev.kindfix.testbed.meta"  # JSON of the create_bed options, for load_bed
CLUSTER_LABEL = "io.x-k8s.kind.cluster"
ROLE_LABEL = "io.x-k8s.kind.role"
GENERATIONS = ("none", "v0.8", "v0.15", "v0.30")
ENTRYPOINTS = "/usr/local/share/kindbed/entrypoints"
PKI = "/etc/kubernetes/pki/etcd"
ETCD_WAIT_S = 90.0  # generous: several beds may share 2 cores
ADD_RETRY_S = 30.0  # TESTBED.md: `member add` is refused for about 5 s after a join
# kind's docker provider; its podman provider sets none (testbed/podman.py passes None)
KIND_DOCKER_RESTART: Mapping[str, object] = {"Name": "on-failure", "MaximumRetryCount": 1}
# (client, suggested name, labels) -> (network name, IPv4 subnet); default: network.create_network
NetworkFactory = Callable[[docker.DockerClient, str, Mapping[str, str]], tuple[str, str]]


class BedError(ContainerError):
    pass


@dataclass
class Bed:
    id: str
    cluster: str
    network: str
    subnet: str
    control_planes: list[str]
    workers: list[str]
    lb: str | None
    generation: str
    lb_mode: str
    etcd_image: str
    client: docker.DockerClient = field(repr=False)
    seeded_keys: int = 0
    owner: str = KEEP
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def nodes(self) -> list[str]:
        return [*self.control_planes, *self.workers]

    @property
    def containers(self) -> list[str]:
        return [*self.nodes, *([self.lb] if self.lb else [])]

    def ips(self) -> dict[str, str | None]:
        """Current IPv4 of every container on the bed network (None when not running)."""
        out: dict[str, str | None] = {}
        for name in self.containers:
            c = self.client.containers.get(name)
            nets = c.attrs["NetworkSettings"]["Networks"]
            ip = (nets.get(self.network) or {}).get("IPAddress") or None
            out[name] = ip if c.status == "running" else None
        return out

    def exec(self, name: str, argv: Sequence[str], stdin: bytes | None = None) -> Exec:
        return run_exec(self.client, name, argv, stdin)

    def etcdctl(
        self,
        node: str,
        *args: str,
        endpoint: str = "https://127.0.0.1:2379",
        stdin: bytes | None = None,
    ) -> Exec:
        """Run the etcd image's etcdctl inside `node` with the healthcheck client cert.

        Bounded by etcdctl's own timeouts: without quorum the client port hangs (TESTBED.md).
        """
        return self.exec(
            node,
            [
                f"{img.image_dir(img.ETCD_IMAGE)}/bin/etcdctl",
                f"--endpoints={endpoint}",
                f"--cacert={PKI}/ca.crt",
                f"--cert={PKI}/healthcheck-client.crt",
                f"--key={PKI}/healthcheck-client.key",
                "--dial-timeout=2s",
                "--command-timeout=4s",
                *args,
            ],
            stdin,
        )

    def destroy(self) -> None:
        remove_bed(self.client, self.id)


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _labels(bed_id: str, owner: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {BED_LABEL: bed_id, OWNER_LABEL: owner, **(extra or {})}


def _select_entrypoint(client: docker.DockerClient, name: str, generation: str) -> None:
    """Copy entrypoint-<gen> over /usr/local/bin/entrypoint in a created-not-started container."""
    c = client.containers.get(name)
    stream, _ = c.get_archive(f"{ENTRYPOINTS}/entrypoint-{generation}")
    raw = io.BytesIO(b"".join(stream))
    with tarfile.open(fileobj=raw) as tar:
        member = tar.getmembers()[0]
        data = tar.extractfile(member).read()  # type: ignore[union-attr]
    put_files(client, name, {"/usr/local/bin/entrypoint": (data, 0o755)})


def _create_node(
    client: docker.DockerClient,
    *,
    image: str,
    bed_id: str,
    cluster: str,
    network: str,
    name: str,
    role: str,
    generation: str,
    meta: str,
    owner: str,
    restart_policy: Mapping[str, object] | None = KIND_DOCKER_RESTART,
) -> None:
    client.containers.create(
        image,
        name=name,
        hostname=name,
        detach=True,
        network=network,
        labels=_labels(bed_id, owner, {CLUSTER_LABEL: cluster, ROLE_LABEL: role, META_LABEL: meta}),
        restart_policy=dict(restart_policy) if restart_policy else None,
        tmpfs={"/run": "rw,exec", "/tmp": "rw,exec"},
        # the stop is quick (kindbed-init exits 0 on SIGTERM); a bound keeps teardown bounded
        stop_signal="SIGTERM",
    )
    _select_entrypoint(client, name, generation)


def _wait(what: str, probe, timeout_s: float, interval_s: float = 0.5):
    """Poll `probe` (returns a truthy value when done) until timeout; raise with the last value."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last and getattr(last, "ok", True):
            return last
        time.sleep(interval_s)
    raise BedError(f"timed out after {timeout_s:.0f}s waiting for {what}: {last}")


def _kubeadm_certs(bed: Bed, node: str, phases: Sequence[str]) -> None:
    for phase in phases:
        res = bed.exec(
            node, ["kubeadm", "init", "phase", "certs", phase, "--config", "/kind/kubeadm.conf"]
        )
        if not res.ok:
            raise BedError(f"kubeadm init phase certs {phase} on {node}: {res.stdout}{res.stderr}")


def _member_add(bed: Bed, via: str, name: str, ip: str) -> None:
    deadline = time.monotonic() + ADD_RETRY_S
    while True:
        res = bed.etcdctl(via, "member", "add", name, f"--peer-urls=https://{ip}:2380")
        if res.ok:
            return
        if time.monotonic() > deadline:
            raise BedError(f"etcd member add {name} via {via}: {res.stderr.strip()}")
        time.sleep(1.0)


# several revisions (etcd allows 128 ops), so the "most up-to-date member" means something
SEED_TXN_OPS = 10


def _seed(bed: Bed, via: str, count: int) -> None:
    """Put /registry/kindbed/seed-1..count in transactions: one etcdctl per 100 keys."""
    for first in range(1, count + 1, SEED_TXN_OPS):
        last = min(count, first + SEED_TXN_OPS - 1)
        # `etcdctl txn` reads compares, success ops, failure ops, each block ended by an empty line
        ops = "".join(f"put /registry/kindbed/seed-{i} value-{i}\n" for i in range(first, last + 1))
        res = bed.etcdctl(via, "txn", stdin=f"\n{ops}\n\n".encode())
        if not res.ok or "SUCCESS" not in res.stdout:
            raise BedError(
                f"seeding keys {first}..{last} via {via} failed: {res.stdout}{res.stderr}"
            )
    bed.seeded_keys = max(count, 0)


def _install_etcdutl(bed: Bed) -> None:
    """A second etcd image dir with etcdutl (bed-contract.md), only for beds that ask for it."""
    base = img.image_dir(img.ETCD_IMAGE)
    d = img.image_dir(img.ETCD_IMAGE_ETCDUTL)
    src = img.etcd_binaries()
    files: Files = {
        f"{d}/bin/etcdutl": ((src / "etcdutl").read_bytes(), 0o755),
        f"{d}/ref": (img.ETCD_IMAGE_ETCDUTL.encode() + b"\n", 0o644),
    }
    for node in bed.control_planes:
        put_files(bed.client, node, files)
        for b in ("etcd", "etcdctl"):
            bed.exec(node, ["ln", "-sf", f"{base}/bin/{b}", f"{d}/bin/{b}"])


def _prepare_control_plane(bed: Bed, spec: NodeSpec, pki: ClusterPKI) -> None:
    put_files(bed.client, spec.name, control_plane_files(spec, pki))
    _kubeadm_certs(bed, spec.name, ("etcd-server", "etcd-peer", "apiserver"))


def _bring_up_control_planes(
    bed: Bed, pki: ClusterPKI, ips: Mapping[str, str], endpoint: str
) -> None:
    specs = [
        NodeSpec(bed.cluster, n, "control-plane", ips[n], endpoint) for n in bed.control_planes
    ]
    # files and serving certs do not depend on etcd: make them on every node at once
    with ThreadPoolExecutor(max_workers=len(specs)) as pool:
        list(pool.map(lambda sp: _prepare_control_plane(bed, sp, pki), specs))
    members: dict[str, str] = {}
    for i, spec in enumerate(specs):
        name = spec.name
        if i > 0:
            _member_add(bed, bed.control_planes[0], name, spec.ip)
        members[name] = spec.ip
        pods = manifests(spec, dict(members), existing=i > 0, etcd_image=bed.etcd_image)
        etcd = {p: f for p, f in pods.items() if p.endswith("/etcd.yaml")}
        # etcd alone first: on 2 cores, three more starting processes slow the join down
        put_files(bed.client, name, etcd)
        _wait(f"etcd on {name}", lambda n=name: bed.etcdctl(n, "endpoint", "health"), ETCD_WAIT_S)
        put_files(bed.client, name, {p: f for p, f in pods.items() if p not in etcd})


def _start_lb(
    bed: Bed,
    image: str,
    ips: Mapping[str, str],
    bed_id: str,
    restart_policy: Mapping[str, object] | None = KIND_DOCKER_RESTART,
) -> None:
    assert bed.lb is not None
    by_name = bed.lb_mode == "by-name"
    cfg = haproxy_cfg({n: (n if by_name else ips[n]) for n in bed.control_planes}, by_name=by_name)
    bed.client.containers.create(
        image,
        name=bed.lb,
        hostname=bed.lb,
        detach=True,
        network=bed.network,
        labels=_labels(
            bed_id, bed.owner, {CLUSTER_LABEL: bed.cluster, ROLE_LABEL: "external-load-balancer"}
        ),
        restart_policy=dict(restart_policy) if restart_policy else None,
    )
    put_files(bed.client, bed.lb, {img.HAPROXY_CFG: (cfg.encode(), 0o644)})
    bed.client.containers.get(bed.lb).start()
    wait_running(bed.client, bed.lb, bed.network)


def create_bed(
    control_planes: int = 1,
    workers: int = 0,
    *,
    generation: str = "v0.15",
    lb: str = "by-name",
    etcdutl: bool = False,
    seed_keys: int = 100,
    client: docker.DockerClient | None = None,
    images: img.Images | None = None,
    wait_healthy_s: float = 120.0,
    keep: bool = False,
    network_factory: NetworkFactory | None = None,
    restart_policy: Mapping[str, object] | None = KIND_DOCKER_RESTART,
) -> Bed:
    """Build a kind-shaped cluster on its own network; tear down everything on failure.

    `keep=True` marks the bed as owned by nobody in particular (the CLI), so `sweep_stale`
    leaves it alone after this process exits; `python -m testbed destroy|sweep --all` removes it.
    `network_factory` and `restart_policy` let another provider's shape in (testbed/podman.py:
    kind's `kind` network made the podman provider's way, no restart policy).
    """
    owner = KEEP if keep else _owner()
    if (
        control_planes not in (1, 3)
        or generation not in GENERATIONS
        or lb not in ("by-name", "literal")
    ):
        raise ValueError(
            f"unsupported bed: control_planes={control_planes} generation={generation} lb={lb}"
        )
    from testbed.engine import ensure_engine  # lazy: only when no client is passed in

    client = client or ensure_engine()
    images = images or img.ensure_images().images
    sweep_stale(client)
    t0 = time.monotonic()
    bed_id = secrets.token_hex(3)
    cluster = f"kb{bed_id}"
    cps = [f"{cluster}-control-plane{'' if i == 0 else i + 1}" for i in range(control_planes)]
    wks = [f"{cluster}-worker{'' if i == 0 else i + 1}" for i in range(workers)]
    lb_name = f"{cluster}-external-load-balancer" if control_planes > 1 else None
    make_network = network_factory or netmod.create_network
    network, subnet = make_network(client, f"kindbed-{bed_id}", _labels(bed_id, owner))
    etcd_image = img.ETCD_IMAGE_ETCDUTL if etcdutl else img.ETCD_IMAGE
    meta = json.dumps(
        {
            "generation": generation,
            "lb": lb,
            "etcd_image": etcd_image,
            "seed_keys": max(seed_keys, 0),
            "subnet": subnet,
            "network": network,
        }
    )
    bed = Bed(
        bed_id, cluster, network, subnet, cps, wks, lb_name, generation, lb, etcd_image, client
    )
    bed.owner = owner
    try:
        for name in bed.nodes:
            role = "control-plane" if name in cps else "worker"
            _create_node(
                client,
                image=images.node,
                bed_id=bed_id,
                cluster=cluster,
                network=network,
                name=name,
                role=role,
                generation=generation,
                owner=owner,
                meta=meta,
                restart_policy=restart_policy,
            )
        ips: dict[str, str] = {}
        for name in bed.nodes:  # in order, so IPs are allocated like kind's (lowest free first)
            client.containers.get(name).start()
            ips[name] = wait_running(client, name, network)
        if etcdutl:
            _install_etcdutl(bed)
        pki = ClusterPKI.generate()
        endpoint = lb_name or cps[0]
        for name in wks:
            put_files(
                client,
                name,
                worker_files(NodeSpec(cluster, name, "worker", ips[name], endpoint), pki),
            )
        _bring_up_control_planes(bed, pki, ips, endpoint)
        _seed(bed, cps[0], seed_keys)
        if lb_name:
            _start_lb(bed, images.lb, ips, bed_id, restart_policy)
        if wait_healthy_s > 0:
            from testbed.checks import check_bed  # lazy: checks imports this module

            _wait("a healthy bed", lambda: check_bed(bed), wait_healthy_s, 1.0)
    except BaseException:
        bed.destroy()
        raise
    bed.timings["create_s"] = time.monotonic() - t0
    return bed


def _containers_of(client: docker.DockerClient, bed_id: str | None) -> list:
    label = BED_LABEL if bed_id is None else f"{BED_LABEL}={bed_id}"
    return client.containers.list(all=True, filters={"label": label})


def remove_bed(client: docker.DockerClient, bed_id: str) -> None:
    """Remove a bed's containers (with their anonymous volumes) and network; idempotent."""
    for c in _containers_of(client, bed_id):
        with contextlib.suppress(NotFound):
            c.remove(force=True, v=True)
    for net in client.networks.list(filters={"label": f"{BED_LABEL}={bed_id}"}):
        for _ in range(5):
            try:
                net.remove()
                break
            except NotFound:
                break
            except APIError:  # an endpoint still detaching
                time.sleep(0.5)


def _alive(owner: str) -> bool:
    """Is the bed's owner still around? A non-"host:pid" owner (the CLI's "keep") always is."""
    host, _, pid = owner.rpartition(":")
    if not pid.isdigit():
        return True
    if host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(client: docker.DockerClient, everything: bool = False) -> list[str]:
    """Remove beds whose creating process is gone (or all labelled beds); return their ids."""
    owners: dict[str, str] = {}  # only things create_bed made (they carry OWNER_LABEL)
    for c in client.containers.list(all=True, filters={"label": OWNER_LABEL}):
        owners[c.labels[BED_LABEL]] = c.labels[OWNER_LABEL]
    for net in client.networks.list(filters={"label": OWNER_LABEL}):
        labels = net.attrs.get("Labels") or {}
        owners.setdefault(labels[BED_LABEL], labels[OWNER_LABEL])
    swept = [b for b, owner in sorted(owners.items()) if everything or not _alive(owner)]
    for bed_id in swept:
        remove_bed(client, bed_id)
    return swept


def load_bed(client: docker.DockerClient, ref: str) -> Bed:
    """Rebuild a Bed handle from the labels of a running bed (by bed id or cluster name)."""
    found = _containers_of(client, ref) or client.containers.list(
        all=True, filters={"label": [BED_LABEL, f"{CLUSTER_LABEL}={ref}"]}
    )
    if not found:
        raise BedError(f"no test bed {ref!r}")
    labels = found[0].labels
    bed_id, cluster = labels[BED_LABEL], labels[CLUSTER_LABEL]
    meta = json.loads(next(c.labels[META_LABEL] for c in found if META_LABEL in c.labels))
    by_role: dict[str, list[str]] = {}
    for c in _containers_of(client, bed_id):
        by_role.setdefault(c.labels.get(ROLE_LABEL, ""), []).append(c.name)

    def order(names: list[str]) -> list[str]:  # kind's suffix order: "", 2, 3, ...
        return sorted(names, key=lambda n: (len(n), n))

    lbs = by_role.get("external-load-balancer", [])
    return Bed(
        bed_id,
        cluster,
        meta.get("network", f"kindbed-{bed_id}"),
        meta["subnet"],
        order(by_role.get("control-plane", [])),
        order(by_role.get("worker", [])),
        lbs[0] if lbs else None,
        meta["generation"],
        meta["lb"],
        meta["etcd_image"],
        client,
        seeded_keys=meta["seed_keys"],
        owner=labels.get(OWNER_LABEL, KEEP),
    )
