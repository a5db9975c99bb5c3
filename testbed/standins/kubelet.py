"""Stand-in for the kubelet's static-pod lifecycle (kubelet + containerd, as seen from a node).

Copies:
- Static pods from /etc/kubernetes/manifests, re-read about every 1 s (kubelet: 20 s file
  check + inotify; inotify makes real changes near-instant, so 1 s is the closer figure).
- A pod is identified by the hash of its decoded manifest: a content change removes the old pod
  (SIGTERM, 5 s grace, SIGKILL) and creates a new one with attempt 0; touch/mtime-only changes
  and same-content rewrites do nothing; a removed (or unparseable) manifest stops and forgets it.
- restartPolicy Always with the kubelet's CrashLoopBackOff (pkg/kubelet/kubelet.go
  backOffPeriod = 10 s, MaxContainerBackOff = 300 s; kuberuntime_manager.go doBackOff;
  client-go util/flowcontrol/backoff.go): the first exit of a container is restarted at once,
  each later one waits 10 s, 20 s, 40 s ... 300 s counted from its finish; the entry is keyed
  by pod name, namespace, UID and container (a static pod's UID is its manifest hash, so an
  unchanged manifest keeps its back-off) and forgotten after 2 x 300 s without a failure. The
  back-off lives in kubelet memory: a restarted kubelet starts exited containers at once, and
  so does this one after `crictl rm` of the exited container (no exited container, no back-off).
  Only the newest exited container per name is kept (kubelet GC keeps one).
- Probes (pkg/kubelet/prober): httpGet startupProbe, then livenessProbe, per running container
  in its own worker: initialDelaySeconds, periodSeconds, timeoutSeconds, failureThreshold
  consecutive failures -> "failed startup/liveness probe, will be restarted", the container is
  stopped (SIGTERM, grace, SIGKILL) and restarted under the back-off above. HTTP(S) without
  certificate verification, 200-399 is success, as the kubelet's prober. So kubeadm's etcd
  startupProbe (/health?serializable=false, 24 x 10 s) kills a member without a leader after
  about 4 minutes, and an apiserver whose /livez fails 8 x 10 s is restarted.
- A pod's sandbox is looked up in the runtime by the pod's UID (kuberuntime computePodActions,
  podSandboxChanged): one that no pod holds is reused with its containers, several are all
  killed and a new one is made.
- Containers run under a detached shim (see shim.py), so SIGTERM/restart of the kubelet leaves
  them running and a new kubelet adopts them, as containerd keeps containers across a kubelet
  restart. Stopping the node (kindbed-init) is what kills them.
- Labels/annotations and /var/log/pods/<ns>_<pod>_<uid>/<name>/<attempt>.log as the kubelet
  writes them; pod name = <metadata.name>-<node name>.
- Sources ready (pkg/kubelet/config/sources.go, kubelet.go deletePod / HandlePodCleanups): a
  kubelet deletes pods only once every pod source is ready, and the API server source is ready
  only after it listed pods, so a kubelet whose API server has not answered since it started
  (every control plane after a Docker restart: etcd, hence the API server, is down) never
  terminates a static pod whose manifest changed or was removed: "Failed to delete pod"
  err="skipping delete because sources aren't ready yet" (kubernetes#116880, #109596). The old
  pod stays, its containers keep being restarted under back-off, and the new pod (new UID) is
  not started while the old one is there; pods left running by an earlier kubelet whose
  manifest changed or went are left alone (housekeeping is skipped) until the sources are
  ready. Ready = `GET <server>/readyz` of /etc/kubernetes/kubelet.conf answered 200 once since
  this process started (polled every second); a new kubelet process starts not ready again and
  knows only the manifests on disk. KINDBED_KUBELET_SOURCES=always (environment or
  /etc/default/kubelet) makes the sources ready at once: the kinder stand-in of before.
- Reads --node-ip from /var/lib/kubelet/kubeadm-flags.env only to log it.
Limits: no API server, no readiness/exec/tcpSocket probes, no volumes/namespaces/cgroups, one
sandbox per pod with no network; an image is "present" when /var/lib/kindbed/images/<image-dir>/
exists, otherwise the container is not created (ErrImagePull, retried under its own back-off).
Usage: kubelet [--hostname-override NAME] [any other kubelet flags are accepted and ignored]
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shlex
import signal
import socket
import ssl
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
# KINDBED_KUBELET_START_DELAY: seconds between the kubelet's start and its first pod sync.
# A real kind node runs static pods only after systemd, containerd and the kubelet are up: tens
# of seconds after `docker start` (issue #10); the stand-in starts them at once unless told.
START_DELAY = "KINDBED_KUBELET_START_DELAY"
# kind's kubelet unit reads this EnvironmentFile (10-kubeadm.conf); kindbed-init passes no
# environment to the kubelet, so the knob is also read from this file, where a test can put it.
DEFAULTS_FILE = "/etc/default/kubelet"
# KINDBED_KUBELET_SOURCES: "api" (default): the pod sources are ready once the API server
# answered; "always": ready at once (no finding-1 deadlock; the stand-in before it copied it)
SOURCES = "KINDBED_KUBELET_SOURCES"
KUBELET_CONF = "/etc/kubernetes/kubelet.conf"
SOURCES_POLL = 1.0
STOP_GRACE = 5.0
# pkg/kubelet/kubelet.go: backOffPeriod, MaxContainerBackOff; flowcontrol forgets an entry
# after 2 x the maximum without a failure (hasExpired)
BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0
BACKOFF_EXPIRE = 2 * BACKOFF_MAX


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


def _setting(name: str, environ: dict[str, str] | None = None) -> str | None:
    """A knob from the environment, else from the node's /etc/default/kubelet."""
    value = (os.environ if environ is None else environ).get(name)
    if value is None:
        try:
            text = node_path(DEFAULTS_FILE).read_text()
        except OSError:
            text = ""
        for line in text.splitlines():
            if line.startswith(name + "="):
                value = " ".join(shlex.split(line.partition("=")[2]))
    return value


