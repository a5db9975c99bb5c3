"""Repairs etcd membership after the node IPs moved (DOMAIN.md "What nothing repairs").

member-update: quorum intact; update each stale member's peer URL through the cluster.
force-new-cluster: quorum lost; stop etcd everywhere, copy every data dir, start the most
up-to-date member with --force-new-cluster, fix its peer URL, then re-add the others one by one
(etcd op-guide/recovery; kubespray's recover_lost_quorum role does the same dance).
snapshot-restore: quorum lost; stop etcd everywhere, copy every data dir, restore the most
up-to-date member's backend (`member/snap/db`, offline, `--skip-hash-check`) onto every member
with the current peer URLs, start them all at once (etcd op-guide/recovery "Restoring a
cluster"). The restore tool runs from the etcd image through `ctr run` (DOMAIN.md): etcdutl when
the image has it (etcd >= 3.6 images), else etcdctl's deprecated `snapshot restore` (3.4/3.5).
Every sub-stage is journaled, so a killed run continues where it stopped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kindfix import etcd, kubelet, probes
from kindfix.addresses import node_ips, url_host
from kindfix.discovery import ClusterNode
from kindfix.errors import CommandError, KindfixError
from kindfix.lanes import map_all, run_all
from kindfix.node import NO_SYSTEMCTL, RESTART_PODS, Node, run
from kindfix.yamlpath import YamlDocument, parse_document

if TYPE_CHECKING:
    from kindfix.apply import Applier

MANIFEST = "/etc/kubernetes/manifests/etcd.yaml"
PARKED_DIR = "/kind/kindfix/parked"
PARKED = f"{PARKED_DIR}/etcd.yaml"
DATA_DIR = "/var/lib/etcd"
WAIT = 120.0

# Parks the manifest, restarts the kubelet, then stops the container the way the kubelet would
# (SIGTERM, SIGKILL after 10 s): a graceful stop flushes etcd's backend. The kubelet restart is
# what makes the stop last: a kubelet that started while no API server answered never
# terminates the pod of a removed manifest and restarts its stopped container under back-off
# 3-7 s later (realkind findings 1 and 2; kubernetes#116880); a new kubelet reads only the
# manifests on disk, so etcd is no pod of it, and leaves the unknown container to us. Prints
# "@@kindfix no-systemctl" where there is none (then only the 4 quiet checks guard the copy).
_PARK = r"""
set -e
mkdir -p "$2"
if [ -f "$1" ]; then
  [ -f "$2/etcd.yaml" ] || cp -p "$1" "$2/etcd.yaml"
  rm -f "$1"
  echo @@kindfix-parked  # by this exec: undoing a failed preparation starts it again
fi
if command -v systemctl >/dev/null 2>&1; then
  systemctl restart kubelet >/dev/null 2>&1 || echo "kindfix: systemctl restart kubelet failed" >&2
else
  echo "@@kindfix no-systemctl"
fi
ids=$(crictl ps -q --name '^etcd$' 2>/dev/null) || true
[ -z "$ids" ] || crictl stop --timeout 10 $ids >/dev/null 2>&1 || true
"""
# The etcd server's process, if one runs (prints its command line). /proc rather than crictl or
# ps: cheap, and a kind node sees its containers' processes (procps is not guaranteed).
_ETCD_RUNNING = r"""
for f in /proc/[0-9]*/cmdline; do tr '\0' ' ' < "$f" 2>/dev/null; echo; done |
  grep -E '^(/[^ ]*/)?etcd .*--data-dir' || true
"""
# Copies the data dir and checks every file's checksum and size against the original (etcd is
# stopped). POSIX cksum (CRC32): it catches a copy that went wrong, and on coreutils >= 9 it is
# ~25x faster than sha256sum (17 ms vs 480 ms for a 64 MB WAL segment on the test machine).
# wal/*.tmp is etcd's preallocated, still empty next WAL segment (64 MB): etcd makes a new one,
# so it is neither copied nor hashed.
_COPY_DATA = r"""
set -e
src="$1"; dst="$2"
[ -d "$dst" ] && exit 0
[ -d "$src" ] || { echo "no data dir $src" >&2; exit 3; }
rm -rf "$dst.tmp"
mkdir -p "$dst.tmp"
cd "$src"
find . -type d -exec mkdir -p "$dst.tmp/{}" \;
# checked here rather than left to set -e (no clean-up, no reason said): a failed cp (a full
# disk) gives its space back and says why in its last line; it is not a differing copy (exit 4),
# so it is not retried.
if ! e=$(find . -type f ! -name '*.tmp' -exec cp -p --parents -t "$dst.tmp" {} + 2>&1); then
  rm -rf "$dst.tmp"
  echo "copying $src to $dst failed: $(printf '%s\n' "$e" | head -n 1)" >&2
  exit 7
