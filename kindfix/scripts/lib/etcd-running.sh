# etcd_running: prints the etcd server's command line, if one runs. /proc rather than crictl or
# ps: cheap, and a kind node sees its containers' processes (procps is not guaranteed).
etcd_running() (
  for f in /proc/[0-9]*/cmdline; do tr '\0' ' ' 2>/dev/null < "$f"; echo; done |
    grep -E '^(/[^ ]*/)?etcd .*--data-dir' || true
)
