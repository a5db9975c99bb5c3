"""snapshot-restore: quorum is lost. Stop etcd everywhere and copy every data dir, restore the
most up-to-date member's backend (`member/snap/db`, offline, `--skip-hash-check`) onto every
member with the current peer URLs, start them (etcd op-guide/recovery "Restoring a cluster"),
one at a time (_start_member). The restore tool runs from the etcd image through `ctr run`
(DOMAIN.md): etcdutl when the image has it (etcd >= 3.6 images), else etcdctl's deprecated
`snapshot restore` (3.4/3.5).
Also `kindfix restore`'s way back to a backup's snapshot (`rec.from_backup`).

Everything before the members start again (`prepare_restore`) may run beside the certificates
with stage_only: each member's restored data then waits beside its own, which is not touched
until the etcd step swaps it in.
"""

from __future__ import annotations

from kindfix import etcd, kubelet, probes
from kindfix.discovery import ClusterNode
from kindfix.errors import CommandError, KindfixError
from kindfix.node import NO_SYSTEMCTL, run
from kindfix.nodescripts import script
from kindfix.recovery import state
from kindfix.recovery.leader import has_leader
from kindfix.recovery.manifest import (
    DATA_DIR,
    MANIFEST,
    PARKED,
    PARKED_DIR,
    status_tools,
)
from kindfix.recovery.state import NoRestoreTool, Recovery
from kindfix.recovery.stopping import PARKED_NOW, park_and_copy

SNAPSHOT = f"{DATA_DIR}/.kindfix-snapshot.db"  # the backend restored, in every member's data dir
ETCD_YAML_THERE = 4  # etcd-snapshot-status.sh: etcd.yaml is there, the backend not read
STATUS = "@@kindfix-status"  # etcd-prepare-member.sh: the snapshot status follows
SERVE_WAIT = 15  # seconds for a started member to serve its peers before the next starts
METRICS_PORT = b":2381"  # kubeadm's --listen-metrics-urls (etcd-start-member.sh asks there)
SERVING = "@@kindfix-serving"  # etcd-start-member.sh: the member's metrics answered
APISERVER_STOPPED = "@@kindfix apiserver-stopped"  # lib/quiet-apiserver.sh stopped it
APISERVER_ASKED = "@@kindfix apiserver-"  # lib/quiet-apiserver.sh asked it (stopped or not)


def snapshot_restore(rec: Recovery) -> None:
    prepare_restore(rec)
    if rec.stage("unparked"):
        rec.say("starting the members on their restored data one at a time, each once the one "
                "before serves its peers (started together, members running etcd's initial "
                "corruption check can wait 7 s on each other)")
        rec.each(lambda cp: _quiet_apiserver(rec, cp),
                 [cp for cp in rec.cps if cp.name not in rec.ctx.apiservers_asked])
        for i, cp in enumerate(rec.cps):
            _start_member(rec, cp, last=i + 1 == len(rec.cps))
        rec.ctx.apiservers_due.set()  # the Leases can be read (and released) from here on
        rec.done("unparked")
    rec.each(lambda cp: _wait_leader(rec, cp))


def prepare_restore(rec: Recovery, stage_only: bool = False) -> None:
    """Everything before the members start again: stop, copy, choose, restore. With
    stage_only (beside the certificates) the restored members wait beside the data:
    no member's own data is swapped out before the etcd step itself."""
    best, tool, image = _restore_source(rec)
    rec.check()
    if not rec.from_backup:
        _stage_snapshot(rec, best)
    elif rec.source is not None:
        _stage_given(rec, rec.source)
    elif any(rec.stage(f"snapshot:{cp.name}") for cp in rec.cps):
        raise KindfixError("the backup's etcd snapshot is not on every member yet, and "
                           "this run does not have it", hint="continue with `kindfix "
                           "restore DIR` (the same backup directory)")
    members = ",".join(f"{cp.name}={rec.peer_url(cp)}" for cp in rec.cps)
    rec.check()
    rec.each_saved_once(lambda cp: _restore_member(rec, cp, tool, image, members, stage_only))


def fall_back(rec: Recovery, why: NoRestoreTool) -> None:
    """No tool reads the data: force-new-cluster instead (every data dir is copied already)."""
    rec.say(f"{why.message}; using force-new-cluster instead (every data dir is copied)")
    rec.add_note("etcd-strategy", "force-new-cluster")


