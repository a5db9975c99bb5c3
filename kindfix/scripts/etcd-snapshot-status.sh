# etcd recovery (kindfix/recovery/): "$1" the data dir, "$2" the etcd image, "$3" the tools to try
# in order ("etcdutl etcdctl"), "$4" etcd.yaml. Prints the tool that read the member's backend,
# then its `snapshot status -w json`. Exit 3: no tool could. Exit 4: etcd.yaml is there, so etcd
# may run on that data: not read (bbolt opens the backend under a file lock and waits, with no
# timeout, for as long as a running etcd holds it).
# needs: snapshot-status
if [ -e "$4" ]; then
  echo "kindfix: $4 is there: etcd may be running on $1" >&2
  exit 4
fi
snapshot_status "$1" "$2" "$3"
