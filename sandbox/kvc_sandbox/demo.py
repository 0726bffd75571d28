"""`kube-vxlan-sandbox demo [--keep] [--ip-family ipv4|ipv6|dual]`: the seed README's example, end to end,
on the sandbox.

Starts the sandbox with 3 nodes (joined by a routed underlay: cluster.py), creates the network ConfigMap
(deploy/networks.yaml) and deploy/example.yaml (pods a, b, gw: the scheduler puts each on the emptiest
node, so on three different nodes), runs the controller, shows progress while the pods converge (each pod
with its node), then prints what an operator would look at — `kubectl get pods -o wide` (the NODE
column), `inspect nets vxeth1 vxeth2`, `list pods` — and the seed's two pings (a → b and b → a through
gw), run with kubectl exec: each crosses nodes. `--ip-family` changes the underlay only (the pods'
addresses, so the fdb entries and the VXLAN links' family; `dual` adds `underlay=ipv6` to the networks,
whose pods' primary IP is IPv4); the seed's overlay addresses stay as they are. Cleans everything up and
exits 0 when every step worked, 1 otherwise. With
`--keep` it stays up and prints how to point kubectl and the CLI at it, until Ctrl-C.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import yaml

from kube_vxlan_controller import queries


#: the source tree: deploy/ is read from there (the demo runs from a checkout, as `make demo` does)
ROOT = Path(__file__).resolve().parent.parent.parent
NETWORKS = ("vxeth1", "vxeth2")
PINGS = (("a", "192.168.12.2"), ("b", "192.168.11.2"))


def _manifest_path(name: str) -> Path:
    path = ROOT / "deploy" / name
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the demo from the source tree (make demo)")
    return path


def _manifests(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(_manifest_path(name).read_text()) if d]


def say(text: str) -> None:
    print(text, flush=True)


#: one node for each of a, b and gw
NODES = 3


class Demo:
    def __init__(self, workdir: Path, timeout: float, ip_family: str = "ipv4") -> None:
        self.workdir, self.timeout, self.ip_family = workdir, timeout, ip_family
        self.kubectl_cache = workdir / "kubectl-cache"

    def kubectl(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(["kubectl", "--kubeconfig", str(self.sandbox.kubeconfig), "--cache-dir",
                               str(self.kubectl_cache), *args], capture_output=True, text=True, timeout=timeout)

    def create(self, what: str, path: Path) -> bool:
        say(f"$ kubectl create -f {what}")
        out = self.kubectl("create", "-f", str(path))
        say((out.stdout + out.stderr).rstrip())
        return out.returncode == 0

    def run(self, keep: bool) -> int:
        from kube_vxlan_controller.controller import Controller
        from kube_vxlan_controller.settings import Settings

        from .runner import Sandbox

        say(f"==> starting the sandbox cluster: {NODES} nodes, {self.ip_family} (pods are network namespaces)")
        self.sandbox = Sandbox(workdir=self.workdir, nodes=NODES, ip_family=self.ip_family).start()
        ok = False
        try:
            self.show_command("get", "nodes", "-o", "wide")
            (cm,) = _manifests("networks.yaml")
            cm_file, shown = _manifest_path("networks.yaml"), "deploy/networks.yaml"
            if self.ip_family == "dual":  # pods have both families: the networks say which carries VXLAN
                say("==> dual-stack: every network gets underlay=ipv6 (the pods' primary IP is IPv4)")
                cm["data"] = {net: f"{value} underlay=ipv6" for net, value in cm["data"].items()}
                cm_file, shown = self.workdir / "networks.yaml", "networks.yaml"
                cm_file.write_text(yaml.safe_dump(cm))
            say("==> the network ConfigMap: " + ", ".join(f"{k}: {v!r}" for k, v in cm["data"].items()))
            if not (self.create(shown, cm_file)
                    and self.create("deploy/example.yaml", _manifest_path("example.yaml"))):
                return 1
            settings = Settings(kubeconfig=str(self.sandbox.kubeconfig), namespace="kube-system",
                                admin="127.0.0.1:0", health="127.0.0.1:0", log_level="WARNING")
            say("==> starting the controller")
            controller = Controller(settings).start()
            try:
                admin = controller.admin_address
                ok = self.converge(lambda: queries.fetch(admin, "/v1/inspect", [("net", n) for n in NETWORKS], 10)) \
                    and self.show(admin)
                if keep:
                    self.wait_for_interrupt(controller)
            finally:
                controller.stop()
        finally:
            say("==> cleaning up: stopping the sandbox, removing its namespaces")
            self.sandbox.stop()
        say("==> demo " + ("succeeded" if ok else "FAILED"))
        return 0 if ok else 1

    def converge(self, inspect) -> bool:
        """Show progress until every member of both networks has every peer, as `inspect()` (the
        controller's `inspect nets` answer) reports it."""
        started = time.monotonic()
        last = ""
        while time.monotonic() - started < self.timeout:
            out = self.kubectl("get", "pods", "-l", "vxlan.openvnf.org=true", "-o", "json")
            pods = json.loads(out.stdout)["items"] if out.returncode == 0 else []
            phases = ", ".join(f"{p['metadata']['labels'].get('run')}:{_status(p)}@{p['spec'].get('nodeName', '?')}"
                               for p in sorted(pods, key=lambda p: p["metadata"]["labels"].get("run", "")))
            wired = _wired(inspect)
            line = f"pods {phases or '-'} | wired: " + ", ".join(f"{n} {w}" for n, w in wired.items())
            if line != last:
                say(f"[{time.monotonic() - started:5.1f}s] {line}")
                last = line
            if all(w == "2/2" for w in wired.values()):
                say(f"==> converged in {time.monotonic() - started:.1f}s")
                return True
            time.sleep(0.5)
        say(f"==> not converged after {self.timeout:.0f}s")
        return False

    def pod_name(self, app: str) -> str:
        return self.kubectl("get", "po", "-l", f"run={app}", "-o", "jsonpath={.items[*].metadata.name}").stdout.strip()

    def show_command(self, *args: str) -> None:
        say(f"$ kubectl {' '.join(args)}")
        out = self.kubectl(*args)
        say((out.stdout + out.stderr).rstrip())

    def show(self, admin: str) -> bool:
        say("")
        self.show_command("get", "pods", "-o", "wide")
        say("\n$ kube-vxlan-controller inspect nets vxeth1 vxeth2")
        say(queries.format_inspect(queries.fetch(admin, "/v1/inspect", [("net", n) for n in NETWORKS], 15)))
        say("$ kube-vxlan-controller list pods")
        say(queries.format_pods(queries.fetch(admin, "/v1/pods", [("prefix", "")], 15)))
        gw = self.pod_name("gw")
        say("gw routes between vxeth1 and vxeth2 (as in the seed, the gateway pod forwards):")
        say(f"$ kubectl exec {gw} -c vxlan-controller-agent -- sysctl -w net.ipv4.ip_forward=1")
        out = self.kubectl("exec", gw, "-c", "vxlan-controller-agent", "--", "sysctl", "-w", "net.ipv4.ip_forward=1")
        say((out.stdout + out.stderr).rstrip())
        return out.returncode == 0 and self.pings()

    def pings(self) -> bool:
        """The seed's pings, a → b and b → a through gw, with kubectl exec in the app containers."""
        ok = True
        nodes = {app: self.kubectl("get", "po", "-l", f"run={app}", "-o", "jsonpath={.items[*].spec.nodeName}")
                 .stdout.strip() for app in ("a", "b", "gw")}
        routes = {"a": ("a", "gw", "b"), "b": ("b", "gw", "a")}
        for app, address in PINGS:
            pod = self.pod_name(app)
            say(f"\n# {' → '.join(f'{hop} ({nodes[hop]})' for hop in routes[app])}, and back: every hop crosses "
                f"nodes over the underlay")
            say(f"$ kubectl exec {pod} -c {app} -- ping -c 3 {address}")
            out = self.kubectl("exec", pod, "-c", app, "--", "ping", "-c", "3", "-W", "2", address)
            say((out.stdout + out.stderr).rstrip())
            ok = ok and out.returncode == 0
        return ok

    def wait_for_interrupt(self, controller) -> None:
        say(f"\n==> kept running. In another shell:\n"
            f"    export KUBECONFIG={self.sandbox.kubeconfig}\n"
            f"    kubectl get pods -o wide\n"
            f"    .venv/bin/kube-vxlan-controller inspect nets vxeth1 vxeth2 --admin {controller.admin_address}\n"
            f"    .venv/bin/kube-vxlan-controller list pods --admin {controller.admin_address}\n"
            f"==> Ctrl-C stops and cleans up.")
        self._block_until_interrupted()

    @staticmethod
    def _block_until_interrupted() -> None:
        done = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: done.set())
        signal.signal(signal.SIGTERM, lambda *_: done.set())
        while not done.wait(0.5):
            pass


def _wired(inspect) -> dict[str, str]:
    """Per network: how many members have an fdb entry for every other member ('?' while not answered)."""
    try:
        answer = inspect()
    except OSError:
        answer = None
    if not answer:
        return {n: "?" for n in NETWORKS}
    result = {}
    for net in answer:
        ips = {m["ip"] for m in net["members"]}
        done = sum(1 for m in net["members"]
                   if m["fdb"] is not None and {e.split()[2] for e in m["fdb"]} >= ips - {m["ip"]})
        result[net["network"]] = f"{done}/2"
    return result


def _status(pod: dict) -> str:
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    status = pod.get("status", {})
    if any("running" in s.get("state", {}) for s in status.get("initContainerStatuses", [])):
        return "Init"
    return status.get("phase") or "Pending"
