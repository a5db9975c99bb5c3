# tool_run TOOL ARGS...: the etcd image's own tool, run offline from the node through containerd
# (`ctr run`, on every kind node); the data dir "$data" is bind-mounted at the same path, the
# image is "$img". Stdout kept, stderr in the file "$err" (the caller makes and removes it).
# shellcheck disable=SC2154  # $data, $img and $err are the caller's
tool_run() {
  t=$1; shift
  ctr -n k8s.io run --rm --net-host \
    --mount "type=bind,src=$data,dst=$data,options=rbind:rw" \
    "$img" "kindfix-etcd-$$-$t" "$t" "$@" 2>"$err"
}
