"""No credential reaches a user (kindfix/redact.py): property tests over generated documents.

Hypothesis builds credential-bearing documents in every YAML/JSON form kindfix may read (block,
flow, quoted, block scalars, lists, nested, anchors, multi-document, JSON, PEM keys with and
without END, base64 of a key, text that does not parse) and checks that no 8-byte piece of any
secret survives redaction, plan diffs, `-o json|yaml`, `collect` dumps or the journal.
"""

from __future__ import annotations

import base64
import io
import json
import string
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import (
    DoubleQuotedScalarString,
    FoldedScalarString,
    LiteralScalarString,
    SingleQuotedScalarString,
)

from kindfix.audit import audit
from kindfix.plan import make_plan, unified_diff
from kindfix.redact import REDACTED, redact
from kindfix.rewrite import FileChange
from tests.unit import test_cli
from tests.unit.helpers_nodes import applier, dump

Run = test_cli.Run
run = test_cli.run  # the one CLI fixture, shared

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
# through the CLI: each example is three plans and a dump (~3 s here); the forms are covered
# above, these check that every output path goes through redaction
CLI_SETTINGS = settings(SETTINGS, max_examples=6)

CREDENTIAL_KEYS = ("client-key-data", "token", "id-token", "refresh-token", "access-token",
                   "password", "tlsBootstrapToken", "certificateKey", "secret", "client-secret",
                   "bearerToken")
BENIGN_KEYS = ("name", "server", "cluster", "user", "kind", "apiVersion", "usages", "ttl",
               "groups", "description", "endpoint", "tokens", "keys", "secretName")

# secrets: long runs of letters/digits that occur nowhere else, some spread over lines
_PART = st.text(alphabet=string.ascii_letters + string.digits, min_size=16, max_size=40).map(
    lambda s: "Zq" + s)
SECRETS = st.lists(_PART, min_size=1, max_size=3)


def leaked(secrets: list[str], out: bytes | str) -> list[str]:
    """Every 8-character piece of a secret found in `out`."""
    text = out.decode(errors="replace") if isinstance(out, bytes) else out
    return [s[i:i + 8] for s in secrets for i in range(len(s) - 7) if s[i:i + 8] in text]


# --- documents ----------------------------------------------------------------------------

BENIGN = st.one_of(st.sampled_from(["172.18.0.3", "24h", "kind", "signing", "true"]),
                   st.integers(0, 9999))


def _pem(parts: list[str], end: str) -> LiteralScalarString:
    return LiteralScalarString("-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(parts) + "\n" + end)


# the credential itself, in every scalar style, or as a list/mapping of scalars
VALUE_STYLES: dict[str, Callable[[list[str]], Any]] = {
    "plain": " ".join,
    "double": lambda p: DoubleQuotedScalarString(" ".join(p)),
    "single": lambda p: SingleQuotedScalarString(" ".join(p)),
    "literal": lambda p: LiteralScalarString("\n".join(p) + "\n"),
    "folded": lambda p: FoldedScalarString("\n".join(p) + "\n"),
    "list": CommentedSeq,
    "map": lambda p: CommentedMap((f"k{i}", v) for i, v in enumerate(p)),
    "pem": lambda p: _pem(p, "-----END RSA PRIVATE KEY-----\n"),
    "pem-no-end": lambda p: _pem(p, ""),
}


@st.composite
def secret_value(draw: st.DrawFn, parts: list[str]) -> Any:
    return VALUE_STYLES[draw(st.sampled_from(sorted(VALUE_STYLES)))](parts)


@st.composite
def tree(draw: st.DrawFn, parts: list[str]) -> Any:
    """A document: benign nesting (mappings, lists, flow or block) around the credential."""
    key = draw(st.sampled_from(CREDENTIAL_KEYS))
    node: Any = CommentedMap([(key, draw(secret_value(parts)))])
    for _ in range(draw(st.integers(0, 4))):
        siblings = draw(st.lists(st.tuples(st.sampled_from(BENIGN_KEYS), BENIGN), max_size=3))
        wrapper = CommentedMap()
        for k, v in siblings:
            wrapper[k] = v
        wrapper[draw(st.sampled_from(BENIGN_KEYS)) + "x"] = node
        node = CommentedSeq([wrapper]) if draw(st.booleans()) else wrapper
        if draw(st.booleans()):
            node.fa.set_flow_style()
    if not isinstance(node, CommentedMap):
        node = CommentedMap([("items", node)])
    return node


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_plain(v) for v in obj]
    return str(obj) if isinstance(obj, str) else obj


def as_yaml(doc: Any) -> str:
    y = YAML(typ="rt")
    y.width = 4096
    out = io.StringIO()
    y.dump(doc, out)
    return out.getvalue()


def _base64_pem(parts: list[str]) -> tuple[list[str], str]:
    pem = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(parts) + "\n-----END PRIVATE KEY-----\n"
    encoded = base64.b64encode(pem.encode()).decode()
    return [encoded[30:]], f"users:\n- user:\n    client-certificate-data: {encoded}\n"


