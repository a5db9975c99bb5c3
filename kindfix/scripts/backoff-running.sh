# kindfix/backoff.py, waiting after the clear: prints the names of the static pod containers in
# "$@" that run now, one a line (one `crictl ps -a` for all of them).
# needs: pod-containers
all=$(pod_containers)
for c; do
  if pod_runs "$all" "$c"; then echo "$c"; fi
done
