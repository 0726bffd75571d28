"""The sandbox and its API as the bench uses them.

- `SandboxServer`: `kube-vxlan-sandbox serve` as a child process (netns runtime), a fresh one per run; its
  control endpoint: faults (`POST /sandbox/faults`) and what the server counted (`GET /sandbox/stats`).
  With `tls`, `serve --tls`: the kubeconfig every process gets points at HTTPS (the sandbox's CA, the
  admin's bearer token), as a real cluster serves, and the control endpoint is asked over it too.
- `Api`: the official client: the network ConfigMap, the bench's pods (created in parallel), deletions.
- `PodTracker`: the bench's own pod watch (the project's `PodStream`) feeding a `Wiring`; it hands each
  pod's network namespace, as the sandbox names it, to the poller as soon as the pod has one.

Concurrency contract: `Api` may be used from several threads (the client's connection pool is
thread-safe). `PodTracker` runs two daemon threads (the watch; the registrar, which asks the sandbox for
namespaces while pods wait for one) until `stop()`.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from kubernetes import client, config

from bench.processes import Child
from kube_vxlan_controller import __version__, options
from kube_vxlan_controller.k8s.client import connect
from kube_vxlan_controller.k8s.pods import PodChanged, PodDeleted, PodsListed, PodStream

LABEL = "vxlan.openvnf.org"
ANNOTATION = "vxlan.openvnf.org/networks"
SELECTOR = f"{LABEL}=true"
NAMESPACE = "default"
CONFIGMAP_NAMESPACE = "kube-system"
CONFIGMAP = "kube-vxlan-controller"
#: seconds the sandbox may take to remove its pods once told to stop (a thousand take a while on 2 cores).
STOP_GRACE = 180.0


class SandboxServer:
    """One `kube-vxlan-sandbox serve` process; `stop()` removes everything it made (see processes.py)."""

    def __init__(self, workdir: Path, nodes: int = 1, tls: bool = False) -> None:
        """`nodes`: the sandbox's (`serve --nodes`); pods go to the emptiest one. `tls`: serve HTTPS."""
        self.kubeconfig = workdir / "kubeconfig"
        # SIGTERM to the sandbox alone: it removes its pods with `ip` commands of its own group.
        self.child = Child("sandbox", ["kube-vxlan-sandbox", "serve", "--kubeconfig", str(self.kubeconfig),
                                       "--nodes", str(nodes), *(["--tls"] if tls else [])],
                           log=workdir / "sandbox.log", grace=STOP_GRACE,
                           env={"KVC_LOG_LEVEL": os.environ.get("KVC_BENCH_SANDBOX_LOG", "WARNING")}, term_group=False)
        self.url = ""
        self._headers: dict[str, str] = {}
        self._ssl: ssl.SSLContext | None = None

    def start(self, timeout: float = 60.0) -> "SandboxServer":
        self.child.start()
        deadline = time.monotonic() + timeout
        while not self.kubeconfig.exists():
            if not self.child.alive():
                raise RuntimeError(f"the sandbox exited {self.child.proc.returncode}; see {self.child.log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the sandbox did not serve within {timeout:.0f}s; see {self.child.log_path}")
            time.sleep(0.05)
        kubeconfig = yaml.safe_load(self.kubeconfig.read_text())
        cluster, user = kubeconfig["clusters"][0]["cluster"], kubeconfig["users"][0]["user"]
        self.url = cluster["server"]
        if "certificate-authority-data" in cluster:
            self._ssl = ssl.create_default_context(
                cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
        if user.get("token"):
            self._headers["Authorization"] = f"Bearer {user['token']}"
        return self

    @property
    def netns_prefix(self) -> str:
        """The prefix of every network namespace this sandbox makes (kvc_sandbox.node's naming)."""
        return f"kvcsb-{self.child.pid}-"

    def _control(self, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method="GET" if data is None else "POST",
                                         headers={"Content-Type": "application/json", **self._headers})
        with urllib.request.urlopen(request, timeout=30, context=self._ssl) as response:
            return json.loads(response.read())

    def faults(self, **body) -> dict:
        return self._control("/sandbox/faults", body)

    def stats(self) -> dict:
        return self._control("/sandbox/stats")

    def execs(self) -> dict:
        """The execs the sandbox counted (`total`, `by_pod`, `open`, `most_open`, …: `GET /sandbox/stats`)."""
        return self.stats()["execs"]

    def stop(self) -> None:
        """Stop the sandbox; make sure none of its namespaces is left (it removes them itself on SIGTERM;
        after a SIGKILL they are a dead process's, which `remove_stale` removes)."""
        from kvc_sandbox.node import NETNS_DIR, NodeNetwork

        self.child.stop()
        NodeNetwork.remove_stale()
        left = [name for name in os.listdir(NETNS_DIR) if name.startswith(self.netns_prefix)]
        if left:
            print(f"bench: the sandbox left {len(left)} network namespaces ({left[0]}…)", file=sys.stderr)


def pod_manifest(name: str, networks: str) -> dict:
    agent = {"image": f"openvnf/kube-vxlan-controller-agent:{__version__}",
             "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {LABEL: "true", "app": "kvc-bench"},
                         "annotations": {ANNOTATION: networks}},
            "spec": {"initContainers": [{"name": "vxlan-controller-agent-init", **agent}],
                     "containers": [{"name": "vxlan-controller-agent", **agent}]}}


