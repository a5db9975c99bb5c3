"""Kind-shaped beds on Podman, reached through its Docker-compatible API socket (issue #8).

What kind's podman provider does (kubernetes-sigs/kind
pkg/cluster/internal/providers/podman/{provider,network,provision}.go), and what the bed copies:
- one network, `kind` (KIND_EXPERIMENTAL_PODMAN_NETWORK overrides it), made with
  `podman network create -d=bridge --ipv6 --subnet <ULA /64 from sha1(name)> kind`: podman adds an
  IPv4 /24 of its own (10.89.x.0/24), so nodes are dual-stack like on Docker;
- the labels `io.x-k8s.kind.cluster` / `io.x-k8s.kind.role`, hostname = container name;
- NO restart policy (the docker provider sets `on-failure:1`).

What this machine family needs (measured, TESTBED.md): podman 4.3 runs every container with
RLIMIT_NOFILE/NPROC above what the sandbox allows (`error setting rlimit type 7`, then 6), so a
containers.conf drop-in sets `default_ulimits` (it covers the API socket too, which per-run
`--ulimit` flags do not).

How IPs move (measured here, podman 4.3.1 + netavark 1.4): the IPAM hands out the address AFTER
the last one it gave, not the lowest free one as dockerd does. Every stop/start of a node gives
it a new address, in any order; addresses come back only when the /24 wraps. A 1 control plane +
1 worker cluster that is stopped and started (any order) has moved every node.

The bed itself is testbed.bed's, with the client, network factory and restart policy passed in.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import resource
import shutil
import struct
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from testbed import images as img
from testbed.bed import Bed, NetworkFactory, create_bed
from testbed.engine import ping_socket, start_daemon

SOCKET = Path("/run/podman/podman.sock")
SERVICE_LOG = Path("/var/log/podman-service.log")
ULIMITS_CONF = Path("/etc/containers/containers.conf.d/50-kindbed-ulimits.conf")
KIND_NETWORK = "kind"  # kind's fixedNetworkName
# netavark gives container-name DNS through aardvark-dns (kind nodes reach each other by name);
# a fresh podman 4.3 picks it by itself (`podman info`: networkBackend), so the conf below leaves
# the backend alone: forcing it would hide the networks of a podman that already uses CNI.
# without --no-install-recommends apt would also pull buildah, dbus-user-session and more.
PACKAGES = ("podman", "netavark", "aardvark-dns")
APT_TIMEOUT_S = 900
START_TIMEOUT_S = 30.0
LOAD_TIMEOUT_S = 300
CLI_TIMEOUT_S = 60
# Measured: podman 4.3 lowers its own RLIMIT_NPROC to 32768 (/proc/<conmon>/limits), and runc
# may not set a container's limit above its parent's.
PODMAN_NPROC_CAP = 32768
_NETWORK_ATTEMPTS = 5  # kind's maxAttempts for a non-overlapping ULA subnet


class PodmanError(RuntimeError):
    """Podman could not be installed, configured, started or used."""


@dataclass
class PodmanEngine:
    """A client on the rootful API socket, with what getting there cost."""

    client: docker.DockerClient
    timings: dict[str, float] = field(default_factory=dict)


# --- pure helpers (unit-tested) ------------------------------------------------------------


def kind_ula_subnet(name: str, attempt: int = 0) -> str:
    """kind's generateULASubnetFromName: fc00::/8 + bytes 2..7 of sha1(name + LE int32 attempt)."""
    digest = hashlib.sha1(name.encode() + struct.pack("<i", attempt)).digest()  # noqa: S324 - kind's
    raw = bytes([0xFC, 0x00]) + digest[2:8] + bytes(8)
    return str(ipaddress.IPv6Network((raw, 64)))


def kind_network_argv(name: str, subnet: str, labels: Mapping[str, str]) -> list[str]:
    """kind's createNetwork argv, plus labels so the bed can sweep what it made."""
    argv = ["podman", "network", "create", "-d=bridge", "--ipv6", "--subnet", subnet]
    for key, value in sorted(labels.items()):
        argv += ["--label", f"{key}={value}"]
    return [*argv, name]


