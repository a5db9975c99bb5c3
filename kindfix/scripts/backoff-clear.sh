# Clearing the kubelet's CrashLoopBackOff (kindfix/backoff.py): for each static pod container
# name in "$@" prints one line "<name> <state>": "running", "cleared" (its exited containers
# removed: with none left the kubelet starts it at its next sync, kuberuntime doBackOff),
# "failed" (crictl rm refused) or "absent" (no container at all: e.g. its manifest is parked).
# One `crictl ps -a` for all of them, one `crictl rm` per pod to clear.
# needs: pod-containers
all=$(pod_containers)
for c; do
  if pod_runs "$all" "$c"; then
    echo "$c running"; continue
  fi
  ids=$(printf '%s\n' "$all" | awk -v n="$c" '$2 == "Exited" && $3 == n { print $1 }')
  # crictl prints hex IDs, one a line: split on purpose, one `crictl rm` for them all
  # shellcheck disable=SC2086
  if [ -z "$ids" ]; then echo "$c absent"
  elif crictl rm $ids >/dev/null 2>&1; then echo "$c cleared"
  else echo "$c failed"; fi
done
