# etcd recovery (kindfix/recovery/): "$1" the data dir, "$2" the etcd image, "$3" where the old
# member dir goes (never deleted), "$4" the tool (etcdutl or etcdctl), then the restore's flags.
# Restores "$1/.kindfix-snapshot.db" as this member, then swaps the member dir. A killed run
# repeats it from the snapshot (removed only later).
# needs: stage-restore
set -e
data=$1; img=$2; stale=$3; tool=$4; shift 4
stage_restore "$data" "$img" "$tool" "$@"
if [ -d "$data/member" ]; then
  mkdir -p "$stale"; aside=$(mktemp -d "$stale/member-$(date +%s)-XXXXXX")
  rmdir "$aside"; mv "$data/member" "$aside"
fi
mv "$data/.kindfix-restore/member" "$data/member"
rmdir "$data/.kindfix-restore"
