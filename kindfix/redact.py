"""Redaction: every credential in node files and probe output is replaced by `REDACTED` before it
can reach a user (plan diffs, `-o json|yaml`, `kindfix collect` dumps).

Structure first: YAML (block and flow style, block scalars, anchors, multi-document) and JSON are
composed with ruamel.yaml and every scalar under a credential key (`client-key-data`, `token`,
`id-token`, `password`, `tlsBootstrapToken`, `certificateKey`, an EncryptionConfiguration
`secret`, a Secret's `data`, ...) is spliced out of the original text, so everything else stays
byte for byte (audit reads dumps; diffs must look like the file). Text rules then run over the
result: a PEM private key (one without its END line is secret to the end of the file), base64 of
one, and `key: value` / `--flag=value` pairs the parser did not see (comments, embedded text).
Content that does not parse gets the text rules alone, in their stricter form.
"""

from __future__ import annotations

import bisect
import json
import re
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from kindfix.redact_text import (
    REDACTED,
    redact_base64_keys,
    redact_flags,
    redact_pairs,
    redact_pem,
    secret_in_text,
)

__all__ = ["REDACTED", "is_secret_key", "redact", "redact_data", "redact_text", "secret_in_text"]

# Keys compared lower-case without "-" and "_": client-key-data == clientKeyData.
_SECRET_NAMES = frozenset({
    "clientkeydata", "token", "idtoken", "refreshtoken", "accesstoken", "password", "passwd",
    "secret", "clientsecret", "tlsbootstraptoken", "certificatekey", "privatekey", "apikey",
    "authorization",  # KubeletConfiguration staticPodURLHeader, HTTP headers
})
# Any key ending so holds a credential unless its value is a mapping (tlsBootstrapToken).
_SECRET_SUFFIXES = ("token", "password", "passwd", "secret", "keydata", "privatekey",
                    "certificatekey", "apikey", "encryptionkey")
# Whole subtrees that are credentials: a Kubernetes Secret's values.
_SECRET_KIND_FIELDS = ("data", "stringData")
# `env: [{name: ETCD_PASSWORD, value: ...}]` (pods, kubeconfig exec plugins): the name tells
_SECRET_ENV_WORDS = ("token", "password", "passwd", "secret", "apikey", "privatekey", "credential",
                     "authorization")
# Nested text (a ConfigMap holding a kubeconfig) is redacted as a document of its own, this deep.
_MAX_NESTING = 3

# not after a backslash: `\x41...` is an escape, the stand-in must not split it
_LONG_BASE64 = re.compile(r"(?<![\\A-Za-z0-9+/])[A-Za-z0-9+/]{80,}={0,2}")
_STAND_IN = "B64"
_ANCHOR_OR_TAG = re.compile(r"(?:[&!]\S*\s+)*")


def redact(content: bytes, name: str = "") -> bytes:
    """`content` with every credential replaced by REDACTED; `name` is the file it came from."""
    if name.endswith(".key"):
        return f"{REDACTED}\n".encode() if content else content
    text = content.decode("utf-8", errors="surrogateescape")
    return redact_text(text).encode("utf-8", errors="surrogateescape")


def redact_text(text: str, depth: int = 0) -> str:
    structured = _redact_structure(text, depth)
    if structured is None:
        out = redact_pairs(text, strict=True)
    else:  # keys the parser saw were judged there: the pairs rule is for comments and such
        out = redact_pairs(structured[0], strict=False, skip=structured[1])
    return redact_pem(redact_base64_keys(redact_flags(out)))


def is_secret_key(key: str, leaf_value: bool = True) -> bool:
    """Whether `key` holds a credential; a key ending like one (bootstrapToken) only when its
    value is a scalar or a list (leaf_value), not a mapping (which is searched instead)."""
    norm = key.lower().replace("-", "").replace("_", "")
    return norm in _SECRET_NAMES or (leaf_value and norm.endswith(_SECRET_SUFFIXES))


# --- structured ---------------------------------------------------------------------------

