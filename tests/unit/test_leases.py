"""kindfix.leases: a Lease whose holder stopped renewing is released as client-go releases it;
a live holder's never is (issue #10: the 15 s a new controller-manager waits otherwise)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from kindfix import leases
from kindfix.kubeapi import format_micro_time, micro_time
from kindfix.leases import LeaseReleaser, gone_holder, released_record
from kindfix.runtime import ExecResult
from tests.fakes import FakeNode
from tests.unit.helpers_nodes import dump

CP, CP2 = "kind-control-plane", "kind-control-plane2"
NOW = 1_700_000_000.0


def micro(t: float) -> str:
    return format_micro_time(t)


def lease(holder: str, renewed: float, rv: str = "7", name: str = "kube-scheduler"
          ) -> dict[str, Any]:
    return {"kind": "Lease", "metadata": {"name": name, "resourceVersion": rv},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                     "acquireTime": micro(renewed - 100), "renewTime": micro(renewed),
                     "leaseTransitions": 3}}


def test_a_holder_whose_node_was_started_since_it_renewed_is_gone_at_once() -> None:
    record = lease(f"{CP}_ab", NOW - 5)  # renewed 5 s ago: within its 15 s
    assert gone_holder(record, NOW, [CP, CP2], {CP: NOW - 3}) == f"{CP}_ab"
    # renewed after its node started (a holder of this boot), or another node restarted
    assert gone_holder(record, NOW, [CP, CP2], {CP: NOW - 6}) is None
    assert gone_holder(record, NOW, [CP, CP2], {CP2: NOW - 3}) is None
    assert gone_holder(record, NOW, [CP, CP2], {}) is None


def test_the_release_after_a_node_restart_says_why() -> None:
    api = FakeLeases({"kube-controller-manager": lease(f"{CP}_ab", NOW - 5,
                                                       name="kube-controller-manager"),
                      "kube-scheduler": lease(f"{CP2}_cd", NOW - 4)},
                     live={"kube-scheduler"})  # CP2 was not started again: its holder renews
    releaser, said, _ = run(api, started={CP: NOW - 3})
    assert releaser.released == ["kube-controller-manager"]
    assert api.puts[0]["at"] < NOW + 5  # at once (a few fake requests), not 10 s later
    # the age as the node's clock said when it was read (the fake's advances per request)
    assert re.fullmatch(f"released the Lease kube-system/kube-controller-manager: its holder "
                        f"{CP}_ab last renewed it [5-9] s ago, before {CP} was started again "
                        r"\(client-go would wait up to 15 s more\)", said[0]), said


def test_a_holder_that_stopped_renewing_is_gone() -> None:
    assert gone_holder(lease(f"{CP}_ab", NOW - 60), NOW, [CP, CP2]) == f"{CP}_ab"
    # one second past its duration is enough: the nodes share one clock (no slack)
    assert gone_holder(lease(f"{CP}_ab", NOW - 16), NOW, [CP, CP2]) == f"{CP}_ab"


@pytest.mark.parametrize("record", [
    lease(f"{CP}_ab", NOW - 5),                  # renewed lately: may be alive
    lease(f"{CP}_ab", NOW - 15),                 # exactly its duration: not older
    lease("other-control-plane_ab", NOW - 60),   # another cluster's node: not ours to judge
    lease("", NOW - 60),                         # released already
])
def test_no_holder_is_gone_without_evidence(record: dict[str, Any]) -> None:
    assert gone_holder(record, NOW, [CP, CP2]) is None


def test_the_released_record_is_client_gos() -> None:
    old = lease(f"{CP}_ab", NOW - 60)
    new = released_record(old, NOW)
    assert new["metadata"] == old["metadata"]  # same resourceVersion: a renewal meanwhile wins
    assert new["spec"]["holderIdentity"] == ""
    assert new["spec"]["leaseDurationSeconds"] == 1
    assert new["spec"]["leaseTransitions"] == 3
    assert micro_time(new["spec"]["renewTime"]) == pytest.approx(NOW, abs=1e-3)
    assert old["spec"]["holderIdentity"] == f"{CP}_ab"  # the input is not changed


@dataclass
class FakeLeases:
    """What kube-api.sh gets from the first control plane's apiserver: Leases kept with a
    resourceVersion, a PUT with another one refused 409 as the apiserver does. `live` holders
    renew before every read (a leader renews every 2 s); `renew_before_put` ones renew between
    kindfix's read and its write. The node's clock advances 1 s per request."""

    leases: dict[str, dict[str, Any]] = field(default_factory=dict)
    live: set[str] = field(default_factory=set)
    renew_before_put: set[str] = field(default_factory=set)
    down: bool = False
    down_on: set[str] = field(default_factory=set)  # nodes whose apiserver does not answer
    via: list[str] = field(default_factory=list)  # the node of each request, in order
    now: float = NOW
    puts: list[dict[str, Any]] = field(default_factory=list)

    def renew(self, name: str) -> None:
        record = self.leases[name]
        record["spec"]["renewTime"] = micro(self.now)
        record["metadata"]["resourceVersion"] = str(int(record["metadata"]["resourceVersion"]) + 1)

    def handle(self, node: FakeNode, argv: Sequence[str], stdin: bytes | None) -> ExecResult:
        server, path, method = argv[5], argv[6], argv[7]
        assert server == f"https://{node.name}:6443"  # each node's own apiserver
        self.via.append(node.name)
        name = path.rsplit("/", 1)[-1]
        self.now += 1.0
        if self.down or node.name in self.down_on:
            return ExecResult(0, f"@@status error curl: (7) refused\n\n@@now {self.now}\n"
                              .encode(), b"")
        if name in self.live or (method == "PUT" and name in self.renew_before_put):
            self.renew(name)
        if method == "GET":
            status, body = "200", json.dumps(self.leases[name])
        else:
            sent = json.loads(stdin or b"{}")
            self.puts.append({**json.loads(stdin or b"{}"), "at": self.now})
            current = self.leases[name]
            if sent["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"]:
                status, body = "409", '{"kind":"Status","reason":"Conflict"}'
            else:
                self.leases[name] = sent
                self.renew(name)
                status, body = "200", json.dumps(sent)
        return ExecResult(0, f"@@status {status}\n{body}\n@@now {self.now}\n".encode(), b"")


def run(api: FakeLeases, wait: float = 30, started: dict[str, float] | None = None
        ) -> tuple[LeaseReleaser, list[str], list[str]]:
    cluster, _, nodes = dump("ha-3cp-healthy")
    if started:  # when Docker last started these nodes (discovery's started_at)
        cluster = replace(cluster, nodes=tuple(replace(n, started_at=started.get(n.name))
                                               for n in cluster.nodes))
    for cp in cluster.control_planes:  # one store behind every apiserver, as etcd is
        nodes[cp.name].on_script("kube-api", api.handle)
    said: list[str] = []
    notes: list[str] = []
    releaser = LeaseReleaser(cluster, nodes, said.append, notes.append, wait)
    releaser.run()
    return releaser, said, notes


@pytest.fixture(autouse=True)
def no_poll_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leases, "POLL_S", 0.0)


def test_leases_of_gone_holders_are_released_and_noted() -> None:
    api = FakeLeases({"kube-controller-manager": lease(f"{CP}_ab", NOW - 300),
                      "kube-scheduler": lease(f"{CP2}_cd", NOW - 300)})
    releaser, said, notes = run(api)
    assert sorted(releaser.released) == ["kube-controller-manager", "kube-scheduler"]
    assert all(r["spec"]["holderIdentity"] == "" for r in api.leases.values())
    assert [p["metadata"]["resourceVersion"] for p in api.puts] == ["7", "7"]
    assert any(f"kube-system/kube-scheduler: its holder {CP2}_cd has not renewed" in s
               for s in said)
    kept = dict(n.split("=", 1) for n in notes)
    assert json.loads(kept["lease-released:kube-scheduler"])["holderIdentity"] == f"{CP2}_cd"


def test_a_live_holder_is_never_written() -> None:
    api = FakeLeases({"kube-controller-manager": lease(f"{CP}_ab", NOW - 300),
                      "kube-scheduler": lease(f"{CP2}_cd", NOW - 300)},
                     live={"kube-controller-manager", "kube-scheduler"})
    releaser, said, notes = run(api)
    assert api.puts == [] and releaser.released == [] and said == [] and notes == []


def test_a_holder_that_renews_between_read_and_write_keeps_its_lease() -> None:
    api = FakeLeases({"kube-controller-manager": lease(f"{CP}_ab", NOW - 300),
                      "kube-scheduler": lease(f"{CP2}_cd", NOW - 300)},
                     renew_before_put={"kube-scheduler"})
    releaser, _, notes = run(api)
    assert releaser.released == ["kube-controller-manager"]
    assert api.leases["kube-scheduler"]["spec"]["holderIdentity"] == f"{CP2}_cd"
    assert [n.split("=")[0] for n in notes] == ["lease-released:kube-controller-manager"]


def test_a_lease_renewed_lately_is_released_once_it_runs_out() -> None:
    # read 5 s after the last renewal: maybe alive; watched until it is 15+ s old, not renewed
    api = FakeLeases({"kube-controller-manager": lease(f"{CP}_ab", NOW - 5,
                                                       name="kube-controller-manager"),
                      "kube-scheduler": lease(f"{CP2}_cd", NOW - 300)})
    releaser, _, _ = run(api)
    assert releaser.released == ["kube-scheduler", "kube-controller-manager"]
    at = {p["metadata"]["name"]: p["at"] for p in api.puts}
    assert at["kube-scheduler"] < NOW + 5  # released at once, not after the other
    assert at["kube-controller-manager"] - (NOW - 5) > 15  # only once it ran out


def test_a_foreign_holder_is_left_alone() -> None:
    api = FakeLeases({"kube-controller-manager": lease("elsewhere_ab", NOW - 300),
                      "kube-scheduler": lease("elsewhere_cd", NOW - 300)})
    releaser, _, _ = run(api)
    assert api.puts == [] and releaser.released == []


def test_a_first_apiserver_that_does_not_answer_costs_one_poll_not_the_release() -> None:
    api = FakeLeases({"kube-controller-manager": lease(f"{CP}_ab", NOW - 300),
                      "kube-scheduler": lease(f"{CP2}_cd", NOW - 300)}, down_on={CP})
    releaser, _, _ = run(api)
    assert sorted(releaser.released) == ["kube-controller-manager", "kube-scheduler"]
    assert len(api.puts) == 2
    # first round: one Lease through each of the first two (the first silent); the silent
    # one's Lease then through the third: each written where it was read
    assert sorted(api.via[:2]) == sorted([CP, CP2])
    assert api.via.count(CP) == 1
    assert len(api.via) == 5  # 2 reads, then 1 write, 1 read, 1 write


def test_an_apiserver_that_never_answers_ends_the_watch_at_its_bound() -> None:
    api = FakeLeases({"kube-controller-manager": lease(f"{CP}_ab", NOW - 300)}, down=True)
    releaser, said, _ = run(api, wait=0.2)
    assert api.puts == [] and releaser.released == [] and said == []


def test_a_releaser_with_a_gate_asks_nothing_until_it_opens() -> None:
    """Started beside the repair, it waits for the etcd step's members to start (the gate):
    before that no apiserver can answer, and each ask would be an exec on a busy machine."""
    api = FakeLeases({"kube-controller-manager": lease(f"{CP}_ab", NOW - 300),
                      "kube-scheduler": lease(f"{CP2}_cd", NOW - 300)})
    cluster, _, nodes = dump("ha-3cp-healthy")
    for cp in cluster.control_planes:
        nodes[cp.name].on_script("kube-api", api.handle)
    due = threading.Event()
    releaser = LeaseReleaser(cluster, nodes, lambda _: None, lambda _: None, 30, due).start()
    time.sleep(0.2)
    assert api.via == [] and releaser.released == []  # nothing asked while the gate is shut
    due.set()
    deadline = time.monotonic() + 5
    while len(releaser.released) < 2 and time.monotonic() < deadline:  # bounded
        time.sleep(0.01)
    releaser.stop()
    assert sorted(releaser.released) == ["kube-controller-manager", "kube-scheduler"]


def test_a_releaser_whose_gate_never_opens_ends_on_stop() -> None:
    """A repair that fails before its members start stops the releaser: bounded, nothing
    asked."""
    api = FakeLeases({"kube-controller-manager": lease(f"{CP}_ab", NOW - 300)})
    cluster, _, nodes = dump("ha-3cp-healthy")
    for cp in cluster.control_planes:
        nodes[cp.name].on_script("kube-api", api.handle)
    releaser = LeaseReleaser(cluster, nodes, lambda _: None, lambda _: None, 30,
                             threading.Event()).start()
    started = time.monotonic()
    releaser.stop()
    assert time.monotonic() - started < 5 and api.via == []


FAKE_CURL = r"""#!/bin/sh
# stands in for curl: records its argv and the body it would send, answers 200
out=; data=
while [ $# -gt 0 ]; do
  case $1 in -o) out=$2; shift ;; --data-binary) data=${2#@}; shift ;; esac
  printf '%s\n' "$1" >> "$LOG"; shift
done
[ -z "$data" ] || { printf 'BODY:' >> "$LOG"; cat "$data" >> "$LOG"; }
printf '{"kind":"Lease"}' > "$out"; printf 200
"""


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_kube_api_script_sends_the_body_only_with_a_write(tmp_path: Any, method: str) -> None:
    import base64
    import os
    import subprocess

    from kindfix.nodescripts import script

    (tmp_path / "curl").write_text(FAKE_CURL)
    (tmp_path / "curl").chmod(0o755)
    b64 = base64.b64encode(b"PEM").decode()
    conf = tmp_path / "admin.conf"
    conf.write_text(f"    certificate-authority-data: {b64}\n    server: https://x:6443\n"
                    f"    client-certificate-data: {b64}\n    client-key-data: {b64}\n")
    log = tmp_path / "log"
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "LOG": str(log)}
    got = subprocess.run(["sh", "-c", script("kube-api"), "kindfix-kube-api", str(conf), "",
                          "/apis/x", method], input=b'{"spec":{}}', env=env,
                         capture_output=True, check=True, timeout=20)
    assert got.stdout.decode().startswith('@@status 200\n{"kind":"Lease"}\n@@now ')
    sent = log.read_text()
    assert "https://x:6443/apis/x" in sent.splitlines()
    assert ("BODY:{\"spec\":{}}" in sent) == (method == "PUT")
    assert ("-X" in sent.splitlines()) == (method == "PUT")
