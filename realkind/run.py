#!/usr/bin/env python3
"""`make realkind`: a real kind v0.30 HA cluster, broken the way Docker breaks it, repaired by kindfix.

Steps (each timed): build binaries and images (cached), create 3 control planes + 1 worker with the
kind CLI from the local node image, seed objects through kubectl, stop every container and start
them in an order that gives every control plane another control plane's IP, `kindfix audit`
(expects exit 4), `kindfix repair --yes`, then independent checks (kubectl, etcdctl, curl through
the LB). Ends with `VERDICT: healthy` or the reasons. Everything it creates is labelled
dev.kindfix.realkind=1 and removed at the end (REALKIND_KEEP=1 keeps the cluster).

Environment: REALKIND_CACHE (/var/cache/realkind), REALKIND_CLUSTER (realkind),
REALKIND_CONTROL_PLANES (3), REALKIND_WORKERS (1), REALKIND_KEEP, REALKIND_SKIP_BUILD.
"""

from __future__ import annotations

import itertools
import ipaddress
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = Path(os.environ.get("REALKIND_CACHE", "/var/cache/realkind"))
CLUSTER = os.environ.get("REALKIND_CLUSTER", "realkind")
N_CP = int(os.environ.get("REALKIND_CONTROL_PLANES", "3"))
N_WORKERS = int(os.environ.get("REALKIND_WORKERS", "1"))
NETWORK = f"{CLUSTER}-net"
LABEL = "dev.kindfix.realkind=1"
KUBECONFIG = CACHE / f"{CLUSTER}.kubeconfig"
ENV = {
    **os.environ,
    "PATH": f"{HERE / 'bin'}:{CACHE / 'bin' / 'current'}:{os.environ.get('PATH', '')}",
    "KIND_EXPERIMENTAL_DOCKER_NETWORK": NETWORK,
    "KUBECONFIG": str(KUBECONFIG),
}
TIMES: dict[str, float] = {}
PROBLEMS: list[str] = []


def log(msg: str) -> None:
    print(f"[realkind {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sh(argv: list[str], *, check: bool = True, timeout: float = 600, capture: bool = True,
       stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(argv, env=ENV, text=True, capture_output=capture, timeout=timeout,
                       input=stdin, check=False)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} -> {r.returncode}\n{r.stdout or ''}{r.stderr or ''}")
    return r


class Timer:
    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> "Timer":
        self.t0 = time.monotonic()
        log(f"{self.name} ...")
        return self

    def __exit__(self, *exc: object) -> None:
        TIMES[self.name] = time.monotonic() - self.t0
        log(f"{self.name}: {TIMES[self.name]:.1f} s")


def wait_for(what: str, probe, timeout: float, interval: float = 3.0):
    """Calls probe() until it returns a truthy value; bounded by timeout (and so in rounds)."""
    deadline = time.monotonic() + timeout
    last = None
    for _ in range(int(timeout / interval) + 2):
        try:
            last = probe()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - a probe failing is a "not yet"
            last = e
        if time.monotonic() > deadline:
            break
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s (last: {last})")