def _redact_structure(text: str, depth: int) -> tuple[str, set[int]] | None:
    """Splice credentials out of YAML/JSON text: (the result, where the parser saw mapping
    keys in it); None when it does not parse."""
    if not _worth_parsing(text):
        return text, set()
    keys: set[int] = set()
    spans = _yaml_secret_spans(text, depth, keys)
    if spans is None:
        out = _redact_json(text)
        return None if out is None else (out, set())
    if not spans:
        return text, keys
    out = _splice(text, spans)
    # the splice works on the parser's character offsets: check them by parsing the result
    keys = set()
    again = _yaml_secret_spans(out, depth, keys)
    if again is None or again:
        return None
    return out, keys


def _worth_parsing(text: str) -> bool:
    lowered = text.lower().replace("-", "").replace("_", "")
    return ("\\" in text or any(s in lowered for s in _SECRET_SUFFIXES + _SECRET_ENV_WORDS)
            or secret_in_text(text))


def _compose(text: str) -> list[Node] | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a reused anchor, a duplicate key: use the text rules
            return [d for d in YAML(typ="safe", pure=True).compose_all(text) if d is not None]
    except (YAMLError, ValueError, RecursionError, Warning):
        return None


def _yaml_secret_spans(text: str, depth: int, keys: set[int]
                       ) -> list[tuple[int, int, str]] | None:
    """(start, end, replacement) of every credential scalar still in `text`; fills `keys`
    with the offsets of the mapping keys."""
    offset = 1 if text.startswith("\ufeff") else 0
    short, where = _shortened(text[offset:])
    docs = _compose(short)
    if docs is None:
        return None

    def at(index: int) -> int:
        return where(index) + offset

    spans: dict[int, tuple[int, int, str]] = {}
    for doc in docs:
        if isinstance(doc, ScalarNode):  # plain text (a PEM file, a script): the text rules
            continue
        keys.update(at(k.start_mark.index) for k in _mapping_keys(doc, set()))
        for node in _secret_scalars(doc, depth, set()):
            start, end = at(node.start_mark.index), at(node.end_mark.index)
            spans[start] = (start, end, _replacement(text[start:end], node.style))
    return sorted(spans.values())


def _shortened(text: str) -> tuple[str, Callable[[int], int]]:
    """`text` with each long base64 run (certificates, keys: most of a kubeconfig) cut to a
    short stand-in, and the map from its offsets back to `text`'s. The pure-Python scanner
    reads every character: this makes a kubeconfig several times cheaper to parse. A base64
    run holding a key is still caught by the text rules, which see the whole text."""
    parts: list[str] = []
    ends: list[int] = []  # offset in the short text right after each stand-in
    removed: list[int] = []  # characters removed up to and including that stand-in
    pos = total = 0
    for m in _LONG_BASE64.finditer(text):
        parts += [text[pos:m.start()], _STAND_IN]
        total += len(m.group()) - len(_STAND_IN)
        ends.append(m.end() - total)
        removed.append(total)
        pos = m.end()
    parts.append(text[pos:])

    def where(index: int) -> int:
        k = bisect.bisect_right(ends, index)
        return index + (removed[k - 1] if k else 0)

    return "".join(parts), where


def _secret_scalars(node: Node, depth: int, seen: set[int]) -> Iterator[ScalarNode]:
    """Scalars that are credentials: under a credential key, or secret by their own text."""
    if id(node) in seen:  # aliases: each node once (and no loops through merge keys)
        return
    seen.add(id(node))
    if isinstance(node, ScalarNode):
        if _scalar_is_secret(node, depth):
            yield node
    elif isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            if i and _is_secret_flag(node.value[i - 1]):  # ["--token", "abc"]
                yield from _all_scalars(item, set())
            else:
                yield from _secret_scalars(item, depth, seen)
    elif isinstance(node, MappingNode):
        fields = {k.value: v.value for k, v in node.value
                  if isinstance(k, ScalarNode) and isinstance(v, ScalarNode)}
        secret_kind = fields.get("kind") == "Secret"
        secret_env = _secret_env_name(str(fields.get("name", "")))
        for key, value in node.value:
            name = key.value if isinstance(key, ScalarNode) else ""
            if is_secret_key(name, not isinstance(value, MappingNode)) or (
                    secret_kind and name in _SECRET_KIND_FIELDS) or (
                    secret_env and name == "value"):
                yield from _all_scalars(value, set())
            else:
                yield from _secret_scalars(key, depth, seen)
                yield from _secret_scalars(value, depth, seen)


