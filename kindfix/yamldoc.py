"""YAML node files (static pod manifests, kubeconfigs, kubeadm.conf), edited in place.

ruamel.yaml's round-trip mode finds the scalars; each change is then spliced into the original
text, so comments, quoting and layout survive and only the addressed scalars change.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from kindfix.docpath import RESTORE_HINT, Ref, decode, parse_path, walk
from kindfix.errors import KindfixError


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096
    return y


class _Spliced:
    """Records scalar edits and writes them into the original text, byte for byte elsewhere.
    Falls back to ruamel's own dump only when a position cannot be found."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._edits: list[tuple[tuple[int, int] | None, str, str]] = []

    def track(self, ref: Ref) -> Ref:
        def setter(v: str) -> None:
            before = ref.raw() if ref.raw else ref.get()
            ref.set(v)
            after = ref.raw() if ref.raw else ref.get()
            self._edits.append((ref.pos, before, after))

        return Ref(ref.get, setter, ref.pos, ref.raw, ref.text)

    def splice(self, fallback: Callable[[], str]) -> str:
        if not self._edits:
            return self._text
        lines = self._text.splitlines(keepends=True)
        for pos, before, after in self._edits:
            if pos is None or pos[0] >= len(lines):
                return fallback()
            line, col = pos
            idx = lines[line].find(before, col)
            if idx < 0:
                return fallback()
            lines[line] = lines[line][:idx] + after + lines[line][idx + len(before):]
        return "".join(lines)



def _read_only(_value: str) -> None:
    raise TypeError("document was parsed read-only (editable=False)")


# Node files are input kindfix does not control. ruamel's composer recurses once per nesting
# level: ~500 nested flow collections raise RecursionError after seconds of work, so deeper flow
# nesting than any Kubernetes file has is refused before parsing.
MAX_FLOW_DEPTH = 64


def _flow_depth(text: str) -> int:
    depth = deepest = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}" and depth:
            depth -= 1
    return deepest


class _YamlText:
    """Round-tripped YAML text: edits through `find` refs are spliced into the original."""

    def __init__(self, text: bytes, source: str, editable: bool = True) -> None:
        # reading only: the safe loader is about twice as fast (audit parses every file)
        self._yaml = _yaml() if editable else YAML(typ="safe")
        self._editable = editable
        decoded = decode(text, source, "valid YAML")
        if _flow_depth(decoded) > MAX_FLOW_DEPTH:
            raise KindfixError(f"{source} is not valid YAML: nested deeper than "
                               f"{MAX_FLOW_DEPTH} levels", hint=RESTORE_HINT)
        try:
            self._source_text = _Spliced(decoded)
            self._root = self._load(decoded)
        # ValueError: scalars the constructor cannot build (an int over 4300 digits, a date
        # like 2001-13-45); RecursionError: deep block nesting
        except (YAMLError, ValueError, RecursionError) as e:
            first = (str(e).splitlines() or [type(e).__name__])[0]
            raise KindfixError(f"{source} is not valid YAML: {first}",
                               hint=RESTORE_HINT) from e

    def _load(self, text: str) -> Any:
        return self._yaml.load(text)

    def _dump_root(self, out: io.StringIO) -> None:
        self._yaml.dump(self._root, out)

    def find(self, path: str) -> list[Ref]:
        refs = list(walk(self._root, parse_path(path)))
        if not self._editable:
            return [Ref(r.get, _read_only, r.pos, r.raw, r.text) for r in refs]
        return [self._source_text.track(r) for r in refs]

    def _ruamel_dump(self) -> str:
        out = io.StringIO()
        self._dump_root(out)
        return out.getvalue()

    def dump_structure(self) -> bytes:
        """Serialise after structural edits (items added or removed)."""
        return self._ruamel_dump().encode()

    def dump(self) -> bytes:
        return self._source_text.splice(self._ruamel_dump).encode()


class YamlDocument(_YamlText):
    """One YAML document (a static pod manifest or a kubeconfig)."""

    def __init__(self, text: bytes, source: str, editable: bool = True) -> None:
        super().__init__(text, source, editable)
        if not isinstance(self._root, dict):
            raise KindfixError(f"{source} is not a YAML mapping",
                               hint="restore it from a backup or `kindfix rollback`")

    @property
    def data(self) -> Any:
        return self._root


class MultiYamlDocument(_YamlText):
    """A multi-document YAML file whose documents are selected by `[kind=X]`."""

    def _load(self, text: str) -> Any:
        return list(self._yaml.load_all(text))

    def _dump_root(self, out: io.StringIO) -> None:
        self._yaml.dump_all(self._root, out)

    @property
    def docs(self) -> list[Any]:
        return list(self._root)

