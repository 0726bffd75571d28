"""The sandbox leaves nothing behind: no namespace, no link, no file, no process (root only)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from apihelpers import AGENT, netns_names, pod_manifest
from polling import wait_for
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.stream import stream

from kvc_sandbox import Sandbox
from kvc_sandbox.containers import READY

pytestmark = pytest.mark.root

CLI = Path(sys.executable).parent / "kube-vxlan-sandbox"


def host_links() -> set[str]:
    """The host's links, but those Docker makes for its networks and containers (as other tests and
    sandboxes on the machine start and stop them)."""
    out = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=True).stdout
    return {name for line in out.splitlines() if line.strip()
            if not (name := line.split()[0]).startswith(("veth", "br-", "docker0"))}


def processes_with(marker: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker.encode() in cmdline:
                pids.append(int(entry))
    return pids


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


def _ours(pid: int) -> bool:
    """Started by this test process (a descendant), or orphaned (its parent is init): not a container of
    another sandbox running on this machine at the same time."""
    parent = _parent(pid)
    if parent == 1:
        return True
    while parent > 1:
        if parent == os.getpid():
            return True
        parent = _parent(parent)
    return False


def container_processes() -> list[int]:
    """Processes of this test's sandbox containers (their main process carries the start marker in its
    command line), and zombies whose parent is this process (a container or exec process not reaped)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if (READY.encode() in cmdline and _ours(int(entry))) or (stat[0] == "Z" and int(stat[1]) == os.getpid()):
                pids.append(int(entry))
    return pids


def start_pods(kubeconfig: Path, count: int) -> None:
    with k8s_config.new_client_from_config(config_file=str(kubeconfig)) as api:
        for i in range(count):
            # half stay in their init agent, half run
            k8s.CoreV1Api(api).create_namespaced_pod("default", pod_manifest(f"p{i}", init=[] if i % 2 else None))


def ours(prefix: str) -> set[str]:
    return {n for n in netns_names() if n.startswith(prefix)}


def test_stop_removes_namespaces_links_files_and_exec_processes(tmp_path):
    links_before = host_links()
    marker = f"{time.time() % 1000:.6f}"
    sandbox = Sandbox(workdir=tmp_path)
    with sandbox, k8s_config.new_client_from_config(config_file=str(sandbox.kubeconfig)) as api:
        core = k8s.CoreV1Api(api)
        start_pods(sandbox.kubeconfig, 4)
        wait_for(lambda: (sandbox.pod("default", "p1") or {}).get("status", {}).get("phase") == "Running",
                 what="p1 running")
        prefix = sandbox.network.prefix
        wait_for(lambda: len(ours(prefix)) == 5, what="node + 4 pod namespaces")
        resp = stream(core.connect_get_namespaced_pod_exec, "p1", "default", command=["sleep", marker],
                      container=AGENT, stdin=False, stdout=True, stderr=True, tty=False, _preload_content=False)
        wait_for(lambda: processes_with(marker), what="the exec's process")
        assert len(container_processes()) >= 4  # 2 init agents, 2 sidecar agents
        assert sandbox.kubeconfig.exists()
    resp.close()
    assert ours(prefix) == set()
    assert host_links() == links_before
    assert not sandbox.kubeconfig.exists()
    assert processes_with(marker) == []
    assert container_processes() == []
    sandbox.stop()  # idempotent


def test_stop_runs_when_the_with_block_raises(tmp_path):
    with pytest.raises(RuntimeError):
        with Sandbox(workdir=tmp_path) as sandbox:
            start_pods(sandbox.kubeconfig, 2)
            prefix = sandbox.network.prefix
            wait_for(lambda: len(ours(prefix)) == 3, what="namespaces")
            raise RuntimeError("test body failed")
    assert ours(prefix) == set()


def test_a_failed_start_leaves_nothing(tmp_path):
    before = ours(f"kvcsb-{os.getpid()}-")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(OSError):
            Sandbox(port=busy.getsockname()[1], workdir=tmp_path).start()
    assert ours(f"kvcsb-{os.getpid()}-") <= before
    assert not (tmp_path / "kubeconfig").exists()


@pytest.mark.skipif(not CLI.exists(), reason="the console script is not installed")
def test_sigterm_to_the_sandbox_command_removes_everything(tmp_path):
    links_before = host_links()
    kubeconfig = tmp_path / "kc" / "config"
    with subprocess.Popen([str(CLI), "serve", "--kubeconfig", str(kubeconfig)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        prefix = f"kvcsb-{proc.pid}-"
        try:
            assert proc.stdout.readline().strip() == str(kubeconfig)
            start_pods(kubeconfig, 3)
            wait_for(lambda: len(ours(prefix)) == 4, what="node + 3 pod namespaces")
            wait_for(lambda: len(container_processes()) >= 3, what="the pods' main processes")
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=20)
            assert proc.returncode == 0, stderr
        finally:
            if proc.poll() is None:
                proc.kill()
    assert ours(prefix) == set()
    assert host_links() == links_before
    assert not kubeconfig.exists()
    assert container_processes() == []
