# etcd recovery (kindfix/recovery/): one exec per member before a snapshot restore. "$1" etcd.yaml,
# "$2" the parked dir, "$3" the data dir, "$4" its copy, "$5" the etcd image, "$6" the tools to
# try for the status, in order ("etcdutl etcdctl"). Parks and stops etcd, waits (bounded) until
# no etcd process is left, copies and checks the data dir, then prints the backend's snapshot
# status after the line "@@kindfix-status". Its exit code is the status's (3: no tool); no
# marker: parking or copying failed. Park also asks the kube-apiserver and stops it when it
# answers no HTTP (lib/park.sh "quiet"): the ask and its stop off the members' one-by-one start;
# nothing starts or stops the kube-apiserver afterwards until the kubelet starts again.
# needs: park wait-stopped copy-checked snapshot-status
set -e
rm -f "$2/.kindfix-kubelet-stopped"
park "$1" "$2" quiet  # its output goes as it comes: "@@kindfix-parked" must reach kindfix at once
if [ -e "$2/.kindfix-kubelet-stopped" ]; then
  rm -f "$2/.kindfix-kubelet-stopped"
  wait_stopped 1  # no kubelet runs
else
  wait_stopped 4
fi
copy_checked "$3" "$4"
echo @@kindfix-status
snapshot_status "$3" "$5" "$6"
