"""Stand-ins for the Kubernetes parts of a kind node (kubelet, crictl, ctr, kubeadm, systemctl,
kube-apiserver, kube-controller-manager, kube-scheduler, the boot init).

Imported on the host as ``testbed.standins`` and inside the node image as ``standins``
(PYTHONPATH=/usr/local/lib/kindbed), so modules import each other relatively only.
What each one copies from upstream, and its limits, is in CONTRACT.md.
"""
