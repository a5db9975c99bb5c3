# etcd recovery (kindfix/recovery/): the tool's half of etcd-restore.sh, same arguments. The
# restored member waits in "$1/.kindfix-restore"; the member's own data is not touched (a later
# etcd-restore.sh only swaps it in: it skips the tool then).
# needs: stage-restore
set -e
data=$1; img=$2; tool=$4; shift 4
stage_restore "$data" "$img" "$tool" "$@"
