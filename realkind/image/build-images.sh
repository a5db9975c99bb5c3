#!/bin/bash
# build-images.sh: the realkind images, from the binaries of build-bins.sh and Debian packages.
#   - realkind/node:<KUBE_VERSION>-<key>: kind-compatible node image (what `kind build node-image`
#     would make, done our own way): Debian rootfs + systemd, our files, the binaries, and the
#     component images imported into containerd (namespace k8s.io, pinned, not unpacked).
#   - docker.io/kindest/haproxy:v20230606-42a2262b: the LB image kind v0.30 runs, from Debian haproxy.
# Cached: an image whose tag (hash of versions, recipe files and binaries' cache dirs) exists is
# not rebuilt. Prints the node image tag on stdout (last line).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
. "$root/versions.env"
CACHE=${REALKIND_CACHE:-/var/cache/realkind}
BIN=$CACHE/bin/current
export DOCKER_BUILDKIT=0
LABEL=dev.kindfix.realkind=1
log() { echo "images: $*" >&2; }

if [ "${1:-}" = lb ]; then ONLY_LB=1; else ONLY_LB=; fi
NODE_BINS="kubeadm kubelet kubectl containerd containerd-shim-runc-v2 ctr crictl"
COMPONENT_BINS="kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd etcdctl etcdutl coredns pause"
for b in $NODE_BINS $COMPONENT_BINS; do
  [ -n "$ONLY_LB" ] && break
  [ -x "$BIN/$b" ] || { echo "images: missing binary $BIN/$b (run build-bins.sh)" >&2; exit 1; }
done

bins_id=$(for b in $NODE_BINS $COMPONENT_BINS; do echo "$b $(readlink -f "$BIN/$b")"; done)
recipe=$( (cd "$here" && find . -type f ! -name '*.pyc' | LC_ALL=C sort | xargs sha256sum) )
key=$(printf '%s\n' "$(cat "$root/versions.env")" "$bins_id" "$recipe" | sha256sum | cut -c1-12)
NODE_TAG="$NODE_IMAGE_REPO:$KUBE_VERSION-$key"
TOOLS_TAG="docker.io/realkind/tools:$key"

# ---- the load balancer image (independent of the binaries) ----
build_lb() {
  local lbkey
  lbkey=$(cat "$here/lb/"* "$0" | sha256sum | cut -c1-12)
  if [ "$(docker image inspect -f '{{index .Config.Labels "dev.kindfix.realkind.key"}}' "$HAPROXY_IMAGE" 2>/dev/null)" = "$lbkey" ]; then
    log "lb image cached ($HAPROXY_IMAGE)"; return
  fi
  local base ctx
  base=$("$here/rootfs.sh" lb "$here/lb/packages.txt")
  ctx=$(mktemp -d "$CACHE/lbctx.XXXX")
  cp "$here/lb/haproxy.cfg" "$here/lb/realkind-limits.cfg" "$ctx/"
  cat > "$ctx/Dockerfile" <<EOF
FROM $base
RUN mkdir -p /usr/local/etc/haproxy /run/haproxy
COPY haproxy.cfg realkind-limits.cfg /usr/local/etc/haproxy/
LABEL $LABEL dev.kindfix.realkind.key=$lbkey
STOPSIGNAL SIGUSR1
ENTRYPOINT ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/realkind-limits.cfg", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
EOF
  docker build -q -t "$HAPROXY_IMAGE" "$ctx" >/dev/null
  rm -rf "$ctx"
  log "lb image built ($HAPROXY_IMAGE)"
}

# ---- component images: scratch images holding static binaries ----
scratch_image() {  # scratch_image TAG ENTRYPOINT_JSON DEST:BIN...
  local tag=$1 ep=$2; shift 2
  local d spec
  d=$(mktemp -d "$CACHE/img.XXXX")
  mkdir -p "$d/tmp" "$d/etc" && chmod 1777 "$d/tmp"
  echo 'root:x:0:0:root:/root:/sbin/nologin' > "$d/etc/passwd"
  echo 'nonroot:x:65532:65532::/home/nonroot:/sbin/nologin' >> "$d/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' > "$d/etc/group"
  for spec in "$@"; do
    install -D -m 0755 "$BIN/${spec#*:}" "$d/${spec%%:*}"
  done
  local change=(-c "LABEL $LABEL")
  [ -n "$ep" ] && change+=(-c "ENTRYPOINT $ep")
  tar -C "$d" -c . | docker import "${change[@]}" - "$tag" >/dev/null
  rm -rf "$d"
}