fi
a=$(find . -type f ! -name '*.tmp' -exec cksum {} + | sort)
b=$(cd "$dst.tmp" && find . -type f -exec cksum {} + | sort)
[ "$a" = "$b" ] || { echo "copy of $src differs from the original" >&2; exit 4; }
chmod 700 "$dst.tmp"
mv "$dst.tmp" "$dst"
"""
# The etcd image's own tool, run offline from the node through containerd (`ctr run`, on every
# kind node); the data dir is bind-mounted at the same path. Tries etcdutl, then etcdctl.
_CTR_TOOL = r"""
tool_run() {  # tool_run <tool> <args...>: stdout kept, stderr in $err
  t=$1; shift
  ctr -n k8s.io run --rm --net-host \
    --mount "type=bind,src=$data,dst=$data,options=rbind:rw" \
    "$img" "kindfix-etcd-$$-$t" "$t" "$@" 2>"$err"
}
err=$(mktemp); trap 'rm -f "$err"' EXIT
"""
# Prints the tool that worked, then `snapshot status -w json` of the member's backend.
_SNAPSHOT_STATUS = _CTR_TOOL + r"""
data=$1; img=$2
for tool in etcdutl etcdctl; do
  if out=$(tool_run "$tool" snapshot status "$data/member/snap/db" -w json); then
    printf '%s\n%s\n' "$tool" "$out"; exit 0
  fi
  printf '%s: %s\n' "$tool" "$(tail -n 3 "$err")" >&2
done
exit 3
"""
# Restores "$data/.kindfix-snapshot.db" as this member, then swaps the member dir: the old one
# goes to "$3" (never deleted). A killed run repeats it from the snapshot (removed only later).
_RESTORE = _CTR_TOOL + r"""
set -e
data=$1; img=$2; stale=$3; tool=$4; shift 4
out="$data/.kindfix-restore"
if [ ! -d "$out/member" ]; then
  rm -rf "$out" "$out.tmp"
  tool_run "$tool" snapshot restore "$data/.kindfix-snapshot.db" --skip-hash-check \
    --data-dir "$out.tmp" "$@" >/dev/null || { cat "$err" >&2; exit 3; }
  mv "$out.tmp" "$out"
fi
if [ -d "$data/member" ]; then
  mkdir -p "$stale"; aside=$(mktemp -d "$stale/member-$(date +%s)-XXXXXX")
  rmdir "$aside"; mv "$data/member" "$aside"
fi
mv "$out/member" "$data/member"
rmdir "$out"
"""
# The tool's half of _RESTORE: the restored member waits in "$data/.kindfix-restore" and the
# member's own data is not touched. _RESTORE later only swaps it in (it skips the tool then).
_STAGE_RESTORE = _RESTORE[:_RESTORE.index('if [ -d "$data/member" ]; then')]

# Undoes a preparation that stopped etcd and staged its restore, before anything was swapped in:
# the parked manifest goes back (the kubelet starts etcd on its own data), the staged files go.
_UNPREPARE = r"""
set -e
how=$1; manifest=$2; parked=$3; data=$4
if [ "$how" = unpark ] && [ -f "$parked" ] && [ ! -e "$manifest" ]; then
  t=$(mktemp "$(dirname "$manifest")/.kindfix.XXXXXX")
  cp -p "$parked" "$t" && mv -f "$t" "$manifest" || { rm -f "$t"; exit 1; }
fi
[ "$how" != unpark ] || rm -f "$parked"
# a kubelet that started without an API server may not act on the manifest's return (finding 1)
if [ "$how" = unpark ] && command -v systemctl >/dev/null 2>&1; then
  systemctl restart kubelet || echo "kindfix: systemctl restart kubelet failed" >&2
fi
rm -rf "$data/.kindfix-restore" "$data/.kindfix-restore.tmp"
rm -f "$data/.kindfix-snapshot.db" "$data/.kindfix-snapshot.db.tmp"
"""


def _as_function(name: str, script: str) -> str:
    """A fixed script as a shell function run in a subshell (its `exit`, `cd` and traps stay in)."""
    return f"{name}() (\n{script}\n)\n"


# Waits (bounded) until etcd is stopped for good: no etcd process in 4 checks in a row, 0.25 s
# apart. One check is not enough: a kubelet sync that read the manifest before it was parked still
# restarts the container that `crictl stop` ended (seen on the test bed: the copy then differed
# from the original because the restarted etcd wrote to it). Needs etcd_running.
_WAIT_STOPPED = r"""
i=0; quiet=0
while [ "$quiet" -lt 4 ]; do
  if [ -n "$(etcd_running)" ]; then quiet=0; else quiet=$((quiet+1)); fi
  i=$((i+1))
  [ "$i" -le 480 ] || { echo "etcd still runs 120 s after it was stopped" >&2; exit 6; }
  sleep 0.25