def kubectl(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh(["kubectl", "--request-timeout=20s", *args], timeout=timeout, check=check)


def docker_json(*args: str) -> list[dict]:
    return json.loads(sh(["docker", *args]).stdout)


# ---------------------------------------------------------------- build
def build() -> str:
    with Timer("build binaries"):
        sh([str(HERE / "build-bins.sh")], capture=False, timeout=5400)
    with Timer("build images"):
        out = sh([str(HERE / "image" / "build-images.sh")], timeout=1800)
        sys.stderr.write(out.stderr)
    return out.stdout.strip().splitlines()[-1]


# ---------------------------------------------------------------- cluster
def cleanup() -> None:
    names = sh(["kind", "get", "clusters"], check=False).stdout.split()
    if CLUSTER in names:
        sh(["kind", "delete", "cluster", "--name", CLUSTER], check=False, timeout=300)
    ids = sh(["docker", "ps", "-aq", "--filter", f"label={LABEL}",
              "--filter", f"label=io.x-k8s.kind.cluster={CLUSTER}"]).stdout.split()
    if ids:
        sh(["docker", "rm", "-f", "-v", *ids], check=False)
    if sh(["docker", "network", "inspect", NETWORK], check=False).returncode == 0:
        sh(["docker", "network", "rm", NETWORK], check=False)


def free_subnet() -> str:
    used = []
    for net in docker_json("network", "inspect", *sh(["docker", "network", "ls", "-q"]).stdout.split()):
        for cfg in (net.get("IPAM") or {}).get("Config") or []:
            if cfg.get("Subnet") and ":" not in cfg["Subnet"]:
                used.append(ipaddress.ip_network(cfg["Subnet"]))
    for third in range(200, 250):
        cand = ipaddress.ip_network(f"172.30.{third}.0/24")
        if not any(cand.overlaps(u) for u in used):
            return str(cand)
    raise RuntimeError("no free 172.30.x.0/24 subnet")


def create(image: str) -> None:
    subnet = free_subnet()
    sh(["docker", "network", "create", "--label", LABEL, "--subnet", subnet,
        "-o", "com.docker.network.bridge.enable_ip_masquerade=true", NETWORK])
    nodes = "".join(f"- role: control-plane\n  image: {image}\n" for _ in range(N_CP))
    nodes += "".join(f"- role: worker\n  image: {image}\n" for _ in range(N_WORKERS))
    cfg = CACHE / f"{CLUSTER}-kind.yaml"
    cfg.write_text("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n" + nodes)
    log(f"kind create cluster --name {CLUSTER} ({N_CP} control planes, {N_WORKERS} workers) on {NETWORK} {subnet}")
    with Timer("kind create cluster"):
        sh(["kind", "create", "cluster", "--name", CLUSTER, "--config", str(cfg), "--retain",
            "--kubeconfig", str(KUBECONFIG), "--wait", "0s", "-v", "1"], capture=False, timeout=1800)
    with Timer("cluster settles (nodes Ready, kube-system Running)"):
        wait_for("cluster healthy", lambda: not health_problems(), timeout=600, interval=5)


def health_problems() -> list[str]:
    probs = []
    nodes = json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"]
    if len(nodes) != N_CP + N_WORKERS:
        probs.append(f"{len(nodes)} nodes registered, want {N_CP + N_WORKERS}")
    for n in nodes:
        ready = [c for c in n["status"].get("conditions", []) if c["type"] == "Ready"]
        if not ready or ready[0]["status"] != "True":
            probs.append(f"node {n['metadata']['name']} not Ready")
    pods = json.loads(kubectl("get", "pods", "-n", "kube-system", "-o", "json").stdout)["items"]
    for p in pods:
        st = p["status"]
        ok = st.get("phase") == "Running" and all(
            c.get("ready") for c in st.get("containerStatuses", []))
        if not ok:
            probs.append(f"pod kube-system/{p['metadata']['name']} {st.get('phase')} not ready")
    return probs


# ---------------------------------------------------------------- seed
SEED_NS = [f"realkind-seed-{i}" for i in range(1, 4)]


def seed() -> None:
    with Timer("seed objects"):
        for ns in SEED_NS:
            kubectl("create", "namespace", ns)
            kubectl("-n", ns, "create", "configmap", "seed", f"--from-literal=ns={ns}",
                    "--from-literal=value=realkind-42")
            kubectl("-n", ns, "create", "secret", "generic", "seed", f"--from-literal=token={ns}-s3cret")
        pause = os.environ.get("REALKIND_PAUSE_IMAGE", "registry.k8s.io/pause:3.10.1")
        manifest = {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "seed", "namespace": SEED_NS[0]},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "seed"}},
                     "template": {"metadata": {"labels": {"app": "seed"}},
                                  "spec": {"containers": [{"name": "pause", "image": pause,
                                                           "imagePullPolicy": "IfNotPresent"}]}}}}
        sh(["kubectl", "apply", "-f", "-"], stdin=json.dumps(manifest))
        wait_for("seed deployment available", lambda: json.loads(kubectl(
            "-n", SEED_NS[0], "get", "deploy", "seed", "-o", "json").stdout)["status"].get(
            "availableReplicas") == 2, timeout=180)


def seed_problems() -> list[str]:
    probs = []
    for ns in SEED_NS:
        cm = kubectl("-n", ns, "get", "configmap", "seed", "-o", "json", check=False)
        if cm.returncode or json.loads(cm.stdout)["data"].get("value") != "realkind-42":
            probs.append(f"configmap {ns}/seed missing or changed")
        sec = kubectl("-n", ns, "get", "secret", "seed", "-o", "json", check=False)
        if sec.returncode or "token" not in json.loads(sec.stdout).get("data", {}):
            probs.append(f"secret {ns}/seed missing or changed")
    dep = kubectl("-n", SEED_NS[0], "get", "deploy", "seed", "-o", "json", check=False)
    if dep.returncode or json.loads(dep.stdout)["status"].get("availableReplicas") != 2:
        probs.append("deployment seed not 2/2 available")
    return probs