def sources_always_ready(environ: dict[str, str] | None = None) -> bool:
    """KINDBED_KUBELET_SOURCES=always: the kinder stand-in (sources ready without an API)."""
    return (_setting(SOURCES, environ) or "api").strip() == "always"


def api_server(kubeconfig: str) -> str | None:
    """The first cluster's server URL of a kubeconfig (kind's kubelet.conf has one)."""
    for line in kubeconfig.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "server" and value.strip():
            return value.strip().strip("'\"")
    return None


def api_answers(server: str, timeout: float = 2.0) -> bool:
    """GET <server>/readyz answers 200 (what the kubelet's pod list needs: a serving API)."""
    host, _, port = server.removeprefix("https://").partition("/")[0].rpartition(":")
    if not host or not port.isdigit():
        return False  # kubeadm always writes host:port
    ok, _ = http_probe({"httpGet": {"host": host.strip("[]"), "port": int(port),
                                    "path": "/readyz", "scheme": "HTTPS"}}, timeout)
    return ok


def start_delay(environ: dict[str, str] | None = None) -> float:
    """KINDBED_KUBELET_START_DELAY from the environment, else from /etc/default/kubelet; 0."""
    value = _setting(START_DELAY, environ)
    try:
        return max(0.0, float(value or 0))
    except ValueError:
        return 0.0


def node_ip_from_flags(text: str) -> str | None:
    for arg in kubeadm_flags(text):
        if arg.startswith("--node-ip="):
            return arg.partition("=")[2]
    return None


@dataclass
class BackoffEntry:
    """One client-go flowcontrol.Backoff entry: the current delay and when it last grew."""

    backoff: float
    last_update: float


class Backoff:
    """client-go util/flowcontrol.Backoff as the kubelet uses it (no jitter)."""

    def __init__(self, initial: float = BACKOFF_INITIAL, maximum: float = BACKOFF_MAX) -> None:
        self.initial, self.maximum = initial, maximum
        self.entries: dict[str, BackoffEntry] = {}

    def _expired(self, entry: BackoffEntry, event_time: float) -> bool:
        return event_time - entry.last_update > 2 * self.maximum

    def in_backoff_since(self, key: str, event_time: float, now: float) -> bool:
        entry = self.entries.get(key)
        if entry is None or self._expired(entry, event_time):
            return False
        return now - event_time < entry.backoff

    def next(self, key: str, event_time: float, now: float) -> None:
        entry = self.entries.get(key)
        if entry is None or self._expired(entry, event_time):
            self.entries[key] = BackoffEntry(self.initial, now)
        else:
            entry.backoff = min(entry.backoff * 2, self.maximum)
            entry.last_update = now

    def delay(self, key: str) -> float:
        entry = self.entries.get(key)
        return entry.backoff if entry else 0.0

    def gc(self, now: float) -> None:
        for key in [k for k, e in self.entries.items() if now - e.last_update > 2 * self.maximum]:
            del self.entries[key]