def _restore_source(rec: Recovery) -> tuple[ClusterNode, str, str]:
    """Every member stopped and copied; the one with the highest revision, the tool that
    read it, the etcd image."""
    image = rec.image()
    best_name, tool = rec.note("etcd-best"), rec.note("etcd-tool")
    if best_name is not None and tool is not None:
        rec.each(lambda cp: park_and_copy(rec, cp))  # done already: nothing to do
        return next(cp for cp in rec.cps if cp.name == best_name), tool, image
    found = dict(zip([cp.name for cp in rec.cps],
                     rec.each(lambda cp: _stop_copy_status(rec, cp, image))))
    ranked = [(st["revision"], -i, cp, st) for i, cp in enumerate(rec.cps)
              if (st := found[cp.name]) is not None]
    if not ranked:
        raise NoRestoreTool(f"neither etcdutl nor etcdctl could read a member's data "
                            f"through `ctr run {image}`")
    _, _, best, st = max(ranked, key=lambda r: r[:2])
    tool = str(st["tool"])
    if rec.from_backup:
        rec.say(f"every member stopped and copied; restoring the backup with {tool} "
                f"from {image}")
    else:
        rec.say(f"most up-to-date member: {best.name} (revision {st['revision']}, "
                f"{st.get('totalKey', '?')} keys; {tool} from {image})")
    rec.add_note("etcd-tool", tool, save=False)  # saved with the next: one journal write
    rec.add_note("etcd-best", best.name)
    return best, tool, image


def _stop_copy_status(rec: Recovery, cp: ClusterNode, image: str) -> dict[str, object] | None:
    """One exec per member: park + stop, wait, copy + check, snapshot status."""
    if not (rec.stage(f"park:{cp.name}") or rec.stage(f"copy:{cp.name}")):
        try:
            return status(rec, cp, image)
        except EtcdMayRun:
            rec.say(f"{cp.name}: {MANIFEST} is back since this run parked it (etcd may run "
                    "on that data): stopping and copying it again")
            rec.rec.forget(lambda k: k in (f"etcd:park:{cp.name}", f"etcd:copy:{cp.name}"))
    rec.check()  # nothing parked once the applier said stop
    node = rec.nodes[cp.name]
    rec.say(f"stopping etcd on {cp.name} (manifest parked in {PARKED_DIR}, kubelet stopped until "
            "etcd starts again), copying "
            f"{DATA_DIR} to {rec.backup_dir(cp)}/data (checked)")
    rec.keep_manifest(cp)
    rec.parked_now.add(cp.name)  # until its output says otherwise: it may park, then be killed
    result = node.exec(["sh", "-c", script("etcd-prepare-member"), "kindfix-prepare", MANIFEST,
                        PARKED_DIR, DATA_DIR, f"{rec.backup_dir(cp)}/data", image,
                        status_tools(image)], timeout=420)
    parked, marker, said = result.text().partition(STATUS + "\n")
    if PARKED_NOW not in parked and marker:  # its whole park output came
        rec.parked_now.discard(cp.name)
    rec.no_systemctl(cp, parked)
    _said_apiserver(rec, cp, parked)
    if not marker:
        raise CommandError(["sh", "-c", "<kindfix-prepare>", MANIFEST, DATA_DIR],
                           result.exit_code, result.stdout, result.stderr, where=node.name)
    rec.rec.mark_done(f"etcd:park:{cp.name}", f"etcd:copy:{cp.name}")
    return _parse_status(rec, cp, result.exit_code, said, result.stderr)


class EtcdMayRun(KindfixError):
    """etcd.yaml is there: etcd may run on the data, whose backend is then not read (bbolt
    opens it under a file lock and waits, with no timeout, as long as etcd holds it)."""


def status(rec: Recovery, cp: ClusterNode, image: str) -> dict[str, object] | None:
    """`snapshot status` of the member's backend with the image's tool, and that tool; raises
    EtcdMayRun when the member's etcd.yaml is not parked (etcd-snapshot-status.sh exit 4)."""
    result = rec.nodes[cp.name].exec(["sh", "-c", script("etcd-snapshot-status"),
                                      "kindfix-status", DATA_DIR, image,
                                      status_tools(image), MANIFEST], timeout=120)
    if result.exit_code == ETCD_YAML_THERE:
        raise EtcdMayRun(f"{cp.name}: {MANIFEST} is there, so etcd may be running on "
                         f"{DATA_DIR}: its backend is not read")
    return _parse_status(rec, cp, result.exit_code, result.text(), result.stderr)


