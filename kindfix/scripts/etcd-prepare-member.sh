# etcd recovery (kindfix/recovery/): one exec per member before a snapshot restore. "$1" etcd.yaml,
# "$2" the parked dir, "$3" the data dir, "$4" its copy, "$5" the etcd image, "$6" the tools to
# try for the status, in order ("etcdutl etcdctl"). Parks and stops etcd, waits (bounded) until
# no etcd process is left, copies and checks the data dir, then prints the backend's snapshot
# status after the line "@@kindfix-status". Its exit code is the status's (3: no tool); no
# marker: parking or copying failed. Once park stopped the kubelet, quiet_apiserver runs beside
# the wait and the copy (its 0.5 s ask off the members' start), and its line comes before the
# status marker: nothing starts or stops the kube-apiserver until the kubelet starts again.
# needs: park wait-stopped copy-checked snapshot-status quiet-apiserver temp-cleanup
set -e
rm -f "$2/.kindfix-kubelet-stopped"
park "$1" "$2"  # its output goes out as it comes: "@@kindfix-parked" must reach kindfix at once
asking=
if [ -e "$2/.kindfix-kubelet-stopped" ]; then
  rm -f "$2/.kindfix-kubelet-stopped"
  t=$(mktemp)
  quiet_apiserver > "$t" 2>/dev/null &
  asking=$!
  wait_stopped 1  # no kubelet runs
else
  wait_stopped 4
fi
copy_checked "$3" "$4"
if [ -n "$asking" ]; then wait "$asking"; cat "$t"; fi
echo @@kindfix-status
snapshot_status "$3" "$5" "$6"