def _limit(hard: int, cap: int | None = None) -> str | None:
    """"N:N" for a finite hard limit (capped), None for an unlimited one: nothing to stay under."""
    if hard == resource.RLIM_INFINITY:
        return None
    top = min(hard, cap) if cap else hard
    return f"{top}:{top}"


def ulimits_conf(nofile: tuple[int, int], nproc: tuple[int, int]) -> str:
    """A containers.conf drop-in that keeps containers within this process's (soft, hard) limits.

    Soft = hard, as dockerd gives its containers here, so haproxy and etcd need not raise them.
    """
    limits = []
    nofile_v = _limit(nofile[1])
    nproc_v = _limit(nproc[1], PODMAN_NPROC_CAP)
    if nofile_v:
        limits.append(f'"nofile={nofile_v}"')
    if nproc_v:
        limits.append(f'"nproc={nproc_v}"')
    return (
        "# written by the kindfix test bed (testbed/podman.py): podman's default ulimits exceed\n"
        "# what this machine allows (`error setting rlimit type 7: operation not permitted`)\n"
        "[containers]\n"
        f"default_ulimits = [{', '.join(limits)}]\n"
    )


def ipv4_subnet(inspect: Sequence[Mapping[str, object]]) -> str:
    """The IPv4 subnet of `podman network inspect` JSON (podman 4: `subnets[].subnet`)."""
    for net in inspect:
        for sub in net.get("subnets") or []:  # type: ignore[attr-defined]
            subnet = str(sub.get("subnet", ""))
            if subnet and ":" not in subnet:
                return subnet
    raise PodmanError(f"no IPv4 subnet in podman network inspect output: {inspect}")


# --- the engine ----------------------------------------------------------------------------


def ping() -> docker.DockerClient | None:
    """A client when the socket answers now, else None."""
    return ping_socket(SOCKET, version="auto")


def install_podman() -> float:
    """apt-get install podman (bounded); seconds taken."""
    t0 = time.monotonic()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES],
    ):
        try:
            subprocess.run(argv, check=True, env=env, timeout=APT_TIMEOUT_S, capture_output=True)
        except subprocess.CalledProcessError as err:
            tail = (err.stderr or b"").decode(errors="replace").strip().splitlines()[-3:]
            raise PodmanError(f"{' '.join(argv)} failed (exit {err.returncode}): {tail}") from err
    return time.monotonic() - t0


def write_ulimits_conf(path: Path = ULIMITS_CONF) -> bool:
    """Write the drop-in when it differs; True when it changed (a running service must restart)."""
    text = ulimits_conf(
        resource.getrlimit(resource.RLIMIT_NOFILE), resource.getrlimit(resource.RLIMIT_NPROC)
    )
    with contextlib.suppress(FileNotFoundError):
        if path.read_text() == text:
            return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True


def start_service() -> None:
    SOCKET.parent.mkdir(parents=True, exist_ok=True)
    start_daemon(["podman", "system", "service", "--time=0", f"unix://{SOCKET}"], SERVICE_LOG)


def ensure_podman(timeout_s: float = START_TIMEOUT_S) -> PodmanEngine:
    """A client on the rootful podman socket: install podman, configure ulimits and start
    `podman system service` when needed. Rootful only (the test bed runs as root)."""
    if os.geteuid() != 0:
        raise PodmanError("the podman test bed is rootful: run it as root")
    timings: dict[str, float] = {}
    if shutil.which("podman") is None:
        timings["install_s"] = install_podman()
    changed = write_ulimits_conf()
    client = ping()
    if client is not None:
        if changed:  # a service someone else started reads the conf only at its start
            raise PodmanError(
                f"wrote {ULIMITS_CONF}; restart the running `podman system service` to apply it"
            )
        return PodmanEngine(client, timings)
    t0 = time.monotonic()
    start_service()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        client = ping()
        if client is not None:
            timings["service_start_s"] = time.monotonic() - t0
            return PodmanEngine(client, timings)
        time.sleep(0.2)
    raise PodmanError(
        f"podman did not answer on {SOCKET} within {timeout_s:.0f}s; see {SERVICE_LOG}"
    )


def _run(argv: Sequence[str], timeout_s: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout_s, check=False
    )


def has_image(tag: str) -> bool:
    return _run(["podman", "image", "exists", tag]).returncode == 0


