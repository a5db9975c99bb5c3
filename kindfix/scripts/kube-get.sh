# kindfix verify (kindfix/verify.py): a GET through an apiserver with a kubeconfig's credentials.
# "$1" kubeconfig, "$2" server (empty: the kubeconfig's own), "$3" path. Prints
# "@@status <http code or curl error>", the body, then "@@now <node clock>" (verify.parse_kube_get).
# Inline *-data or file paths, as kubeadm and kind write them. Bounded by curl's --max-time.
k=$1; d=$(mktemp -d); trap 'rm -rf "$d"' EXIT
get() { sed -n "s|^ *$1: *||p" "$k" | head -n1 | tr -d '"'; }
pick() { v=$(get "$1-data"); if [ -n "$v" ]; then printf %s "$v" | base64 -d > "$2"
         else p=$(get "$1"); [ -z "$p" ] || cp "$p" "$2"; fi; }
pick certificate-authority "$d/ca"; pick client-certificate "$d/crt"; pick client-key "$d/key"
server=${2:-$(get server)}
code=$(curl -sS --max-time 5 --cacert "$d/ca" --cert "$d/crt" --key "$d/key" -o "$d/body" \
  -w '%{http_code}' "$server$3" 2>"$d/err") || code="error $(tail -n1 "$d/err")"
echo "@@status $code"; cat "$d/body" 2>/dev/null; echo; echo "@@now $(date +%s)"