def _parse_status(rec: Recovery, cp: ClusterNode, exit_code: int, out: str, stderr: bytes
                  ) -> dict[str, object] | None:
    lines = out.strip().splitlines()
    data = probes.json_object(lines[-1]) if exit_code == 0 and lines else None
    if data is None or "revision" not in data:
        err = stderr.decode(errors="replace").strip().replace("\n", "; ")
        rec.say(f"cannot read {cp.name}'s data with the etcd image's tools: {err[:300]}")
        return None
    return {**data, "tool": lines[0]}


def _stage_snapshot(rec: Recovery, best: ClusterNode) -> None:
    """The best member's backend, as .kindfix-snapshot.db in every member's data dir."""
    if rec.stage(f"snapshot:{best.name}"):
        run(rec.nodes[best.name], ["sh", "-c", script("etcd-keep-snapshot"), "kindfix-snapshot",
                                   DATA_DIR])
        rec.done(f"snapshot:{best.name}", save=False)  # saved with the others'
    todo = [cp for cp in rec.cps if cp.name != best.name and rec.stage(f"snapshot:{cp.name}")]
    if not todo:
        rec.rec.save()
        return
    content = rec.nodes[best.name].read_file(SNAPSHOT)
    if content is None:
        raise KindfixError(f"{best.name}:{SNAPSHOT} vanished before it was copied",
                           hint="rerun `kindfix repair`: it continues where it stopped")
    rec.say(f"copying {best.name}'s backend ({len(content)} bytes) to "
            f"{', '.join(cp.name for cp in todo)}")
    _put_everywhere(rec, todo, content)


def _stage_given(rec: Recovery, content: bytes) -> None:
    """A backup's snapshot as .kindfix-snapshot.db in every member's data dir."""
    todo = [cp for cp in rec.cps if rec.stage(f"snapshot:{cp.name}")]
    if todo:
        rec.say(f"copying the backup's snapshot ({len(content)} bytes) to "
                f"{', '.join(cp.name for cp in todo)}")
    _put_everywhere(rec, todo, content)


def _put_everywhere(rec: Recovery, todo: list[ClusterNode], content: bytes) -> None:
    def put(cp: ClusterNode) -> None:
        rec.check()
        rec.nodes[cp.name].write_file(SNAPSHOT, content, mode=0o600)  # sha256-checked
        rec.done(f"snapshot:{cp.name}", save=False)

    rec.each_saved_once(put, todo)


def _restore_member(rec: Recovery, cp: ClusterNode, tool: str, image: str, members: str,
                    stage_only: bool = False) -> None:
    if not rec.stage(f"restored:{cp.name}"):
        return
    staged = not rec.stage(f"staged:{cp.name}")
    if stage_only and staged:
        return
    rec.check()
    if stage_only:
        rec.say(f"restoring {cp.name} as {rec.peer_url(cp)} beside its data ({tool} "
                "snapshot restore)")
    elif staged:
        rec.say(f"swapping in {cp.name}'s restored data (its own stays in the backups)")
    else:
        rec.say(f"restoring {cp.name} as {rec.peer_url(cp)} ({tool} snapshot restore)")
    # etcd-restore.sh skips the tool when the staged member is there already
    run(rec.nodes[cp.name], [
        "sh", "-c", script("etcd-stage-restore" if stage_only else "etcd-restore"),
        "kindfix-restore", DATA_DIR, image, rec.backup_dir(cp), tool,
        "--name", cp.name, "--initial-cluster", members,
        "--initial-advertise-peer-urls", rec.peer_url(cp),
        "--initial-cluster-token", f"kindfix-{rec.rec.run_id}"], timeout=300)
    # saved once every member's ended (each_saved_once): redone, a staged restore is kept, and
    # a swap restores again from the snapshot (no member has started on its data yet)
    rec.done(f"staged:{cp.name}" if stage_only else f"restored:{cp.name}", save=False)