def load_images(tags: Sequence[str]) -> float:
    """`docker save | podman load` of the tags podman lacks (TESTBED.md); seconds taken."""
    missing = [t for t in tags if not has_image(t)]
    if not missing:
        return 0.0
    t0 = time.monotonic()
    with subprocess.Popen(
        ["docker", "save", *missing], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as save:
        load = subprocess.run(
            ["podman", "load"],
            stdin=save.stdout,
            capture_output=True,
            text=True,
            timeout=LOAD_TIMEOUT_S,
            check=False,
        )
        assert save.stdout is not None
        save.stdout.close()
        save_err = save.stderr.read().decode(errors="replace") if save.stderr else ""
        save.wait(timeout=LOAD_TIMEOUT_S)
    if save.returncode != 0 or load.returncode != 0:
        raise PodmanError(
            f"docker save {' '.join(missing)} | podman load failed: "
            f"{save_err.strip()} {load.stderr.strip()}"
        )
    return time.monotonic() - t0


def prune_old_images(keep: Sequence[str], repo: str = "kindbed-node") -> list[str]:
    """Remove podman's `repo` tags other than `keep`, built over an hour ago, used by nothing.

    Every stand-in change makes a new node tag (images.node_tag) and `load_images` copies it
    over; the rule is images.prune_old_node_images' (the hour spares a concurrent run, and
    `podman rmi` without -f refuses an image a container uses).
    """
    wanted = {t.split("/")[-1] for t in keep}
    out = _run(["podman", "images", f"localhost/{repo}", "--format", "{{.Repository}}:{{.Tag}}"])
    removed = []
    for tag in out.stdout.split():
        if tag.split("/")[-1] in wanted:
            continue
        created = _run(["podman", "image", "inspect", "-f", "{{.Created.Unix}}", tag]).stdout
        if not created.strip().isdigit() or time.time() - int(created) < img.PRUNE_AFTER_S:
            continue
        if _run(["podman", "rmi", tag]).returncode == 0:
            removed.append(tag)
    return removed


# --- the bed -------------------------------------------------------------------------------


def kind_network(name: str = KIND_NETWORK) -> NetworkFactory:
    """A bed.NetworkFactory for network `name` (kind's `kind`; KIND_EXPERIMENTAL_PODMAN_NETWORK)."""

    def factory(
        _client: docker.DockerClient, _suggested: str, labels: Mapping[str, str]
    ) -> tuple[str, str]:
        return ensure_kind_network(name, labels)

    return factory


def ensure_kind_network(name: str, labels: Mapping[str, str]) -> tuple[str, str]:
    """kind's ensureNetwork through the podman CLI, as kind runs it; returns (name, IPv4 subnet).

    An existing network is used as kind would use it (shared by every cluster) and left to its
    owner; one made here carries the bed's labels, so removing the bed removes it.
    """
    exists = _run(["podman", "network", "inspect", name])
    if exists.returncode != 0:
        last = ""
        for attempt in range(_NETWORK_ATTEMPTS):
            res = _run(kind_network_argv(name, kind_ula_subnet(name, attempt), labels))
            if res.returncode == 0:
                break
            last = res.stderr.strip()
            if "already exists" in last:  # a concurrent creator: use theirs
                break
            if "is being used" not in last and "already being used" not in last:
                raise PodmanError(f"podman network create {name} failed: {last}")
        else:
            raise PodmanError(f"no free ULA subnet for podman network {name}: {last}")
        exists = _run(["podman", "network", "inspect", name])
    if exists.returncode != 0:
        raise PodmanError(f"podman network inspect {name} failed: {exists.stderr.strip()}")
    return name, ipv4_subnet(json.loads(exists.stdout))


def create_podman_bed(
    engine: PodmanEngine,
    images: img.Images,
    workers: int = 1,
    network: str = KIND_NETWORK,
    **kwargs: Any,
) -> Bed:
    """A 1 control plane + `workers` bed shaped as kind's podman provider makes clusters.

    The node image must already be in podman (`load_images`).
    """
    return create_bed(
        1,
        workers,
        client=engine.client,
        images=images,
        network_factory=kind_network(network),
        restart_policy=None,
        **kwargs,
    )
