"""The kubelet "unit" shared by kindbed-init (which runs it) and systemctl (which asks).

systemctl writes units/kubelet.request ({"want": "active"|"inactive", "token": n}) and sends
SIGHUP to the init; the init writes units/kubelet.json ({"state", "pid", "since", "token"}).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .paths import atomic_write, state_dir

UNIT = "kubelet"


def units_dir() -> Path:
    return state_dir() / "units"


def init_pid_file() -> Path:
    return state_dir() / "init.pid"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_request() -> dict[str, Any]:
    return _read(units_dir() / f"{UNIT}.request") or {"want": "active", "token": 0}


def write_request(want: str, token: int) -> None:
    atomic_write(units_dir() / f"{UNIT}.request", json.dumps({"want": want, "token": token}))


def read_status() -> dict[str, Any]:
    return _read(units_dir() / f"{UNIT}.json")


def write_status(state: str, pid: int, token: int, restarts: int) -> None:
    atomic_write(
        units_dir() / f"{UNIT}.json",
        json.dumps(
            {"state": state, "pid": pid, "since": time.time(), "token": token, "restarts": restarts}
        ),
    )
