# etcd recovery (kindfix/recovery/snapshot.py _quiet_apiserver): before the members start, on
# every member whose kube-apiserver this run did not ask while preparing (etcd-prepare-member.sh):
# the kubelet is stopped (again, for a continued run), then quiet_apiserver (lib). The new kubelet
# that etcd-start-member.sh starts finds a stopped kube-apiserver and starts it at once (a new
# kubelet has no back-off). Prints "@@kindfix no-systemctl" where there is no systemctl (then the
# running kubelet restarts it under its back-off, as it would have anyway).
# needs: quiet-apiserver
if command -v systemctl >/dev/null 2>&1; then
  # not stopped: not asked (no marker), and etcd-start-member.sh stops it itself
  systemctl stop kubelet || { echo "kindfix: systemctl stop kubelet failed" >&2; exit 1; }
else
  echo "@@kindfix no-systemctl"
fi
quiet_apiserver
