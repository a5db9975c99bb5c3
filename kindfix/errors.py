"""Error types and exit codes, handled once at the CLI edge."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

# Exit codes (documented in the README).
EXIT_OK = 0
EXIT_ERROR = 1  # an expected failure: KindfixError
EXIT_USAGE = 2  # click's own usage errors
EXIT_BUG = 3  # anything unexpected: a bug in kindfix
EXIT_FINDINGS = 4  # audit found stale addresses / repair could not verify health
EXIT_INTERRUPTED = 130


class KindfixError(Exception):
    """An expected failure: printed as one line plus an optional hint, exit 1."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class CommandError(KindfixError):
    """A command run inside a node (or on the host) exited non-zero.

    Keeps argv, exit code and output; its message shows a command the user can paste,
    like kind's pkg/exec RunError.
    """

    def __init__(
        self,
        argv: Sequence[str],
        exit_code: int,
        stdout: bytes = b"",
        stderr: bytes = b"",
        where: str | None = None,
    ) -> None:
        self.argv = list(argv)
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr
        self.where = where
        shown = shlex.join(self.argv)
        if len(shown) > 200:
            shown = shown[:200] + "..."
        if where:
            shown = f"docker exec {shlex.quote(where)} {shown}"
        detail = stderr.decode(errors="replace").strip().splitlines()
        last = f": {detail[-1]}" if detail else ""
        super().__init__(f"command failed (exit {exit_code}): {shown}{last}")
