"""patches/addresses.yaml as data: every declaration is usable (kindfix/patches.py)."""

from __future__ import annotations

import re

import pytest

from kindfix.audit.locations import parse_file
from kindfix.patches import (
    CONTROL_PLANE,
    LOAD_BALANCER,
    WORKER,
    load_patches,
    parse_patches,
    restart_pod,
)
from kindfix.yamlpath import PARSERS, Document, parse_path
from tests.unit.helpers_nodes import DUMPS, dump

ENTRYPOINT = "/usr/local/bin/entrypoint"


def readme_generations() -> dict[str, str]:
    """dump name -> the generation fixtures/README.md's table gives ("entrypoint X")."""
    text = (DUMPS.parent / "README.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` \| [^|]*entrypoint ([^ |]+) \|", text, re.MULTILINE)
    return dict(rows)


def test_every_location_path_parses_and_names_a_known_format() -> None:
    patches = load_patches()
    assert len(patches.locations) >= 20
    for loc in patches.locations:
        assert loc.format in PARSERS, loc.id
        if loc.format != "text":
            assert parse_path(loc.path), loc.id
        assert set(loc.roles) <= {CONTROL_PLANE, WORKER, LOAD_BALANCER}, loc.id
        assert loc.expect in ("node-ip", "members", "endpoint"), loc.id
        assert loc.repair in ("node-ip", "loopback", "members", "endpoint", "local-endpoint"), \
            loc.id
        # an endpoint is repaired as one, and only an endpoint
        assert (loc.expect == "endpoint") == (loc.repair in ("endpoint", "local-endpoint")), \
            loc.id
    ids = [loc.id for loc in patches.locations]
    assert len(ids) == len(set(ids))


def test_every_location_and_certificate_file_is_read_for_its_roles() -> None:
    patches = load_patches()
    for loc in patches.locations:
        for role in loc.roles:
            assert loc.file in patches.files_for(role), (loc.id, role)
    for cert in patches.certificates:
        for role in cert.roles:
            assert cert.file in patches.files_for(role), cert.id
    assert ENTRYPOINT in patches.files_for(CONTROL_PLANE)
    assert ENTRYPOINT in patches.files_for(WORKER)


def test_every_location_finds_its_value_in_some_fixture() -> None:
    """A location no fixture file has is either a typo in the path or an untested version."""
    patches = load_patches()
    found: set[str] = set()
    for name in ("single-cp-healthy", "kubeadm-v1beta4-healthy", "dualstack-healthy"):
        _, snaps, _ = dump(name)
        for snap in snaps.values():
            docs: dict[str, Document] = {}
            for loc in patches.locations_for(snap.role):
                doc = parse_file(snap, loc.file, loc.format, docs)
                if doc is not None and doc.find(loc.path):
                    found.add(loc.id)
    missing = {loc.id for loc in patches.locations} - found
    # /kind/old-ipv6 exists only on IPv6 / dual-stack nodes; v1beta2/3 and v1beta4 spell
    # kubeletExtraArgs differently, both are covered by the dumps above
    assert missing == set(), missing


@pytest.mark.parametrize(("name", "generation"), sorted(readme_generations().items()))
def test_generation_of_each_fixture_entrypoint_is_what_the_readme_says(
        name: str, generation: str) -> None:
    _, snaps, _ = dump(name)
    patches = load_patches()
    kube = [s for s in snaps.values() if s.role != LOAD_BALANCER]
    assert kube
    for snap in kube:
        assert patches.generation(snap.file(ENTRYPOINT)) == generation, snap.name


def test_the_readme_table_was_read() -> None:
    gens = readme_generations()
    assert len(gens) == len([p for p in DUMPS.iterdir() if p.is_dir()])
    assert set(gens.values()) == {">=0.30", "0.15-0.29", "0.8-0.14"}


def test_generation_of_unknown_or_missing_entrypoints() -> None:
    patches = load_patches()
    assert patches.generation(None) == "unknown"
    assert patches.generation(b"#!/bin/bash\nexec /sbin/init\n") == "<0.8"
    assert patches.generation(b"echo old-ipv4 fix_certificate /etc/kubernetes/kubelet.conf") \
        == ">=0.30"


def test_parse_patches_rejects_a_typo_in_a_path() -> None:
    raw = {"files": {"control-plane": ["/a"]},
           "locations": [{"id": "x", "component": "c", "file": "/a", "path": "spec.[unclosed",
                          "restart": "none"}]}
    with pytest.raises(ValueError, match="bad path"):
        parse_patches(raw)


def test_roles_default_to_control_plane() -> None:
    p = parse_patches({"files": {"worker": ["/b"]},
                       "locations": [{"id": "x", "component": "c", "file": "/b", "path": "a.b",
                                      "restart": "none"},
                                     {"id": "y", "component": "c", "file": "/b", "path": "a",
                                      "roles": ["worker"], "restart": "none"}]})
    assert [loc.id for loc in p.locations_for(CONTROL_PLANE)] == ["x"]
    assert [loc.id for loc in p.locations_for(WORKER)] == ["y"]
    assert p.files_for(LOAD_BALANCER) == ()


# --- restart rules (issue #12) -----------------------------------------------------------------


def _one(**fields: object) -> dict[str, object]:
    loc = {"id": "x", "component": "c", "file": "/b", "path": "a"}
    return {"files": {"worker": ["/b"]}, "locations": [{**loc, **fields}]}


def test_a_location_must_say_what_restarts_when_it_changes() -> None:
    with pytest.raises(ValueError, match=r"location 'x' has no `restart`"):
        parse_patches(_one())
    for bad in ("pod", "pod/", "pod/Kube", "restart", 3):
        with pytest.raises(ValueError, match=r"location 'x': bad restart"):
            parse_patches(_one(restart=bad))
    for key, bad in (("repair", "endpoints"), ("expect", "loopback")):
        with pytest.raises(ValueError, match=rf"location 'x': bad {key} '{bad}'"):
            parse_patches(_one(restart="none", **{key: bad}))
    raw = {**_one(restart="none"),
           "certificates": [{"id": "c.crt", "component": "c", "file": "/c.crt", "phase": "p"}]}
    with pytest.raises(ValueError, match=r"certificate 'c.crt' has no `restart`"):
        parse_patches(raw)


def test_the_shipped_restart_rules_by_file() -> None:
    """What the data says today: kubeconfigs and the serving certificate their pod reads only at
    start, the kubelet's flags and kubeconfig; manifests are recreated by the kubelet itself."""
    patches = load_patches()
    assert {path: patches.restarts_for(path) for path in
            {x.file for x in (*patches.locations, *patches.certificates)}
            if patches.restarts_for(path)} == {
        "/etc/kubernetes/controller-manager.conf": ("pod/kube-controller-manager",),
        "/etc/kubernetes/scheduler.conf": ("pod/kube-scheduler",),
        "/etc/kubernetes/pki/apiserver.crt": ("pod/kube-apiserver",),
        "/etc/kubernetes/kubelet.conf": ("kubelet",),
        "/var/lib/kubelet/kubeadm-flags.env": ("kubelet",)}
    assert patches.restarts_for("/etc/kubernetes/manifests/etcd.yaml") == ()
    assert restart_pod("pod/kube-scheduler") == "kube-scheduler"
    assert restart_pod("kubelet") is None
