"""kindbed-init: the node's PID 1 after the kind entrypoint (stands in for systemd in a kind node).

Copies what kindfix relies on from systemd + kind's kubelet.service: the kubelet runs as a
service that is restarted when it dies (Restart=always; here 1 s doubling to 10 s, reset after
10 s of running) and that `systemctl start|stop|restart kubelet` controls; it is started with the
flags of /var/lib/kubelet/kubeadm-flags.env (KUBELET_KUBEADM_ARGS) like 10-kubeadm.conf does,
logging to /var/log/kindbed/kubelet.log. Orphans (container shims) are reaped. On SIGTERM
(docker stop) everything is stopped - kubelet, containers, every process when PID 1 - within
about 3 s, and init exits 137: a real kind node (systemd) exits 137 when stopped (kind#1913), a
non-zero code, so Docker's on-failure:1 policy brings nodes back after an engine restart while the
load balancer (haproxy exits 0) stays Exited (kind#1562). Exiting 0 would keep nodes down.
Limits: one unit (kubelet), no journald, no cgroups. Not PID 1 (host tests) it becomes a child
subreaper and signals only the processes recorded in /run/kindbed.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import subprocess
import sys
import time

from . import state, unit
from .kubelet import FLAGS_ENV, kubeadm_flags, package_root
from .paths import NODE_PATH, atomic_write, node_path, state_dir

PR_SET_CHILD_SUBREAPER = 36
BACKOFF_MAX = 10.0
STOP_TIMEOUT = 5.0
SHUTDOWN_GRACE = 2.0
STOPPED_EXIT_CODE = 137  # what `docker stop` leaves on a real kind node (kind#1913)


def log(msg: str) -> None:
    print(f"kindbed-init: {msg}", flush=True)


def kubelet_argv() -> list[str]:
    try:
        args = kubeadm_flags(node_path(FLAGS_ENV).read_text())
    except (OSError, ValueError):
        args = []
    wrapper = "/usr/local/bin/kubelet"
    if not os.environ.get("KINDBED_ROOT") and os.path.exists(wrapper):
        return [wrapper, *args]
    return [sys.executable, "-m", f"{__package__}.kubelet", *args]


class Init:
    def __init__(self) -> None:
        self.pid = 0
        self.started = 0.0
        self.delay = 0.0
        self.not_before = 0.0
        self.token = unit.read_request().get("token", 0)
        self.restarts = 0
        self.stopping = False
        self.wake = False

    def start_kubelet(self) -> None:
        logdir = node_path("/var/log/kindbed")
        logdir.mkdir(parents=True, exist_ok=True)
        env = {"PATH": NODE_PATH, "PYTHONPATH": package_root()}
        for k in ("KINDBED_ROOT", "HOSTNAME"):
            if os.environ.get(k):
                env[k] = os.environ[k]
        with open(logdir / "kubelet.log", "ab") as out:
            proc = subprocess.Popen(
                kubelet_argv(), env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd="/"
            )
        self.pid, self.started = proc.pid, time.monotonic()
        self._proc = proc  # keep a reference; the exit status is collected by reap()
        unit.write_status("active", self.pid, self.token, self.restarts)
        log(f"started kubelet (pid {self.pid})")

    def stop_kubelet(self, timeout: float = STOP_TIMEOUT) -> None:
        if not self.pid:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.pid and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.05)
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            while self.pid and time.monotonic() < deadline + 2:
                self.reap()
                time.sleep(0.05)
        self.pid = 0

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.pid:
                self.pid = 0
                code = os.waitstatus_to_exitcode(status)
                if not self.stopping:
                    ran = time.monotonic() - self.started
                    self.delay = (
                        1.0 if (self.delay == 0 or ran >= 10) else min(self.delay * 2, BACKOFF_MAX)
                    )
                    self.not_before = time.monotonic() + self.delay
                    self.restarts += 1
                    unit.write_status("activating", 0, self.token, self.restarts)
                    log(f"kubelet exited ({code}); restarting in {self.delay:g}s")

    def step(self) -> None:
        self.reap()
        req = unit.read_request()
        want, token = req.get("want", "active"), req.get("token", 0)
        if want == "inactive":
            if self.pid:
                self.stopping = True
                self.stop_kubelet()
                self.stopping = False
            if unit.read_status().get("state") != "inactive" or token != self.token:
                self.token = token
                unit.write_status("inactive", 0, self.token, self.restarts)
            return
        if token != self.token:  # restart requested (or start after stop)
            self.stopping = True
            self.stop_kubelet()
            self.stopping = False
            self.token, self.delay, self.not_before = token, 0.0, 0.0
        if not self.pid and time.monotonic() >= self.not_before:
            self.start_kubelet()

    def shutdown(self) -> None:
        log("SIGTERM: stopping kubelet and containers")
        self.stopping = True
        deadline = time.monotonic() + SHUTDOWN_GRACE
        containers = state.load_containers()
        for c in containers:
            state.signal_container(c, signal.SIGTERM)
        if os.getpid() == 1:
            os.kill(-1, signal.SIGTERM)  # every process of the container but init
        self.stop_kubelet(timeout=SHUTDOWN_GRACE)
        while time.monotonic() < deadline and any(
            state.pid_alive(c.pid, c.status.get("pidStart")) for c in containers
        ):
            self.reap()
            time.sleep(0.05)
        for c in containers:
            state.signal_container(c, signal.SIGKILL)
        if os.getpid() == 1:
            try:
                os.kill(-1, signal.SIGKILL)
            except OSError as e:
                if e.errno != errno.ESRCH:
                    raise
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            self.reap()
            time.sleep(0.02)
        log("stopped")


def main(argv: list[str]) -> int:
    del argv
    if os.getpid() != 1:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    state_dir().mkdir(parents=True, exist_ok=True)
    unit.units_dir().mkdir(parents=True, exist_ok=True)
    atomic_write(unit.init_pid_file(), str(os.getpid()))
    init = Init()
    stop = {"now": False}

    def on_term(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, lambda *_: None)  # systemctl's nudge: just ends the sleep
    signal.signal(signal.SIGCHLD, lambda *_: None)
    log(f"pid {os.getpid()}, state in {state_dir()}")
    while not stop["now"]:
        init.step()
        time.sleep(0.2)
    init.shutdown()
    return STOPPED_EXIT_CODE


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
