"""The seed example (deploy/example.yaml: pods a, b, gw on vxeth1/vxeth2) read as an operator would, through
kubectl only: fdb entries from `bridge -j fdb show` in each pod's agent container, the seed's pings from the
app containers, the controller's pod, log and metrics. Shared by the tests that run the example on the
docker runtime (tests/docker) and in-cluster (tests/incluster); `assert_ready_only_once_wired` by every
runtime's readiness gate test."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch
from polling import wait_for

from kube_vxlan_controller.wired import CONDITION_TYPE

class Cluster:
    """A cluster under test: `kubectl(...)` runs the machine's kubectl against it."""

    def __init__(self, name: str, kubeconfig: Path, workdir: Path) -> None:
        self.name, self.kubeconfig, self.workdir = name, kubeconfig, workdir

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess:
        env = {**os.environ, "HOME": str(self.workdir), "KUBECONFIG": str(self.kubeconfig)}
        proc = subprocess.run(["kubectl", "--cache-dir", str(self.workdir / "kube-cache"), *args], input=input,
                              capture_output=True, text=True, env=env, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}")
        return proc

    def json(self, *args: str) -> dict:
        return yaml.safe_load(self.kubectl(*args, "-o", "json").stdout)


NS = "kube-system"
AGENT = "vxlan-controller-agent"
#: app → its networks in deploy/example.yaml
NETWORKS = {"a": ("vxeth1",), "b": ("vxeth2",), "gw": ("vxeth1", "vxeth2")}
PINGS = (("a", "192.168.12.2"), ("b", "192.168.11.2"))
CONVERGE = 90.0


class Deployed:
    def __init__(self, cluster) -> None:
        self.cluster = cluster
        self.kubectl = cluster.kubectl

    # -- reading -------------------------------------------------------------------------------------
    def pod(self, app: str, namespace: str = "default") -> dict | None:
        """The one live (not terminating) pod of `app`, or None."""
        items = self.cluster.json("-n", namespace, "get", "pods", "-l", f"run={app}")["items"]
        live = [p for p in items if not p["metadata"].get("deletionTimestamp")]
        return live[0] if len(live) == 1 else None

    def controllers(self) -> list[dict]:
        """The live (not terminating) controller pods: the bundle runs two replicas."""
        items = self.cluster.json("-n", NS, "get", "pods", "-l", "run=kube-vxlan-controller")["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def holder(self) -> str:
        """The Lease's holder identity: the leader's pod name, '_', a UUID ('' when none holds it)."""
        return self.kubectl("-n", NS, "get", "lease", "kube-vxlan-controller", "-o",
                            "jsonpath={.spec.holderIdentity}", check=False).stdout.strip()

    def leader_name(self) -> str:
        """As the README finds the leader's pod."""
        return self.holder().split("_")[0]

    def leader(self) -> dict:
        """The live controller pod that holds the Lease."""
        def find():
            name = self.leader_name()
            return next((p for p in self.controllers() if p["metadata"]["name"] == name), None)

        return wait_for(find, timeout=60, what="the leader's pod")

    def fdb(self, pod: str) -> dict[str, set[str]] | None:
        out = self.kubectl("exec", pod, "-c", AGENT, "--", "bridge", "-j", "fdb", "show", check=False)
        if out.returncode != 0:
            return None
        table: dict[str, set[str]] = {}
        for entry in json.loads(out.stdout or "[]"):
            if entry.get("mac") == "00:00:00:00:00:00" and "dst" in entry:
                table.setdefault(entry["ifname"], set()).add(entry["dst"])
        return table

    def exact(self) -> bool:
        """Every example pod's fdb holds exactly its peers' IPs, per network."""
        pods = {app: self.pod(app) for app in NETWORKS}
        if any(p is None or not p["status"].get("podIP") or p["status"].get("phase") != "Running"
               for p in pods.values()):
            return False
        for app, pod in pods.items():
            want = {net: {pods[o]["status"]["podIP"] for o in NETWORKS if o != app and net in NETWORKS[o]}
                    for net in NETWORKS[app]}
            if self.fdb(pod["metadata"]["name"]) != want:
                return False
        return True

    def wait_exact(self, what: str) -> float:
        started = time.monotonic()
        wait_for(self.exact, timeout=CONVERGE, what=what, interval=0.5)
        return time.monotonic() - started

    def pings(self) -> None:
        """The seed's pings, a → b and b → a through gw. Polled: after a pod was replaced, gw's neighbour
        entry for its address still names the old pod's MAC until the kernel re-resolves it."""
        for app, address in PINGS:
            name = self.pod(app)["metadata"]["name"]

            def ping() -> bool:
                return self.kubectl("exec", name, "-c", app, "--", "ping", "-c", "1", "-W", "2", address,
                                    check=False).returncode == 0

            wait_for(ping, timeout=60, what=f"{app} pings {address}", interval=1)

    def logs(self, *args: str) -> str:
        return self.kubectl("-n", NS, "logs", *args, check=False).stdout

    def metrics(self, pod: str) -> str:
        script = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8080/metrics').read().decode())"
        return self.kubectl("-n", NS, "exec", pod, "--", "python", "-c", script).stdout

    def ready(self, pod: dict) -> bool:
        return pod_condition(pod, "Ready").get("status") == "True"


def pod_condition(pod: dict, kind: str = CONDITION_TYPE) -> dict:
    """The condition of type `kind` of a pod as the API's JSON holds it ({} when it has none)."""
    return next((c for c in pod["status"].get("conditions") or () if c["type"] == kind), {})


def assert_ready_only_once_wired(kubeconfig: Path, selector: str, namespace: str = "default") -> None:
    """Every version the API ever held of the pod `selector` picks, whose readiness is gated on the Wired
    condition: Ready only with Wired True; while its containers were ready but it was not wired, Ready False
    with the kubelet's reason and message; Ready in the end."""
    api = k8s_config.new_client_from_config(config_file=str(kubeconfig))
    try:
        versions = [event["raw_object"] for event in watch.Watch().stream(
            k8s.CoreV1Api(api).list_namespaced_pod, namespace, label_selector=selector, resource_version="1",
            timeout_seconds=1)]
    finally:
        api.close()

    assert versions and all(pod_condition(v, CONDITION_TYPE).get("status") == "True"
                            for v in versions if pod_condition(v, "Ready").get("status") == "True")
    gated = [pod_condition(v, "Ready") for v in versions
             if pod_condition(v, "ContainersReady").get("status") == "True" and pod_condition(v, "Ready")["status"] == "False"]
    assert gated and all(ready["reason"] == "ReadinessGatesNotReady" for ready in gated)
    assert {ready["message"] for ready in gated} <= {
        f'corresponding condition of pod readiness gate "{CONDITION_TYPE}" does not exist.',
        f'the status of pod readiness gate "{CONDITION_TYPE}" is not "True", but False'}
    assert pod_condition(versions[-1], "Ready").get("status") == "True"
