"""Log lines in klog's header format, as Kubernetes components print them:
``I1125 18:40:00.123456    1234 file.go:123] message`` (severity, mmdd, time, pid, source).
kindfix and humans grep these; the source locations are those of the upstream messages copied.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
from typing import TextIO


def line(severity: str, source: str, message: str) -> str:
    now = _dt.datetime.now(_dt.timezone.utc)
    return f"{severity}{now:%m%d %H:%M:%S.%f} {os.getpid():>7} {source}] {message}"


def log(severity: str, source: str, message: str, stream: TextIO | None = None) -> None:
    out = stream or sys.stderr
    out.write(line(severity, source, message) + "\n")
    out.flush()


def info(source: str, message: str) -> None:
    log("I", source, message)


def warning(source: str, message: str) -> None:
    log("W", source, message)


def error(source: str, message: str) -> None:
    log("E", source, message)