def _mapping_keys(node: Node, seen: set[int]) -> Iterator[Node]:
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, SequenceNode):
        for item in node.value:
            yield from _mapping_keys(item, seen)
    elif isinstance(node, MappingNode):
        for key, value in node.value:
            yield key
            yield from _mapping_keys(value, seen)


def _is_secret_flag(node: Node) -> bool:
    return isinstance(node, ScalarNode) and str(node.value).startswith("--") and "=" not in str(
        node.value) and is_secret_key(str(node.value)[2:])


def _secret_env_name(name: str) -> bool:
    norm = name.lower().replace("-", "").replace("_", "")
    return any(w in norm for w in _SECRET_ENV_WORDS)


def _all_scalars(node: Node, seen: set[int]) -> Iterator[ScalarNode]:
    if isinstance(node, ScalarNode):
        if node.value not in ("", REDACTED) and node.tag != "tag:yaml.org,2002:null":
            yield node
        return
    if id(node) in seen:
        return
    seen.add(id(node))
    children = node.value if isinstance(node, SequenceNode) else [
        c for pair in node.value for c in pair[1:]] if isinstance(node, MappingNode) else []
    for child in children:
        yield from _all_scalars(child, seen)


def _scalar_is_secret(node: ScalarNode, depth: int) -> bool:
    value = str(node.value)
    if value == REDACTED:
        return False
    if secret_in_text(value):
        return True
    # embedded text (a kubeconfig in a ConfigMap): secret if it holds a credential itself
    return "\n" in value and depth < _MAX_NESTING and redact_text(value, depth + 1) != value


def _replacement(source: str, style: str | None) -> str:
    """REDACTED in the scalar's own style; anchors are kept (aliases use them), tags dropped."""
    anchor = " ".join(t for t in _ANCHOR_OR_TAG.match(source).group().split()  # type: ignore[union-attr]
                      if t.startswith("&"))
    prefix = anchor + " " if anchor else ""
    if style in ('"', "'"):
        return f"{prefix}{style}{REDACTED}{style}"
    if style in ("|", ">"):
        trailing = source[len(source.rstrip()):]  # the newlines the block scalar consumed
        return f"{prefix}{REDACTED}{trailing or ''}"
    return prefix + REDACTED


def _splice(text: str, spans: list[tuple[int, int, str]]) -> str:
    out, pos = [], 0
    for start, end, new in spans:
        if start < pos:  # nested in a span already replaced
            continue
        out += [text[pos:start], new]
        pos = end
    return "".join(out) + text[pos:]


def _redact_json(text: str) -> str | None:
    """JSON that YAML refuses (tab indentation, odd escapes): rewritten from its structure."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    redacted = redact_data(data)
    if redacted == data:
        return text
    return json.dumps(redacted, indent=2) + ("\n" if text.endswith("\n") else "")


def redact_data(data: Any, depth: int = 0) -> Any:
    """Plain data (parsed JSON) with every credential value replaced."""
    if isinstance(data, dict):
        secret_kind = data.get("kind") == "Secret"
        secret_env = _secret_env_name(str(data.get("name", "")))
        return {k: _redact_all(v) if is_secret_key(str(k), not isinstance(v, dict))
                or (secret_kind and k in _SECRET_KIND_FIELDS) or (secret_env and k == "value")
                else redact_data(v, depth) for k, v in data.items()}
    if isinstance(data, list):
        return [_redact_all(v) if i and isinstance(data[i - 1], str)
                and data[i - 1].startswith("--") and "=" not in data[i - 1]
                and is_secret_key(data[i - 1][2:]) else redact_data(v, depth)
                for i, v in enumerate(data)]
    if isinstance(data, str) and data != REDACTED and (secret_in_text(data) or (
            "\n" in data and depth < _MAX_NESTING and redact_text(data, depth + 1) != data)):
        return REDACTED
    return data


def _redact_all(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _redact_all(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_redact_all(v) for v in data]
    return data if data in (None, "") else REDACTED