done
"""
# copy_data, and when the copy differs from the original (etcd ran again meanwhile) wait until it
# is stopped again and copy again: at most 3 copies. Needs copy_data and wait_stopped.
_COPY_CHECKED = r"""
n=1
while :; do
  # not `copy_data ... || rc=$?`: POSIX sh ignores set -e inside a command under `||`
  set +e
  copy_data "$1" "$2"; rc=$?
  set -e
  [ "$rc" -eq 4 ] && [ "$n" -lt 3 ] || exit "$rc"
  n=$((n+1))
  echo "etcd ran during the copy of $1; copying again once it is stopped" >&2
  wait_stopped
done
"""
_STOPPED_COPY_FUNCTIONS = (_as_function("etcd_running", _ETCD_RUNNING)
                           + _as_function("wait_stopped", _WAIT_STOPPED)
                           + _as_function("copy_data", _COPY_DATA)
                           + _as_function("copy_checked", _COPY_CHECKED))
# Once etcd is stopped (parked), its data dir copied and checked: `sh -c _COPY_STOPPED _ src dst`.
_COPY_STOPPED = _STOPPED_COPY_FUNCTIONS + r"""
set -e
wait_stopped
copy_checked "$1" "$2"
"""

# One exec per member before a snapshot restore: park and stop etcd, wait (bounded) until no etcd
# process is left, copy and check the data dir, then print the backend's snapshot status after a
# marker. Its exit code is the status's (3: no tool); no marker: parking or copying failed.
_PREPARE_MEMBER = (_as_function("park", _PARK) + _STOPPED_COPY_FUNCTIONS
                   + _as_function("snapshot_status", _SNAPSHOT_STATUS) + r"""
