# etcd recovery (kindfix/recovery/): once etcd is stopped (parked), waits until no etcd process is
# left, then copies the data dir "$1" to "$2", checked, again when etcd ran during the copy.
# needs: wait-stopped copy-checked
set -e
wait_stopped 4
copy_checked "$1" "$2"
