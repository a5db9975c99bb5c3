# etcd recovery (kindfix/recovery/force_new.py): prints how many processes run with
# --force-new-cluster (0: the forced instance is gone). /proc, not ps: procps is not guaranteed
# on a kind node.
for f in /proc/[0-9]*/cmdline; do tr '\0' ' ' < "$f"; echo; done 2>/dev/null | grep -c -e '[-]-force-new-cluster'