set -e
park "$1" "$2"
wait_stopped
copy_checked "$3" "$4"
echo @@kindfix-status
snapshot_status "$3" "$5"
""")

_KEEP_SNAPSHOT = 'cp "$1/member/snap/db" "$1/.kindfix-snapshot.db.tmp" && ' \
    'mv "$1/.kindfix-snapshot.db.tmp" "$1/.kindfix-snapshot.db"'
_SET_ASIDE = r"""
set -e
[ -d "$1/member" ] || exit 0
mkdir -p "$2"
aside=$(mktemp -d "$2/member-$(date +%s)-XXXXXX")  # unique: two set-asides in one second
rmdir "$aside"; mv "$1/member" "$aside"
"""


def peer_url(node: ClusterNode, family: int | None = None) -> str:
    """The member's peer URL at the node's current address of `family` (4 or 6; default: the
    IPv4 address when the node has one)."""
    ip = (node.ipv6 if family == 6 else node.ipv4) or node.ipv4 or node.ipv6 or ""
    return f"https://{url_host(ip)}:2380"


def advertised_family(manifest: bytes | None) -> int | None:
    """The address family etcd.yaml advertises its peer URL in (dual-stack nodes have both)."""
    if manifest is None:
        return None
    try:
        command = _etcd_container(manifest)["command"]
    except (KindfixError, KeyError, TypeError, StopIteration):
        return None
    urls = [str(a).split("=", 1)[1] for a in command
            if str(a).startswith("--initial-advertise-peer-urls=")]
    lits = [lit for url in urls for lit in node_ips(url)]
    return lits[0].family if lits else None


def set_flags(manifest: bytes, flags: dict[str, str | None], source: str) -> bytes:
    """Set (or with None remove) `--flag=value` items of the etcd container's command."""
    doc = YamlDocument(manifest, source)
    command = _find_etcd(doc.data, source).get("command")
    if not isinstance(command, list):
        raise _odd_manifest(source, "the etcd container has no command list")
    for flag, value in flags.items():
        idx = [i for i, item in enumerate(command) if str(item).startswith(flag + "=")
               or str(item) == flag]
        for i in reversed(idx):
            del command[i]
        if value is not None:
            command.append(f"{flag}={value}" if value else flag)
    return doc.dump_structure()


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
        self.cancel: threading.Event | None = None  # a preparation's stop signal
        self.parked_now: set[str] = set()  # members whose etcd this process stopped
        self.from_backup = False  # restoring a `kindfix backup`'s snapshot (`source`)
        self.source: bytes | None = None

    def peer_url(self, cp: ClusterNode) -> str:
        """In the family the member advertised before (the observed, unchanged etcd.yaml)."""
        snap = self.ap.snapshots.get(cp.name)
        return peer_url(cp, advertised_family(snap.file(MANIFEST) if snap else None))

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
    def leader_within(self, seconds: float, give_up_without_leader: float | None = None
                      ) -> Node | None:
        """A member that has a leader, polled for `seconds`. With give_up_without_leader: stop
        early once every member runs (metrics answer) and reports no leader for that long."""
        deadline = time.monotonic() + seconds
        leaderless_since: float | None = None
        while time.monotonic() < deadline:
            # metrics first: the client port of a member without leader hangs until curl gives up
            said = [etcd.metrics(self.nodes[cp.name]).get("etcd_server_has_leader")
                    for cp in self.cps]
            for cp, has_leader in zip(self.cps, said):
                if _confirmed(self.nodes[cp.name], has_leader):
                    return self.nodes[cp.name]
            if give_up_without_leader is not None and all(h == 0 for h in said):
                leaderless_since = leaderless_since or time.monotonic()
                if time.monotonic() - leaderless_since >= give_up_without_leader:
                    return None
            else:
                leaderless_since = None
            time.sleep(1)
        return None

    # --- member-update --------------------------------------------------------------------
    def member_update(self) -> None:
        leader = self.leader_within(WAIT)
        if leader is None:
            raise KindfixError("etcd has no leader, so member update is impossible",
                               hint="rerun with --etcd-strategy snapshot-restore (or "
                                    "force-new-cluster, which also keeps WAL-only writes)")
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
            want = [self.peer_url(node)]
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
        run(member, ["sh", "-c", RESTART_PODS, "kindfix-restart", "etcd"])
        etcd.wait_until(lambda: _has_leader(member), f"etcd on {cp.name} to be healthy", WAIT,
                        0.5)

    # --- force-new-cluster ----------------------------------------------------------------
    def choose(self) -> ClusterNode:
        ranks = {cp.name: _metrics_rank(self.nodes[cp.name], i) for i, cp in enumerate(self.cps)}
        if all(r[0] < 0 for r in ranks.values()):  # every member stopped: what observe saw
            ranks = {cp.name: (self._observed_revision(cp), -1, -i)
                     for i, cp in enumerate(self.cps)}
        best = max(self.cps, key=lambda cp: ranks[cp.name])
        rev = ranks[best.name][0]
        self.say(f"most up-to-date member: {best.name} (revision "
                 f"{rev if rev >= 0 else 'unknown: metrics unavailable, first control plane'})")
        return best

    def _observed_revision(self, cp: ClusterNode) -> int:
        snap = self.ap.snapshots.get(cp.name)
        out = snap.output(probes.ETCD_PROBE) if snap else None
        if out is None:
            return -1
        probe = probes.parse_etcd_probe(out.text())
        return max(probe.metrics_revision or -1, probe.revision or -1)

    def force_new_cluster(self) -> None:
        best_name = self.note("etcd-best")
        if best_name is None:
            best_name = self.choose().name
            self.add_note("etcd-best", best_name)
        best = next(cp for cp in self.cps if cp.name == best_name)
        others = [cp for cp in self.cps if cp.name != best.name]
        # every member at once: stop it, then copy its data dir (each node independently)
        self.each(self._park_and_copy)
        self._start_forced(best)
        for cp in others:
            self._re_add(best, cp)
        for cp in self.cps:
            self.nodes[cp.name].exec(["rm", "-f", PARKED])

    def _park_and_copy(self, cp: ClusterNode) -> None:
        if self.stage(f"park:{cp.name}"):
            node = self.nodes[cp.name]
            self.say(f"stopping etcd on {cp.name} (manifest parked in {PARKED_DIR})")
            self._keep_manifest(cp)
            out = run(node, ["sh", "-c", _PARK, "kindfix-park", MANIFEST, PARKED_DIR],
                      timeout=180).text()
            if "@@kindfix-parked" in out:
                self.parked_now.add(cp.name)
            self._no_systemctl(cp, out)
            self.done(f"park:{cp.name}")
        if self.stage(f"copy:{cp.name}"):  # done: etcd there may already run again
            self._copy_stopped(cp)
            self.done(f"copy:{cp.name}")

    def _no_systemctl(self, cp: ClusterNode, out: str) -> None:
        if NO_SYSTEMCTL in out:
            self.say(f"{cp.name} has no systemctl: its kubelet was not restarted after the "
                     "manifest was parked, so a back-off restart of the old etcd may still come "
                     "(the copy is checked and redone if it does)")

    def _keep_manifest(self, cp: ClusterNode) -> None:
        """Recovery rewrites etcd.yaml: keep the original for rollback (nothing to do when the
        files phase already kept it)."""
        node = self.nodes[cp.name]
        if self.rec.has_backup(node, MANIFEST):
            return
        current = node.read_file(MANIFEST)
        if current is not None:
            self.rec.backup_file(node, MANIFEST, current, mode=0o600)

    def _copy_stopped(self, cp: ClusterNode) -> None:
        node = self.nodes[cp.name]
        self.say(f"copying {cp.name}:{DATA_DIR} to {self.backup_dir(cp)}/data (verified)")
        run(node, ["sh", "-c", _COPY_STOPPED, "kindfix-copy", DATA_DIR,
                   f"{self.backup_dir(cp)}/data"], timeout=420)

    def _parked(self, cp: ClusterNode) -> bytes:
        node = self.nodes[cp.name]
        raw = node.read_file(PARKED) or node.read_file(MANIFEST)
        if raw is None:
            raise KindfixError(f"{cp.name} has neither {MANIFEST} nor {PARKED}",
                               hint="restore etcd.yaml with `kindfix rollback`")
        return raw

    def _start_forced(self, best: ClusterNode) -> None:
        node = self.nodes[best.name]
        url = self.peer_url(best)
        base = {"--initial-cluster": f"{best.name}={url}", "--initial-cluster-state": None}
        if self.stage("forced"):
            self.say(f"starting {best.name} with --force-new-cluster")
            node.write_file(MANIFEST, set_flags(self._parked(best), {
                **base, "--force-new-cluster": ""}, f"{best.name}:{PARKED}"), mode=0o600)
            kubelet.restart(node, "so it starts the forced etcd at once", self.say)
            etcd.wait_until(lambda: _has_leader(node), f"etcd on {best.name} to lead", WAIT, 0.5)
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
            # a changed manifest: a kubelet without an API server would keep the forced pod
            kubelet.refresh(node, ["etcd"], self.say)
            time.sleep(2)  # let the kubelet replace the forced instance before asking
            etcd.wait_until(lambda: _has_leader(node) and not _forced_running(node),
                            f"etcd on {best.name} to come back", WAIT)
            self.done("unforced")

    def _re_add(self, best: ClusterNode, cp: ClusterNode) -> None:
        if not self.stage(f"added:{cp.name}"):
            return
        leader = self.nodes[best.name]
        url = self.peer_url(cp)
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
        kubelet.restart(node, "so it starts etcd as a new member at once", self.say)
        etcd.wait_until(lambda: _started(leader, url) and _has_leader(node),
                        f"etcd on {cp.name} to join", WAIT)
        self.say(f"{cp.name} joined")
        self.done(f"added:{cp.name}")

    # --- snapshot-restore -----------------------------------------------------------------
    def note(self, key: str) -> str | None:
        """The latest value noted under key in the journal."""
        return next((n.split("=", 1)[1] for n in reversed(self.rec.journal.notes)
                     if n.startswith(key + "=")), None)

    def add_note(self, key: str, value: str) -> None:
        self.rec.add_note(f"{key}={value}")

    def snapshot_restore(self) -> None:
        self.prepare_restore()
        if self.stage("unparked"):
            self.say("starting every member on its restored data")
            self.each(self._unpark)
            self.done("unparked")
        self.each(self._wait_leader)

    def prepare_restore(self, stage_only: bool = False) -> None:
        """Everything before the members start again: stop, copy, choose, restore. With
        stage_only (beside the certificates) the restored members wait beside the data:
        no member's own data is swapped out before the etcd step itself."""
        best, tool, image = self._restore_source()
        self.check()
        if not self.from_backup:
            self._stage_snapshot(best)
        elif self.source is not None:
            self._stage_given(self.source)
        elif any(self.stage(f"snapshot:{cp.name}") for cp in self.cps):
            raise KindfixError("the backup's etcd snapshot is not on every member yet, and "
                               "this run does not have it", hint="continue with `kindfix "
                               "restore DIR` (the same backup directory)")
        members = ",".join(f"{cp.name}={self.peer_url(cp)}" for cp in self.cps)
        self.check()
        self.each(lambda cp: self._restore_member(cp, tool, image, members, stage_only))

    def each(self, fn: Callable[[ClusterNode], object]) -> list[Any]:
        """fn on every member at once; every member's failure is named."""
        return map_all(fn, self.cps, what=lambda cp: cp.name)

    def check(self) -> None:
        """Between the stages of a preparation: stop when the applier said so."""
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("the etcd preparation was stopped")

    def fall_back(self, why: NoRestoreTool) -> None:
        self.say(f"{why.message}; using force-new-cluster instead (every data dir is copied)")
        self.add_note("etcd-strategy", "force-new-cluster")

    def _restore_source(self) -> tuple[ClusterNode, str, str]:
        """Every member stopped and copied; the one with the highest revision, the tool that
        read it, the etcd image."""
        image = self._image()
        best_name, tool = self.note("etcd-best"), self.note("etcd-tool")
        if best_name is not None and tool is not None:
            self.each(self._park_and_copy)  # done already: nothing to do
            return next(cp for cp in self.cps if cp.name == best_name), tool, image
        found = dict(zip([cp.name for cp in self.cps],
                         self.each(lambda cp: self._stop_copy_status(cp, image))))
        ranked = [(st["revision"], -i, cp, st) for i, cp in enumerate(self.cps)
                  if (st := found[cp.name]) is not None]
        if not ranked:
            raise NoRestoreTool(f"neither etcdutl nor etcdctl could read a member's data "
                                f"through `ctr run {image}`")
        _, _, best, st = max(ranked, key=lambda r: r[:2])
        tool = str(st["tool"])
        if self.from_backup:
            self.say(f"every member stopped and copied; restoring the backup with {tool} "
                     f"from {image}")
        else:
            self.say(f"most up-to-date member: {best.name} (revision {st['revision']}, "
                     f"{st.get('totalKey', '?')} keys; {tool} from {image})")
        self.add_note("etcd-tool", tool)
        self.add_note("etcd-best", best.name)
        return best, tool, image

    def _image(self) -> str:
        """The etcd image, from etcd.yaml as observed (parked or not), else as it is now."""
        first = self.cps[0].name
        snap = self.ap.snapshots.get(first)
        observed = snap.file(MANIFEST) if snap else None
        if observed is not None:
            return _etcd_image(observed, f"{first}:{MANIFEST}")
        return _etcd_image(self._parked(self.cps[0]), f"{first}:{MANIFEST} (or {PARKED})")

    def _stop_copy_status(self, cp: ClusterNode, image: str) -> dict[str, object] | None:
        """One exec per member: park + stop, wait, copy + check, snapshot status."""
        if not (self.stage(f"park:{cp.name}") or self.stage(f"copy:{cp.name}")):
            return self._status(cp, image)
        self.check()  # nothing parked once the applier said stop
        node = self.nodes[cp.name]
        self.say(f"stopping etcd on {cp.name} (manifest parked in {PARKED_DIR}), copying "
                 f"{DATA_DIR} to {self.backup_dir(cp)}/data (checked)")
        self._keep_manifest(cp)
        result = node.exec(["sh", "-c", _PREPARE_MEMBER, "kindfix-prepare", MANIFEST, PARKED_DIR,
                            DATA_DIR, f"{self.backup_dir(cp)}/data", image], timeout=420)
        parked, marker, status = result.text().partition("@@kindfix-status\n")
        if "@@kindfix-parked" in parked:
            self.parked_now.add(cp.name)
        self._no_systemctl(cp, parked)
        if not marker:
            raise CommandError(["sh", "-c", "<kindfix-prepare>", MANIFEST, DATA_DIR],
                               result.exit_code, result.stdout, result.stderr, where=node.name)
        self.rec.mark_done(f"etcd:park:{cp.name}", f"etcd:copy:{cp.name}")
        return self._parse_status(cp, result.exit_code, status, result.stderr)

    def _status(self, cp: ClusterNode, image: str) -> dict[str, object] | None:
        result = self.nodes[cp.name].exec(["sh", "-c", _SNAPSHOT_STATUS, "kindfix-status",
                                           DATA_DIR, image], timeout=120)
        return self._parse_status(cp, result.exit_code, result.text(), result.stderr)

    def _parse_status(self, cp: ClusterNode, exit_code: int, out: str, stderr: bytes
                      ) -> dict[str, object] | None:
        lines = out.strip().splitlines()
        data = probes.json_object(lines[-1]) if exit_code == 0 and lines else None
        if data is None or "revision" not in data:
            err = stderr.decode(errors="replace").strip().replace("\n", "; ")
            self.say(f"cannot read {cp.name}'s data with the etcd image's tools: {err[:300]}")
            return None
        return {**data, "tool": lines[0]}

    def _stage_snapshot(self, best: ClusterNode) -> None:
        """The best member's backend, as .kindfix-snapshot.db in every member's data dir."""
        snapshot = f"{DATA_DIR}/.kindfix-snapshot.db"
        if self.stage(f"snapshot:{best.name}"):
            run(self.nodes[best.name], ["sh", "-c", _KEEP_SNAPSHOT, "kindfix-snapshot", DATA_DIR])
            self.done(f"snapshot:{best.name}")
        todo = [cp for cp in self.cps if cp.name != best.name and self.stage(f"snapshot:{cp.name}")]
        if not todo:
            return
        content = self.nodes[best.name].read_file(snapshot)
        if content is None:
            raise KindfixError(f"{best.name}:{snapshot} vanished before it was copied",
                               hint="rerun `kindfix repair`: it continues where it stopped")
        self.say(f"copying {best.name}'s backend ({len(content)} bytes) to "
                 f"{', '.join(cp.name for cp in todo)}")

        def put(cp: ClusterNode) -> None:
            self.check()
            self.nodes[cp.name].write_file(snapshot, content, mode=0o600)  # sha256-checked
            self.done(f"snapshot:{cp.name}")

        map_all(put, todo, what=lambda cp: cp.name)

    def _stage_given(self, content: bytes) -> None:
        """A backup's snapshot as .kindfix-snapshot.db in every member's data dir."""
        todo = [cp for cp in self.cps if self.stage(f"snapshot:{cp.name}")]
        if todo:
            self.say(f"copying the backup's snapshot ({len(content)} bytes) to "
                     f"{', '.join(cp.name for cp in todo)}")

        def put(cp: ClusterNode) -> None:
            self.check()
            self.nodes[cp.name].write_file(f"{DATA_DIR}/.kindfix-snapshot.db", content,
                                           mode=0o600)  # sha256-checked
            self.done(f"snapshot:{cp.name}")

        map_all(put, todo, what=lambda cp: cp.name)

    def _restore_member(self, cp: ClusterNode, tool: str, image: str, members: str,
                        stage_only: bool = False) -> None:
        if not self.stage(f"restored:{cp.name}"):
            return
        staged = not self.stage(f"staged:{cp.name}")
        if stage_only and staged:
            return
        self.check()
        if stage_only:
            self.say(f"restoring {cp.name} as {self.peer_url(cp)} beside its data ({tool} "
                     "snapshot restore)")
        elif staged:
            self.say(f"swapping in {cp.name}'s restored data (its own is kept)")
        else:
            self.say(f"restoring {cp.name} as {self.peer_url(cp)} ({tool} snapshot restore)")
        # _RESTORE skips the tool when the staged member is there already
        run(self.nodes[cp.name], [
            "sh", "-c", _STAGE_RESTORE if stage_only else _RESTORE, "kindfix-restore", DATA_DIR,
            image, f"{self.backup_dir(cp)}/stale", tool, "--name", cp.name,
            "--initial-cluster", members, "--initial-advertise-peer-urls", self.peer_url(cp),
            "--initial-cluster-token", f"kindfix-{self.rec.run_id}"], timeout=300)
        self.done(f"staged:{cp.name}" if stage_only else f"restored:{cp.name}")

    def unprepare(self) -> list[str]:
        """After a failed wave: etcd starts again on its own data where this preparation
        stopped it, the staged restore goes, and the journal forgets the etcd stages (the next
        run stops, copies and chooses afresh). Nothing was swapped in (stage_only).
        Returns what could not be undone."""
        left: list[str] = []

        def undo(cp: ClusterNode) -> None:
            if not self.stage(f"restored:{cp.name}"):  # swapped in: only the etcd step does
                left.append(f"{cp.name}: etcd data already restored, etcd stays stopped")
                return
            # only a member this run stopped starts again: one parked before stays parked
            how = "unpark" if cp.name in self.parked_now else "clean"
            argv = ["sh", "-c", _UNPREPARE, "kindfix-unprepare", how, MANIFEST, PARKED,
                    DATA_DIR]
            result = self.nodes[cp.name].exec(argv, timeout=60)
            if not result.ok:
                left.append(f"{cp.name}: could not start etcd again (exit {result.exit_code}), "
                            f"its manifest is in {PARKED}")

        # a node that stopped meanwhile raises: said, but the journal still forgets the etcd
        # stages (the others run again; the next run stops and copies afresh, and observes
        # that node's parked manifest)
        unreached = [f"{o.item.name}: could not start etcd again "
                     f"({(str(o.error).splitlines() or ['?'])[0][:200]}), its manifest may be "
                     f"in {PARKED}" for o in run_all(undo, self.cps) if o.error is not None]
        if not left:
            with self.rec._lock:
                self.rec.journal.done[:] = [k for k in self.rec.journal.done
                                            if not k.startswith("etcd:")]
                self.rec.journal.notes[:] = [n for n in self.rec.journal.notes
                                             if not n.startswith("etcd-")]
            self.rec.save()
        return left + unreached

    def _unpark(self, cp: ClusterNode) -> None:
        node = self.nodes[cp.name]
        node.write_file(MANIFEST, self._parked(cp), mode=0o600)
        node.exec(["rm", "-f", PARKED])
        # the members start together only if every kubelet acts at once: a kubelet that
        # started without an API server may sit on the returned manifest (finding 1), and a
        # fresh one also starts the crash-looping apiserver without its back-off
        kubelet.restart(node, "so it starts etcd on the restored data at once", self.say)

    def _wait_leader(self, cp: ClusterNode) -> None:
        node = self.nodes[cp.name]
        etcd.wait_until(lambda: _has_leader(node), f"etcd on {cp.name} to have a leader", WAIT,
                        0.5)
        self.say(f"{cp.name} is a member of the restored cluster")
        node.exec(["rm", "-f", f"{DATA_DIR}/.kindfix-snapshot.db"])


