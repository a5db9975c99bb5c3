"""Stand-in for the kubelet's static-pod lifecycle (kubelet + containerd, as seen from a node).

Copies:
- Static pods from /etc/kubernetes/manifests, re-read about every 1 s (kubelet: 20 s file
  check + inotify; inotify makes real changes near-instant, so 1 s is the closer figure).
- A pod is identified by the hash of its decoded manifest: a content change removes the old pod
  (SIGTERM, 5 s grace, SIGKILL) and creates a new one with attempt 0; touch/mtime-only changes
  and same-content rewrites do nothing; a removed (or unparseable) manifest stops and forgets it.
- restartPolicy Always: an exited container (crash, `crictl stop`, kill) is recreated with
  attempt+1 after a back-off of 1 s doubling to 10 s, reset after a run of 10 s or more.
  (Real kubelet: CrashLoopBackOff 10 s doubling to 5 min, reset after 10 min: shortened so
  tests finish.) Only the newest exited container per name is kept (kubelet GC keeps one).
- Containers run under a detached shim (see shim.py), so SIGTERM/restart of the kubelet leaves
  them running and a new kubelet adopts them, as containerd keeps containers across a kubelet
  restart. Stopping the node (kindbed-init) is what kills them.
- Labels/annotations and /var/log/pods/<ns>_<pod>_<uid>/<name>/<attempt>.log as the kubelet
  writes them; pod name = <metadata.name>-<node name>.
- Reads --node-ip from /var/lib/kubelet/kubeadm-flags.env only to log it.
Limits: no API server, no probes, no volumes/namespaces/cgroups, one sandbox per pod with no
network; an image is "present" when /var/lib/kindbed/images/<image-dir>/ exists, otherwise the
container is not created (ErrImagePull, retried with the same back-off).
Usage: kubelet [--hostname-override NAME] [any other kubelet flags are accepted and ignored]
"""

from __future__ import annotations

import hashlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import klog, state
from .manifest import StaticPod, scan
from .paths import NODE_PATH, container_env_path, image_dir, node_path

MANIFESTS = "/etc/kubernetes/manifests"
FLAGS_ENV = "/var/lib/kubelet/kubeadm-flags.env"
# KINDBED_KUBELET_SYNC_PERIOD shortens the poll for host tests only.
SYNC_PERIOD = float(os.environ.get("KINDBED_KUBELET_SYNC_PERIOD") or 1.0)
STOP_GRACE = 5.0
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 10.0
BACKOFF_RESET_AFTER = 10.0


def package_root() -> str:
    """The directory to put on PYTHONPATH so `<package>.shim` imports (host or node layout)."""
    depth = (__package__ or "standins").count(".") + 1
    return str(Path(__file__).resolve().parents[depth])


def kubeadm_flags(text: str) -> list[str]:
    """The arguments in KUBELET_KUBEADM_ARGS="..." (as systemd expands $KUBELET_KUBEADM_ARGS)."""
    for line in text.splitlines():
        if line.startswith("KUBELET_KUBEADM_ARGS="):
            return " ".join(shlex.split(line.partition("=")[2])).split()
    return []


def node_ip_from_flags(text: str) -> str | None:
    for arg in kubeadm_flags(text):
        if arg.startswith("--node-ip="):
            return arg.partition("=")[2]
    return None


@dataclass
class Backoff:
    delay: float = 0.0
    not_before: float = 0.0


@dataclass
class PodState:
    pod: StaticPod
    sandbox: dict[str, Any]
    backoff: dict[str, Backoff] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return str(self.sandbox["id"])

    @property
    def full_name(self) -> str:
        return str(self.sandbox["metadata"]["name"])


