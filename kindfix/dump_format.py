"""What a dump is on disk (docs/dump-layout.md): its manifest's name and format version, the
names it accepts, and the record of a node it could not read. Shared by dump.py (writing) and
dump_load.py (reading)."""

from __future__ import annotations

import dataclasses
import re

FORMAT = 1
MANIFEST = "kindfix-dump.json"
# Docker's container-name rule: a node name is also a directory name in the dump
CONTAINER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclasses.dataclass(frozen=True)
class Unread:
    """A node whose files or probes a dump lacks, and why (it was stopped, or reading failed)."""

    node: str
    state: str
    reason: str