# ---------------------------------------------------------------- break
def containers() -> dict[str, dict]:
    ids = sh(["docker", "ps", "-aq", "--filter", f"label=io.x-k8s.kind.cluster={CLUSTER}"]).stdout.split()
    out = {}
    for c in docker_json("inspect", *ids):
        name = c["Name"].lstrip("/")
        net = c["NetworkSettings"]["Networks"].get(NETWORK) or {}
        out[name] = {"role": c["Config"]["Labels"].get("io.x-k8s.kind.role"),
                     "ip": net.get("IPAddress") or "", "running": c["State"]["Running"]}
    return out


def rotated_order(before: dict[str, dict]) -> list[str]:
    """A start order in which (lowest free IP first) every control plane gets another one's IP
    (a single control plane: any other IP)."""
    names = sorted(before)
    pool = sorted((before[n]["ip"] for n in names), key=ipaddress.ip_address)
    cps = [n for n in names if before[n]["role"] == "control-plane"]
    cp_ips = {before[n]["ip"] for n in cps}
    best = None
    for perm in itertools.permutations(names):
        new = dict(zip(perm, pool))
        # several control planes: each on another one's IP (quorum lost); one: just a new IP
        if all(new[c] != before[c]["ip"] and (len(cps) == 1 or new[c] in cp_ips) for c in cps):
            moved_others = sum(new[n] != before[n]["ip"] for n in names if n not in cps)
            if best is None or moved_others < best[0]:
                best = (moved_others, list(perm))
    if best is None:
        raise RuntimeError("no start order moves every control plane onto another's IP")
    return best[1]


def break_cluster() -> dict[str, tuple[str, str]]:
    before = containers()
    order = rotated_order(before)
    with Timer("break (stop all, start rotated)"):
        sh(["docker", "stop", "-t", "10", *sorted(before)], timeout=300)
        for name in order:
            sh(["docker", "start", name])
    with Timer("nodes booted after the break (kubelet active)"):
        nodes = [n for n in before if before[n]["role"] != "external-load-balancer"]
        wait_for("kubelet active on every node", lambda: all(
            node_exec(n, "systemctl is-active kubelet", timeout=20).stdout.strip() == "active"
            for n in nodes), timeout=300, interval=3)
    # a user runs kindfix some time after the restart, when the kubelets have restarted (and
    # crash-looped) the static pods: wait that long here too
    settle = float(os.environ.get("REALKIND_SETTLE_AFTER_BREAK", "30"))
    log(f"waiting {settle:.0f} s before the audit (REALKIND_SETTLE_AFTER_BREAK)")
    time.sleep(settle)
    after = containers()
    moves = {n: (before[n]["ip"], after[n]["ip"]) for n in sorted(before)}
    for n, (a, b) in moves.items():
        log(f"  {n}: {a} -> {b}")
    cps = [n for n in before if before[n]["role"] == "control-plane"]
    if not all(moves[c][0] != moves[c][1] for c in cps):
        PROBLEMS.append("break did not move every control plane")
    return moves


