# stop_then_remove POD HOW: stops the running containers of static pod POD, then removes its
# exited ones. The removal matters: a real kubelet counts a `crictl stop` as a failure of the
# container and restarts it only after its CrashLoopBackOff (>= 10 s, doubling; realkind finding
# 2b), and it takes the back-off from the newest exited container (kuberuntime doBackOff): with
# none left, its next sync starts the container at once. A pod with no container is skipped.
# HOW "strict": a failed `crictl stop` is returned (its stderr shown), the caller fails the step;
# HOW "lenient": each stop is bounded to 10 s, quiet, and a failure ignored (the caller goes on:
# it stopped the kubelet and must start it again).
# The IDs are split on purpose (the SC2086 directives), one argv word each: crictl prints hex
# IDs, one a line (no glob characters, no spaces), and one `crictl stop`/`crictl rm` takes them
# all. The directives sit inside the function: at the top of a composed script they would cover
# the whole of it.
stop_then_remove() {
  ids=$(crictl ps -q --name "^$1\$" 2>/dev/null)
  # shellcheck disable=SC2086
  if [ -n "$ids" ]; then
    case $2 in
      strict) crictl stop $ids >/dev/null || return ;;
      lenient) crictl stop --timeout 10 $ids >/dev/null 2>&1 || true ;;
      *) echo "stop_then_remove: HOW is strict or lenient, not $2" >&2; return 2 ;;
    esac
  fi
  old=$(crictl ps -a -q --state exited --name "^$1\$" 2>/dev/null)
  # shellcheck disable=SC2086
  [ -z "$old" ] || crictl rm $old >/dev/null 2>&1 || true
}
