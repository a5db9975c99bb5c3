# One request to an apiserver with a kubeconfig's credentials (inline *-data or file paths, as
# kubeadm and kind write them), through curl (on every kind node; kubectl's place varies).
# "$1" kubeconfig, "$2" server (empty: the kubeconfig's own), "$3" path, "$4" method (default
# GET; any other sends standard input as the JSON body).
# Prints "@@status <http code or curl error>", the body, then "@@now <node clock>".
k=$1
path=$3
method=${4:-GET}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
get() { sed -n "s|^ *$1: *||p" "$k" | head -n1 | tr -d '"'; }
pick() {
  v=$(get "$1-data")
  if [ -n "$v" ]; then
    printf %s "$v" | base64 -d > "$2"
  else
    p=$(get "$1")
    [ -z "$p" ] || cp "$p" "$2"
  fi
}
pick certificate-authority "$d/ca"
pick client-certificate "$d/crt"
pick client-key "$d/key"
server=${2:-$(get server)}
set -- -sS --max-time 5 --cacert "$d/ca" --cert "$d/crt" --key "$d/key" -o "$d/body" \
  -w '%{http_code}'
if [ "$method" != GET ]; then
  cat > "$d/in"
  set -- "$@" -X "$method" -H 'Content-Type: application/json' --data-binary "@$d/in"
fi
code=$(curl "$@" "$server$path" 2>"$d/err") || code="error $(tail -n1 "$d/err")"
echo "@@status $code"
cat "$d/body" 2>/dev/null
echo
echo "@@now $(date +%s)"
