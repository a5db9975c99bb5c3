# etcd recovery (kindfix/recovery/): copies the data dir "$1" to "$2" (kept when there), checked
# against the original (etcd is stopped). Exit codes: lib/copy-data.sh.
# needs: copy-data
copy_data "$1" "$2"