class Kubelet:
    def __init__(self, node_name: str) -> None:
        self.node_name = node_name
        self.pods: dict[str, PodState] = {}

    # --- pods -------------------------------------------------------------------------------
    def _new_sandbox(self, pod: StaticPod) -> dict[str, Any]:
        name = f"{pod.name}-{self.node_name}"
        sandbox = {
            "id": state.new_id(),
            "metadata": {
                "name": name,
                "uid": pod.config_hash,
                "namespace": pod.namespace,
                "attempt": 0,
            },
            "state": "SANDBOX_READY",
            "createdAt": state.now_ns(),
            "labels": {
                "io.kubernetes.pod.name": name,
                "io.kubernetes.pod.namespace": pod.namespace,
                "io.kubernetes.pod.uid": pod.config_hash,
                "tier": "control-plane",
                "component": pod.name,
            },
            "annotations": {
                **pod.annotations,
                "kubernetes.io/config.hash": pod.config_hash,
                "kubernetes.io/config.source": "file",
            },
            "runtimeHandler": "",
            "manifest": pod.path,
        }
        state.write_pod(sandbox)
        return sandbox

    def add_pod(self, pod: StaticPod) -> None:
        ps = PodState(pod, self._new_sandbox(pod))
        self.pods[pod.path] = ps
        klog.info(
            "kubelet.go:2400",
            f'"SyncLoop ADD" source="file" pods=["{pod.namespace}/{ps.full_name}"]',
        )

    def remove_pod(self, path: str) -> None:
        ps = self.pods.pop(path)
        klog.info(
            "kubelet.go:2416",
            f'"SyncLoop REMOVE" source="file" pods=["{ps.pod.namespace}/{ps.full_name}"]',
        )
        for c in self.containers_of(ps.id):
            stop_container(c, STOP_GRACE)
            state.remove_container(c.id)
        state.remove_pod(ps.id)

    def containers_of(self, pod_id: str) -> list[state.Container]:
        return [c for c in state.load_containers() if c.pod_id == pod_id]

    # --- containers ---------------------------------------------------------------------------
    def start_container(self, ps: PodState, spec: dict[str, Any], attempt: int) -> None:
        cname = str(spec["name"])
        ref = str(spec.get("image", ""))
        if not image_dir(ref).is_dir():
            raise RuntimeError(
                f'failed to pull and unpack image "{ref}": failed to resolve reference "{ref}": '
                "no image directory in /var/lib/kindbed/images (ErrImagePull)"
            )
        argv = [str(a) for a in (spec.get("command") or [])] + [
            str(a) for a in (spec.get("args") or [])
        ]
        env = {"PATH": container_env_path(ref), "HOSTNAME": self.node_name}
        if os.environ.get("KINDBED_ROOT"):
            env["KINDBED_ROOT"] = os.environ["KINDBED_ROOT"]
        env.update(
            {str(e["name"]): str(e.get("value", "")) for e in spec.get("env") or [] if "name" in e}
        )
        cid = state.new_id()
        meta = ps.sandbox["metadata"]
        config = {
            "id": cid,
            "podSandboxId": ps.id,
            "metadata": {"name": cname, "attempt": attempt},
            # containerd lists the resolved image id here; the ref the pod asked for is kept aside.
            "image": {"image": state.image_id(ref), "annotations": {}},
            "imageRef": state.image_id(ref),
            "imageName": ref,
            "createdAt": state.now_ns(),
            "labels": {
                "io.kubernetes.container.name": cname,
                "io.kubernetes.pod.name": meta["name"],
                "io.kubernetes.pod.namespace": meta["namespace"],
                "io.kubernetes.pod.uid": meta["uid"],
            },
            "annotations": {
                "io.kubernetes.container.hash": hashlib.md5(  # noqa: S324 - identity
                    repr(sorted(spec.items())).encode()
                ).hexdigest()[:8],
                "io.kubernetes.container.restartCount": str(attempt),
                "io.kubernetes.container.terminationMessagePath": "/dev/termination-log",
                "io.kubernetes.container.terminationMessagePolicy": "File",
                "io.kubernetes.pod.terminationGracePeriod": "30",
            },
            "logPath": f"/var/log/pods/{meta['namespace']}_{meta['name']}_{meta['uid']}/{cname}/{attempt}.log",  # noqa: E501 - the kubelet's log path layout
            "argv": argv,
            "env": env,
            "workingDir": str(spec.get("workingDir") or "/"),
        }
        state.write_config(config)
        state.write_status(cid, {"state": state.CREATED, "pid": 0})
        shim_env = {"PATH": os.environ.get("PATH", NODE_PATH), "PYTHONPATH": package_root()}
        if os.environ.get("KINDBED_ROOT"):
            shim_env["KINDBED_ROOT"] = os.environ["KINDBED_ROOT"]
        subprocess.Popen(
            [sys.executable, "-m", f"{__package__}.shim", cid],
            env=shim_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ).wait(timeout=30)
        klog.info(
            "kuberuntime_container.go:300",
            f'"Started container" pod="{meta["namespace"]}/{meta["name"]}" containerName="{cname}" attempt={attempt} containerID="{cid}"',  # noqa: E501 - upstream's message, kept greppable
        )

    def sync_containers(self, ps: PodState, now: float) -> None:
        existing = self.containers_of(ps.id)
        for spec in ps.pod.containers:
            cname = str(spec.get("name"))
            mine = [c for c in existing if c.name == cname]
            latest = max(mine, key=lambda c: int(c.config.get("createdAt", 0)), default=None)
            if latest is not None and latest.state in (state.RUNNING, state.CREATED):
                continue
            bo = ps.backoff.setdefault(cname, Backoff())
            if latest is not None and bo.not_before == 0.0:
                ran = (
                    int(latest.status.get("finishedAt", 0)) - int(latest.status.get("startedAt", 0))
                ) / 1e9
                bo.delay = (
                    BACKOFF_INITIAL
                    if (bo.delay == 0.0 or ran >= BACKOFF_RESET_AFTER)
                    else min(bo.delay * 2, BACKOFF_MAX)
                )
                bo.not_before = now + bo.delay
                klog.info(
                    "kuberuntime_manager.go:1000",
                    f'"Container exited, will restart" pod="{ps.pod.namespace}/{ps.full_name}" containerName="{cname}" exitCode={latest.status.get("exitCode")} backOff="{bo.delay:g}s"',  # noqa: E501 - upstream's message, kept greppable
                )
            if now < bo.not_before:
                continue
            for old in mine:
                if old is not latest:
                    state.remove_container(old.id)
            attempt = latest.attempt + 1 if latest is not None else 0
            try:
                self.start_container(ps, spec, attempt)
                bo.not_before = 0.0
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                bo.delay = min(max(bo.delay * 2, BACKOFF_INITIAL), BACKOFF_MAX)
                bo.not_before = now + bo.delay
                klog.error(
                    "pod_workers.go:1300",
                    f'"Error syncing pod, skipping" err="failed to \\"StartContainer\\" for \\"{cname}\\": {e}" pod="{ps.pod.namespace}/{ps.full_name}"',  # noqa: E501 - upstream's message, kept greppable
                )

    # --- the loop -----------------------------------------------------------------------------
    def adopt(self) -> None:
        """Take over pods a previous kubelet left running, when their manifest is unchanged."""
        wanted, _ = scan(node_path(MANIFESTS))
        for sandbox in state.load_pods():
            pod = wanted.get(str(sandbox.get("manifest")))
            if (
                pod is not None
                and pod.config_hash == sandbox["metadata"]["uid"]
                and pod.path not in self.pods
            ):
                self.pods[pod.path] = PodState(pod, sandbox)
                continue
            for c in self.containers_of(str(sandbox["id"])):
                stop_container(c, STOP_GRACE)
                state.remove_container(c.id)
            state.remove_pod(str(sandbox["id"]))

    def sync_once(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        wanted, errors = scan(node_path(MANIFESTS))
        for path, err in errors.items():
            klog.error(
                "file.go:187", f'"Could not process manifest file" err="{err}" path="{path}"'
            )
        for path in list(self.pods):
            if path not in wanted or wanted[path].config_hash != self.pods[path].pod.config_hash:
                self.remove_pod(path)
        for path, pod in wanted.items():
            if path not in self.pods:
                self.add_pod(pod)
        for ps in list(self.pods.values()):
            self.sync_containers(ps, now)


def stop_container(c: state.Container, grace: float) -> None:
    """CRI StopContainer: SIGTERM, wait `grace`, then SIGKILL (grace 0 = SIGKILL at once)."""
    if grace > 0 and state.signal_container(c, signal.SIGTERM):
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _running(c.id):
            time.sleep(0.05)
    if state.signal_container(c, signal.SIGKILL):
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and _running(c.id):
            time.sleep(0.05)


def _running(cid: str) -> bool:
    c = state.load_container(cid)
    return c is not None and c.state == state.RUNNING


def main(argv: list[str]) -> int:
    node_name = socket.gethostname().lower()
    for i, arg in enumerate(argv):
        if arg.startswith("--hostname-override="):
            node_name = arg.partition("=")[2]
        elif arg == "--hostname-override" and i + 1 < len(argv):
            node_name = argv[i + 1]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    klog.info(
        "server.go:487",
        f'"Kubelet version" kubeletVersion="v1.29.2" standIn="kindbed" node="{node_name}"',
    )
    try:
        ip = node_ip_from_flags(node_path(FLAGS_ENV).read_text())
    except OSError:
        ip = None
    klog.info(
        "kubelet_node_status.go:70", f'"Using node IP" nodeIP="{ip or ""}" source="{FLAGS_ENV}"'
    )
    kubelet = Kubelet(node_name)
    kubelet.adopt()
    while not stop.is_set():
        kubelet.sync_once()
        stop.wait(SYNC_PERIOD)
    # Like a real kubelet, leave the containers to the runtime (the shims): they keep running.
    klog.info(
        "server.go:1000", '"Shutting down kubelet; containers keep running under their shims"'
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