def _long_values(parts: list[str], doc: Any) -> tuple[list[str], str]:
    """Values longer than the parser's base64 stand-in threshold, beside long benign ones."""
    long = "".join(parts) * 5
    return [long], ("clusters:\n- cluster:\n    certificate-authority-data: " + "QUJD" * 40
                    + "\n    server: https://172.18.0.3:6443\nusers:\n- user:\n"
                    f"    client-key-data: {long}\n    token: \"{long}\"\n" + as_yaml(doc))


# (secrets, text) from (secrets, document): the forms kindfix may read or print
FORMS: dict[str, Callable[[list[str], Any], tuple[list[str], str]]] = {
    "yaml": lambda p, d: (p, as_yaml(d)),
    "json": lambda p, d: (p, json.dumps(_to_plain(d), indent=2)),
    "json-compact": lambda p, d: (p, json.dumps(_to_plain(d), separators=(",", ":"))),
    "multi-doc": lambda p, d: (p, "kind: A\nserver: https://172.18.0.3:6443\n---\n" + as_yaml(d)
                               + "---\nb: 1\n"),
    "anchor": lambda p, _: (p, f"defaults: &creds {p[0]}\nusers:\n- user: {{token: *creds}}\n"),
    # does not parse: the text rules alone must hold
    "broken": lambda p, d: (p, as_yaml(d) + "\nbroken: [unclosed, {\n\t: :\n"),
    "base64-pem": lambda p, _: _base64_pem(p),
    "flag": lambda p, _: (p, "command:\n- kubeadm\n- join\n- --token\n- " + p[0]
                          + "\n- --discovery-token=" + p[-1] + "\n"),
    "comment": lambda p, d: (p, "a: 1\n# password: " + p[0] + "\n" + as_yaml(d)),
    "long-values": _long_values,
    "env-flags": lambda p, _: (p, f'KUBELET_KUBEADM_ARGS="--node-ip=172.18.0.3 --token {p[0]} '
                               f'--password=\'{" ".join(p)}\'"\n'),
}


@st.composite
def credential_document(draw: st.DrawFn) -> tuple[list[str], str]:
    parts = draw(SECRETS)
    return FORMS[draw(st.sampled_from(sorted(FORMS)))](parts, draw(tree(parts)))


# --- redact() itself ----------------------------------------------------------------------

@SETTINGS
@given(credential_document())
def test_no_generated_secret_survives_redaction(doc: tuple[list[str], str]) -> None:
    parts, text = doc
    out = redact(text.encode())
    assert not leaked(parts, out), out.decode(errors="replace")
    assert redact(out) == out  # stable: what is printed twice looks the same


@SETTINGS
@given(credential_document())
def test_no_generated_secret_survives_in_a_diff(doc: tuple[list[str], str]) -> None:
    parts, text = doc
    old = b"server: https://172.18.0.2:6443\n" + text.encode()
    new = b"server: https://172.18.0.9:6443\n" + text.encode()
    diff = unified_diff(FileChange("kind-control-plane", "/etc/kubernetes/x.conf", old, new, ()))
    assert "+server: https://172.18.0.9:6443" in diff
    assert not leaked(parts, diff), diff


