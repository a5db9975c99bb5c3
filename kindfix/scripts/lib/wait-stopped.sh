# wait_stopped: waits (bounded) until etcd is stopped for good: no etcd process in 4 checks in a
# row, 0.25 s apart. One check is not enough: a kubelet sync that read the manifest before it was
# parked still restarts the container that `crictl stop` ended (seen on the test bed: the copy
# then differed from the original because the restarted etcd wrote to it). Exit 6 after 120 s.
# needs: etcd-running
wait_stopped() (
  i=0; quiet=0
  while [ "$quiet" -lt 4 ]; do
    if [ -n "$(etcd_running)" ]; then quiet=0; else quiet=$((quiet+1)); fi
    i=$((i+1))
    [ "$i" -le 480 ] || { echo "etcd still runs 120 s after it was stopped" >&2; exit 6; }
    sleep 0.25
  done
)
