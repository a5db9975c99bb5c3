# wait_stopped QUIET: waits (bounded) until etcd is stopped for good: no etcd process in QUIET
# checks in a row, 0.25 s apart. 4 where the kubelet that ran etcd may still run: a sync that read
# the manifest before it was parked restarts the container that `crictl stop` ended (seen on the
# test bed: the copy then differed from the original because the restarted etcd wrote to it).
# 1 once park stopped the kubelet: nothing starts etcd again. Exit 6 after 120 s.
# needs: etcd-running
wait_stopped() (
  i=0; quiet=0
  while :; do
    if [ -n "$(etcd_running)" ]; then quiet=0; else quiet=$((quiet+1)); fi
    [ "$quiet" -lt "$1" ] || exit 0  # no sleep after the last check
    i=$((i+1))
    [ "$i" -lt 480 ] || { echo "etcd still runs 120 s after it was stopped" >&2; exit 6; }
    sleep 0.25
  done
)
