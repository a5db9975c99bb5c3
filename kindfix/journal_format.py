"""The run journal as it lives on the nodes: typed records and their JSON.

A journal outlives the kindfix that wrote it (a run killed by one version is continued or rolled
back by the next), so this reads every format kindfix has written and writes the same JSON as
before the records were typed, key for key:
- from the start (262b164): run_id, cluster, status, files, done, notes;
- since b08869d: `pending` too (absent: nothing pending). `mode` of a file entry is read as
  "644" when absent, as rollback always did.
A field this version does not know (top level, file entry or pending step) means a newer
kindfix wrote it: the journal is refused, never half-read (kindfix.journal skips it with a
warning naming the file).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Union

from kindfix.steps import StepKind

# Journal.status. The next repair continues the newest run of the cluster only while it is
# RUNNING (in progress, or killed) or INTERRUPTED (an error stopped it mid-way). A run whose
# steps all ran but whose verification failed (UNHEALTHY) has ended: it is reported, and a new
# repair plans from what it observes, so none of its steps counts as "already done" (issue #9).
# FAILED is what kindfix wrote for both before they were told apart: ended too.
RUNNING, INTERRUPTED, UNHEALTHY, DONE, ROLLED_BACK, FAILED = (
    "running", "interrupted", "unhealthy", "done", "rolled-back", "failed")
CONTINUABLE = (RUNNING, INTERRUPTED)


def _check_keys(what: str, data: Mapping[str, Any], known: Sequence[str],
                required: Sequence[str]) -> None:
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise NewerFormat(f"{what} has fields this version does not know ({', '.join(unknown)})")
    missing = [k for k in required if k not in data]
    if missing:
        raise ValueError(f"{what} lacks {', '.join(missing)}")


def _str(what: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} is {type(value).__name__}, not a string")
    return value


class NewerFormat(ValueError):
    """A journal with fields this kindfix does not know: written by a newer one."""


@dataclass(frozen=True)
class FileEntry:
    """One original a run kept before changing it (in the order they were kept)."""

    node: str
    path: str
    backup: str  # where the original's bytes are, on the same node
    existed: bool  # False: the run created the file; rollback removes it
    sha256: str | None  # of the original (None when it did not exist)
    mode: str = "644"  # octal, as journal-restore.sh takes it

    @property
    def mode_bits(self) -> int:
        return int(self.mode, 8)

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "path": self.path, "backup": self.backup,
                "existed": self.existed, "sha256": self.sha256, "mode": self.mode}

    @classmethod
    def from_dict(cls, data: Any) -> FileEntry:
        if not isinstance(data, Mapping):
            raise ValueError(f"a file entry is {type(data).__name__}, not an object")
        names = [f.name for f in fields(cls)]
        _check_keys("a file entry", data, names, names[:-1])
        existed, sha = data["existed"], data["sha256"]
        if not isinstance(existed, bool) or not (sha is None or isinstance(sha, str)):
            raise ValueError(f"the file entry of {data['path']!r} has a malformed existed/sha256")
        mode = data.get("mode", "644")
        mode = f"{mode:o}" if isinstance(mode, int) and not isinstance(mode, bool) else mode
        entry = cls(_str("node", data["node"]), _str("path", data["path"]),
                    _str("backup", data["backup"]), existed, sha, _str("mode", mode))
        entry.mode_bits  # noqa: B018 - a mode that is not octal is refused here, not at rollback
        return entry

    def __getitem__(self, name: str) -> object:
        """Read access by the old dict keys, for tests not yet moved to the attributes."""
        return self.to_dict()[name]


@dataclass(frozen=True)
class PendingStep:
    """A planned step whose effect no file shows (resume.UNOBSERVABLE), kept until done."""

    key: str
    kind: StepKind
    node: str
    summary: str
    phase: str = ""  # as Step.phase: the pod, or the etcd strategy

    def to_dict(self) -> dict[str, str]:
        return {"key": self.key, "kind": str(self.kind), "node": self.node,
                "summary": self.summary, "phase": self.phase}

    @classmethod
    def from_dict(cls, data: Any) -> PendingStep:
        if not isinstance(data, Mapping):
            raise ValueError(f"a pending step is {type(data).__name__}, not an object")
        names = [f.name for f in fields(cls)]
        _check_keys("a pending step", data, names, names)
        kind = _str("kind", data["kind"])
        if kind not in {k.value for k in StepKind}:
            raise NewerFormat(f"a pending step has a kind this version does not know ({kind})")
        return cls(_str("key", data["key"]), StepKind(kind), _str("node", data["node"]),
                   _str("summary", data["summary"]), _str("phase", data["phase"]))

    def __getitem__(self, name: str) -> object:
        """Read access by the old dict keys, for tests not yet moved to the attributes."""
        return self.to_dict()[name]


# what Journal(files=..., pending=...) takes: the records, or their JSON objects
FileEntryLike = Union[FileEntry, Mapping[str, Any]]
PendingLike = Union[PendingStep, Mapping[str, Any]]


@dataclass
class Journal:
    """The record of one repair run, kept on the journal node."""

    run_id: str
    cluster: str
    status: str = RUNNING  # one of the statuses above
    files: list[FileEntry] = field(default_factory=list)  # backups, in order
    done: list[str] = field(default_factory=list)  # completed step keys
    notes: list[str] = field(default_factory=list)  # `key=value`: readers take the latest
    # steps whose effect no file shows (etcd membership, restarts, reloads): a resumed run
    # finishes them even when the files already look right
    pending: list[PendingStep] = field(default_factory=list)

    def __post_init__(self) -> None:
        # JSON objects are read (and checked) as the records they are
        raw_files: list[FileEntryLike] = list(self.files)
        raw_pending: list[PendingLike] = list(self.pending)
        self.files = [e if isinstance(e, FileEntry) else FileEntry.from_dict(e)
                      for e in raw_files]
        self.pending = [p if isinstance(p, PendingStep) else PendingStep.from_dict(p)
                        for p in raw_pending]

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "cluster": self.cluster, "status": self.status,
                "files": [e.to_dict() for e in self.files], "done": list(self.done),
                "notes": list(self.notes), "pending": [p.to_dict() for p in self.pending]}

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), indent=2).encode()

    @classmethod
    def from_dict(cls, data: Any) -> Journal:
        if not isinstance(data, Mapping):
            raise ValueError("not a JSON object")
        names = [f.name for f in fields(cls)]
        _check_keys("it", data, names, ("run_id", "cluster"))
        lists = {}
        for name in ("files", "done", "notes", "pending"):
            value = data.get(name, [])
            if not isinstance(value, list):
                raise ValueError(f"{name} is {type(value).__name__}, not a list")
            lists[name] = value
        for name in ("done", "notes"):
            if not all(isinstance(v, str) for v in lists[name]):
                raise ValueError(f"{name} holds something other than strings")
        return cls(_str("run_id", data["run_id"]), _str("cluster", data["cluster"]),
                   _str("status", data.get("status", RUNNING)),
                   [FileEntry.from_dict(e) for e in lists["files"]], lists["done"],
                   lists["notes"], [PendingStep.from_dict(p) for p in lists["pending"]])

    @classmethod
    def from_json(cls, raw: bytes) -> Journal:
        return cls.from_dict(json.loads(raw))


def parse_journal(raw: bytes) -> tuple[Journal | None, str]:
    """A journal, or None and why not (corrupt, incomplete, or from a newer kindfix)."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError as e:  # UnicodeDecodeError is a ValueError
        return None, f"not valid JSON ({e})"
    if not isinstance(data, dict):
        return None, "not a JSON object"
    try:
        return Journal.from_dict(data), ""
    except NewerFormat as e:
        return None, f"written by a newer kindfix? {e}"
    except (ValueError, TypeError, KeyError) as e:
        return None, f"incomplete ({e})"
