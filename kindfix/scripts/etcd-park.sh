# etcd recovery (kindfix/recovery/): stops etcd on this node for good. "$1" etcd.yaml, "$2" the
# directory it is parked in (its first parked copy is kept). See lib/park.sh for the output.
# needs: park
park "$1" "$2"
