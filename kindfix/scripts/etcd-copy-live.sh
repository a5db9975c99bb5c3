# etcd recovery (kindfix/recovery/member_update.py): copies the data dir "$1" to "$2" (kept when
# there) while etcd still runs: the copy is not compared with the original, which changes under
# it. Exit codes: lib/copy-data.sh.
# needs: copy-data
copy_data "$1" "$2" live
