# Restarts each named static pod ("$@") whose manifest did not change (it reads a changed
# kubeconfig or certificate only at start): stops its running containers, then removes the
# exited ones (lib/stop-then-remove.sh says why). A failed stop fails the step with crictl's exit
# code. A kubelet restart would not do it: a new kubelet adopts running containers whose pod is
# unchanged. Absent pods are skipped.
# needs: stop-then-remove
for pod; do
  stop_then_remove "$pod" strict || exit
done
