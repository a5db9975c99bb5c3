# The etcd probe (kindfix/probes.py ETCD_PROBE, parsed by probes.parse_etcd_probe): asks the
# local etcd member over its JSON gateway (curl is on every kind node; etcdctl is not, it lives in
# the etcd image). Bounded by curl's --max-time. Without quorum the client port hangs, so the
# metrics/health endpoint on 127.0.0.1:2381 is asked first, and a member whose metrics say it has
# no leader is not asked on the client port at all. Prints sections
# "@@kindfix-section <name> <exit code>" and their raw output: member-list, status, health,
# metrics, end. Fixed text, no arguments: a dump records its output keyed by argv.
pki=/etc/kubernetes/pki/etcd
# kubeadm makes an IPv6 member listen on [::1], never on 127.0.0.1
q() { for h in 127.0.0.1 '[::1]'; do
  curl -sS --max-time "$qt" --cacert "$pki/ca.crt" --cert "$pki/healthcheck-client.crt" \
    --key "$pki/healthcheck-client.key" -X POST -d '{}' "https://$h:2379$1" && return 0
  rc=$?; [ "$rc" = 7 ] || return "$rc"
done; return 7; }
m() { for h in 127.0.0.1 '[::1]'; do
  curl -sS --max-time 2 "http://$h:2381$1" && return 0
  rc=$?; [ "$rc" = 7 ] || return "$rc"
done; return 7; }
section() { printf '\n@@kindfix-section %s %s\n' "$1" "$2"; }
d=$(mktemp -d); trap 'rm -rf "$d"' EXIT
# metrics and health first (plain HTTP on loopback: fast, and they answer without quorum)
(m /health > "$d/3" 2>&1; echo $? > "$d/3.rc") &
(m /metrics 2>&1 | grep -E '^etcd_(server_has_leader|server_is_leader|debugging_mvcc_current_revision|debugging_mvcc_keys_total|server_proposals_applied_total|mvcc_db_total_size_in_bytes) ' > "$d/4"; echo $? > "$d/4.rc") &
wait
# a member that reports no leader hangs on its client port until curl gives up: skip it. One
# whose metrics port refuses while etcd.yaml asks for it (kubeadm's --listen-metrics-urls) is
# starting: etcd (embed.StartEtcd) binds its client port first but serves it, then opens the
# metrics listener, only once its server is set up; asked meanwhile, the client port takes the
# connection and answers nothing (1 s lost per probe on the bed). Not asked then; a member with
# no metrics answer otherwise is asked briefly.
qt=3; [ "$(cat "$d/4.rc")" = 0 ] || qt=1
if [ "$(cat "$d/3.rc")" = 7 ] && \
    grep -q -e '--listen-metrics-urls=' /etc/kubernetes/manifests/etcd.yaml 2>/dev/null; then
  for i in 1 2; do
    echo "skipped: etcd is starting (its metrics port refuses connections)" > "$d/$i"
    echo 7 > "$d/$i.rc"
  done
elif grep -q '^etcd_server_has_leader 0' "$d/4"; then
  for i in 1 2; do echo "skipped: etcd reports no leader" > "$d/$i"; echo 28 > "$d/$i.rc"; done
else
  (q /v3/cluster/member/list > "$d/1" 2>&1; echo $? > "$d/1.rc") &
  (q /v3/maintenance/status > "$d/2" 2>&1; echo $? > "$d/2.rc") &
  wait
fi
i=1
for name in member-list status health metrics; do
  section "$name" "$(cat "$d/$i.rc")"; cat "$d/$i"; i=$((i+1))
done
section end 0
