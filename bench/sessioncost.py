"""What N open exec sessions cost (docs/sessions.md): the sandbox server, the exec'd processes, the client.

    sudo .venv/bin/python -m bench.sessioncost [--steps 0,100,500,1000] [--workers 32]
    sudo .venv/bin/python -m bench.sessioncost --runtime docker --pods 20 --steps 0,100,200,400

Starts `kube-vxlan-sandbox serve --tls` (netns runtime by default, one node), creates `--pods` pods
(default: as many as the last step) with one container `vxlan-controller-agent`, then runs a client
process twice (glibc's default arenas, then MALLOC_ARENA_MAX=2). The client opens long-lived execs over
HTTPS with the official client, from `--workers` threads with one ApiClient each, up to each step,
holding them (round the pods when there are fewer pods than sessions). At each step the sandbox server
and the exec'd processes are measured, and with the docker runtime also dockerd, containerd and the
pods' containers' shims. Then one request goes over every session (a line out, its echo back), and
every session is closed. Output: one JSON line per step, then the cost of one more session. The
sandbox's own SIGTERM handling removes pods, namespaces, processes and containers; the script checks
that no exec'd process and no network namespace of its sandbox is left.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kubernetes import client, config
from kubernetes.stream import stream
from websocket import WebSocketException

MARK = "kvc-sessioncost"
#: one session: echo every line back, until stdin ends (the client leaves) or the hour is over
COMMAND = ["timeout", "3600", "sh", "-c", 'while IFS= read -r l; do printf "%s\\n" "$l"; done', MARK]
CONTAINER = "vxlan-controller-agent"
NAMESPACE = "default"


def proc_status(pid: int | str) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def kb(value: str) -> int:
    return int(value.split()[0])


def rss_kb() -> int:
    return kb(proc_status("self")["VmRSS"])


# --- the client (a process of its own, so that its RSS is only its own) ---------------------------------

def run_client(kubeconfig: str, steps: list[int], workers: int) -> None:
    local = threading.local()

    def core() -> client.CoreV1Api:
        if not hasattr(local, "core"):  # stream() is not thread-safe: one ApiClient per thread
            local.core = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))
        return local.core

    def open_session(pod: str):
        ws = stream(core().connect_get_namespaced_pod_exec, pod, NAMESPACE, container=CONTAINER,
                    command=COMMAND, stdin=True, stdout=True, stderr=True, tty=False, _preload_content=False)
        ws.sock.settimeout(30)
        return ws

    def say(**fields) -> None:
        print(json.dumps(fields), flush=True)

    pods = sorted(p.metadata.name for p in core().list_namespaced_pod(NAMESPACE, label_selector=f"app={MARK}").items)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda _: core(), range(workers * 4)))  # every worker holds its ApiClient
        list(pool.map(lambda p: open_session(p).close(), pods[:workers]))  # warm: imports, first TLS
        gc.collect()
        sessions = []
        for n in steps:
            t = time.monotonic()
            sessions += pool.map(open_session, [pods[i % len(pods)] for i in range(len(sessions), n)])
            opened = time.monotonic() - t
            gc.collect()
            say(open=len(sessions), client_rss_kb=rss_kb(), open_seconds=round(opened, 2))
            sys.stdin.readline()  # the sandbox was measured
        t, ended = time.monotonic(), 0
        for i, ws in enumerate(sessions):
            try:
                ws.write_stdin(f"request {i}\n")
                line = ws.readline_stdout(timeout=30)
            except (WebSocketException, OSError):  # the server ended it (its container restarted…)
                ended += 1
                continue
            if line != f"request {i}":
                raise RuntimeError(f"session {i}: expected its echo, got {line!r}")
        say(round_trip_seconds=round(time.monotonic() - t, 2), sessions_ended=ended,
            client_rss_kb_after_requests=rss_kb())
        for ws in sessions:
            ws.close()


# --- the orchestrator -----------------------------------------------------------------------------------

#: the Docker engine's processes on the docker runtime's exec path (and, per container, its shim)
DAEMONS = ("dockerd", "containerd")
SHIM = "containerd-shim"


def exec_processes() -> dict[str, list[int]]:
    """comm → [RSS kB, PSS kB, count] of every process of a session (nsenter, timeout, sh)."""
    return processes(lambda pid, status: MARK.encode() in _cmdline(pid).split(b"\0"))


def daemon_processes(containers: set[str]) -> dict[str, list[int]]:
    """comm → [RSS kB, PSS kB, count] of dockerd, containerd and the shims of `containers` (Docker IDs)."""
    def wanted(pid: str, status: dict[str, str]) -> bool:
        return status["Name"] in DAEMONS or (
            status["Name"] == SHIM and any(c in _cmdline(pid).decode() for c in containers))
    return processes(wanted)


def _cmdline(pid: str) -> bytes:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read()


def processes(wanted) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = proc_status(pid)
            if "VmRSS" not in status or not wanted(pid, status):  # kernel threads and zombies have no RSS
                continue
            with open(f"/proc/{pid}/smaps_rollup") as f:
                pss = next(kb(line.split(":")[1]) for line in f if line.startswith("Pss:"))
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue  # gone meanwhile
        row = found.setdefault(status["Name"], [0, 0, 0])
        row[0] += kb(status["VmRSS"])
        row[1] += pss
        row[2] += 1
    return found


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_server(pid: int, idle: float, core: client.CoreV1Api, docker: bool) -> dict:
    cpu = cpu_seconds(pid)
    time.sleep(idle)  # a measurement window, not a wait for a condition
    status = proc_status(pid)
    containers = [c for p in core.list_namespaced_pod(NAMESPACE).items for c in p.status.container_statuses or ()]
    restarts = sum(c.restart_count for c in containers)
    ids = {c.container_id.removeprefix("docker://") for c in containers if c.container_id}
    return {"pod_restarts": restarts, "server_rss_kb": kb(status["VmRSS"]), "server_threads": int(status["Threads"]),
            "server_fds": len(os.listdir(f"/proc/{pid}/fd")),
            "server_cpu_percent_idle": round(100 * (cpu_seconds(pid) - cpu) / idle, 1),
            "exec_processes": exec_processes(), **({"daemons": daemon_processes(ids)} if docker else {})}


def per_session(first: dict, last: dict) -> dict:
    """What one more open session cost, from the first step to the last (kB, threads, fds)."""
    n = last["open"] - first["open"]
    out = {key: round((last[key] - first[key]) / n, 1)
           for key in ("client_rss_kb", "server_rss_kb", "server_threads", "server_fds")}
    for group in ("exec_processes", "daemons"):
        for name, (rss, pss, _) in last.get(group, {}).items():
            rss0, pss0, _ = first[group].get(name, (0, 0, 0))
            out[f"{name}_rss_kb"], out[f"{name}_pss_kb"] = round((rss - rss0) / n), round((pss - pss0) / n)
    return out


def wait_for(what: str, condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default="0,100,500,1000")
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of the sandbox's idle-CPU window")
    parser.add_argument("--pods", type=int, help="how many pods (default: the last step); sessions go round them")
    parser.add_argument("--runtime", choices=("netns", "docker"), default="netns", help="the sandbox's runtime")
    parser.add_argument("--client", metavar="KUBECONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    if args.client:
        run_client(args.client, steps, args.workers)
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="sessioncost-"))
    kubeconfig = workdir / "kubeconfig"
    log = open(workdir / "sandbox.log", "wb")
    sandbox = Path(sys.executable).parent / "kube-vxlan-sandbox"
    server = subprocess.Popen([str(sandbox), "serve", "--tls", "--runtime", args.runtime,
                               "--kubeconfig", str(kubeconfig)],
                              stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "KVC_LOG_LEVEL": "WARNING"})
    try:
        wait_for("the sandbox's kubeconfig", kubeconfig.exists, 60)
        core = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda i: core.create_namespaced_pod(NAMESPACE, {
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"s{i:04d}", "labels": {"app": MARK}},
                "spec": {"containers": [{"name": CONTAINER, "image": "openvnf/kube-vxlan-controller-agent"}]}}),
                range(args.pods or steps[-1])))
        wait_for("every pod Running", lambda: all(
            p.status.phase == "Running" for p in core.list_namespaced_pod(NAMESPACE).items), 600)
        for label, env in (("glibc default arenas", {}), ("MALLOC_ARENA_MAX=2", {"MALLOC_ARENA_MAX": "2"})):
            print(f"== client: {label}", flush=True)
            c = subprocess.Popen([sys.executable, __file__, "--client", str(kubeconfig), "--steps", args.steps,
                                  "--workers", str(args.workers)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                 env={**os.environ, **env})
            steps_seen = []
            for line in c.stdout:
                row = json.loads(line)
                if "open" in row:
                    row |= measure_server(server.pid, args.idle, core, args.runtime == "docker")
                    steps_seen.append(row)
                    c.stdin.write("\n")
                    c.stdin.flush()
                print(json.dumps(row), flush=True)
            if c.wait() != 0:
                raise RuntimeError(f"the client exited {c.returncode}")
            print(json.dumps({"per_session": per_session(steps_seen[0], steps_seen[-1])}), flush=True)
            wait_for("every exec'd process gone", lambda: not exec_processes(), 60)
    finally:
        server.send_signal(signal.SIGTERM)  # the sandbox removes its pods, namespaces and processes
        server.wait(timeout=300)
        log.close()
    prefix = f"kvcsb-{server.pid}-"  # the netns runtime's network namespaces (kvc_sandbox.node)
    wait_for("the sandbox's network namespaces removed",
             lambda: not any(n.startswith(prefix) for n in os.listdir("/run/netns")), 60)
    shutil.rmtree(workdir)  # kept, with the sandbox's log, when something above failed
    return 0


if __name__ == "__main__":
    sys.exit(main())