class NoRestoreTool(KindfixError):
    """The etcd image offers no tool that reads a member's data offline."""


class Cancelled(KindfixError):
    """A preparation stopped because the applier said so."""


def _etcd_container(manifest: bytes, source: str = MANIFEST) -> Any:
    """The etcd container of etcd.yaml, read-only (the parse is cached by content)."""
    doc = parse_document("yaml", manifest, source, editable=False)
    return _find_etcd(doc.data, source)  # type: ignore[attr-defined]


def _find_etcd(data: Any, source: str) -> Any:
    """spec.containers[name=etcd] of a parsed etcd.yaml, or one line naming the file."""
    spec = data.get("spec") if isinstance(data, dict) else None
    containers = spec.get("containers") if isinstance(spec, dict) else None
    if not isinstance(containers, list):
        raise _odd_manifest(source, "no spec.containers list")
    found = [c for c in containers if isinstance(c, dict) and c.get("name") == "etcd"]
    if not found:
        raise _odd_manifest(source, "no container named etcd in spec.containers")
    return found[0]


def _odd_manifest(source: str, why: str) -> KindfixError:
    return KindfixError(f"{source}: {why}; this is not the static pod manifest kubeadm writes",
                        hint="restore the file (`kindfix rollback`, or the copy under "
                             f"{PARKED_DIR}) and run `kindfix repair` again")