build_components() {
  local out=$1
  local v=$KUBE_VERSION
  scratch_image "registry.k8s.io/kube-apiserver:$v" '["/usr/local/bin/kube-apiserver"]' usr/local/bin/kube-apiserver:kube-apiserver
  scratch_image "registry.k8s.io/kube-controller-manager:$v" '["/usr/local/bin/kube-controller-manager"]' usr/local/bin/kube-controller-manager:kube-controller-manager
  scratch_image "registry.k8s.io/kube-scheduler:$v" '["/usr/local/bin/kube-scheduler"]' usr/local/bin/kube-scheduler:kube-scheduler
  scratch_image "registry.k8s.io/etcd:$ETCD_IMAGE_TAG" '' usr/local/bin/etcd:etcd usr/local/bin/etcdctl:etcdctl usr/local/bin/etcdutl:etcdutl
  scratch_image "registry.k8s.io/coredns/coredns:$COREDNS_VERSION" '["/coredns"]' coredns:coredns
  scratch_image "registry.k8s.io/pause:$PAUSE_IMAGE_TAG" '["/pause"]' pause:pause
  # kube-proxy needs iptables/conntrack; the pod network daemon needs bash, curl, jq, ip:
  # one Debian-based tools image carries both (tagged twice)
  local ctx
  ctx=$(mktemp -d "$CACHE/toolsctx.XXXX")
  cp "$BIN/kube-proxy" "$here/tools/realkind-cni" "$here/tools/iptables-select" "$ctx/"
  cat > "$ctx/Dockerfile" <<EOF
FROM $ROOTFS
COPY kube-proxy realkind-cni /usr/local/bin/
COPY iptables-select /usr/local/sbin/
RUN cd /usr/local/sbin && for t in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do ln -s iptables-select \$t; done
LABEL $LABEL
EOF
  docker build -q -t "$TOOLS_TAG" "$ctx" >/dev/null
  docker tag "$TOOLS_TAG" "registry.k8s.io/kube-proxy:$v"
  rm -rf "$ctx"
  docker save -o "$out" \
    "registry.k8s.io/kube-apiserver:$v" "registry.k8s.io/kube-controller-manager:$v" \
    "registry.k8s.io/kube-scheduler:$v" "registry.k8s.io/kube-proxy:$v" \
    "registry.k8s.io/etcd:$ETCD_IMAGE_TAG" "registry.k8s.io/coredns/coredns:$COREDNS_VERSION" \
    "registry.k8s.io/pause:$PAUSE_IMAGE_TAG" "$TOOLS_TAG"
}

build_node() {
  local ctx pre cid
  ctx=$(mktemp -d "$CACHE/nodectx.XXXX")
  trap 'rm -rf "${ctx:-}"; [ -n "${cid:-}" ] && docker rm -f -v "$cid" >/dev/null 2>&1 || true' RETURN EXIT
  cp -a "$here/files" "$ctx/files"
  sed -i "s#REALKIND_TOOLS_IMAGE#$TOOLS_TAG#" "$ctx/files/kind/manifests/default-cni.yaml"
  echo "$KUBE_VERSION" > "$ctx/files/kind/version"
  mkdir -p "$ctx/bin"
  for b in $NODE_BINS; do cp "$BIN/$b" "$ctx/bin/"; done
  cat > "$ctx/Dockerfile" <<EOF
FROM $ROOTFS
COPY files/ /
COPY bin/kubeadm bin/kubelet bin/kubectl /usr/bin/
COPY bin/containerd bin/containerd-shim-runc-v2 bin/ctr bin/crictl /usr/local/bin/
RUN mkdir -p /opt/cni/bin /etc/cni/net.d /var/lib/kubelet /etc/kubernetes/manifests \\
 && for p in host-local loopback ptp portmap; do cp /usr/lib/cni/\$p /opt/cni/bin/; done \\
 && systemctl enable containerd.service kubelet.service \\
 && systemctl mask getty@.service console-getty.service systemd-logind.service 2>/dev/null; true
ENV container=docker
STOPSIGNAL SIGRTMIN+3
LABEL $LABEL
ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]
EOF
  pre="realkind/node-pre:$key"
  docker build -q -t "$pre" "$ctx" >/dev/null
  log "node pre-image $pre; importing component images into its containerd"
  # --init: an exited containerd must be reaped, or pgrep keeps seeing it
  cid=$(docker run -d --init --label "$LABEL" --security-opt seccomp=unconfined --entrypoint=sleep "$pre" infinity)
  docker exec "$cid" bash -c 'nohup containerd >/tmp/containerd.log 2>&1 &'
  docker exec "$cid" bash -c 'for i in $(seq 1 60); do [ -S /run/containerd/containerd.sock ] && ctr version >/dev/null 2>&1 && exit 0; sleep 0.5; done; cat /tmp/containerd.log; exit 1'
  docker exec -i "$cid" ctr --namespace=k8s.io images import --label=io.cri-containerd.pinned=pinned \
    --all-platforms --no-unpack --digests - < "$COMPONENTS_TAR" >/dev/null
  docker exec "$cid" ctr --namespace=k8s.io images list -q | grep -v '^sha256:' >&2
  docker exec "$cid" bash -c 'pkill -x containerd; for i in $(seq 1 40); do pgrep -x containerd >/dev/null || exit 0; sleep 0.25; done; exit 1'
  docker commit --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' "$cid" "$NODE_TAG" >/dev/null
  docker rm -f -v "$cid" >/dev/null && cid=
  docker rmi "$pre" >/dev/null
}

start=$(date +%s)
build_lb
[ -n "$ONLY_LB" ] && exit 0
if docker image inspect "$NODE_TAG" >/dev/null 2>&1; then
  log "node image cached ($NODE_TAG)"
else
  ROOTFS=$("$here/rootfs.sh" node "$here/packages.txt")
  COMPONENTS_TAR="$CACHE/components-$key.tar"
  build_components "$COMPONENTS_TAR"
  build_node
  rm -f "$COMPONENTS_TAR"
  log "node image built ($NODE_TAG)"
fi
log "done in $(( $(date +%s) - start )) s"
echo "$NODE_TAG"