HOSTILE = [
    b'{"\\u0074oken": "ZqS1"}',  # a key spelled with an escape
    b"? token\n: ZqS1\n",  # explicit key syntax
    b"a: 1\r\ntoken: ZqS1\r\nb: 2\r\n",
    b"\xef\xbb\xbftoken: ZqS1\n",  # byte-order mark
    b"TOKEN: ZqS1\nClient_Key_Data: ZqS2\n",
    b"token: >-\n  ZqS1\n  ZqS2\nnext: 1\n",
    b'token: "ZqS1\n  ZqS2"\n',
    b"- {name: x, token: ZqS1}\n- [--password, ZqS2]\n",
    b"data:\n  config: |\n    users:\n    - user:\n        token: ZqS1\n",  # embedded kubeconfig
    b"kind: Secret\ndata:\n  foo: ZqS1\nstringData: {bar: ZqS2}\n",
    b"env:\n- name: ETCD_PASSWORD\n  value: ZqS1\n",
    b"\xff\xfe token: ZqS1\n",  # not UTF-8
    b"token:\n- ZqS1\n- ZqS2\nx: [\n",  # does not parse
    b'"password"  :  "ZqS1", "x": 1\n}',
    b'KUBELET_KUBEADM_ARGS="--token=ZqS1 --password ZqS2"\n',
    b'kubeadm join --token "ZqS1 x" --certificate-key ZqS2\n',
    b"x: !!binary |\n  LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQpNSUlF\n",  # base64 of a key
    b"token: &a ZqS1\nother: *a\n",
    b'{"key": "-----BEGIN PRIVATE KEY-----\\nZqS1\\n-----END PRIVATE KEY-----\\n", "a": 1}',
    b'a:\n  b:\n    c: [1, {password: "Zq\\"S1"}]\n',
    b"staticPodURLHeader:\n  Authorization: [Bearer ZqS1.x]\n",  # KubeletConfiguration
    b"< HTTP/1.1 401\n> Authorization: Bearer ZqS1abcdefgh\n",  # curl -v output
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_forms_leak_nothing(text: bytes) -> None:
    out = redact(text)
    for piece in (b"ZqS1", b"ZqS2", b"S1", b"LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRV"):
        assert piece not in out, out


def test_parsed_content_is_left_byte_for_byte() -> None:
    text = (b"apiVersion: v1  # a comment\nclusters:\n- cluster:\n    server: "
            b"https://172.18.0.3:6443\n  name: kind\nusers:\n- name: a\n  user:\n"
            b"    client-key-data: QUJD\n    token:   'x''y'\n")
    assert redact(text) == text.replace(b"QUJD", b"REDACTED").replace(b"'x''y'", b"'REDACTED'")


def test_ordinary_text_and_public_certificates_are_kept() -> None:
    text = (b"server: https://172.18.0.3:6443\ntokens: 3\n# client-key-data is secret\n"
            b"- --enable-bootstrap-token-auth=true\n- --service-account-key-file=/etc/sa.pub\n"
            b"-----BEGIN CERTIFICATE-----\nMIIC7jCCAdagAwIBAgIINWy\n-----END CERTIFICATE-----\n")
    assert redact(text) == text


def test_a_private_key_without_its_end_hides_the_rest_of_the_file() -> None:
    text = b"a: 1\n-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI\nserver: x\n-----END RSA PRIVATE KEY-----\n"
    out = redact(text)
    assert out == b"a: 1\n-----BEGIN EC PRIVATE KEY-----\nREDACTED\n"


def test_key_files_are_redacted_whole() -> None:
    assert redact(b"anything at all\n", "/etc/kubernetes/pki/sa.key") == b"REDACTED\n"


# --- through the CLI and the journal ------------------------------------------------------

def _inject(conf: bytes, parts: list[str], doc: Any) -> bytes:
    """A kubeconfig with the generated credential entries right after `server:` (inside the
    diff's context lines)."""
    y = YAML(typ="rt")
    y.width = 4096
    data = y.load(conf)
    cluster = data["clusters"][0]["cluster"]
    at = list(cluster).index("server") + 1
    for i, (k, v) in enumerate(doc.items()):
        cluster.insert(at + i, k, v)
    data["users"][0]["user"]["token"] = parts[0]
    out = io.StringIO()
    y.dump(data, out)
    return out.getvalue().encode()


@st.composite
def injected(draw: st.DrawFn) -> tuple[list[str], Any]:
    parts = draw(SECRETS)
    return parts, draw(tree(parts))


CONF = "/etc/kubernetes/controller-manager.conf"


@CLI_SETTINGS
@given(injected())
def test_no_generated_secret_reaches_any_output(tmp_path_factory: pytest.TempPathFactory,
                                               capsys: pytest.CaptureFixture[str], run: Run,
                                               case: tuple[list[str], Any]) -> None:
    parts, doc = case

    def cli(args: list[str], rt: test_cli.FakeRuntime) -> test_cli.Result:
        capsys.readouterr()  # the fixture echoes each result: drop it, or outputs snowball
        return run(args, rt)

    rt = test_cli.runtime_from_dump("single-cp-restart-v0.14")
    node = rt.nodes["kind-control-plane"]
    node.files[CONF] = _inject(node.files[CONF], parts, doc)
    outputs: dict[str, str] = {}
    for fmt in ("table", "json", "yaml"):
        r = cli(["repair", "--dry-run", "-o", fmt], rt)
        assert r.code == 0, r.err
        outputs[f"repair -o {fmt}"] = r.out + r.err
    assert "172.18.0" in outputs["repair -o table"]  # the controller-manager.conf diff is shown
    r = cli(["audit", "-o", "json"], rt)
    outputs["audit"] = r.out + r.err
    out = tmp_path_factory.mktemp("dump") / "d"
    r = cli(["collect", "--output", str(out)], rt)
    assert r.code == 0, r.err
    outputs["dump"] = "".join(p.read_text(errors="replace") for p in out.rglob("*") if p.is_file())
    assert REDACTED in outputs["dump"]
    for where, text in outputs.items():
        assert not leaked(parts, text), where


@CLI_SETTINGS
@given(injected())
def test_no_generated_secret_reaches_the_journal(case: tuple[list[str], Any]) -> None:
    parts, doc = case
    cluster, snaps, nodes = dump("single-cp-restart-v0.14")
    cp = nodes["kind-control-plane"]
    cp.files[CONF] = _inject(cp.files[CONF], parts, doc)
    snaps = {**snaps, cp.name: replace(snaps[cp.name], files={**snaps[cp.name].files,
                                                               CONF: cp.files[CONF]})}
    plan = make_plan(cluster, snaps, audit(cluster, snaps))
    files_only = replace(plan, steps=tuple(s for s in plan.steps if s.kind == "write-file"))
    assert any(s.path == CONF for s in files_only.steps)
    apply_plan: Callable[..., Any] = applier(cluster, nodes, snaps)[0].apply
    apply_plan(files_only)
    journals = {p: c for p, c in cp.files.items() if p.startswith("/kind/kindfix/journal/")}
    assert journals, "the run kept no journal"
    for path, content in journals.items():
        assert not leaked(parts, content), path
