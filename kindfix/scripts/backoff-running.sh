# kindfix/backoff.py, waiting after the clear: prints the names of the static pod containers in
# "$@" that run now, one a line (one `crictl ps -a` for all of them).
# needs: pod-containers
all=$(pod_containers)
runs() { printf '%s\n' "$all" | awk -v n="$1" '$2 == "Running" && $3 == n { f = 1 } END { exit !f }'; }
for c; do
  if runs "$c"; then echo "$c"; fi
done
