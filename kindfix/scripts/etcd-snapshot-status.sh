# etcd recovery (kindfix/recovery/): "$1" the data dir, "$2" the etcd image, "$3" the tools to try
# in order ("etcdutl etcdctl"). Prints the tool that read the member's backend, then its
# `snapshot status -w json`. Exit 3: no tool could.
# needs: snapshot-status
snapshot_status "$1" "$2" "$3"
