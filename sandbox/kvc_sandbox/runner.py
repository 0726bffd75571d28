"""Running the sandbox: `Sandbox` (in-process, a background thread with its own event loop) and the
`kube-vxlan-sandbox serve` command (foreground, until SIGINT/SIGTERM).

The runtime is chosen by name: `netns` (the default: netnsruntime.py, pods are network namespaces and
containers processes; fast, image-free) or `docker` (dockerruntime.py, real containers from local images).

Listeners (access.py says who may use each): plain HTTP on 127.0.0.1 always (`local_url`: the fast path
of the tests and benches, the local user only, no credential); with `tls=True` or `extra_listen`, also
HTTPS on 127.0.0.1 and every extra address, all on one port, with a CA made at start (tls.py), where
every request needs a bearer token. With the docker runtime and `tls`, the pods' network gateway is the
first extra address, so pods reach the API (`in_cluster`, incluster.py: host, port, CA, service-account
tokens, which the docker runtime mounts into pods as a kubelet does). The kubeconfig points at HTTPS
then (the CA as certificate-authority-data, the admin's token; mode 0600), else at plain HTTP.

Concurrency contract: `Sandbox.start()` checks the runtime (`preflight`, in the caller's thread), then
starts one thread that owns an asyncio loop; the store, the kubelet, the runtime, the deployment controller
and the HTTP server live on that loop and nowhere else. The public methods (`start`, `stop`, `pod_netns`,
`pod`, `wait_pod`, `execs`, `patches`, `faults.*`) may be called from any thread: they hand work to the loop
and wait for it (bounded by a timeout). `stop()` is idempotent and also runs from `atexit`; it removes every
namespace, link, process, container, network and file the sandbox created, also when start failed halfway.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import concurrent.futures
import copy
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml
from aiohttp import web
from loguru import logger

from . import tls
from .access import Access
from .api import Api
from .authn import Tokens
from .deployments import Deployments, GarbageCollector
from .dockerruntime import DockerRuntime
from .faults import Faults
from .cluster import IP_FAMILIES, ClusterConfig, ClusterConfigError, ClusterNetwork
from .incluster import InCluster
from .kubelet import Kubelet
from .netnsruntime import NetnsRuntime
from .nodes import DEFAULT_GRACE, NodeLifecycle, node_object
from .resources import NAMESPACES, NODES, PODS
from .runtime import ContainerRuntime, RuntimeUnavailable
from .store import Store

START_TIMEOUT = 30.0
RUNTIMES = ("netns", "docker")


def kubeconfig_text(url: str, ca_pem: bytes | None = None, token: str | None = None) -> str:
    cluster: dict[str, str] = {"server": url}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    return yaml.safe_dump({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "sandbox", "cluster": cluster}],
        "users": [{"name": "sandbox", "user": {"token": token} if token else {}}],
        "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": "sandbox",
                                                     "namespace": "default"}}],
        "current-context": "sandbox",
        "preferences": {},
    }, sort_keys=False)


class Sandbox:
    """A Kubernetes API on 127.0.0.1 whose pods are network namespaces or Docker containers; see the module
    docstring."""

    def __init__(self, *, port: int = 0, workdir: Path | None = None, kubeconfig: Path | None = None,
                 runtime: str = "netns", restart_delay: float = 0.5, max_grace: float = 0.5, tls: bool = False,
                 extra_listen: Sequence[str] = (), https_port: int = 0, nodes: int = 1, ip_family: str = "ipv4",
                 pod_cidrs: Sequence[str] = (), mtu: int | None = None, node_grace: float = DEFAULT_GRACE):
        """`restart_delay`: seconds before a container that ended is started again. `max_grace`: the netns
        runtime's longest wait before a deleted pod's processes are killed (the docker runtime gives
        containers their whole grace period: see dockerruntime.py). `port`: the plain-HTTP listener's;
        `tls`: serve HTTPS too and point the kubeconfig at it; `extra_listen`: more addresses for the HTTPS
        listener (implies `tls`); `https_port`: the HTTPS listener's port on every address (0: a free one).
        `nodes`, `ip_family`, `pod_cidrs` (the cluster CIDR of each family), `mtu` (the underlay's): the
        netns runtime's nodes (cluster.py; ClusterConfigError, one line, when they make no sense);
        `node_grace`: seconds a cut-off node reports nothing before it turns NotReady (nodes.py)."""
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
        self.cluster_config = ClusterConfig(nodes=nodes, ip_family=ip_family, pod_cidrs=tuple(pod_cidrs), mtu=mtu)
        if runtime == "docker" and self.cluster_config != ClusterConfig():
            raise ClusterConfigError("the docker runtime runs one IPv4 node: --nodes, --ip-family, --pod-cidr and "
                                     "--mtu are the netns runtime's")
        self._node_grace = node_grace
        self.faults = Faults()
        #: the kubeconfig's server; `local_url`: the plain-HTTP loopback listener (the same without TLS).
        self.url = self.local_url = ""
        #: host, port, CA and tokens for pods (None without TLS).
        self.in_cluster: InCluster | None = None
        #: the admin's and every ServiceAccount's bearer token (on plain HTTP too: a request that carries
        #: one is that account's, RBAC applies).
        self.tokens: Tokens | None = None
        self._port = port
        self._tls, self._extra_listen, self._https_port = tls or bool(extra_listen), list(extra_listen), https_port
        self._workdir = Path(workdir) if workdir else None
        self._own_tmpdir: Path | None = None
        if kubeconfig is not None:
            self.kubeconfig = Path(kubeconfig)
        elif self._workdir is not None:
            self.kubeconfig = self._workdir / "kubeconfig"
        else:
            self._own_tmpdir = Path(tempfile.mkdtemp(prefix="kvc-sandbox-"))
            self.kubeconfig = self._own_tmpdir / "kubeconfig"
        self._runtime_name = runtime
        self._restart_delay, self._max_grace = restart_delay, max_grace
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._wrote_kubeconfig = False
        self._stopped = False
        self.store: Store | None = None
        self.kubelet: Kubelet | None = None
        self.runtime: ContainerRuntime | None = None
        self.api: Api | None = None
        #: the netns runtime's nodes and their underlay (None on the docker runtime)
        self.network: ClusterNetwork | None = None
        self.lifecycle: NodeLifecycle | None = None

    # lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> "Sandbox":
        if self._thread is not None:
            return self
        if self._runtime_name == "docker":
            self.runtime = DockerRuntime()
        else:
            self.runtime = NetnsRuntime(ClusterNetwork(self.cluster_config), max_grace=self._max_grace)
            self.network = self.runtime.network
        self.runtime.preflight()
        self._thread = threading.Thread(target=self._thread_main, name="sandbox-api", daemon=True)
        self._thread.start()
        atexit.register(self.stop)
        if not self._ready.wait(START_TIMEOUT) or self._error is not None:
            error = self._error or TimeoutError("the sandbox did not start in time")
            self.stop()
            raise error
        logger.info("sandbox serving on {} (kubeconfig {})", self.url, self.kubeconfig)
        return self

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        if self._loop is not None and self._stopping is not None and self._thread is not None:
            try:
                self._loop.call_soon_threadsafe(self._stopping.set)
            except RuntimeError:
                pass  # the loop already ended
        if self._thread is not None:
            self._thread.join(START_TIMEOUT)
            if self._thread.is_alive():
                logger.error("sandbox: the server thread did not end; removing its pods and network anyway")
                self.runtime.stop_from_thread()
        self._remove_files()

    def __enter__(self) -> "Sandbox":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _remove_files(self) -> None:
        if self._wrote_kubeconfig:
            self.kubeconfig.unlink(missing_ok=True)
            self._wrote_kubeconfig = False
        if self._own_tmpdir is not None:
            shutil.rmtree(self._own_tmpdir, ignore_errors=True)

    # the loop thread -----------------------------------------------------------------------------------
    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as e:  # reported to start(); stop() cleans up
            self._error = e
            logger.exception("sandbox: the server failed")
        finally:
            self._ready.set()
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        runtime = self.runtime
        runner: web.AppRunner | None = None
        api: Api | None = None
        lifecycle_task: asyncio.Task | None = None
        try:
            await runtime.start()
            if self._tls and self._runtime_name == "docker" and runtime.host_ip not in self._extra_listen:
                self._extra_listen.insert(0, runtime.host_ip)  # the pods' gateway: pods reach the API there
            store = self.store = Store()
            tokens = self.tokens = Tokens(store)
            self._bootstrap(store)
            kubelet = self.kubelet = Kubelet(store, runtime, restart_delay=self._restart_delay)
            Deployments(store, kubelet)
            GarbageCollector(store, kubelet)
            lifecycle = self.lifecycle = NodeLifecycle(store, kubelet, grace=self._node_grace)
            lifecycle_task = asyncio.get_running_loop().create_task(lifecycle.run())
            api = self.api = Api(store, kubelet, self.faults, Access(store, tokens))
            self.faults.attach(drop_watches=lambda: self._on_loop(store.close_watches, quiet=True),
                               compact=lambda: self._on_loop(store.compact, quiet=True),
                               cut_node=self._cut_node, restore_node=self._restore_node,
                               sever_execs=lambda selector: self._on_loop(lambda: api.sever_execs(selector),
                                                                          quiet=True))
            runner = web.AppRunner(api.app(), access_log=None, shutdown_timeout=1.0, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", self._port)
            await site.start()
            port = runner.addresses[0][1]
            self.url = self.local_url = f"http://127.0.0.1:{port}"
            self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
            if self._tls:
                self.in_cluster = runtime.in_cluster = await self._serve_https(runner, tokens)
                self.url = f"https://127.0.0.1:{self.in_cluster.port}"
                self._write_private(kubeconfig_text(self.url, self.in_cluster.ca_pem, tokens.admin_token))
            else:
                self.kubeconfig.write_text(kubeconfig_text(self.url))
            self._wrote_kubeconfig = True
            self._ready.set()
            await self._stopping.wait()
        finally:
            logger.info("sandbox: stopping")
            if lifecycle_task is not None:
                lifecycle_task.cancel()
            if api is not None:
                await api.close()
            if runner is not None:
                await runner.cleanup()
            if self.kubelet is not None:
                await self.kubelet.shutdown()
            await runtime.stop()

    async def _serve_https(self, runner: web.AppRunner, tokens: Tokens) -> InCluster:
        """The HTTPS sites: 127.0.0.1 first (its port, when free, is the port of the others)."""
        addresses = ["127.0.0.1", *(a for a in self._extra_listen if a != "127.0.0.1")]
        certificates = tls.generate(addresses)
        ssl_context = certificates.server_context()
        port = self._https_port
        for address in addresses:
            site = web.TCPSite(runner, address, port, ssl_context=ssl_context)
            await site.start()
            port = runner.addresses[-1][1]  # the site just started
        return InCluster(host=self._extra_listen[0] if self._extra_listen else "127.0.0.1", port=port,
                         ca_pem=certificates.ca_pem, tokens=tokens)

    def _write_private(self, text: str) -> None:
        """The kubeconfig holding the admin's token: mode 0600, owned by the user who ran sudo if any."""
        fd = os.open(self.kubeconfig, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        if os.environ.get("SUDO_UID", "").isdigit() and os.geteuid() == 0:
            os.fchown(fd, int(os.environ["SUDO_UID"]), -1)
        with os.fdopen(fd, "w") as out:
            out.write(text)

    def _bootstrap(self, store: Store) -> None:
        for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            store.create(NAMESPACES, {"metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
                                      "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
        for node in self.runtime.nodes():
            store.create(NODES, node_object(node, self._runtime_name))

    # nodes cut off and back (faults) -------------------------------------------------------------------
    def _cut_node(self, name: str) -> None:
        """Its underlay link down (the netns runtime's nodes), then its kubelet silent (nodes.py)."""
        self._require_nodes(name).cut(name)
        self._on_loop(lambda: self.lifecycle.cut(name))

    def _restore_node(self, name: str) -> None:
        self._require_nodes(name).restore(name)
        self._on_loop(lambda: self.lifecycle.restore(name))

    def _require_nodes(self, name: str) -> ClusterNetwork:
        if self.network is None or len(self.network.nodes) < 2 or name not in self.network.nodes:
            raise ValueError(f"no node {name!r} to cut off or bring back (nodes: "
                             f"{', '.join(self.network.nodes) if self.network else 'the docker runtime has one'})")
        return self.network

    # calls from other threads --------------------------------------------------------------------------
    def _on_loop(self, fn: Callable[[], Any], timeout: float = 10.0, quiet: bool = False) -> Any:
        """Run `fn` on the loop; from another thread, wait for its result. Not running: RuntimeError, or
        nothing at all if `quiet` (a fault switched after stop)."""
        loop = self._loop
        if loop is None or loop.is_closed() or self._stopped:
            if quiet:
                return None
            raise RuntimeError("the sandbox is not running")
        try:
            if asyncio.get_running_loop() is loop:
                return fn()
        except RuntimeError:
            pass
        future: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as e:
                future.set_exception(e)

        loop.call_soon_threadsafe(run)
        return future.result(timeout)

    def pod(self, namespace: str, name: str) -> dict | None:
        """A copy of the pod object as stored now, None if there is none."""
        return self._on_loop(lambda: copy.deepcopy(self.store.get(PODS, namespace, name)))

    def execs(self) -> list[dict]:
        """The exec log, oldest first: {namespace, pod, container, argv, stdin} per exec (see api.py)."""
        return self._on_loop(lambda: copy.deepcopy(list(self.api.exec_log)))

    def live_execs(self) -> list[str]:
        """The execs running now, as "namespace/pod:container" (a session shows here while it is open)."""
        return self._on_loop(lambda: sorted(session.target for session in self.api.live_execs))

    def patches(self, resource: str, namespace: str, name: str, subresource: str = "") -> int:
        """How many PATCH requests the object (or its subresource) got."""
        return self._on_loop(lambda: self.api.patches[(resource, subresource, namespace, name)])

    def token_for(self, namespace: str, serviceaccount: str) -> str:
        """The bearer token of an existing ServiceAccount; KeyError when there is none (yet)."""
        return self._on_loop(lambda: self.tokens.token_for(namespace, serviceaccount))

    def serviceaccount_files(self, namespace: str, serviceaccount: str) -> dict[str, bytes]:
        """What a pod of this ServiceAccount finds in /var/run/secrets/kubernetes.io/serviceaccount/."""
        return self._on_loop(lambda: self._require_in_cluster().files(namespace, serviceaccount))

    def _require_in_cluster(self) -> InCluster:
        if self.in_cluster is None:
            raise RuntimeError("the sandbox serves no HTTPS: start it with tls=True or extra_listen")
        return self.in_cluster

    def pod_netns(self, namespace: str, name: str) -> str:
        """The network namespace of a live pod (for `ip netns exec`); KeyError if it has none (yet), or
        no named one (the docker runtime)."""
        netns = self._on_loop(lambda: self.kubelet.netns(namespace, name))
        if netns is None:
            raise KeyError(f"pod {namespace}/{name} has no network namespace")
        return netns

    def wait_pod(self, namespace: str, name: str, condition: Callable[[dict | None], bool],
                 timeout: float = 10.0) -> dict | None:
        """Poll the pod until `condition(pod or None)` holds; returns it, TimeoutError after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            pod = self.pod(namespace, name)
            if condition(pod):
                return pod
            if time.monotonic() > deadline:
                raise TimeoutError(f"pod {namespace}/{name}: condition not met in {timeout}s; last seen {pod}")
            time.sleep(0.02)


def _whole(text: str) -> int | str:
    """A whole number, or the text as given (ClusterConfig then says, in one line, what is wrong with it)."""
    return int(text) if text.strip().lstrip("-").isdigit() else text


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="kube-vxlan-sandbox serve",
        description="Run a local Kubernetes API on 127.0.0.1 whose pods are network namespaces or Docker "
                    "containers (needs root). Prints the kubeconfig path once serving; SIGINT/SIGTERM remove "
                    "everything it created.")
    parser.add_argument("--kubeconfig", type=Path, help="where to write the kubeconfig (default: a temporary "
                                                        "directory, removed on exit)")
    parser.add_argument("--port", type=int, default=0, help="plain-HTTP port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--runtime", choices=RUNTIMES, default="netns",
                        help="netns (default): pods are network namespaces, every container runs the agent "
                             "script; docker: real containers from local images on a Docker network of its own")
    parser.add_argument("--tls", action="store_true", help="serve HTTPS too (a CA made at start, bearer tokens, "
                                                           "RBAC for service accounts); the kubeconfig uses it")
    parser.add_argument("--listen", action="append", default=[], metavar="ADDRESS",
                        help="another address for the HTTPS listener (repeatable; implies --tls)")
    parser.add_argument("--https-port", type=int, default=0, help="the HTTPS port (default: a free one)")
    parser.add_argument("--nodes", type=_whole, default=1,
                        help="nodes (netns runtime): network namespaces with a pod CIDR each, joined by a routed "
                             "underlay (default: 1, no underlay)")
    parser.add_argument("--ip-family", default="ipv4", metavar="|".join(IP_FAMILIES),
                        help="the pods' and nodes' addresses (default: ipv4; dual: IPv4 primary)")
    parser.add_argument("--pod-cidr", action="append", default=[], metavar="CIDR",
                        help="the cluster CIDR, split into one pod CIDR per node (once per family, in --ip-family's "
                             "order; default: 10.66.0.0/16, fd00:66::/48)")
    parser.add_argument("--mtu", type=_whole, help="the underlay's MTU, and so the pods' eth0 (default: 1500)")
    parser.add_argument("--node-grace", type=float, default=DEFAULT_GRACE,
                        help="seconds a cut-off node stays Ready (node-monitor-grace-period; default: %(default)s)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("kube-vxlan-sandbox serve: needs root (it creates network namespaces and runs commands in pods "
              "as root)", file=sys.stderr)
        return 1
    logger.remove()
    logger.add(sys.stderr, level=os.environ.get("KVC_LOG_LEVEL", "INFO"))
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        sandbox = Sandbox(port=args.port, kubeconfig=args.kubeconfig, runtime=args.runtime, tls=args.tls,
                          extra_listen=args.listen, https_port=args.https_port, nodes=args.nodes,
                          ip_family=args.ip_family, pod_cidrs=args.pod_cidr, mtu=args.mtu, node_grace=args.node_grace)
    except ClusterConfigError as exc:
        print(f"kube-vxlan-sandbox serve: {exc}", file=sys.stderr)
        return 2
    try:
        try:
            sandbox.start()
        except RuntimeUnavailable as exc:
            print(f"kube-vxlan-sandbox serve: {exc}", file=sys.stderr)
            return 1
        except ClusterConfigError as exc:
            print(f"kube-vxlan-sandbox serve: {exc}", file=sys.stderr)
            return 2
        print(sandbox.kubeconfig, flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        sandbox.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0