def _etcd_image(manifest: bytes, source: str = MANIFEST) -> str:
    image = _etcd_container(manifest, source).get("image")
    if not isinstance(image, str) or not image:
        raise _odd_manifest(source, "the etcd container names no image")
    return image


def _has_leader(node: Node) -> bool:
    """Metrics first (they answer at once; the client port of a member without leader hangs
    until curl gives up), then a linearizable status through the leader. While the metrics
    endpoint does not answer (etcd still starting, or none configured) the status alone, with
    a short timeout."""
    return _confirmed(node, etcd.metrics(node).get("etcd_server_has_leader"))


def _confirmed(node: Node, has_leader: int | None) -> bool:
    """What the metrics said (None: no answer), confirmed through the client port."""
    if has_leader is None:
        return etcd.healthy(node, timeout=1)
    return has_leader == 1 and etcd.healthy(node)


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


def prepare(ap: Applier, rec: Recovery | None = None) -> None:
    """The part of a snapshot restore that may run beside the certificates (Applier.apply):
    stop, copy, choose, restore beside the data. Without a restore tool it only stops and
    copies; the etcd step then falls back."""
    rec = rec or Recovery(ap)
    if rec.note("etcd-strategy") is None:
        rec.say("preparing the snapshot restore while the certificates are made")
        rec.add_note("etcd-strategy", "snapshot-restore")
    if rec.note("etcd-strategy") != "snapshot-restore":
        return
    try:
        rec.prepare_restore(stage_only=True)
    except NoRestoreTool as e:
        rec.fall_back(e)


