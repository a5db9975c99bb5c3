# Makes the kubelet act on static pod manifests kindfix changed ("$@": the pods whose manifest
# changed; kindfix/kubelet.py). A kubelet that started while no API server answered (every control
# plane after a Docker restart) never terminates a static pod whose manifest changed or went:
# deletePod skips "because sources aren't ready yet" and housekeeping waits for sourcesReady,
# which needs the API server, which needs etcd (kubernetes#116880, #109596; realkind finding 1);
# the new pod waits for the old one for ever, and the old one's containers keep being restarted
# under back-off (finding 2). A new kubelet knows only the manifests on disk and has no back-off,
# but it leaves an unknown pod's containers running (the same missing sources): so stop the
# kubelet, stop and remove the old pods' containers, start it. The kubelet is started again
# whatever stops the script (trap). Prints "@@kindfix no-systemctl" (exit 0) where there is no
# systemctl: the caller says what that means.
# needs: stop-then-remove
command -v systemctl >/dev/null 2>&1 || { echo "@@kindfix no-systemctl"; exit 0; }
systemctl stop kubelet || exit
trap 'systemctl start kubelet' EXIT
trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM
for pod; do
  stop_then_remove "$pod" lenient
done
trap - EXIT
systemctl start kubelet
