"""`kube-vxlan-sandbox demo --in-cluster`: the seed example with the controller as users run it — from its
image, in its pod, with its service account and the bundle's RBAC — on the sandbox's docker runtime over
HTTPS. `kubectl apply -k deploy`, `kubectl apply -f deploy/networks.yaml`, `kubectl create -f
deploy/example.yaml`, progress until the
example is wired (read with `kube-vxlan-controller inspect nets … -o json` through kubectl exec in the
leading controller's pod: the bundle runs two replicas), then the seed README's operator commands
verbatim and its pings.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .demo import NETWORKS, ROOT, Demo, _manifest_path, say

NS = "kube-system"


class InClusterDemo(Demo):
    def run(self, keep: bool) -> int:
        from .runner import Sandbox

        say("==> starting the sandbox cluster (docker runtime: real containers; HTTPS, tokens, RBAC)")
        self.sandbox = Sandbox(workdir=self.workdir, runtime="docker", tls=True, restart_delay=2.0).start()
        ok = False
        try:
            if (self.apply("-k", _manifest_path("kustomization.yaml").parent)
                    and self.apply("-f", _manifest_path("networks.yaml"))
                    and self.create("deploy/example.yaml", _manifest_path("example.yaml"))):
                controller = self.controller_pod()
                ok = bool(controller) and self.converge(lambda: self.inspect(controller)) and self.show_in(controller)
                if keep and ok:
                    self.wait_for_interrupt(controller)
        finally:
            say("==> cleaning up: stopping the sandbox, removing its containers and network")
            self.sandbox.stop()
        say("==> demo " + ("succeeded" if ok else "FAILED"))
        return 0 if ok else 1

    def apply(self, flag: str, path: Path) -> bool:
        say(f"$ kubectl apply {flag} {path.relative_to(ROOT)}")
        out = self.kubectl("apply", flag, str(path))
        say((out.stdout + out.stderr).rstrip())
        return out.returncode == 0

    def controller_pod(self) -> str:
        """The leading controller pod's name, as the README finds it: the Lease's holder is the pod's name,
        '_' and a UUID."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            holder = self.kubectl("-n", NS, "get", "lease", "kube-vxlan-controller", "-o",
                                  "jsonpath={.spec.holderIdentity}").stdout.strip()
            if holder:
                name = holder.split("_")[0]
                say(f"==> the leading controller runs in pod {NS}/{name} (the Lease's holder: {holder})")
                return name
            time.sleep(0.5)
        say("==> no controller leads")
        return ""

    def inspect(self, controller: str) -> list | None:
        out = self.kubectl("-n", NS, "exec", controller, "--", "kube-vxlan-controller", "inspect", "nets", *NETWORKS,
                           "-o", "json")
        return json.loads(out.stdout) if out.returncode == 0 else None

    def show_in(self, controller: str) -> bool:
        ok = True
        for args in (("inspect", "nets", *NETWORKS), ("list", "pods", "gw")):
            say(f"\n$ kubectl -n {NS} exec $POD -- kube-vxlan-controller {' '.join(args)}")
            out = self.kubectl("-n", NS, "exec", controller, "--", "kube-vxlan-controller", *args)
            say((out.stdout + out.stderr).rstrip())
            ok = ok and out.returncode == 0
        gw = self.pod_name("gw")
        out = self.kubectl("exec", gw, "-c", "vxlan-controller-agent", "--", "cat", "/proc/sys/net/ipv4/ip_forward")
        say(f"\ngw forwards between vxeth1 and vxeth2: net.ipv4.ip_forward = {out.stdout.strip()} in its pod (Docker "
            "gives a pod's network namespace the host's setting; /proc/sys is read-only in the container)")
        return ok and self.pings()

    def wait_for_interrupt(self, controller) -> None:
        say(f"\n==> kept running. In another shell:\n"
            f"    export KUBECONFIG={self.sandbox.kubeconfig}\n"
            f"    kubectl get pods -A -o wide\n"
            f"    kubectl -n {NS} exec {controller} -- kube-vxlan-controller inspect nets vxeth1 vxeth2\n"
            f"    kubectl -n {NS} logs {controller}\n"
            f"==> Ctrl-C stops and cleans up.")
        self._block_until_interrupted()
