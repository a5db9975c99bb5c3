"""Text rules of redaction (kindfix/redact.py): what holds for any text, parsed or not.

A PEM private key's body becomes REDACTED (one without its END line: everything after it), so
does base64 of a key, and `key: value` / `--key=value` / `--key value` / `Bearer x` pairs whose
key names a credential. Text that did not parse as YAML/JSON gets the strict form: a value that
does not end on its line (open quote or bracket, block scalar, continuation lines) is redacted as
far as it could reach.
"""

from __future__ import annotations

import base64
import binascii
import re

REDACTED = "REDACTED"

# a key naming a credential, as text (client-key-data, tlsBootstrapToken, id_token, ...)
_KEY_TEXT = (r"[A-Za-z0-9_-]*?(?:token|password|passwd|secret|key[-_]?data|private[-_]?key|"
             r"certificate[-_]?key|api[-_]?key|encryption[-_]?key|authorization)")
# `Bearer <token>` (an HTTP header, curl output): the credential is the next word
_BEARER = re.compile(r"(?<![\w-])(?P<scheme>bearer|basic)[ \t]+(?P<value>[A-Za-z0-9._~+/-]{8,}=*)",
                     re.IGNORECASE)
# a credential key in text: not part of a longer word, maybe quoted (or JSON-escaped quoted)
_KEY_VALUE = re.compile(
    rf"(?<![\w-])(?P<key>{_KEY_TEXT})(?P<close>\\?[\"']?)(?P<sep>[ \t]*[:=][ \t]*)",
    re.IGNORECASE)
# `--token abc` (shell scripts, argv lists): the value is the next word
_FLAG_SPACE = re.compile(
    rf"(?<![\w-])--{_KEY_TEXT}[ \t]+"
    r"(?P<value>\"[^\"]*\"|'[^']*'|[^\s\-\"'][^\s\"',}\]]*)", re.IGNORECASE)
_PEM_BEGIN = re.compile(r"-----BEGIN (?P<label>[A-Z0-9 ]*?)PRIVATE KEY(?:-----)?")
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{40,}={0,2}")
# a value redacted already (strict: nothing but closing brackets after it)
_DONE = re.compile(rf"\\?[\"']?{REDACTED}\\?[\"']?[\s,}}\]]*")


def redact_flags(text: str) -> str:
    """`--token abc` and `Bearer abc`: the word after them."""
    for rule in (_FLAG_SPACE, _BEARER):
        text = rule.sub(lambda m: m.group()[: m.start("value") - m.start()] + REDACTED, text)
    return text


def secret_in_text(value: str) -> bool:
    """A scalar that is (or carries) a private key, whatever key it sits under."""
    return bool(_PEM_BEGIN.search(value)) or any(
        _is_base64_key(m.group()) for m in _BASE64_RUN.finditer(value))


def redact_pem(text: str) -> str:
    """Private key bodies become REDACTED; a BEGIN without its END hides the rest of the file."""
    pos = 0
    while (m := _PEM_BEGIN.search(text, pos)) is not None:
        end = re.compile(rf"-----END {re.escape(m.group('label'))}PRIVATE KEY-----").search(
            text, m.end())
        body = text[m.end(): end.start() if end else len(text)]
        lead = re.match(r"(?:\\[rn]|\s)*", body).group()  # type: ignore[union-attr]
        done = body[len(lead):].startswith(REDACTED) and (
            end is not None or not body[len(lead) + len(REDACTED):].strip())
        if done or not body.strip():
            pos = m.end() + len(body)
            continue
        trail = re.search(r"(?:\\[rn]|\s)*$", body).group() if end else "\n"  # type: ignore[union-attr]
        new = lead + REDACTED + trail
        text = text[: m.end()] + new + (text[end.start():] if end else "")
        pos = m.end() + len(new)
    return text


def _is_base64_key(run: str) -> bool:
    """A base64 run that decodes to a PEM private key (or its truncated start)."""
    usable = run.rstrip("=")
    usable = usable[: len(usable) - len(usable) % 4]
    try:
        raw = base64.b64decode(usable, validate=True)
    except (binascii.Error, ValueError):
        return False
    return b"PRIVATE KEY" in raw or (raw.startswith(b"-----BEGIN") and b"PRIVATE" in raw[:40])


