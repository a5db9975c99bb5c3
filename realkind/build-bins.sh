#!/bin/bash
# Builds the binaries of the realkind node image from Go modules (wrapper modules in realkind/go/*).
# Usage: build-bins.sh [NAME...]   (default: all). Outputs to $REALKIND_CACHE/bin/<key>/, one log line per binary.
# A binary is rebuilt only when its cache key changed: Go version, versions.env, its wrapper module's
# files, and its build flags. (kindnetd is not built: its nested module is not served, see README.)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.env"
CACHE=${REALKIND_CACHE:-/var/cache/realkind}
export GOFLAGS="-trimpath -buildvcs=false" CGO_ENABLED=0 GOTOOLCHAIN=local
P=${REALKIND_GO_P:-2}
TIMEV=; [ -x /usr/bin/time ] && TIMEV="/usr/bin/time -v"   # max RSS in the build log when available
mkdir -p "$CACHE/logs"

kube_ldflags() {
  local maj=${KUBE_VERSION#v}; maj=${maj%%.*}
  local min=${KUBE_VERSION#v*.}; min=${min%%.*}
  local f="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    f+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$maj -X $pkg.gitMinor=$min"
    f+=" -X $pkg.gitTreeState=archive -X $pkg.buildDate=$KUBE_BUILD_DATE"
  done
  echo "$f"
}

# name|wrapper|package|ldflags-kind
TARGETS="
kubeadm|k8s|k8s.io/kubernetes/cmd/kubeadm|kube
kubelet|k8s|k8s.io/kubernetes/cmd/kubelet|kube
kubectl|k8s|k8s.io/kubernetes/cmd/kubectl|kube
kube-apiserver|k8s|k8s.io/kubernetes/cmd/kube-apiserver|kube
kube-controller-manager|k8s|k8s.io/kubernetes/cmd/kube-controller-manager|kube
kube-scheduler|k8s|k8s.io/kubernetes/cmd/kube-scheduler|kube
kube-proxy|k8s|k8s.io/kubernetes/cmd/kube-proxy|kube
etcd|k8s|go.etcd.io/etcd/server/v3|etcd
etcdctl|k8s|go.etcd.io/etcd/etcdctl/v3|etcd
etcdutl|k8s|go.etcd.io/etcd/etcdutl/v3|etcd
containerd|containerd|github.com/containerd/containerd/v2/cmd/containerd|containerd
containerd-shim-runc-v2|containerd|github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2|containerd
ctr|containerd|github.com/containerd/containerd/v2/cmd/ctr|containerd
crictl|critools|sigs.k8s.io/cri-tools/cmd/crictl|critools
coredns|coredns|dev.kindfix/realkind/coredns|plain
pause|pause|dev.kindfix/realkind/pause|plain
kind|kind|sigs.k8s.io/kind|plain
"

want=("$@")
sel() { [ ${#want[@]} -eq 0 ] && return 0; local w; for w in "${want[@]}"; do [ "$w" = "$1" ] && return 0; done; return 1; }

while IFS='|' read -r name wrapper pkg kind; do
  [ -n "$name" ] || continue
  sel "$name" || continue
  wdir="$here/go/$wrapper"
  case $kind in
    kube) ld=$(kube_ldflags) ;;
    etcd) ld="-s -w" ;;
    containerd) ld="-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION -X github.com/containerd/containerd/v2/version.Revision=goproxy" ;;
    critools) ld="-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRITOOLS_VERSION" ;;
    *) ld="-s -w" ;;
  esac
  tags=""
  [ "$wrapper" = containerd ] && tags="-tags=no_btrfs,no_devmapper,no_zfs,no_aufs"
  key=$( (go version; echo "$GOFLAGS $CGO_ENABLED $tags $ld"; cat "$here/versions.env" "$wdir"/go.mod; \
         cat "$wdir"/go.sum "$wdir"/*.go 2>/dev/null || true) | sha256sum | cut -c1-16)
  out="$CACHE/bin/$wrapper-$key"
  mkdir -p "$CACHE/bin/current"
  if [ -x "$out/$name" ]; then ln -sfn "$out/$name" "$CACHE/bin/current/$name"; echo "bin $name: cached ($out/$name)"; continue; fi
  mkdir -p "$out"
  log="$CACHE/logs/build-$name.log"
  echo "bin $name: building $pkg (log $log)"
  start=$(date +%s)
  if ! (cd "$wdir" && nice -n 10 $TIMEV go build -p "$P" $tags -ldflags "$ld" -o "$out/$name.tmp" "$pkg") >"$log" 2>&1; then
    echo "bin $name: FAILED after $(( $(date +%s) - start )) s; tail of $log:" >&2; tail -20 "$log" >&2; exit 1
  fi
  mv "$out/$name.tmp" "$out/$name"
  ln -sfn "$out/$name" "$CACHE/bin/current/$name"
  rss=$(awk -F': ' '/Maximum resident/{print $2}' "$log")
  echo "bin $name: built in $(( $(date +%s) - start )) s, max RSS ${rss} kB, $(du -h "$out/$name" | cut -f1)"
  echo "$(date -u +%FT%TZ) $name $(( $(date +%s) - start ))s rss=${rss}kB" >> "$CACHE/logs/build-times.txt"
done <<< "$TARGETS"
