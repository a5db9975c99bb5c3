"""Nothing lost: every changed file is backed up in its node before it changes, every step is
journaled, and a run killed at any point is continued by the next `kindfix repair`.

Layout inside the nodes (mode 0600 for backups):
  /kind/kindfix/backups/<run-id>/files/<path>     original bytes of each changed file
  /kind/kindfix/backups/<run-id>/etcd-<node>/data/  the etcd data dir's checked (sparse) copy,
                                                  before membership work
  /kind/kindfix/backups/<run-id>/etcd-<node>/stale/ a member dir set aside that differed from it
  /kind/kindfix/journal/<run-id>.json             on the first control plane: what was done
The node side is kindfix/scripts/journal-{backup,replace,regenerate,settle,restore}.sh. The
journal's records and their JSON (every format kindfix has written) are in journal_format.py.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping

from kindfix.errors import KindfixError
from kindfix.journal_format import (
    CONTINUABLE,
    DONE,
    FAILED,
    INTERRUPTED,
    ROLLED_BACK,
    RUNNING,
    UNHEALTHY,
    FileEntry,
    Journal,
    PendingStep,
    parse_journal,
)
from kindfix.node import NO_SHELL, Node, run
from kindfix.nodescripts import script

# the records and statuses are journal_format's, named here too where callers always found them
__all__ = [
    "ASIDE", "CHANGED", "CONTINUABLE", "DONE", "FAILED", "INTERRUPTED", "JOURNAL_DIR",
    "ROLLED_BACK", "ROOT", "RUNNING", "UNHEALTHY", "FileEntry", "Journal", "PendingStep",
    "RunRecorder", "Verify", "content_id", "forget", "last_run", "load_journals",
    "new_run_id", "regenerate_pairs", "rollback", "unfinished"]

ROOT = "/kind/kindfix"
JOURNAL_DIR = f"{ROOT}/journal"

# Exit code of a write refused because the file is no longer what the plan was made from.
CHANGED = 7

# Where a certificate or key waits, beside itself, while kubeadm makes the new one.
ASIDE = ".kindfix-old"


def content_id(content: bytes | None) -> str:
    """What journal-replace.sh compares the file with: its sha256, or "absent"."""
    return hashlib.sha256(content).hexdigest() if content is not None else "absent"


# Looks at the new certificates (path: content) and says what is wrong with them, or None.
Verify = Callable[[dict[str, bytes | None]], "str | None"]


def regenerate_pairs(node: Node, pairs: list[tuple[str, str, str, str]], argv: list[str],
                     verify: Verify | None) -> None:
    """journal-regenerate.sh over (cert, cert backup, key, key backup) tuples, then
    journal-settle.sh:
    the old pairs go only once the new certificates pass `verify`, else they come back."""
    args = [str(len(pairs)), *(p for pair in pairs for p in pair)]
    run(node, ["sh", "-c", script("journal-regenerate"), "kindfix-regenerate", *args, *argv],
        timeout=120 + 30 * len(pairs))
    files = [p for cert, _, key, _ in pairs for p in (cert, key)]
    fault = verify(node.read_files([cert for cert, _, _, _ in pairs])) if verify else None
    run(node, ["sh", "-c", script("journal-settle"), "kindfix-settle",
               "revert" if fault else "commit", *files])
    if fault:
        raise KindfixError(f"{fault}; the old certificate and key are back",
                           hint="check /kind/kubeadm.conf on that node, then run `kindfix "
                                "repair` again")


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{os.getpid() % 10000:04d}"


class RunRecorder:
    """Backs files up and journals steps for one run over the nodes it touches."""

    def __init__(self, journal: Journal, journal_node: Node) -> None:
        self.journal = journal
        self._journal_node = journal_node
        self._lock = threading.RLock()  # steps on different nodes run concurrently
        self._write_lock = threading.Lock()
        self._written = b""

    @property
    def run_id(self) -> str:
        return self.journal.run_id

    def backup_dir(self) -> str:
        return f"{ROOT}/backups/{self.run_id}"

    def save(self) -> None:
        """Write the journal as it is now. Concurrent callers share a write (group commit):
        one that finds its state already written returns at once."""
        with self._write_lock:
            with self._lock:
                data = self.journal.to_json()
            if data == self._written:
                return
            self._journal_node.write_file(f"{JOURNAL_DIR}/{self.run_id}.json", data, mode=0o600)
            self._written = data

    def is_done(self, key: str) -> bool:
        return key in self.journal.done

    def add_note(self, note: str, once: bool = False, save: bool = True) -> None:
        """Journal a note (`key=value`; readers take the latest per key) and save (without
        `save`: with the next save); with `once`, a note already there is not added again."""
        with self._lock:
            if once and note in self.journal.notes:
                return
            self.journal.notes.append(note)
        if save:
            self.save()

    def note(self, key: str) -> str | None:
        """The latest value noted under `key` (`key=value`), else None."""
        with self._lock:
            return next((n.split("=", 1)[1] for n in reversed(self.journal.notes)
                         if n.startswith(key + "=")), None)

    def forget(self, done: Callable[[str], bool], note_prefix: str | None = None) -> None:
        """Drop the done keys `done` picks and the notes that start with `note_prefix` (an
        undone stage runs afresh) and save."""
        with self._lock:
            self.journal.done[:] = [k for k in self.journal.done if not done(k)]
            if note_prefix is not None:
                self.journal.notes[:] = [n for n in self.journal.notes
                                         if not n.startswith(note_prefix)]
        self.save()

    def mark_done(self, *keys: str, save: bool = True) -> None:
        """Journal the keys as done and save (without `save`: with the next save; for a stage
        whose redo is harmless, e.g. several members' in one write)."""
        with self._lock:
            self.journal.done.extend(k for k in keys if k not in self.journal.done)
        if save:
            self.save()

    def _entry(self, node: str, path: str, original: bytes | None, mode: int,
               backup: str | None = None) -> FileEntry:
        """What the journal keeps of one original: where its backup is and its checksum."""
        return FileEntry(node, path, backup or f"{self.backup_dir()}/files{path}",
                         original is not None,
                         hashlib.sha256(original).hexdigest() if original is not None else None,
                         f"{mode:o}")

    def entry(self, node: str, path: str) -> FileEntry | None:
        """The journaled original of `path` on `node`, if this run kept it."""
        with self._lock:
            return next((e for e in self.journal.files if e.node == node and e.path == path),
                        None)

    def declare_beside(self, node: str, path: str, backup: str, original: bytes) -> FileEntry:
        """Journal (and save) an original whose backup is kept at `backup` rather than under
        the run's backup directory (a node without a shell keeps it beside the file), unless
        this run journaled it already: the entry that holds."""
        with self._lock:
            entry = self.entry(node, path)
            if entry is not None:
                return entry
            entry = self._entry(node, path, original, 0o644, backup)
            self.journal.files.append(entry)
        self.save()  # outside the lock: save takes the write lock first, then this one
        return entry

    def declare(self, node: Node, items: list[tuple[str, bytes | None]]) -> list[str]:
        """Journal the originals (before anything changes) and return their backup paths."""
        with self._lock:
            known = {(e.node, e.path) for e in self.journal.files}
            for path, original in items:
                if (node.name, path) not in known:
                    self.journal.files.append(self._entry(node.name, path, original, 0o644))
        self.save()  # outside the lock: save takes the write lock first, then this one
        return [f"{self.backup_dir()}/files{path}" for path, _ in items]

    def replace_file(self, node: Node, path: str, original: bytes | None, content: bytes
                     ) -> None:
        """Keep the original, then write `content` atomically: one exec."""
        [backup] = self.declare(node, [(path, original)])
        run(node, ["sh", "-c", script("journal-replace"), "kindfix-replace", path, backup,
                   hashlib.sha256(content).hexdigest(), content_id(original)], stdin=content)

    def regenerate(self, node: Node, pairs: list[tuple[tuple[str, bytes | None],
                                                    tuple[str, bytes | None]]],
                   argv: list[str], verify: Verify | None = None) -> None:
        """Keep certificate pairs (cert, key) and move them aside, run `argv` (kubeadm) to make
        new ones, then keep the new ones only if `verify` finds no fault in them: one journal
        save and one exec for all of a node's pairs (two more: read back, settle)."""
        backups = self.declare(node, [item for pair in pairs for item in pair])
        regenerate_pairs(node, [(cert[0], backups[2 * i], key[0], backups[2 * i + 1])
                                for i, (cert, key) in enumerate(pairs)], argv, verify)

    def has_backup(self, node: Node, path: str) -> bool:
        return self.entry(node.name, path) is not None

    def backup_file(self, node: Node, path: str, original: bytes | None, mode: int = 0o644,
                    move: bool = False) -> None:
        """Copy (or move, for certificate pairs kubeadm must regenerate) before any change."""
        if self.has_backup(node, path):
            if move:
                run(node, ["rm", "-f", path])
            return
        entry = self._entry(node.name, path, original, mode)
        dst = entry.backup
        if original is not None:
            run(node, ["sh", "-c", script("journal-backup"), "kindfix-backup", path, dst])
        self.journal.files.append(entry)
        self.save()
        if move and original is not None:
            run(node, ["rm", "-f", path])


def load_journals(node: Node) -> list[Journal]:
    """Every journal on `node`. One that cannot be used is skipped with a warning naming the
    file (logged to "kindfix"; the CLI prints it): skipped silently, a failed run's record
    would just vanish from `runs`, `rollback` and the resume of `repair`."""
    listing = node.exec(["ls", "-1", JOURNAL_DIR])
    names = sorted(n for n in listing.text().split() if n.endswith(".json"))
    journals = []
    for path, raw in node.read_files([f"{JOURNAL_DIR}/{n}" for n in names]).items():
        journal, problem = parse_journal(raw or b"")
        if journal is not None:
            journals.append(journal)
        else:
            log.warning("ignoring the journal %s on %s: %s", path, node.name, problem)
    return journals


log = logging.getLogger("kindfix")


def last_run(node: Node, cluster: str) -> Journal | None:
    """The cluster's newest run (run ids sort by start time)."""
    return next((j for j in reversed(load_journals(node)) if j.cluster == cluster), None)


def unfinished(node: Node, cluster: str) -> Journal | None:
    """The run the next repair continues: the cluster's newest, if it did not end. An older
    unfinished run was superseded by a newer one, which planned from what it observed."""
    newest = last_run(node, cluster)
    return newest if newest is not None and newest.status in CONTINUABLE else None


def rollback(nodes: Mapping[str, Node], journal: Journal) -> list[str]:
    """Restore every file the run changed, byte for byte, newest change first. A file that
    cannot be restored is reported, and the rest are restored all the same."""
    restored: list[str] = []
    failed: list[str] = []
    for entry in reversed(journal.files):
        where = f"{entry.node}:{entry.path}"
        node = nodes.get(entry.node)
        if node is None:
            failed.append(f"{where} (the node no longer exists)")
            continue
        try:
            if _restore_entry(node, entry):
                restored.append(where)
            else:
                failed.append(f"{where} (restored, but it does not match its backup checksum)")
        except KindfixError as e:
            failed.append(f"{where} ({e.message})")
    if failed:
        raise KindfixError(
            f"rollback of run {journal.run_id}: restored {len(restored)} file(s), could not "
            f"restore {len(failed)}: {'; '.join(failed)}",
            hint=f"the originals are under {ROOT}/backups/{journal.run_id}/files/ on each node; "
                 "fix the cause and run `kindfix rollback` again")
    return restored


def _restore_entry(node: Node, entry: FileEntry) -> bool:
    """Put one journaled original back; False when the result does not match its checksum."""
    if not entry.existed:
        run(node, ["rm", "-f", entry.path])
        return True
    current = node.read_file(entry.path)
    if current is not None and hashlib.sha256(current).hexdigest() == entry.sha256:
        return True  # never changed (a run killed between journal and change)
    result = node.exec(["sh", "-c", script("journal-restore"), "kindfix-restore", entry.backup,
                        entry.path, entry.mode])
    if result.exit_code in NO_SHELL:  # kind's distroless haproxy: through the archive API
        original = node.read_file(entry.backup)
        if original is None:
            raise KindfixError(f"its backup {entry.backup} is missing")
        node.write_file(entry.path, original, entry.mode_bits)
        got = node.read_file(entry.path) or b""
        return hashlib.sha256(got).hexdigest() == entry.sha256
    if result.exit_code == 8:
        raise KindfixError(f"its backup {entry.backup} is missing")
    if not result.ok:
        detail = result.stderr.decode(errors="replace").strip().splitlines()
        raise KindfixError(f"restore exited {result.exit_code}"
                           + (f": {detail[-1]}" if detail else ""))
    got = node.read_file(entry.path) or b""
    return hashlib.sha256(got).hexdigest() == entry.sha256


def forget(recorder: RunRecorder, node: Node, paths: list[str]) -> None:
    """Drop journal entries of files a refused write never touched (declared for the write, no
    backup made): rollback must not look for their backups."""
    gone = {(node.name, p) for p in paths}
    with recorder._lock:
        recorder.journal.files[:] = [e for e in recorder.journal.files
                                     if (e.node, e.path) not in gone]
    recorder.save()
