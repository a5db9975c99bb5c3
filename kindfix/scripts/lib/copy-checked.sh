# copy_checked SRC DST: copy_data, and when the copy differs from the original (etcd ran again
# meanwhile) wait until it is stopped again and copy again: at most 3 copies.
# needs: copy-data wait-stopped
copy_checked() (
  n=1
  while :; do
    # not `copy_data ... || rc=$?`: POSIX sh ignores set -e inside a command under `||`
    set +e
    copy_data "$1" "$2"; rc=$?
    set -e
    [ "$rc" -eq 4 ] && [ "$n" -lt 3 ] || exit "$rc"
    n=$((n+1))
    echo "etcd ran during the copy of $1; copying again once it is stopped" >&2
    wait_stopped 4
  done
)