def _quiet_apiserver(rec: Recovery, cp: ClusterNode) -> None:
    """Once no kubelet runs, a kube-apiserver that answers no HTTP is stopped (lib/quiet-
    apiserver.sh): while the member is prepared (etcd-prepare-member.sh, beside the copy), else
    here before the members start (etcd-quiet-apiserver.sh, which stops the kubelet first: a
    continued run, or a node without systemctl).

    A real kube-apiserver opens its port before it dials etcd (pkg/controlplane/apiserver/
    config.go BuildGenericConfig: SecureServing before the storage factory, which waits up to
    20 s) and takes connections it does not serve: each call of a new kubelet to it ends in a
    10 s TLS handshake timeout, and a new kubelet was seen starting etcd only after those
    (realkind runs 11-13 and 17: a member's start took 9-20 s instead of ~1.5 s). Such an
    apiserver serves nothing while its etcd is parked (kubeadm's --etcd-servers is the node's
    own), so it is stopped while no kubelet runs, and the new kubelet (etcd-start-member.sh)
    starts it again. One that answers HTTP is past its storage set-up: it serves again once
    etcd is back, without a new start (~10 s on realkind), and is left alone. Asked once no
    kubelet runs, nothing starts or stops it until etcd starts: the answer holds. Not in each
    member's start: an ask that gets no answer costs its 0.5 s, and a stop its crictl calls,
    outside the members' one-by-one start."""
    out = rec.nodes[cp.name].exec(["sh", "-c", script("etcd-quiet-apiserver"),
                                   "kindfix-quiet-apiserver"], timeout=kubelet.TIMEOUT).text()
    _said_apiserver(rec, cp, out)


def _said_apiserver(rec: Recovery, cp: ClusterNode, out: str) -> None:
    """What lib/quiet-apiserver.sh printed: noted (asked), and said when it stopped one."""
    if APISERVER_ASKED not in out:
        return
    rec.ctx.apiservers_asked.add(cp.name)
    if APISERVER_STOPPED in out:
        rec.say(f"[{cp.name}] stopped its kube-apiserver while the kubelet is stopped: it "
                "answered no HTTP within 0.5 s (without etcd it takes connections and serves "
                "none, so each call of the new kubelet would wait 10 s); the kubelet starts it "
                "again with etcd")


def _start_member(rec: Recovery, cp: ClusterNode, last: bool) -> None:
    """The parked etcd.yaml back and the kubelet restarted, in one exec (etcd-start-member.sh);
    unless `last`, wait (bounded) until the member serves its peers before the next one starts.

    kubeadm runs etcd with the initial corruption check (`--experimental-initial-corrupt-check`
    for etcd 3.5, `--feature-gates=InitialCorruptCheck=true` for 3.6): a restarted member asks
    every peer for its hash before it serves its peer port, and a peer whose port is open (its
    listener is made before the check) but not served yet answers only once its own check is
    over. Two members checking at once wait on each other until the request times out (7 s:
    etcd server/embed/etcd.go StartEtcd, etcdserver/corrupt.go; seen on the test bed's real etcd
    3.5.1). Metrics are served after the peers: a member whose metrics answer serves its peers.
    A manifest without kubeadm's metrics listener is not waited for."""
    node = rec.nodes[cp.name]
    # the flags as observe read them (a rewrite changes addresses, not the metrics listener);
    # read only when observe found etcd.yaml parked already (a continued run)
    snap = rec.ctx.snapshots.get(cp.name)
    manifest = (snap.file(MANIFEST) if snap is not None else None) or rec.parked(cp)
    wait = 0 if last or METRICS_PORT not in manifest else SERVE_WAIT
    # the member starts only if its kubelet acts at once: a kubelet that started without an
    # API server may sit on the returned manifest (finding 1), and a fresh one also starts
    # the crash-looping apiserver without its back-off
    rec.say(f"[{cp.name}] restarting the kubelet (so it starts etcd on the restored data at "
            f"once){', then waiting until etcd serves' if wait else ''}")
    # the kubelet this run's park stopped (its apiserver was asked then) is not stopped again
    stopped = "stopped" if cp.name in rec.ctx.apiservers_asked else ""
    out = run(node, ["sh", "-c", script("etcd-start-member"), "kindfix-start-member", PARKED,
                     str(wait), MANIFEST, stopped], timeout=wait + kubelet.TIMEOUT).text()
    if NO_SYSTEMCTL in out:
        kubelet.no_systemctl(node, "so it starts etcd on the restored data", rec.say)
    elif wait and SERVING not in out:
        rec.say(f"etcd on {cp.name} does not serve yet after {wait} s; starting the next "
                "member anyway")


def _wait_leader(rec: Recovery, cp: ClusterNode) -> None:
    node = rec.nodes[cp.name]
    # every 0.25 s: a member started last elects in ~1 s, and each ask is one exec
    etcd.wait_until(lambda: has_leader(node), f"etcd on {cp.name} to have a leader", state.WAIT,
                    0.25)
    rec.say(f"{cp.name} is a member of the restored cluster")
    node.exec(["rm", "-f", SNAPSHOT])
