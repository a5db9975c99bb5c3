from __future__ import annotations

import time

import pytest

from kindfix.docpath import parse_path
from kindfix.errors import KindfixError
from kindfix.flatdoc import EnvFlagDocument, TextDocument
from kindfix.yamldoc import MultiYamlDocument, YamlDocument
from kindfix.yamlpath import parse_document

ETCD = b"""apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/etcd.advertise-client-urls: https://172.18.0.3:2379
  creationTimestamp: null
  name: etcd
spec:
  containers:
  - command:
    - etcd
    - --advertise-client-urls=https://172.18.0.3:2379
    - --initial-cluster=kind-control-plane=https://172.18.0.3:2380
    image: registry.k8s.io/etcd:3.5.10-0
    livenessProbe:
      httpGet:
        host: 127.0.0.1  # kubeadm probes loopback
        path: /health?exclude=NOSPACE&serializable=true
    name: etcd
    resources: {}
  hostNetwork: true
status: {}
"""


def test_parse_path_handles_escaped_dots_and_selectors() -> None:
    segs = parse_path(r"metadata.annotations.a\.b/c.[kind=X].x[flag=--y][*]")
    assert [s.key for s in segs[:3]] == ["metadata", "annotations", "a.b/c"]
    assert (segs[3].field, segs[3].value) == ("kind", "X")
    assert (segs[5].field, segs[5].value) == ("flag", "--y")
    assert segs[6].field == "*"


def test_unchanged_document_round_trips_byte_for_byte() -> None:
    assert YamlDocument(ETCD, "etcd.yaml").dump() == ETCD


def test_flag_value_is_read_and_rewritten_in_place() -> None:
    doc = YamlDocument(ETCD, "etcd.yaml")
    [ref] = doc.find("spec.containers[name=etcd].command[flag=--advertise-client-urls]")
    assert ref.get() == "https://172.18.0.3:2379"
    ref.set("https://172.18.0.4:2379")
    out = doc.dump().decode()
    assert "- --advertise-client-urls=https://172.18.0.4:2379\n" in out
    # everything else, comments included, survives
    assert "# kubeadm probes loopback" in out
    assert out.replace("172.18.0.4:2379\n", "172.18.0.3:2379\n", 1).encode() == ETCD


def test_annotation_key_with_dots() -> None:
    doc = YamlDocument(ETCD, "etcd.yaml")
    refs = doc.find(r"metadata.annotations.kubeadm\.kubernetes\.io/etcd\.advertise-client-urls")
    assert [r.get() for r in refs] == ["https://172.18.0.3:2379"]


def test_missing_path_finds_nothing() -> None:
    doc = YamlDocument(ETCD, "etcd.yaml")
    assert doc.find("spec.containers[name=kube-apiserver].command[flag=--x]") == []
    assert doc.find("spec.containers[name=etcd].startupProbe.httpGet.host") == []


def test_corrupted_yaml_is_one_clear_error() -> None:
    with pytest.raises(KindfixError, match="node1:/etc/kubernetes/manifests/etcd.yaml"):
        YamlDocument(b"spec: [unclosed\n  - x: {", "node1:/etc/kubernetes/manifests/etcd.yaml")


KUBEADM = b"""apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: "172.18.0.3"
nodeRegistration:
  kubeletExtraArgs:
  - name: node-ip
    value: "172.18.0.3"
  - name: node-labels
    value: ""
---
apiVersion: kubeadm.k8s.io/v1beta3
kind: JoinConfiguration
nodeRegistration:
  kubeletExtraArgs:
    node-ip: 172.18.0.3
"""


