# apiserver_answers: whether the node's kube-apiserver answers HTTP on its /healthz within 0.5 s
# (one serving HTTP answers, 500 without etcd, in milliseconds).
# quiet_apiserver: once no kubelet runs, stops the kube-apiserver's running container when it
# answers no HTTP. Prints "@@kindfix apiserver-stopped" when it stopped one, else
# "@@kindfix apiserver-asked". kindfix/recovery/snapshot.py _quiet_apiserver says why.
apiserver_answers() {
  curl -sk --max-time 0.5 -o /dev/null https://127.0.0.1:6443/healthz
}
quiet_apiserver() (
  if apiserver_answers; then
    echo "@@kindfix apiserver-asked"; exit 0
  fi
  api=$(crictl ps -q --state running --name '^kube-apiserver$' 2>/dev/null)
  # crictl prints hex IDs, one a line: split on purpose; no grace period (lib/park.sh says why)
  # shellcheck disable=SC2086
  if [ -n "$api" ] && crictl stop $api >/dev/null 2>&1; then
    echo "@@kindfix apiserver-stopped"
  else
    echo "@@kindfix apiserver-asked"
  fi
)
