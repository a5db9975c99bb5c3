"""Repairs etcd membership after the node IPs moved (DOMAIN.md "What nothing repairs").

member-update: quorum intact; update each stale member's peer URL through the cluster.
force-new-cluster: quorum lost; stop etcd everywhere, copy every data dir, start the most
up-to-date member with --force-new-cluster, fix its peer URL, then re-add the others one by one
(etcd op-guide/recovery; kubespray's recover_lost_quorum role does the same dance).
Every sub-stage is journaled, so a killed run continues where it stopped.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from kindfix import etcd
from kindfix.addresses import url_host
from kindfix.discovery import ClusterNode
from kindfix.errors import KindfixError
from kindfix.node import Node, run
from kindfix.yamlpath import YamlDocument

if TYPE_CHECKING:
    from kindfix.apply import Applier

MANIFEST = "/etc/kubernetes/manifests/etcd.yaml"
PARKED_DIR = "/kind/kindfix/parked"
PARKED = f"{PARKED_DIR}/etcd.yaml"
DATA_DIR = "/var/lib/etcd"
WAIT = 120.0

_PARK = r"""
set -e
mkdir -p "$2"
if [ -f "$1" ]; then
  [ -f "$2/etcd.yaml" ] || cp -p "$1" "$2/etcd.yaml"
  rm -f "$1"
fi
"""
_ETCD_RUNNING = "crictl ps -q --name '^etcd$' --state running 2>/dev/null"
# Copies the data dir and checks every file's checksum against the original (etcd is stopped).
_COPY_DATA = r"""
set -e
src="$1"; dst="$2"
[ -d "$dst" ] && exit 0
[ -d "$src" ] || { echo "no data dir $src" >&2; exit 3; }
mkdir -p "$(dirname "$dst")"
rm -rf "$dst.tmp"
cp -a "$src" "$dst.tmp"
# wal/*.tmp is etcd's preallocated, still empty next WAL file: copied, not worth hashing
a=$(cd "$src" && find . -type f ! -name '*.tmp' -exec sha256sum {} + | sort)
b=$(cd "$dst.tmp" && find . -type f ! -name '*.tmp' -exec sha256sum {} + | sort)
[ "$a" = "$b" ] || { echo "copy of $src differs from the original" >&2; exit 4; }
chmod 700 "$dst.tmp"
mv "$dst.tmp" "$dst"
"""
_SET_ASIDE = r"""
set -e
[ -d "$1/member" ] || exit 0
mkdir -p "$2"
mv "$1/member" "$2/member-$(date +%s)"
"""


def peer_url(node: ClusterNode) -> str:
    return f"https://{url_host(node.ipv4 or node.ipv6 or '')}:2380"


def set_flags(manifest: bytes, flags: dict[str, str | None], source: str) -> bytes:
    """Set (or with None remove) `--flag=value` items of the etcd container's command."""
    doc = YamlDocument(manifest, source)
    containers = doc.data["spec"]["containers"]
    command = next(c for c in containers if c.get("name") == "etcd")["command"]
    for flag, value in flags.items():
        idx = [i for i, item in enumerate(command) if str(item).startswith(flag + "=")
               or str(item) == flag]
        for i in reversed(idx):
            del command[i]
        if value is not None:
            command.append(f"{flag}={value}" if value else flag)
    return doc.dump_structure()


def _etcd_running(node: Node) -> bool:
    return bool(node.exec(["sh", "-c", _ETCD_RUNNING]).text().strip())


def _metrics_rank(node: Node, order: int) -> tuple[int, int, int]:
    m = etcd.metrics(node)
    return (m.get("etcd_debugging_mvcc_current_revision", -1),
            m.get("etcd_server_proposals_applied_total", -1), -order)


