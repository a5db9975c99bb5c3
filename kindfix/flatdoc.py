"""The node files that are not YAML: kubeadm-flags.env and one-value text files."""

from __future__ import annotations

import re
import shlex

from kindfix.docpath import RESTORE_HINT, Ref, decode, parse_path
from kindfix.errors import KindfixError

_ENV_LINE = re.compile(r'^(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<q>"?)(?P<value>.*)(?P=q)$')


class EnvFlagDocument:
    """kubeadm-flags.env: `NAME="--flag=value --other=value"` lines (kubeadm writes one)."""

    def __init__(self, text: bytes, source: str) -> None:
        self._lines = decode(text, source, "a kubelet flags file").split("\n")
        self._source = source
        # every assignment must split like the shell the kubelet's unit sources it with
        for line in self._lines:
            m = _ENV_LINE.match(line)
            if m:
                self._split(m, line)

    def _split(self, m: re.Match[str], line: str) -> list[str]:
        try:
            return shlex.split(m.group("value"))
        except ValueError as e:  # an unbalanced quote
            raise KindfixError(f"{self._source} is not a kubelet flags file: {e} in "
                               f"{line[:80]!r}", hint=RESTORE_HINT) from None

    def find(self, path: str) -> list[Ref]:
        segments = parse_path(path)
        if len(segments) != 2 or segments[1].field != "flag":
            raise ValueError(f"env-flag path must be NAME[flag=--x], got {path!r}")
        name, flag = segments[0].key, str(segments[1].value)
        refs = []
        for lineno, line in enumerate(self._lines):
            m = _ENV_LINE.match(line)
            if not m or m.group("name") != name:
                continue
            args = self._split(m, line)
            for i, arg in enumerate(args):
                if arg.startswith(flag + "="):
                    refs.append(self._ref(lineno, i, flag))
        return refs

    def _ref(self, lineno: int, index: int, flag: str) -> Ref:
        def parts() -> tuple[re.Match[str], list[str]]:
            m = _ENV_LINE.match(self._lines[lineno])
            assert m is not None
            return m, self._split(m, self._lines[lineno])

        def getter() -> str:
            return parts()[1][index][len(flag) + 1:]

        def setter(v: str) -> None:
            m, args = parts()
            args[index] = f"{flag}={v}"
            self._lines[lineno] = f'{m.group("name")}={m.group("q")}{" ".join(args)}{m.group("q")}'

        return Ref(getter, setter)

    def dump(self) -> bytes:
        return "\n".join(self._lines).encode()


class TextDocument:
    """A file that is one value, such as /kind/old-ipv4 (kind writes it without a newline)."""

    def __init__(self, text: bytes, source: str) -> None:
        self._text = decode(text, source, "text")

    def find(self, path: str) -> list[Ref]:
        stripped = self._text.strip()
        if not stripped:
            return []

        def setter(v: str) -> None:
            self._text = self._text.replace(stripped, v, 1)

        return [Ref(self._stripped, setter)]

    def _stripped(self) -> str:
        return self._text.strip()

    def dump(self) -> bytes:
        return self._text.encode()

