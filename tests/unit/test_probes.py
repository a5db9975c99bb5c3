"""In-node probes and their parsers, on the outputs the fixture dumps recorded
(kindfix/probes.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kindfix import probes
from kindfix.probes import parse_crictl_ps, parse_etcd_probe, split_sections
from tests.unit.helpers_nodes import DUMPS

COMMANDS = sorted(DUMPS.glob("*/nodes/*/commands.json"))


def recorded(path: Path, argv: tuple[str, ...]) -> str | None:
    for c in json.loads(path.read_text()):
        if tuple(c["argv"]) == argv:
            return str(c["stdout"])
    return None


def etcd_outputs() -> list[tuple[str, str]]:
    out = []
    for path in COMMANDS:
        text = recorded(path, probes.ETCD_PROBE)
        if text is not None:
            out.append((f"{path.parents[2].name}/{path.parent.name}", text))
    return out


def test_split_sections_keeps_exit_codes_and_multiline_bodies() -> None:
    text = ("\n@@kindfix-section member-list 28\ncurl: (28) timed out\n"
            "@@kindfix-section metrics 0\na 1\nb 2\n@@kindfix-section end 0\n")
    assert split_sections(text) == {"member-list": (28, "curl: (28) timed out"),
                                    "metrics": (0, "a 1\nb 2"), "end": (0, "")}
    assert split_sections("no sections at all") == {}
    # a header must be a whole line
    assert split_sections("x @@kindfix-section a 0\n") == {}


def test_every_control_plane_in_the_fixtures_recorded_an_etcd_probe() -> None:
    names = {n for n, _ in etcd_outputs()}
    assert len(names) >= 14
    assert all("control-plane" in n for n in names)


@pytest.mark.parametrize(("where", "text"), etcd_outputs(), ids=lambda v: v[:40])
def test_parse_etcd_probe_on_every_fixture_output(where: str, text: str) -> None:
    p = parse_etcd_probe(text)
    sections = split_sections(text)
    assert sections["end"] == (0, "")
    assert p.has_leader is not None
    assert p.metrics_revision is not None
    if p.reachable:
        node = where.split("/")[1]
        assert p.error is None
        assert node in {m.name for m in p.members}
        assert all(m.id.isdigit() for m in p.members)  # decimal strings, never numbers
        assert p.member_id in {m.id for m in p.members}
        assert p.revision == p.metrics_revision
        assert p.leader
        assert p.has_leader
        assert p.health == '{"health":"true","reason":""}'
    else:
        assert p.members == ()
        assert p.error


def test_the_no_quorum_probe() -> None:
    text = dict(etcd_outputs())["ha-3cp-permuted/kind-control-plane2"]
    p = parse_etcd_probe(text)
    assert not p.reachable
    assert p.members == ()
    assert p.error is not None
    assert p.error.startswith("curl: (28) Operation timed out")
    assert p.leader is None
    assert p.revision is None
    assert p.member_id is None
    assert p.has_leader is False
    assert p.health == '{"health":"false","reason":"RAFT NO LEADER"}'
    assert p.metrics_revision is not None
    assert p.metrics_revision > 0
    assert p.keys_total is not None
    assert p.applied_index is not None
    others = [parse_etcd_probe(t).metrics_revision for w, t in etcd_outputs()
              if w.startswith("ha-3cp-permuted/") and not w.endswith("plane2")]
    assert all(r is not None and r < p.metrics_revision for r in others)  # README: cp2 highest


def test_an_ipv6_member_answers_the_probe_through_its_loopback() -> None:
    p = parse_etcd_probe(dict(etcd_outputs())["ipv6-healthy/kind-control-plane"])
    assert p.reachable
    assert p.members[0].peer_urls == ("https://[fc00:f853:ccd:e793::3]:2380",)


def test_parse_etcd_probe_of_garbage_or_nothing() -> None:
    p = parse_etcd_probe("")
    assert not p.reachable
    assert p.error == "no answer from etcd"
    assert p.has_leader is None
    assert p.metrics_revision is None
    p = parse_etcd_probe("@@kindfix-section member-list 0\n<html>\n@@kindfix-section end 0\n")
    assert not p.reachable
    assert p.error == "<html>"


def test_the_probe_script_asks_both_loopbacks() -> None:
    script = probes.ETCD_PROBE[2]
    assert "127.0.0.1 '[::1]'" in script
    assert probes.ETCD_PROBE[:2] == ("sh", "-c")


def test_parse_crictl_ps_on_the_fixture_outputs() -> None:
    seen = 0
    for path in COMMANDS:
        text = recorded(path, probes.CRICTL_PS)
        if text is None:
            continue
        seen += 1
        containers = parse_crictl_ps(text)
        names = {c.name for c in containers}
        assert {"etcd", "kube-apiserver"} <= names, path
        node = path.parent.name
        for c in containers:
            assert len(c.id) == 64
            assert c.state.startswith("CONTAINER_")
            if c.name in ("etcd", "kube-apiserver"):  # static pods: <component>-<node>
                assert c.pod == f"{c.name}-{node}"
    assert seen >= 14


def test_parse_crictl_ps_of_the_permuted_cluster_shows_crash_looping_pods() -> None:
    text = recorded(DUMPS / "ha-3cp-permuted" / "nodes" / "kind-control-plane" / "commands.json",
                    probes.CRICTL_PS)
    assert text is not None
    apiserver = [c for c in parse_crictl_ps(text) if c.name == "kube-apiserver"]
    assert apiserver
    assert apiserver[0].state == "CONTAINER_EXITED"
    assert apiserver[0].attempt > 0


def test_parse_crictl_ps_of_empty_or_broken_output() -> None:
    assert parse_crictl_ps("") == ()
    assert parse_crictl_ps("{}") == ()
    assert parse_crictl_ps("crictl: command not found") == ()
    [c] = parse_crictl_ps('{"containers": [{"id": "x", "metadata": {"name": "etcd"}}]}')
    assert (c.name, c.attempt, c.state, c.pod) == ("etcd", 0, "", "")


FAKE_CURL = r"""#!/bin/sh
# stands in for curl on the host: logs the URL (and --max-time in calls.max-time), answers
# metrics/health from $FAKE_DIR; no metrics file: nothing listens on 2381 (curl exit 7)
prev=""; for a; do [ "$prev" = --max-time ] && mt=$a; prev=$a; url=$a; done
echo "$url" >> "$FAKE_DIR/calls"
echo "$mt $url" >> "$FAKE_DIR/calls.max-time"
case "$url" in
  *:2381/*) [ -f "$FAKE_DIR/metrics" ] || exit 7 ;;
esac
case "$url" in
  *:2381/metrics) cat "$FAKE_DIR/metrics" ;;
  *:2381/health) echo '{"health":"false"}' ;;
  *:2379/*) echo '{"members":[]}' ;;
esac
"""


def run_probe_script(tmp_path: Path, metrics: str | None, manifest: str | None = None
                     ) -> tuple[str, list[str]]:
    """The probe over FAKE_CURL; with `manifest`, that text is the node's etcd.yaml."""
    import os
    import subprocess

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "curl").write_text(FAKE_CURL)
    (bin_dir / "curl").chmod(0o755)
    if metrics is not None:
        (tmp_path / "metrics").write_text(metrics)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_DIR": str(tmp_path)}
    argv = list(probes.ETCD_PROBE)
    etcd_yaml = tmp_path / "etcd.yaml"  # absent unless given
    argv[2] = argv[2].replace("/etc/kubernetes/manifests/etcd.yaml", str(etcd_yaml))
    assert argv[2] != probes.ETCD_PROBE[2]
    if manifest is not None:
        etcd_yaml.write_text(manifest)
    out = subprocess.run(argv, capture_output=True, text=True, env=env,
                         timeout=30, check=True).stdout
    return out, (tmp_path / "calls").read_text().split()


def test_the_probe_script_skips_the_client_port_of_a_member_without_leader(
        tmp_path: Path) -> None:
    out, calls = run_probe_script(tmp_path, "etcd_server_has_leader 0\n")
    assert not any(":2379/" in c for c in calls)  # it would hang until --max-time
    p = parse_etcd_probe(out)
    assert p.has_leader is False
    assert not p.reachable
    assert p.error == "skipped: etcd reports no leader"


def test_the_probe_script_asks_the_client_port_when_the_member_has_a_leader(
        tmp_path: Path) -> None:
    out, calls = run_probe_script(tmp_path, "etcd_server_has_leader 1\n")
    assert sorted(c for c in calls if ":2379/" in c) == [
        "https://127.0.0.1:2379/v3/cluster/member/list",
        "https://127.0.0.1:2379/v3/maintenance/status"]
    assert parse_etcd_probe(out).reachable


def test_the_probe_script_asks_a_starting_member_briefly(tmp_path: Path) -> None:
    """Nothing on the metrics port yet (etcd starting): the client port is asked with a 1 s
    limit instead of 3 s (a starting member accepts and hangs)."""
    out, _ = run_probe_script(tmp_path, None)
    limits = dict(line.split()[::-1] for line in (tmp_path / "calls.max-time").read_text()
                  .splitlines())
    assert limits["https://127.0.0.1:2379/v3/cluster/member/list"] == "1"
    assert limits["https://127.0.0.1:2379/v3/maintenance/status"] == "1"
    assert parse_etcd_probe(out).has_leader is None


KUBEADM_ETCD_COMMAND = """    - etcd
    - --listen-client-urls=https://127.0.0.1:2379,https://172.18.0.3:2379
    - --listen-metrics-urls=http://127.0.0.1:2381
"""


def test_the_probe_script_does_not_ask_a_member_whose_metrics_listener_is_not_up_yet(
        tmp_path: Path) -> None:
    """etcd.yaml asks for metrics on 2381 and nothing listens there: etcd has not served its
    clients yet (embed.StartEtcd opens the metrics listener after serveClients), and its bound
    client port would take the connection and answer nothing until curl gave up (1 s)."""
    out, calls = run_probe_script(tmp_path, None, manifest=KUBEADM_ETCD_COMMAND)
    assert not any(":2379/" in c for c in calls)
    p = parse_etcd_probe(out)
    assert not p.reachable and p.has_leader is None
    assert p.error == "skipped: etcd is starting (its metrics port refuses connections)"
    # an etcd.yaml without metrics: the client port is all there is, asked briefly
    again = tmp_path / "again"
    again.mkdir()
    _, calls = run_probe_script(again, None, manifest="    - etcd\n")
    assert "https://127.0.0.1:2379/v3/cluster/member/list" in calls


def test_the_probe_script_gives_a_member_with_a_leader_the_usual_limit(tmp_path: Path) -> None:
    run_probe_script(tmp_path, "etcd_server_has_leader 1\n")
    limits = dict(line.split()[::-1] for line in (tmp_path / "calls.max-time").read_text()
                  .splitlines())
    assert limits["https://127.0.0.1:2379/v3/maintenance/status"] == "3"
