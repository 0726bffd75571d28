"""kube-vxlan-controller: makes Kubernetes pods members of VXLAN overlay networks."""

__version__ = "0.1.0"
