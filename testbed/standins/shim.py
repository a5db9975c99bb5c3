"""Stand-in for containerd-shim-runc-v2: owns one container process, outlives the kubelet.

Copies: the shim is detached from the kubelet (so restarting the kubelet leaves containers
running, as on a real node), runs the process in its own session, writes its output to the CRI
log file in the CRI format (``<RFC3339Nano> stdout|stderr F <line>``, /var/log/pods/...) and
records pid, start, finish and exit code (128+signal when killed, like runc).
Limits: no namespaces, cgroups or mounts: the "container" is a host process of the node, with
the image's bin/ first on PATH, cwd /, stdin /dev/null.
Usage (by the kubelet only): python3 -m <pkg>.shim <container-id>
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import signal
import subprocess
import sys
import threading
from typing import IO

from . import state
from .paths import node_path


def _rfc3339nano() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def _pump(stream: IO[bytes], name: str, log: IO[bytes], lock: threading.Lock) -> None:
    for raw in iter(stream.readline, b""):
        text = raw.rstrip(b"\n")
        tag = b"F" if raw.endswith(b"\n") else b"P"
        with lock:
            log.write(
                _rfc3339nano().encode() + b" " + name.encode() + b" " + tag + b" " + text + b"\n"
            )
            log.flush()


def _status(**fields: object) -> dict[str, object]:
    return {
        "state": state.CREATED,
        "pid": 0,
        "startedAt": 0,
        "finishedAt": 0,
        "exitCode": 0,
        "reason": "",
        "message": "",
        **fields,
    }


def run(cid: str) -> int:
    c = state.load_container(cid)
    if c is None:
        return 1
    cfg = c.config
    argv = list(cfg["argv"])
    env = dict(cfg["env"])
    exe = shutil.which(argv[0], path=env.get("PATH")) if argv else None
    if not exe:
        # runc's message for a missing binary; kubelet reports it as StartError / exit 128.
        msg = (
            f"failed to create containerd task: failed to create shim task: OCI runtime create "
            f"failed: runc create failed: unable to start container process: exec: "
            f'"{argv[0] if argv else ""}": executable file not found in $PATH: unknown'
        )
        t = state.now_ns()
        state.write_status(
            cid,
            _status(
                state=state.EXITED,
                startedAt=t,
                finishedAt=t,
                exitCode=128,
                reason="StartError",
                message=msg,
            ),
        )
        return 0
    log_path = node_path(cfg["logPath"])
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [exe, *argv[1:]],
            env=env,
            cwd=cfg.get("workingDir") or "/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        state.write_status(
            cid,
            _status(
                state=state.RUNNING,
                pid=proc.pid,
                pidStart=state.proc_start_time(proc.pid),
                startedAt=state.now_ns(),
            ),
        )
        lock = threading.Lock()
        pumps = [
            threading.Thread(target=_pump, args=(s, n, log, lock), daemon=True)
            for s, n in ((proc.stdout, "stdout"), (proc.stderr, "stderr"))
        ]
        for p in pumps:
            p.start()
        code = proc.wait()
        for p in pumps:
            p.join(timeout=2)
    exit_code = 128 - code if code < 0 else code
    prev = state.load_container(cid)
    started = prev.status.get("startedAt", 0) if prev else 0
    state.write_status(
        cid,
        _status(
            state=state.EXITED,
            pid=proc.pid,
            startedAt=started,
            finishedAt=state.now_ns(),
            exitCode=exit_code,
            reason="Completed" if exit_code == 0 else "Error",
        ),
    )
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: shim <container-id>", file=sys.stderr)
        return 2
    # Detach like containerd-shim: the parent returns at once, the child re-parents to init.
    if os.fork() != 0:
        return 0
    os.setsid()
    # The container gets signals, not its shim; a handler (unlike SIG_IGN) is not inherited by exec.
    signal.signal(signal.SIGTERM, lambda *_: None)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    try:
        return run(argv[0])
    finally:
        os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
