"""End-to-end harness: the controller against the sandbox, truth read from the kernel.

Assertions never ask the controller what it did: they run `bridge`, `ip` and `ping` inside the pods'
network namespaces.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from apihelpers import AGENT_IMAGE


ROOT = Path(__file__).resolve().parents[2]
SELECTOR = "vxlan.openvnf.org=true"


def manifests(name: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((ROOT / "deploy" / name).read_text()) if doc]


class Cluster:
    """The official client and kernel-side probes against one sandbox."""

    def __init__(self, sandbox) -> None:
        from kubernetes import client, config

        self.sandbox = sandbox
        api_client = config.new_client_from_config(config_file=str(sandbox.kubeconfig))
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)

    # -- API side ---------------------------------------------------------------------------------

    def apply_network_configmap(self, data: dict[str, str] | None = None) -> None:
        (cm,) = manifests("networks.yaml")
        if data is not None:
            cm["data"] = data
        self.core.create_namespaced_config_map(cm["metadata"]["namespace"], cm)

    def create_example(self) -> None:
        for deployment in manifests("example.yaml"):
            self.apps.create_namespaced_deployment(deployment["metadata"].get("namespace", "default"), deployment)

    def create_deployment(self, name: str, networks: str, replicas: int = 1, namespace: str = "default") -> None:
        self.apps.create_namespaced_deployment(namespace, deployment(name, networks, replicas))

    def scale(self, name: str, replicas: int, namespace: str = "default") -> None:
        self.apps.patch_namespaced_deployment(name, namespace, {"spec": {"replicas": replicas}})

    def pods(self, selector: str = SELECTOR, namespace: str | None = None) -> list:
        if namespace is None:
            items = self.core.list_pod_for_all_namespaces(label_selector=selector).items
        else:
            items = self.core.list_namespaced_pod(namespace, label_selector=selector).items
        return [p for p in items if p.metadata.deletion_timestamp is None]

    def running(self, selector: str = SELECTOR) -> list:
        return [p for p in self.pods(selector) if p.status.phase == "Running" and p.status.pod_ip]

    # -- kernel side ------------------------------------------------------------------------------

    def in_pod(self, pod, argv: list[str], timeout: float = 10.0) -> subprocess.CompletedProcess:
        netns = self.sandbox.pod_netns(pod.metadata.namespace, pod.metadata.name)
        return subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True, text=True,
                              timeout=timeout)

    def fdb(self, pod, dev: str) -> set[str] | None:
        """Dst IPs of the all-zeros entries on `dev` in the pod, or None if the device is missing."""
        out = self.in_pod(pod, ["bridge", "-j", "fdb", "show", "dev", dev])
        if out.returncode != 0:
            return None
        return {e["dst"] for e in json.loads(out.stdout or "[]")
                if e.get("mac") == "00:00:00:00:00:00" and "dst" in e}

    def link(self, pod, dev: str) -> dict | None:
        out = self.in_pod(pod, ["ip", "-d", "-j", "addr", "show", "dev", dev])
        links = json.loads(out.stdout or "[]") if out.returncode == 0 else []
        return links[0] if links else None  # [] as well while the link is being replaced

    def ping(self, pod, address: str) -> bool:
        return self.in_pod(pod, ["ping", "-c", "1", "-W", "1", address]).returncode == 0

    def wired(self, pods: list, dev: str) -> bool:
        """Every pod's fdb on `dev` holds exactly the other pods' IPs."""
        ips = {p.status.pod_ip for p in pods}
        return all(self.fdb(p, dev) == ips - {p.status.pod_ip} for p in pods)


def deployment(name: str, networks: str, replicas: int = 1) -> dict:
    agent = {"image": AGENT_IMAGE,
             "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "replicas": replicas, "selector": {"matchLabels": {"run": name}},
            "template": {
                "metadata": {"labels": {"run": name, "vxlan.openvnf.org": "true"},
                             "annotations": {"vxlan.openvnf.org/networks": networks}},
                "spec": {"initContainers": [{"name": "vxlan-controller-agent-init", **agent}],
                         "containers": [{"name": name, "image": "busybox", "command": ["sleep", "1d"]},
                                        {"name": "vxlan-controller-agent", **agent}]},
            },
        },
    }


@pytest.fixture
def cluster(sandbox):
    c = Cluster(sandbox)
    c.apply_network_configmap()
    return c


def controller_settings(sandbox, **overrides):
    from kube_vxlan_controller.settings import Settings

    values = dict(kubeconfig=str(sandbox.kubeconfig), namespace="kube-system", health="", admin="127.0.0.1:0",
                  exec_deadline=3.0, resync=5.0)
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def controller(sandbox):
    """The controller in-process (actors in this interpreter), stopped after the test."""
    from kube_vxlan_controller.controller import Controller

    started = []

    def start(**overrides):
        c = Controller(controller_settings(sandbox, **overrides)).start()
        started.append(c)
        return c

    yield start
    for c in started:
        c.stop()


#: leader election for controller processes: a short lease, so that a successor of a killed one need not
#: wait 15 s (an exec of 3 s and its second in the pod fit in it: kube_vxlan_controller/settings.py)
LEASE_FLAGS = ("--lease-duration", "6", "--renew-deadline", "4", "--retry-period", "0.5")


@pytest.fixture
def controller_process(sandbox, tmp_path):
    """The controller as a separate process (`kube-vxlan-controller run`), for kill and signal tests;
    `kubeconfig` (default: the sandbox's, the admin) says who it is to the API server."""
    procs = []

    def start(*extra: str, kubeconfig=None) -> subprocess.Popen:
        log = open(tmp_path / f"controller-{len(procs)}.log", "w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "kube_vxlan_controller.cli", "run", "--kubeconfig",
             str(kubeconfig or sandbox.kubeconfig), "--namespace", "kube-system", "--health", "", "--admin",
             "127.0.0.1:0", "--exec-deadline", "3", "--resync", "5", *LEASE_FLAGS, *extra],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        proc.log_path = log.name
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
