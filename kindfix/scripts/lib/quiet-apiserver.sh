# quiet_apiserver: once no kubelet runs, asks the node's kube-apiserver for its /healthz (0.5 s at
# most: one serving HTTP answers, 500 without etcd, in milliseconds); when no HTTP answer came its
# running container is stopped. Prints "@@kindfix apiserver-stopped" when it stopped one, else
# "@@kindfix apiserver-asked". kindfix/recovery/snapshot.py _quiet_apiserver says why.
quiet_apiserver() (
  if curl -sk --max-time 0.5 -o /dev/null https://127.0.0.1:6443/healthz; then
    echo "@@kindfix apiserver-asked"; exit 0
  fi
  api=$(crictl ps -q --state running --name '^kube-apiserver$' 2>/dev/null)
  # crictl prints hex IDs, one a line: split on purpose
  # shellcheck disable=SC2086
  if [ -n "$api" ] && crictl stop $api >/dev/null 2>&1; then
    echo "@@kindfix apiserver-stopped"
  else
    echo "@@kindfix apiserver-asked"
  fi
)