class Recovery:
    def __init__(self, ap: Applier) -> None:
        self.ap = ap
        self.rec = ap.recorder
        self.cps = list(ap.cluster.control_planes)
        self.nodes = {n.name: ap.nodes[n.name] for n in self.cps}

    def stage(self, key: str) -> bool:
        """True when the sub-stage still has to run."""
        return not self.rec.is_done(f"etcd:{key}")

    def done(self, key: str) -> None:
        self.rec.mark_done(f"etcd:{key}")

    def say(self, text: str) -> None:
        self.ap.progress(f"      etcd: {text}")

    def backup_dir(self, cp: ClusterNode) -> str:
        return f"{self.rec.backup_dir()}/etcd-{cp.name}"

    # --- strategy selection at apply time -------------------------------------------------
    def leader_within(self, seconds: float) -> Node | None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for cp in self.cps:
                if etcd.healthy(self.nodes[cp.name]):
                    return self.nodes[cp.name]
            time.sleep(1)
        return None

    # --- member-update --------------------------------------------------------------------
    def member_update(self) -> None:
        leader = self.leader_within(WAIT)
        if leader is None:
            raise KindfixError("etcd has no leader, so member update is impossible",
                               hint="rerun with --etcd-strategy force-new-cluster")
        for cp in self.cps:
            if self.stage(f"copy:{cp.name}"):
                self.say(f"copying {cp.name}'s data dir to {self.backup_dir(cp)}/data")
                run(self.nodes[cp.name], ["sh", "-c", _COPY_DATA.replace(
                    '[ "$a" = "$b" ]', 'true'), "kindfix-copy", DATA_DIR,
                    f"{self.backup_dir(cp)}/data"], timeout=300)
                self.done(f"copy:{cp.name}")
        for member in etcd.members(leader):
            node = self.ap.cluster.node(member.name)
            if node is None:
                continue
            want = [peer_url(node)]
            if list(member.peer_urls) != want:
                old = ",".join(member.peer_urls)
                self.say(f"member {member.name}: peer URL {old} -> {want[0]}")
                etcd.member_update(leader, member.id, want)
        for cp in self.cps:  # pick up regenerated certificates, one member at a time
            if self.stage(f"restart:{cp.name}"):
                self._restart_member(cp)
                self.done(f"restart:{cp.name}")

    def _restart_member(self, cp: ClusterNode) -> None:
        member = self.nodes[cp.name]
        member.exec(["sh", "-c", f'ids=$({_ETCD_RUNNING}); [ -n "$ids" ] && crictl stop $ids'])
        etcd.wait_until(lambda: etcd.healthy(member), f"etcd on {cp.name} to be healthy", WAIT)

    # --- force-new-cluster ----------------------------------------------------------------
    def choose(self) -> ClusterNode:
        ranks = {cp.name: _metrics_rank(self.nodes[cp.name], i) for i, cp in enumerate(self.cps)}
        best = max(self.cps, key=lambda cp: ranks[cp.name])
        rev = ranks[best.name][0]
        self.say(f"most up-to-date member: {best.name} (revision "
                 f"{rev if rev >= 0 else 'unknown: metrics unavailable, first control plane'})")
        return best

    def force_new_cluster(self) -> None:
        best_name = next((n.split("=", 1)[1] for n in self.rec.journal.notes
                          if n.startswith("etcd-best=")), None)
        if best_name is None:
            best_name = self.choose().name
            self.rec.journal.notes.append(f"etcd-best={best_name}")
            self.rec.save()
        best = next(cp for cp in self.cps if cp.name == best_name)
        others = [cp for cp in self.cps if cp.name != best.name]
        # every member at once: stop it, then copy its data dir (each node independently)
        with ThreadPoolExecutor(max_workers=len(self.cps)) as pool:
            list(pool.map(self._park_and_copy, self.cps))
        self._start_forced(best)
        for cp in others:
            self._re_add(best, cp)
        for cp in self.cps:
            self.nodes[cp.name].exec(["rm", "-f", PARKED])

    def _park_and_copy(self, cp: ClusterNode) -> None:
        if self.stage(f"park:{cp.name}"):
            node = self.nodes[cp.name]
            self.say(f"stopping etcd on {cp.name} (manifest parked in {PARKED_DIR})")
            # recovery rewrites etcd.yaml: keep the original for rollback (a no-op when the
            # files phase already kept it)
            current = node.read_file(MANIFEST)
            if current is not None:
                self.rec.backup_file(node, MANIFEST, current, mode=0o600)
            run(node, ["sh", "-c", _PARK, "kindfix-park", MANIFEST, PARKED_DIR])
            self.done(f"park:{cp.name}")
        if self.stage(f"copy:{cp.name}"):  # done: etcd there may already run again
            self._copy_stopped(cp)
            self.done(f"copy:{cp.name}")

    def _copy_stopped(self, cp: ClusterNode) -> None:
        node = self.nodes[cp.name]
        etcd.wait_until(lambda: not _etcd_running(node), f"etcd on {cp.name} to stop", WAIT)
        self.say(f"copying {cp.name}:{DATA_DIR} to {self.backup_dir(cp)}/data (verified)")
        run(node, ["sh", "-c", _COPY_DATA, "kindfix-copy", DATA_DIR,
                   f"{self.backup_dir(cp)}/data"], timeout=300)

    def _parked(self, cp: ClusterNode) -> bytes:
        node = self.nodes[cp.name]
        raw = node.read_file(PARKED) or node.read_file(MANIFEST)
        if raw is None:
            raise KindfixError(f"{cp.name} has neither {MANIFEST} nor {PARKED}",
                               hint="restore etcd.yaml with `kindfix rollback`")
        return raw

    def _start_forced(self, best: ClusterNode) -> None:
        node = self.nodes[best.name]
        url = peer_url(best)
        base = {"--initial-cluster": f"{best.name}={url}", "--initial-cluster-state": None}
        if self.stage("forced"):
            self.say(f"starting {best.name} with --force-new-cluster")
            node.write_file(MANIFEST, set_flags(self._parked(best), {
                **base, "--force-new-cluster": ""}, f"{best.name}:{PARKED}"), mode=0o600)
            etcd.wait_until(lambda: etcd.healthy(node), f"etcd on {best.name} to lead", WAIT)
            self.done("forced")
        if self.stage("self-update"):
            for member in etcd.members(node):
                if list(member.peer_urls) != [url]:
                    self.say(f"member {best.name}: peer URL {','.join(member.peer_urls)} -> {url}")
                    etcd.member_update(node, member.id, [url])
            self.done("self-update")
        if self.stage("unforced"):
            self.say(f"restarting {best.name} without --force-new-cluster")
            node.write_file(MANIFEST, set_flags(self._parked(best), {
                **base, "--force-new-cluster": None}, f"{best.name}:{PARKED}"), mode=0o600)
            time.sleep(2)  # let the kubelet replace the forced instance before asking
            etcd.wait_until(lambda: etcd.healthy(node) and not _forced_running(node),
                            f"etcd on {best.name} to come back", WAIT)
            self.done("unforced")

    def _re_add(self, best: ClusterNode, cp: ClusterNode) -> None:
        if not self.stage(f"added:{cp.name}"):
            return
        leader = self.nodes[best.name]
        url = peer_url(cp)
        members = etcd.members(leader)
        if not any(url in m.peer_urls for m in members):
            self.say(f"adding {cp.name} as a new member ({url})")
            etcd.wait_until(lambda: _try_add(leader, url), f"etcd to accept {cp.name}", 60, 2)
            members = etcd.members(leader)
        node = self.nodes[cp.name]
        run(node, ["sh", "-c", _SET_ASIDE, "kindfix-aside", DATA_DIR,
                   f"{self.backup_dir(cp)}/stale"])
        initial = ",".join(f"{m.name or cp.name}={m.peer_urls[0]}" for m in members if m.peer_urls)
        node.write_file(MANIFEST, set_flags(self._parked(cp), {
            "--initial-cluster": initial, "--initial-cluster-state": "existing",
            "--force-new-cluster": None}, f"{cp.name}:{PARKED}"), mode=0o600)
        etcd.wait_until(lambda: _started(leader, url) and etcd.healthy(node),
                        f"etcd on {cp.name} to join", WAIT)
        self.say(f"{cp.name} joined")
        self.done(f"added:{cp.name}")