@dataclass
class PodState:
    pod: StaticPod
    sandbox: dict[str, Any]
    # container name -> finishedAt of the exit last reported as being in back-off (log once)
    reported: dict[str, int] = field(default_factory=dict)

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
        self.backoff = Backoff()  # in memory only: a new kubelet process starts without any
        self.pull_backoff = Backoff()
        self.probers: dict[str, Prober] = {}
        self.stopping = threading.Event()
        # pkg/kubelet/config SourcesReady: set once, for the life of this process
        self.sources_ready = threading.Event()
        if sources_always_ready():
            self.sources_ready.set()
        self.orphans: list[str] = []  # sandboxes of an earlier kubelet no manifest wants now
        self.refused: set[str] = set()  # pod UIDs whose "skipping delete" was logged

    def watch_sources(self) -> None:
        """Until the API server answers once: poll kubelet.conf's server (a daemon thread)."""
        while not self.sources_ready.is_set() and not self.stopping.is_set():
            try:
                server = api_server(node_path(KUBELET_CONF).read_text())
            except OSError:
                server = None
            if server and api_answers(server):
                klog.info("config.go:105", '"All pod sources are ready" source="api"')
                self.sources_ready.set()
                return
            self.stopping.wait(SOURCES_POLL)

    def backoff_key(self, ps: PodState, cname: str) -> str:
        """kuberuntime getStableKey: pod name, namespace, UID and container name."""
        meta = ps.sandbox["metadata"]
        return f"{meta['name']}_{meta['namespace']}_{meta['uid']}_{cname}"

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

    def _sandbox_for(self, pod: StaticPod) -> dict[str, Any]:
        """kuberuntime computePodActions / podSandboxChanged: the runtime's sandboxes of the
        pod's UID (a static pod's UID is its manifest hash) that no pod of ours holds: one is
        the pod's and is reused (its containers with it: a restored manifest of unchanged
        content gets its parked pod back, not a second one beside it); several are "Multiple
        sandboxes are ready for Pod" and all are killed before a new one is made; none: new."""
        held = {ps.id for ps in self.pods.values()}
        same = [s for s in state.load_pods() if _of_pod(s, pod) and str(s["id"]) not in held]
        for s in same:
            if str(s["id"]) in self.orphans:
                self.orphans.remove(str(s["id"]))
        if len(same) == 1:
            return same[0]
        for s in same:
            for c in self.containers_of(str(s["id"])):
                stop_container(c, STOP_GRACE)
                state.remove_container(c.id)
            state.remove_pod(str(s["id"]))
        return self._new_sandbox(pod)

    def add_pod(self, pod: StaticPod, adopted: bool = False) -> None:
        ps = PodState(pod, self._sandbox_for(pod))
        self.pods[pod.path] = ps
        if adopted:
            return
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
    def start_container(self, ps: PodState, spec: dict[str, Any], attempt: int) -> str:
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
        return cid

    def sync_containers(self, ps: PodState, now: float) -> None:
        existing = self.containers_of(ps.id)
        for spec in ps.pod.containers:
            cname = str(spec.get("name"))
            mine = [c for c in existing if c.name == cname]
            latest = max(mine, key=lambda c: int(c.config.get("createdAt", 0)), default=None)
            if latest is not None and latest.state in (state.RUNNING, state.CREATED):
                self.ensure_prober(ps, spec, latest.id)
                continue
            key = self.backoff_key(ps, cname)
            if latest is not None:  # kuberuntime doBackOff, from the exited container's finish
                finished = int(latest.status.get("finishedAt", 0)) / 1e9 or now
                if self.backoff.in_backoff_since(key, finished, now):
                    if ps.reported.get(cname) != latest.status.get("finishedAt"):
                        ps.reported[cname] = int(latest.status.get("finishedAt", 0))
                        klog.error(
                            "pod_workers.go:1300",
                            f'"Error syncing pod, skipping" err="failed to \\"StartContainer\\" for \\"{cname}\\" with CrashLoopBackOff: \\"back-off {self.backoff.delay(key):g}s restarting failed container={cname} pod={ps.full_name}_{ps.pod.namespace}({ps.sandbox["metadata"]["uid"]})\\"" pod="{ps.pod.namespace}/{ps.full_name}"',  # noqa: E501 - upstream's message, kept greppable
                        )
                    continue
                self.backoff.next(key, finished, now)
            elif self.pull_backoff.in_backoff_since(key, self.pull_backoff_at(key), now):
                continue
            for old in mine:
                if old is not latest:
                    state.remove_container(old.id)
            attempt = latest.attempt + 1 if latest is not None else 0
            try:
                self.ensure_prober(ps, spec, self.start_container(ps, spec, attempt))
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                self.pull_backoff.next(key, now, now)
                klog.error(
                    "pod_workers.go:1300",
                    f'"Error syncing pod, skipping" err="failed to \\"StartContainer\\" for \\"{cname}\\": {e}" pod="{ps.pod.namespace}/{ps.full_name}"',  # noqa: E501 - upstream's message, kept greppable
                )

    def pull_backoff_at(self, key: str) -> float:
        entry = self.pull_backoff.entries.get(key)
        return entry.last_update if entry else 0.0

    def ensure_prober(self, ps: PodState, spec: dict[str, Any], cid: str) -> None:
        if cid in self.probers or not (spec.get("startupProbe") or spec.get("livenessProbe")):
            return
        prober = Prober(self, ps, spec, cid)
        self.probers[cid] = prober
        prober.start()

    # --- the loop -----------------------------------------------------------------------------
    def adopt(self) -> None:
        """Take over pods a previous kubelet left running, when their manifest is unchanged
        (one sandbox per pod UID: _sandbox_for); the rest are orphans for housekeeping."""
        wanted, _ = scan(node_path(MANIFESTS))
        sandboxes = state.load_pods()
        self.orphans = [str(s["id"]) for s in sandboxes]
        for pod in wanted.values():
            if any(_of_pod(s, pod) for s in sandboxes):
                self.add_pod(pod, adopted=True)
        self.clean_orphans()

    def clean_orphans(self) -> None:
        """Housekeeping (HandlePodCleanups) kills pods no source wants, only once the sources
        are ready; until then their containers keep running, and nobody restarts them."""
        if not self.sources_ready.is_set():
            return
        for pod_id in self.orphans:
            for c in self.containers_of(pod_id):
                stop_container(c, STOP_GRACE)
                state.remove_container(c.id)
            state.remove_pod(pod_id)
        self.orphans = []

    def sync_once(self, now: float | None = None) -> None:
        # wall time: a container's finishedAt (the back-off's event time) is wall time too
        now = time.time() if now is None else now
        self.backoff.gc(now)
        self.pull_backoff.gc(now)
        for cid in [cid for cid, p in self.probers.items() if not p.is_alive()]:
            del self.probers[cid]
        wanted, errors = scan(node_path(MANIFESTS))
        for path, err in errors.items():
            klog.error(
                "file.go:187", f'"Could not process manifest file" err="{err}" path="{path}"'
            )
        self.clean_orphans()
        for path in list(self.pods):
            if path not in wanted or wanted[path].config_hash != self.pods[path].pod.config_hash:
                if self.sources_ready.is_set():
                    self.remove_pod(path)
                    continue
                # kubelet.go deletePod; the old pod stays and blocks the new one (same path)
                ps = self.pods[path]
                if ps.pod.config_hash not in self.refused:
                    self.refused.add(ps.pod.config_hash)
                    klog.error("kubelet.go:2440", f'"Failed to delete pod" '
                               f'pod="{ps.pod.namespace}/{ps.full_name}" err="skipping delete '
                               "because sources aren't ready yet\"")
        for path, pod in wanted.items():
            if path not in self.pods:
                self.add_pod(pod)
        for ps in list(self.pods.values()):
            self.sync_containers(ps, now)


