# etcd recovery (kindfix/recovery/): "$1" the data dir, "$2" the etcd image, "$3" the member's
# backup dir (its checked copy in "$3/data"; a member that differs from it goes to "$3/stale"),
# "$4" the tool (etcdutl or etcdctl), then the restore's flags. Restores "$1/.kindfix-snapshot.db"
# as this member, then swaps the member dir. A killed run repeats it from the snapshot (removed
# only later).
# needs: stage-restore set-aside
set -e
data=$1; img=$2; backup=$3; tool=$4; shift 4
stage_restore "$data" "$img" "$tool" "$@"
set_aside "$data" "$backup"
mv "$data/.kindfix-restore/member" "$data/member"
rmdir "$data/.kindfix-restore"