# ---------------------------------------------------------------- kindfix
def kindfix(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return sh([sys.executable, "-m", "kindfix", *args], check=False, timeout=timeout, capture=False)


# ---------------------------------------------------------------- independent checks
def node_exec(node: str, script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return sh(["docker", "exec", node, "sh", "-c", script], check=False, timeout=timeout)


def etcd_problems() -> list[str]:
    c = containers()
    cps = sorted(n for n in c if c[n]["role"] == "control-plane")
    ips = {n: c[n]["ip"] for n in cps}
    script = ("id=$(crictl ps -q --name '^etcd$' --state running | head -1); [ -n \"$id\" ] || exit 3; "
              "crictl exec \"$id\" etcdctl --endpoints=https://127.0.0.1:2379 "
              "--cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/server.crt "
              "--key=/etc/kubernetes/pki/etcd/server.key member list -w json")
    r = node_exec(cps[0], script)
    if r.returncode:
        return [f"etcdctl member list on {cps[0]} failed: {r.stderr.strip()[-300:]}"]
    members = json.loads(r.stdout)["members"]
    probs = []
    if len(members) != len(cps):
        probs.append(f"etcd has {len(members)} members, want {len(cps)}")
    for m in members:
        name = m.get("name", "?")
        want = ips.get(name)
        peers = m.get("peerURLs", [])
        clients = m.get("clientURLs", [])
        if want is None:
            probs.append(f"etcd member {name} is not a control plane")
            continue
        if peers != [f"https://{want}:2380"]:
            probs.append(f"etcd member {name} peer URLs {peers}, want https://{want}:2380")
        if f"https://{want}:2379" not in clients:
            probs.append(f"etcd member {name} client URLs {clients}, want https://{want}:2379")
    return probs


def lb_problems() -> list[str]:
    lb = f"{CLUSTER}-external-load-balancer"
    c = containers()
    if N_CP > 1 and not c.get(lb, {}).get("running"):
        return [f"{lb} not running"]
    port = sh(["docker", "port", lb, "6443/tcp"], check=False).stdout.split(":")[-1].strip() if N_CP > 1 else None
    node = sorted(n for n in c if c[n]["role"] == "control-plane")[0]
    target = f"https://{lb}:6443/readyz" if N_CP > 1 else f"https://{node}:6443/readyz"
    r = node_exec(node, f"curl -sk --max-time 10 {target}")
    probs = [] if r.stdout.strip() == "ok" else [f"{target} from {node}: {r.stdout.strip()[:200]!r}"]
    if port:
        r = sh(["curl", "-sk", "--max-time", "10", f"https://127.0.0.1:{port}/readyz"], check=False)
        if r.stdout.strip() != "ok":
            probs.append(f"https://127.0.0.1:{port}/readyz from the host: {r.stdout.strip()[:200]!r}")
    return probs


def assist_kubelet_restart() -> None:
    """Restarts every control plane's kubelet by hand, then reruns `kindfix repair --yes` (it
    continues where it stopped). The verdict still names the first failure."""
    c = containers()
    with Timer("assist: systemctl restart kubelet on every control plane"):
        for n in sorted(x for x in c if c[x]["role"] == "control-plane"):
            node_exec(n, "systemctl restart kubelet")
    with Timer("assist: kindfix repair --yes (rerun)"):
        again = kindfix("repair", "--yes", "--name", CLUSTER)
    log(f"assist: rerun of kindfix repair exited {again.returncode}")


def diagnose() -> None:
    """What the control planes run, for the log of a run that did not end healthy."""
    c = containers()
    for n in sorted(x for x in c if c[x]["role"] == "control-plane"):
        r = node_exec(n, "crictl ps -a 2>/dev/null | head -20; echo; "
                         "crictl pods 2>/dev/null | head -20; echo; ls -la /etc/kubernetes/manifests")
        print(f"--- {n} ({c[n]['ip']})\n{r.stdout}{r.stderr}")


def verify() -> list[str]:
    probs: list[str] = []
    for name, fn in (("health", health_problems), ("seed", seed_problems),
                     ("etcd", etcd_problems), ("lb", lb_problems)):
        try:
            probs += fn()
        except Exception as e:  # noqa: BLE001
            probs.append(f"{name} check failed: {str(e)[-300:]}")
            if name == "health":  # no API: the seed checks would only time out one by one
                probs.append("seed check skipped (no API)")
                fns_left = {"seed"}
                break
    else:
        return probs
    for name, fn in (("etcd", etcd_problems), ("lb", lb_problems)):
        if name in fns_left:
            continue
        try:
            probs += fn()
        except Exception as e:  # noqa: BLE001
            probs.append(f"{name} check failed: {str(e)[-300:]}")
    return probs


def main() -> int:
    t0 = time.monotonic()
    CACHE.mkdir(parents=True, exist_ok=True)
    sh([str(HERE / "engine" / "setup.sh")], capture=False)
    image = os.environ.get("REALKIND_NODE_IMAGE") or build()
    log(f"node image {image}")
    cleanup()
    verdict_reasons: list[str] = []
    try:
        create(image)
        seed()
        break_cluster()
        with Timer("kindfix audit"):
            audit = kindfix("audit", "--name", CLUSTER, timeout=600)
        if audit.returncode != 4:
            verdict_reasons.append(f"kindfix audit exited {audit.returncode}, want 4")
        with Timer("kindfix repair"):
            repair = kindfix("repair", "--yes", "--name", CLUSTER)
        if repair.returncode != 0:
            verdict_reasons.append(f"kindfix repair exited {repair.returncode}")
            if os.environ.get("REALKIND_ASSIST_KUBELET_RESTART"):
                # opt-in experiment (README finding 1): what kindfix lacks is a kubelet restart
                assist_kubelet_restart()
        with Timer("independent checks"):
            try:
                wait_for("healthy after repair", lambda: not verify(), timeout=300, interval=10)
            except TimeoutError:
                pass
            verdict_reasons += verify()
        if verdict_reasons:
            diagnose()
    except Exception as e:  # noqa: BLE001
        verdict_reasons.append(f"{type(e).__name__}: {e}")
    finally:
        if not os.environ.get("REALKIND_KEEP"):
            with Timer("cleanup"):
                cleanup()
    TIMES["total"] = time.monotonic() - t0
    print("\nTimings:")
    for k, v in TIMES.items():
        print(f"  {k:<52} {v:7.1f} s")
    reasons = PROBLEMS + verdict_reasons
    if reasons:
        print("VERDICT: unhealthy")
        for r in reasons:
            print(f"  - {r}")
        return 1
    print("VERDICT: healthy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