def _try_add(leader: Node, url: str) -> bool:
    if any(url in m.peer_urls for m in etcd.members(leader)):
        return True
    etcd.member_add(leader, [url])  # refused for ~5 s after a join: "unhealthy cluster"
    return True


def _started(leader: Node, url: str) -> bool:
    return any(url in m.peer_urls and m.name for m in etcd.members(leader))


def _forced_running(node: Node) -> bool:
    # /proc, not ps: procps is not guaranteed on a kind node
    out = node.exec(["sh", "-c", "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < \"$f\"; "
                     "echo; done 2>/dev/null | grep -c -e '[-]-force-new-cluster'"]).text()
    return out.strip() not in ("", "0")


def repair(ap: Applier, strategy: str) -> None:
    rec = Recovery(ap)
    if strategy == "snapshot-restore":
        ap.progress("      etcd: snapshot-restore needs etcdutl, which etcd 3.5 images do not "
                    "ship; using force-new-cluster instead (keeps WAL-only entries too)")
        strategy = "force-new-cluster"
    if strategy == "decide" and any(k.startswith("etcd:park") for k in ap.recorder.journal.done):
        strategy = "force-new-cluster"  # a killed run already stopped etcd to force it
    if strategy == "decide":
        strategy = "member-update" if rec.leader_within(30) else "force-new-cluster"
        ap.progress(f"      etcd: chose {strategy}")
    if strategy == "member-update":
        rec.member_update()
    else:
        rec.force_new_cluster()