def redact_base64_keys(text: str) -> str:
    return _BASE64_RUN.sub(lambda m: REDACTED if _is_base64_key(m.group()) else m.group(), text)


def redact_pairs(text: str, strict: bool, skip: set[int] | frozenset[int] = frozenset()
                  ) -> str:
    """`key: value`, `"key": "value"` and `--key=value` pairs with a credential key, except
    keys at the offsets in `skip` (the parser's mapping keys, judged already).

    strict (text that did not parse): a value that does not end on its line (open quote or
    bracket, block scalar, continuation lines) is redacted to wherever it could end."""
    out, pos = [], 0
    for m in _KEY_VALUE.finditer(text):
        if m.start() < pos or skip.intersection((m.start(), m.start() - 1, m.start() - 2)):
            continue
        start = m.end()
        end = _value_end(text, start, m.group("sep").strip(), strict, _column(text, m.start()))
        value = text[start:end]
        if not value.strip() or (re.fullmatch(_DONE, value) if strict else re.match(_DONE, value)):
            continue
        out += [text[pos:start], _masked(value)]
        pos = end
    return "".join(out) + text[pos:]


def _column(text: str, index: int) -> int:
    return index - (text.rfind("\n", 0, index) + 1)


def _masked(value: str) -> str:
    """REDACTED in place of a value, keeping its quotes and line breaks (diffs stay aligned)."""
    if not value.strip():
        return value
    quote = re.match(r"\\?[\"']", value)
    q = quote.group() if quote else ""
    lines = value.count("\n")
    return f"{q}{REDACTED}{q}" + "\n" * lines if q else REDACTED + "\n" * lines


def _value_end(text: str, start: int, sep: str, strict: bool, key_column: int) -> int:
    line_end = text.find("\n", start)
    line_end = len(text) if line_end < 0 else line_end
    rest = text[start:line_end]
    if rest.startswith(('\\"', '"', "'")):
        quote = rest[:2] if rest.startswith("\\") else rest[0]
        close = _closing_quote(text, start + len(quote), quote)
        if close is not None and (strict or close <= line_end):
            return close + len(quote)
        return len(text) if strict else line_end
    if sep == "=":
        return start + len(re.match(r"[^\s\"',}\]]*", rest).group())  # type: ignore[union-attr]
    if strict and rest.startswith(("[", "{")):
        close = _closing_bracket(text, start)
        return len(text) if close is None else close + 1
    if strict:  # a block scalar, plain continuation lines or a nested block
        return _continuation_end(text, line_end, key_column)
    return line_end


def _closing_quote(text: str, pos: int, quote: str) -> int | None:
    while pos < len(text):
        i = text.find(quote, pos)
        if i < 0:
            return None
        if quote == "'" and text.startswith("''", i):
            pos = i + 2
            continue
        if quote == '"' and _escaped(text, i):
            pos = i + 1
            continue
        return i
    return None


def _escaped(text: str, i: int) -> bool:
    n = 0
    while i - n - 1 >= 0 and text[i - n - 1] == "\\":
        n += 1
    return n % 2 == 1


def _closing_bracket(text: str, pos: int) -> int | None:
    depth = 0
    for i in range(pos, len(text)):
        if text[i] in "[{":
            depth += 1
        elif text[i] in "]}":
            depth -= 1
            if depth == 0:
                return i
    return None


def _continuation_end(text: str, line_end: int, key_column: int) -> int:
    """The end of the lines after a key that belong to its value: more indented than the key,
    blank, or a compact sequence item at the key's column."""
    end = line_end
    while end < len(text):
        nxt = text.find("\n", end + 1)
        nxt = len(text) if nxt < 0 else nxt
        line = text[end + 1: nxt]
        indent = len(line) - len(line.lstrip(" \t"))
        if line.strip() and indent <= key_column and not (
                indent == key_column and line.lstrip().startswith("- ")):
            break
        end = nxt
    return end