class Api:
    def __init__(self, kubeconfig: Path) -> None:
        self._client = config.new_client_from_config(config_file=str(kubeconfig))
        self.core = client.CoreV1Api(self._client)
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="bench-api")

    def configmap(self, data: dict[str, str]) -> None:
        self.core.create_namespaced_config_map(CONFIGMAP_NAMESPACE, {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CONFIGMAP}, "data": data})

    def create(self, pods: list[tuple[str, str]]) -> None:
        """Create (name, networks annotation) pods, several requests at a time; returns once all exist."""
        for future in [self._pool.submit(self.create_one, name, networks) for name, networks in pods]:
            future.result()

    def create_one(self, name: str, networks: str) -> None:
        self.core.create_namespaced_pod(NAMESPACE, pod_manifest(name, networks))

    def delete_one(self, name: str) -> None:
        self.core.delete_namespaced_pod(name, NAMESPACE)

    def submit(self, fn, *args):
        return self._pool.submit(fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()


class PodTracker:
    """The bench's pod watch: see the module docstring."""

    def __init__(self, sandbox: SandboxServer, wiring, poller, configmap: dict[str, str]) -> None:
        self.sandbox, self.wiring, self.poller, self.configmap = sandbox, wiring, poller, configmap
        self._cluster = connect(str(sandbox.kubeconfig), namespace=CONFIGMAP_NAMESPACE)
        self._stream = PodStream(self._cluster, label_selector=SELECTOR, namespace=NAMESPACE,
                                 on_event=self._on_event)
        self._networks: dict[str, dict[str, str]] = {}
        self._waiting: set[str] = set()  # pods with an IP whose namespace the poller does not follow yet
        self._followed: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        poller.on_gone = self._gone_namespace
        self._threads = [threading.Thread(target=self._stream.run, args=(self._stop,), name="bench-watch",
                                          daemon=True),
                         threading.Thread(target=self._register, name="bench-registrar", daemon=True)]

    def start(self) -> "PodTracker":
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._stream.stop()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(10)
        self._cluster.close()

    def _on_event(self, event) -> None:
        t = time.monotonic()
        if isinstance(event, PodsListed):
            listed = {pod.uid for pod in event.pods}
            for pod in event.pods:
                self._seen(pod, t)
            for uid in [uid for uid in self._networks if uid not in listed]:
                self._deleted(uid, t)
        elif isinstance(event, PodChanged):
            self._seen(event.pod, t)
        elif isinstance(event, PodDeleted):
            self._deleted(event.pod.uid, t)

    def _seen(self, pod, t: float) -> None:
        networks = self._networks.get(pod.uid)
        if networks is None:
            resolved = options.resolve(pod.annotations.get(ANNOTATION), self.configmap, pod_key=pod.key)
            networks = self._networks[pod.uid] = {spec.network: spec.name for spec in resolved.networks}
        self.wiring.seen(pod.uid, pod.name, networks, pod.ip, pod.agent_running, pod.deleting, t)
        if pod.ip and not pod.deleting:
            with self._lock:
                if pod.uid not in self._followed and pod.uid not in self._waiting:
                    self._waiting.add(pod.uid)
                    self._wake.set()

    def _deleted(self, uid: str, t: float) -> None:
        self._networks.pop(uid, None)
        self.wiring.gone(uid, t)
        with self._lock:
            self._waiting.discard(uid)
            self._followed.discard(uid)
        self.poller.forget(uid)

    def _gone_namespace(self, uid: str) -> None:
        with self._lock:
            self._followed.discard(uid)

    def _register(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            with self._lock:
                waiting = set(self._waiting)
            if not waiting:
                continue
            try:
                netns = self.sandbox.stats()["netns"]
            except OSError:
                netns = {}
            with self._lock:
                for uid in waiting & netns.keys() & self._waiting:
                    self._waiting.discard(uid)
                    self._followed.add(uid)
                    self.poller.watch(uid, netns[uid])
                if self._waiting:
                    self._wake.set()
            self._stop.wait(0.05)