class Prober(threading.Thread):
    """pkg/kubelet/prober worker for one container: startupProbe until it succeeds, then
    livenessProbe; failureThreshold failures in a row stop the container (restarted under
    back-off by the sync loop)."""

    def __init__(self, kubelet: Kubelet, ps: PodState, spec: dict[str, Any], cid: str) -> None:
        super().__init__(daemon=True, name=f"prober-{cid[:12]}")
        self.kubelet, self.ps, self.spec, self.cid = kubelet, ps, spec, cid
        self.started_at = time.time()

    def _running(self) -> bool:
        return not self.kubelet.stopping.is_set() and _running(self.cid)

    def _wait_started(self) -> bool:
        deadline = time.monotonic() + 10.0  # the shim reports the start within a moment
        while not self._running():
            c = state.load_container(self.cid)
            if c is None or c.state == state.EXITED or time.monotonic() > deadline:
                return False
            if self.kubelet.stopping.wait(0.05):
                return False
        c = state.load_container(self.cid)
        if c is not None and c.status.get("startedAt"):
            self.started_at = int(c.status["startedAt"]) / 1e9
        return True

    def run(self) -> None:
        if not self._wait_started():
            return
        for kind in ("startup", "liveness"):
            probe = self.spec.get(f"{kind}Probe")
            if not isinstance(probe, dict):
                continue
            delay = self.started_at + float(probe.get("initialDelaySeconds", 0)) - time.time()
            if delay > 0 and self.kubelet.stopping.wait(delay):
                return
            failures = 0
            period = float(probe.get("periodSeconds", 10))
            threshold = int(probe.get("failureThreshold", 3))
            while self._running():
                ok, why = http_probe(probe, float(probe.get("timeoutSeconds", 1)))
                if ok and kind == "startup":
                    break  # started: on to the liveness probe
                failures = 0 if ok else failures + 1
                if failures:
                    klog.info(
                        "prober.go:107",
                        f'"Probe failed" probeType="{kind.capitalize()}" pod="{self.ps.pod.namespace}/{self.ps.full_name}" containerName="{self.spec.get("name")}" probeResult="failure" output="{why}"',  # noqa: E501 - upstream's message, kept greppable
                    )
                if failures >= threshold:
                    klog.info(
                        "kuberuntime_manager.go:1027",
                        f'"Message for Container of pod" containerName="{self.spec.get("name")}" containerStatusID="{self.cid}" pod="{self.ps.pod.namespace}/{self.ps.full_name}" containerMessage="Container {self.spec.get("name")} failed {kind} probe, will be restarted"',  # noqa: E501 - upstream's message, kept greppable
                    )
                    c = state.load_container(self.cid)
                    if c is not None:
                        stop_container(c, STOP_GRACE)
                    return
                if self.kubelet.stopping.wait(period):
                    return
            if not self._running():
                return


