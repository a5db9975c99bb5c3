# park MANIFEST PARKED_DIR: parks the manifest, stops the kubelet, then stops the container the
# way the kubelet would (SIGTERM, SIGKILL after 10 s): a graceful stop flushes etcd's backend.
# Stopping the kubelet is what makes the stop last: a kubelet that started while no API server
# answered never terminates the pod of a removed manifest and restarts its stopped container
# under back-off 3-7 s later (realkind findings 1 and 2; kubernetes#116880). Stopped rather than
# restarted: no kubelet runs until etcd is to start again, and whatever starts it then starts the
# kubelet anew (etcd-start-member.sh, kindfix/recovery/force_new.py, etcd-unprepare.sh): one
# kubelet start per member instead of two (~1.4 s of a 3 CP repair on the 2-core test machine,
# where every start competes for the CPU). Containers keep running while the kubelet is stopped.
# Prints "@@kindfix-parked" when this call parked it (at once: a caller killed later still knows),
# "@@kindfix no-systemctl" where there is no systemctl (then only wait_stopped's 4 quiet checks
# guard the copy); leaves PARKED_DIR/.kindfix-kubelet-stopped when the stop worked.
# With "$3" "quiet" (etcd-prepare-member.sh) the node's kube-apiserver is asked (apiserver_answers)
# while the kubelet stops, and one that answered no HTTP is stopped with etcd, in the same crictl
# call, once the kubelet is stopped; prints "@@kindfix apiserver-stopped" when it was, else
# "@@kindfix apiserver-asked" (kindfix/recovery/snapshot.py _quiet_apiserver says why). Not asked
# where the kubelet was not stopped. One `crictl ps -a` for both (pod_containers).
# needs: pod-containers quiet-apiserver
park() (
  set -e
  mkdir -p "$2"
  if [ -f "$1" ]; then
    [ -f "$2/etcd.yaml" ] || cp -p "$1" "$2/etcd.yaml"
    rm -f "$1"
    echo @@kindfix-parked  # by this exec: undoing a failed preparation starts it again
  fi
  answer=
  if [ "$3" = quiet ] && command -v systemctl >/dev/null 2>&1; then
    answer=$(mktemp)
    { if apiserver_answers; then echo http; else echo none; fi; } > "$answer" &
  fi
  if command -v systemctl >/dev/null 2>&1; then
    if systemctl stop kubelet >/dev/null 2>&1; then
      : > "$2/.kindfix-kubelet-stopped"
    else
      echo "kindfix: systemctl stop kubelet failed" >&2
    fi
  else
    echo "@@kindfix no-systemctl"
  fi
  all=$(pod_containers)
  ids=$(printf '%s\n' "$all" | awk '$2 == "Running" && $3 == "etcd" { print $1 }')
  api=
  if [ -n "$answer" ]; then
    wait
    if [ -e "$2/.kindfix-kubelet-stopped" ] && [ "$(cat "$answer")" = none ]; then
      api=$(printf '%s\n' "$all" | awk '$2 == "Running" && $3 == "kube-apiserver" { print $1 }')
    fi
    rm -f "$answer"
  fi
  # etcd and the kube-apiserver side by side: two crictl calls (their grace periods differ), at
  # once (one after the other they took ~0.9 s of each member's preparation on the test bed)
  stopping=
  if [ -n "$ids" ]; then
    # crictl prints hex IDs, one a line: split on purpose
    # shellcheck disable=SC2086
    { crictl stop --timeout 10 $ids >/dev/null 2>&1 || true; } &
    stopping=$!
  fi
  said=
  # killed, no grace period: a real kube-apiserver still dialling etcd ends only when its dial
  # does (realkind run 22: `crictl stop --timeout 10` took the whole 10 s)
  # shellcheck disable=SC2086
  if [ -n "$api" ] && crictl stop $api >/dev/null 2>&1; then
    said="@@kindfix apiserver-stopped"
  elif [ -n "$answer" ]; then
    said="@@kindfix apiserver-asked"
  fi
  [ -z "$stopping" ] || wait "$stopping"
  [ -z "$said" ] || echo "$said"
)