class Preparation:
    """prepare() on a daemon thread beside the certificate wave, which the applier can stop
    (Ctrl-C: after its current command) or stop and undo (a failed wave)."""

    def __init__(self, ap: Applier) -> None:
        self.recovery = Recovery(ap)
        self.recovery.cancel = threading.Event()
        self._ap = ap
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="kindfix-etcd-prepare")

    def _run(self) -> None:
        try:
            prepare(self._ap, self.recovery)
        except BaseException as e:  # the applier reports it when it joins
            self._error = e

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        """Wait for it (each of its commands has a timeout); its error, if any, is raised."""
        while self._thread.is_alive():
            self._thread.join(0.1)
        if self._error is not None:
            raise self._error

    def cancel(self) -> None:
        assert self.recovery.cancel is not None
        self.recovery.cancel.set()

    def undo(self) -> list[str]:
        """Stop it, wait for its current command, then undo what it did. Returns notes for
        the error line."""
        self.cancel()
        if self._thread.is_alive():
            self.recovery.say("waiting for the etcd preparation's current command, then "
                              "starting etcd again on its own data")
        while self._thread.is_alive():
            self._thread.join(0.1)
        if not (self.recovery.parked_now or any(
                k.startswith("etcd:") for k in self.recovery.rec.journal.done)):
            return []
        left = self.recovery.unprepare()
        if left:
            return ["etcd was stopped for the restore and " + "; ".join(left)]
        return ["etcd was started again on its own data (the prepared restore is undone)"]