def test_multi_document_selection_and_quote_preservation() -> None:
    doc = MultiYamlDocument(KUBEADM, "kubeadm.conf")
    [v4] = doc.find("[kind=InitConfiguration].nodeRegistration.kubeletExtraArgs[name=node-ip].value")
    [v3] = doc.find("[kind=JoinConfiguration].nodeRegistration.kubeletExtraArgs.node-ip")
    [adv] = doc.find("[kind=InitConfiguration].localAPIEndpoint.advertiseAddress")
    assert doc.find("[kind=InitConfiguration].nodeRegistration.kubeletExtraArgs.node-ip") == []
    for ref in (v4, v3, adv):
        ref.set("172.18.0.9")
    out = doc.dump().decode()
    assert 'advertiseAddress: "172.18.0.9"' in out
    assert '    value: "172.18.0.9"' in out
    assert "    node-ip: 172.18.0.9" in out
    assert out.count("---") == 1


def test_env_flag_document() -> None:
    text = b'KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/containerd/containerd.sock --node-ip=172.18.0.3 --pod-infra-container-image=registry.k8s.io/pause:3.9"\n'
    doc = EnvFlagDocument(text, "kubeadm-flags.env")
    [ref] = doc.find("KUBELET_KUBEADM_ARGS[flag=--node-ip]")
    assert ref.get() == "172.18.0.3"
    ref.set("172.18.0.5,fc00::5")
    assert doc.dump() == text.replace(b"172.18.0.3", b"172.18.0.5,fc00::5")


def test_text_document_keeps_missing_newline() -> None:
    doc = TextDocument(b"172.18.0.3", "old-ipv4")
    [ref] = doc.find("")
    ref.set("172.18.0.4")
    assert doc.dump() == b"172.18.0.4"
    assert TextDocument(b"", "old-ipv4").find("") == []


def test_edit_touches_only_the_scalar_even_where_ruamel_would_reformat() -> None:
    src = b"a:\n  extraArgs:\n  b: null\n  c: \"172.18.0.3\"   # keep me\n"
    doc = YamlDocument(src, "x")
    [ref] = doc.find("a.c")
    ref.set("172.18.0.4")
    assert doc.dump() == src.replace(b"172.18.0.3", b"172.18.0.4")


def test_env_flags_with_an_unbalanced_quote_is_one_error_naming_the_file() -> None:
    with pytest.raises(KindfixError, match=r"^n:/var/lib/kubelet/kubeadm-flags.env is not a "
                                           r"kubelet flags file: No closing quotation"):
        parse_document("env-flag", b'KUBELET_KUBEADM_ARGS="--node-ip=1.2.3.4 --x=\'y"\n',
                       "n:/var/lib/kubelet/kubeadm-flags.env")


@pytest.mark.parametrize("fmt", ["yaml", "yaml-multi", "env-flag", "text"])
def test_non_utf8_is_one_error_naming_the_file_and_byte(fmt: str) -> None:
    with pytest.raises(KindfixError, match=r"^n:/f is not .*byte 0xff at offset 4 is not UTF-8"):
        parse_document(fmt, b"abc \xff", "n:/f")


@pytest.mark.parametrize(("text", "why"), [
    (b"a: " + b"[" * 5000 + b"]" * 5000, "nested deeper than 64"),
    (b"a: " + b"9" * 5000, "Exceeds the limit"),
    (b"a: 2001-13-45", "month must be in 1..12"),
    (b"".join(b" " * i + b"a:\n" for i in range(3000)), "not valid YAML"),
])
@pytest.mark.parametrize("editable", [True, False])
def test_yaml_the_parser_cannot_build_is_a_kindfix_error(text: bytes, why: str,
                                                        editable: bool) -> None:
    started = time.monotonic()
    with pytest.raises(KindfixError, match=why):
        parse_document("yaml", text + b"\n", f"n:/f{editable}{len(text)}", editable)
    assert time.monotonic() - started < 5


def test_a_scalar_that_is_no_string_is_marked() -> None:
    doc = parse_document("yaml", b"clusters:\n- cluster:\n    server: 6443\n- cluster:\n"
                         b"    server: https://x:6443\n", "n:/kubelet.conf", False)
    refs = doc.find("clusters[*].cluster.server")
    assert [(r.get(), r.text) for r in refs] == [("6443", False), ("https://x:6443", True)]
