"""Benchmark: how fast and with how many execs the controller wires N pods, on the sandbox (root).

    .venv/bin/python bench/scale.py --steps 3,10,2 [--steps 50,100]

For each step it scales one deployment to that many pods and waits until every pod's fdb (read from
the kernel with `bridge` in the pod's namespace) holds exactly the other pods' IPs. It prints, per step,
the wall time to converge and the execs the controller ran (by outcome), total and per pod changed.
It asserts nothing about speed: figures only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kube_vxlan_controller import logs  # noqa: E402
from kube_vxlan_controller.controller import Controller  # noqa: E402
from kvc_sandbox import Sandbox  # noqa: E402
from kube_vxlan_controller.settings import Settings  # noqa: E402


def kubectl(sandbox, workdir, *args, stdin=None):
    return subprocess.run(["kubectl", "--kubeconfig", str(sandbox.kubeconfig), "--cache-dir",
                           str(workdir / "cache"), *args], input=stdin, capture_output=True, text=True, check=True)


def running(sandbox, workdir) -> list[dict]:
    pods = json.loads(kubectl(sandbox, workdir, "get", "pods", "-l", "run=bench", "-o", "json").stdout)["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")
            and p["status"].get("phase") == "Running" and p["status"].get("podIP")]


def fdb(sandbox, pod) -> set[str]:
    netns = sandbox.pod_netns(pod["metadata"]["namespace"], pod["metadata"]["name"])
    out = subprocess.run(["ip", "netns", "exec", netns, "bridge", "-j", "fdb", "show", "dev", "vxeth0"],
                         capture_output=True, text=True)
    if out.returncode:
        return set()
    return {e["dst"] for e in json.loads(out.stdout or "[]") if e.get("mac") == "00:00:00:00:00:00"}


def wired(sandbox, pods) -> bool:
    ips = {p["status"]["podIP"] for p in pods}
    return all(fdb(sandbox, p) == ips - {p["status"]["podIP"]} for p in pods)


def exec_counts(controller) -> dict[str, float]:
    return {sample.labels["outcome"]: sample.value
            for metric in controller.metrics.execs.collect() for sample in metric.samples
            if sample.name.endswith("_total")}


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: bench, namespace: default}
spec:
  replicas: 0
  selector: {matchLabels: {run: bench}}
  template:
    metadata:
      labels: {run: bench, vxlan.openvnf.org: "true"}
      annotations: {vxlan.openvnf.org/networks: vxeth0}
    spec:
      initContainers: [{name: vxlan-controller-agent-init, image: agent}]
      containers: [{name: main, image: busybox}, {name: vxlan-controller-agent, image: agent}]
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", default="3,10,2", help="replica counts to scale through, in order")
    p.add_argument("--timeout", type=float, default=600)
    args = p.parse_args()
    steps = [int(n) for n in args.steps.split(",")]
    logs.setup("WARNING")
    with tempfile.TemporaryDirectory(prefix="kvc-bench-") as tmp, Sandbox(workdir=Path(tmp)) as sandbox:
        workdir = Path(tmp)
        kubectl(sandbox, workdir, "create", "-f", "-", stdin="""
apiVersion: v1
kind: ConfigMap
metadata: {name: kube-vxlan-controller, namespace: kube-system}
data: {vxeth0: "id=100 up"}
""")
        kubectl(sandbox, workdir, "create", "-f", "-", stdin=DEPLOYMENT)
        controller = Controller(Settings(kubeconfig=str(sandbox.kubeconfig), namespace="kube-system", admin="",
                                         health="", log_level="WARNING")).start()
        try:
            previous = 0
            print(f"{'step':>10} {'seconds':>8} {'execs':>6} {'execs/pod':>9}  by outcome")
            for replicas in steps:
                before = exec_counts(controller)
                started = time.monotonic()
                kubectl(sandbox, workdir, "scale", "deployment", "bench", f"--replicas={replicas}")
                while True:
                    pods = running(sandbox, workdir)
                    if len(pods) == replicas and wired(sandbox, pods):
                        break
                    if time.monotonic() - started > args.timeout:
                        print(f"{previous}->{replicas}: not converged after {args.timeout}s", file=sys.stderr)
                        return 1
                    time.sleep(0.2)
                seconds = time.monotonic() - started
                after = exec_counts(controller)
                delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
                total = sum(delta.values())
                changed = abs(replicas - previous) or 1
                print(f"{previous:>4}->{replicas:<4} {seconds:8.2f} {total:6.0f} {total / changed:9.1f}  "
                      + " ".join(f"{k}={v:.0f}" for k, v in sorted(delta.items()) if v))
                previous = replicas
        finally:
            controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
