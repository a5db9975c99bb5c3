# etcd recovery (kindfix/recovery/snapshot.py): starts a member on its restored data. "$1" the
# parked copy, "$2" seconds to wait until the member serves (0: no wait), "$3" etcd.yaml. The
# kubelet is stopped (unless "$4" is "stopped": this run's park stopped it; again for a
# continued run), the parked copy goes back as etcd.yaml (atomically: a dot file beside it,
# which the kubelet's file source skips, renamed over; its mode kept) unless etcd.yaml is there
# already (a continued run), the parked copy goes, and the kubelet starts again: only the new
# kubelet ever sees the manifest, and acts on it at once (a kubelet that started without an API
# server may sit on a returned manifest, realkind finding 1; kindfix/kubelet.py). Put back while
# the kubelet ran, the running one started etcd and was restarted in the middle of it; the next
# one then had two sandboxes or containers for the pod (seen on the test bed as etcd down for a
# back-off). Then etcd's metrics (kubeadm's --listen-metrics-urls, 127.0.0.1 or [::1] port 2381,
# served only after the peer port) are asked every 0.1 s until they answer, then
# "@@kindfix-serving" is printed; after "$2" seconds it gives up quietly. Prints
# "@@kindfix no-systemctl" where there is no systemctl. Exit 5: neither file, or the copy failed
# (the kubelet is started again all the same). A kube-apiserver that served no HTTP was stopped
# before (etcd-quiet-apiserver.sh).
# needs: durable
kubelet_unit() { if [ -n "$sd" ]; then systemctl "$1" kubelet; fi; }
sd=; if command -v systemctl >/dev/null 2>&1; then sd=1; else echo "@@kindfix no-systemctl"; fi
[ "$4" = stopped ] || kubelet_unit stop || exit
if [ -f "$1" ]; then
  d=$(dirname "$3"); t="$d/.kindfix-etcd.yaml.tmp"
  if ! { cp -p "$1" "$t" && durable "$t" && mv -f "$t" "$3"; }; then
    rm -f "$t"; echo "kindfix: could not put $1 back as $3" >&2; kubelet_unit start; exit 5
  fi
  durable "$d"
elif [ ! -f "$3" ]; then
  echo "kindfix: neither $3 nor $1 is there" >&2; kubelet_unit start; exit 5
fi
rm -f "$1"
kubelet_unit start || exit
end=$(( $(date +%s) + $2 ))
while [ "$2" -gt 0 ] && [ "$(date +%s)" -lt "$end" ]; do
  for host in 127.0.0.1 '[::1]'; do
    if curl -fs --max-time 1 -o /dev/null "http://$host:2381/metrics"; then
      echo "@@kindfix-serving"; exit 0
    fi
  done
  sleep 0.1
done
