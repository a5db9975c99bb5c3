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
park() (
  set -e
  mkdir -p "$2"
  if [ -f "$1" ]; then
    [ -f "$2/etcd.yaml" ] || cp -p "$1" "$2/etcd.yaml"
    rm -f "$1"
    echo @@kindfix-parked  # by this exec: undoing a failed preparation starts it again
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
  ids=$(crictl ps -q --name '^etcd$' 2>/dev/null) || true
  # shellcheck disable=SC2086  # one argument per container id
  [ -z "$ids" ] || crictl stop --timeout 10 $ids >/dev/null 2>&1 || true
)
