"""The sandbox as the machine's real kubectl sees it (the dispatcher picks kubectl 1.31 from /version).

Root only: pods are network namespaces. Every kubectl gets `--kubeconfig` and a `--cache-dir` under tmp_path.
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml
from apihelpers import AGENT, AGENT_INIT, TERMINATE_CODES, deployment_manifest, netns_names, pod_manifest
from polling import wait_for

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")]

REPO = Path(__file__).resolve().parents[2]


class LineReader:
    """Reads a subprocess's stdout on a thread, so a test can wait for a line with a deadline."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.lines, self._queue = proc, [], queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))

    def wait_for(self, predicate, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.lines.append(line)
            if predicate(line):
                return line
        raise AssertionError("no such line; kubectl printed:\n" + "\n".join(self.lines))


def pod_rows(kubectl) -> dict[str, list[str]]:
    out = kubectl("get", "pods", "--no-headers").stdout
    return {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}


def test_kubectl_deployment_progresses_execs_and_deletes(sandbox, kubectl, tmp_path):
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(yaml.safe_dump(deployment_manifest("vx", 3)))
    watcher = subprocess.Popen(kubectl.base + ["get", "pods", "-w"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=kubectl.env)
    try:
        reader = LineReader(watcher)
        assert "deployment.apps/vx created" in kubectl("create", "-f", str(manifest)).stdout

        pods = wait_for(lambda: len(rows := pod_rows(kubectl)) == 3 and all(r[2] == "Init:0/1" and r[5] != "<none>"
                                                                            for r in rows.values())
                        and rows, what="3 pods in Init:0/1 with their IP")
        header = kubectl("get", "pods").stdout.splitlines()[0].split()
        assert header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP"]
        for row in pods.values():
            assert row[1] == "0/1" and row[5].startswith("10.")
        reader.wait_for(lambda line: "Init:0/1" in line)

        name = sorted(pods)[0]
        terminate = kubectl("exec", name, "-c", AGENT_INIT, "--", "kill", "-TERM", "1", check=False)
        assert terminate.returncode in TERMINATE_CODES, terminate.stderr
        reader.wait_for(lambda line: line.startswith(name) and "Running" in line and "1/1" in line)
        assert pod_rows(kubectl)[name][1:4] == ["1/1", "Running", "0"]

        links = kubectl("exec", name, "-c", AGENT, "--", "ip", "-br", "link").stdout
        assert "eth0" in links and "lo" in links
        failed = kubectl("exec", name, "-c", AGENT, "--", "sh", "-c", "exit 3", check=False)
        assert failed.returncode == 3

        netns = {sandbox.pod_netns("default", n) for n in pods}
        assert netns <= netns_names()
        assert 'deployment.apps "vx" deleted' in kubectl("delete", "-f", str(manifest)).stdout
        wait_for(lambda: kubectl("get", "pods", "-o", "name").stdout.strip() == "", what="pods gone")
        assert not netns & netns_names()
        reader.wait_for(lambda line: line.startswith(name) and "Terminating" in line)
    finally:
        watcher.kill()
        watcher.wait()
        watcher.stdout.close()


def test_kubectl_scale_and_label_selectors(sandbox, kubectl, tmp_path):
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(yaml.safe_dump(deployment_manifest("web", 1)))
    kubectl("create", "-f", str(manifest))
    kubectl("scale", "deployment/web", "--replicas=3")
    wait_for(lambda: len(pod_rows(kubectl)) == 3, what="3 pods")
    out = kubectl("get", "deploy", "web").stdout.splitlines()
    assert out[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert out[1].split()[:2] == ["web", "0/3"]
    names = kubectl("get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].metadata.name}").stdout.split()
    assert len(names) == 3
    assert kubectl("get", "pods", "-l", "app=other", "-o", "name").stdout.strip() == ""
    one = kubectl("get", "pods", "--field-selector", f"metadata.name={names[0]}", "-o", "name").stdout.split()
    assert one == [f"pod/{names[0]}"]
    missing = kubectl("get", "pod", "nope", check=False)
    assert missing.returncode == 1 and 'pods "nope" not found' in missing.stderr


def test_kubectl_applies_the_install_with_k_and_reapplying_it_leaves_the_networks_alone(sandbox, kubectl):
    deploy = REPO / "deploy"
    kinds = [doc["kind"] for doc in yaml.safe_load_all((deploy / "bundle.yaml").read_text()) if doc]
    created = kubectl("apply", "-k", str(deploy)).stdout
    assert created.count(" created") == len(kinds), created
    assert "poddisruptionbudget.policy/kube-vxlan-controller created" in created
    assert "configmap" not in created
    assert "kube-vxlan-controller" in kubectl("get", "clusterrole,clusterrolebinding", "-o", "name").stdout
    assert kubectl("-n", "kube-system", "get", "sa,role,rolebinding,svc,pdb", "-o", "name").stdout.count(
        "kube-vxlan-controller") == 5
    kubectl("apply", "-f", str(deploy / "networks.yaml"))
    kubectl("-n", "kube-system", "patch", "configmap", "kube-vxlan-controller", "-p", '{"data":{"vxeth9":"id=109"}}')

    again = kubectl("apply", "-k", str(deploy)).stdout
    # kubectl always re-sends a PodDisruptionBudget's selector (its patch strategy is "replace"), a no-op
    assert again.count(" unchanged") == len(kinds) - 1, again
    assert "poddisruptionbudget.policy/kube-vxlan-controller configured" in again
    data = kubectl("-n", "kube-system", "get", "configmap", "kube-vxlan-controller", "-o", "jsonpath={.data}").stdout
    assert json.loads(data)["vxeth9"] == "id=109"

    deleted = kubectl("delete", "-k", str(deploy)).stdout
    assert deleted.count(" deleted") == len(kinds)
    assert kubectl("get", "clusterroles", "-o", "name").stdout.strip() == ""
    assert kubectl("-n", "kube-system", "get", "configmap", "kube-vxlan-controller", "-o", "name").stdout.strip()
    wait_for(lambda: kubectl("-n", "kube-system", "get", "pods", "-o", "name").stdout.strip() == "",
             what="the controller's pods gone")


def kind_list(*items: dict) -> str:
    """A `kind: List` manifest, as `kubectl get -o yaml` writes one."""
    return yaml.safe_dump({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
                           "items": list(items)})


def test_kubectl_creates_a_list_of_configmaps_validating_it_against_openapi_v2(sandbox, kubectl, tmp_path):
    manifest = tmp_path / "list.yaml"
    manifest.write_text(kind_list(*({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n},
                                     "data": {"k": n}} for n in ("one", "two"))))
    created = kubectl("create", "-f", str(manifest), "-v=6")  # validation is on: kubectl's default
    assert created.stdout.splitlines() == ["configmap/one created", "configmap/two created"]
    assert "/openapi/v2?timeout=32s 200 OK" in created.stderr  # the schemas it validated the items against
    assert kubectl("get", "cm", "one", "-o", "jsonpath={.data.k}").stdout == "one"


def test_kubectl_round_trips_a_pod_through_get_o_yaml_and_create(sandbox, kubectl, tmp_path):
    manifest = tmp_path / "list.yaml"
    manifest.write_text(kind_list(pod_manifest("listed")))
    assert kubectl("create", "-f", str(manifest)).stdout.strip() == "pod/listed created"
    uid = kubectl("get", "pod", "listed", "-o", "jsonpath={.metadata.uid}").stdout

    exported = kubectl("get", "pods", "-o", "yaml").stdout
    assert yaml.safe_load(exported)["kind"] == "List"
    kubectl("delete", "pod", "listed")  # waits until the pod is gone
    again = subprocess.run(kubectl.base + ["create", "-f", "-"], input=exported, capture_output=True, text=True,
                           env=kubectl.env, timeout=30)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "pod/listed created"
    assert kubectl("get", "pod", "listed", "-o", "jsonpath={.metadata.uid}").stdout not in ("", uid)
