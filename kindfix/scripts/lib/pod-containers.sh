# pod_containers: one `crictl ps -a` for every container of the node, printed "<id> <state>
# <name>" a line (state as crictl's table says it: Running, Exited, Created, Unknown). One call
# rather than one per pod and state. The table rather than `-o json`: no jq on kind images before
# v0.15. Its CREATED column has several words ("About a minute ago"), so a row is read from its
# STATE word on: the word after it is NAME (crictl ps table: CONTAINER IMAGE CREATED STATE NAME
# ATTEMPT POD ID POD ...). Prints nothing when crictl fails.
# pod_runs LIST NAME: whether pod_containers' LIST has a Running container NAME.
pod_containers() {
  crictl ps -a 2>/dev/null | awk 'NR > 1 { for (i = 3; i < NF; i++)
    if ($i ~ /^(Running|Exited|Created|Unknown)$/) { print $1, $i, $(i + 1); break } }'
}
pod_runs() {
  printf '%s\n' "$1" | awk -v n="$2" '$2 == "Running" && $3 == n { f = 1 } END { exit !f }'
}
