"""The sandbox cluster: a local Kubernetes API server whose pods are Linux network namespaces (the netns
runtime, the default) or Docker containers (the docker runtime).

    with Sandbox(workdir=tmp_path) as sb:            # Sandbox(runtime="docker", …) for real containers
        kubernetes.config.load_kube_config(str(sb.kubeconfig))
        ...

Modules: runner.py (Sandbox, the `sandbox` command), api.py (routes), store.py (objects, resourceVersions,
history, watches), kubelet.py (pod lifecycle and statuses), deployments.py (Deployments, ReplicaSets,
cascading deletion), tables.py (kubectl's Table output), selectors.py, patches.py, resources.py (kinds and
discovery), errors.py (Status objects), faults.py, execws.py (pod exec's websocket protocol); runtime.py
(what the kubelet asks of a runtime) and its two implementations: netnsruntime.py (over node.py, network
namespaces, and containers.py, processes) and dockerruntime.py (over dockerengine.py, the Engine API);
probes.py (httpGet probes); access control: access.py (the step before every handler), authn.py (users,
tokens), requestinfo.py and rbac.py (authorization), tls.py (the CA and serving certificate), incluster.py
(what pods get to reach the API).
"""

from .faults import Faults
from .runner import Sandbox

__all__ = ["Faults", "Sandbox"]