RESTORE_BACKUP = "restore-backup"  # `kindfix restore`: snapshot restore from a backup's data


def repair(ap: Applier, strategy: str, snapshot: bytes | None = None) -> None:
    """Run an etcd strategy. RESTORE_BACKUP restores every member from `snapshot` (a backup's)
    through the snapshot-restore path; continued after a kill, it uses the copies it staged."""
    rec = Recovery(ap)
    started = rec.note("etcd-strategy")
    if started is not None:  # a killed run (or the preparation) already stopped etcd
        strategy = started
    if strategy == "decide":
        # every member runs without a leader for 5 s (a few election timeouts): quorum is lost
        leader = rec.leader_within(30, give_up_without_leader=5)
        strategy = "member-update" if leader else "snapshot-restore"
        ap.progress(f"      etcd: chose {strategy}")
    if strategy == "member-update":
        rec.member_update()
        return
    if started is None:
        rec.add_note("etcd-strategy", strategy)
    if strategy == RESTORE_BACKUP:
        rec.from_backup, rec.source = True, snapshot
        rec.snapshot_restore()  # no fall-back: only a restore tool can put a backup back
        return
    if strategy == "snapshot-restore":
        try:
            rec.snapshot_restore()
            return
        except NoRestoreTool as e:
            rec.fall_back(e)
    rec.force_new_cluster()
