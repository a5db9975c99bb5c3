# etcd recovery (kindfix/recovery/snapshot.py): starts a member on its restored data once kindfix
# has put its etcd.yaml back. "$1" the parked copy (removed), "$2" seconds to wait until the member
# serves (0: no wait). The kubelet restarts so it acts at once (a kubelet that started without an
# API server may sit on a returned manifest, realkind finding 1; kindfix/kubelet.py). Then etcd's
# metrics (kubeadm's --listen-metrics-urls, 127.0.0.1 or [::1] port 2381, served only after the
# peer port) are asked every 0.1 s until they answer, then "@@kindfix-serving" is printed; after
# "$2" seconds it gives up quietly. Prints "@@kindfix no-systemctl" where there is no systemctl.
rm -f "$1"
if command -v systemctl >/dev/null 2>&1; then
  systemctl restart kubelet || exit
else
  echo "@@kindfix no-systemctl"
fi
end=$(( $(date +%s) + $2 ))
while [ "$2" -gt 0 ] && [ "$(date +%s)" -lt "$end" ]; do
  for host in 127.0.0.1 '[::1]'; do
    if curl -fs --max-time 1 -o /dev/null "http://$host:2381/metrics"; then
      echo "@@kindfix-serving"; exit 0
    fi
  done
  sleep 0.1
done