def http_probe(probe: dict[str, Any], timeout: float) -> tuple[bool, str]:
    """The kubelet's httpGet prober: no certificate verification, 200-399 is success."""
    get = probe.get("httpGet")
    if not isinstance(get, dict):
        return True, ""  # exec/tcpSocket probes are not copied: count as passing
    host = str(get.get("host") or "127.0.0.1")
    port = int(get.get("port", 80))
    path = str(get.get("path") or "/")
    try:
        if str(get.get("scheme", "HTTP")).upper() == "HTTPS":
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, port, timeout=timeout, context=ctx
            )
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"User-Agent": "kube-probe/1.29"})
            resp = conn.getresponse()
            body = resp.read(200).decode(errors="replace").strip()
        finally:
            conn.close()
    except (OSError, http.client.HTTPException, ssl.SSLError) as e:
        return False, f'Get "{host}:{port}{path}": {e}'
    if 200 <= resp.status < 400:
        return True, ""
    return False, f"HTTP probe failed with statuscode: {resp.status} {body[:80]}"


def _of_pod(sandbox: dict[str, Any], pod: StaticPod) -> bool:
    """The sandbox belongs to the static pod: same UID (its manifest hash), same manifest."""
    return (sandbox.get("metadata", {}).get("uid") == pod.config_hash
            and sandbox.get("manifest") == pod.path)


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
    delay = start_delay()
    if delay > 0:
        klog.info("standin",
                  f'"Stand-in start delay before the first pod sync" startDelay="{delay:g}s"')
        stop.wait(delay)
    kubelet = Kubelet(node_name)
    threading.Thread(target=kubelet.watch_sources, daemon=True, name="sources").start()
    kubelet.adopt()
    while not stop.is_set():
        kubelet.sync_once()
        stop.wait(SYNC_PERIOD)
    kubelet.stopping.set()
    # Like a real kubelet, leave the containers to the runtime (the shims): they keep running.
    klog.info(
        "server.go:1000", '"Shutting down kubelet; containers keep running under their shims"'
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
