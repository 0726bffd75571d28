"""The docker runtime leaves nothing behind — after `stop()`, a failing `with` block, SIGTERM of `serve`, or
a crash (cleaned at the next start) — and says in one line when it cannot run (root; a Docker engine for
all but the last)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from apihelpers import AGENT, AGENT_INIT, open_exec, pod_manifest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from polling import wait_for
from runtimes import LABEL, docker_client, docker_leftovers, require

from kvc_sandbox import Sandbox
from kvc_sandbox.runtime import RuntimeUnavailable

pytestmark = pytest.mark.root

CLI = Path(sys.executable).parent / "kube-vxlan-sandbox"
SLEEPER = {"name": "app", "image": "busybox", "command": ["sleep", "1000000000"]}


def start_pods(kubeconfig: Path, count: int) -> None:
    """Pods in every state: half in their init agent, half running (a sidecar agent and a sleeper)."""
    with k8s_config.new_client_from_config(config_file=str(kubeconfig)) as api:
        for i in range(count):
            k8s.CoreV1Api(api).create_namespaced_pod("default", pod_manifest(
                f"p{i}", init=[] if i % 2 else [AGENT_INIT], containers=[AGENT, SLEEPER]))


def labelled(value: str) -> int:
    with docker_client() as client:
        return len(client.api.containers(all=True, filters={"label": f"{LABEL}={value}"}))


def test_stop_removes_every_container_and_network_execs_included(tmp_path):
    require("docker")
    sandbox = Sandbox(workdir=tmp_path, runtime="docker")
    with sandbox, k8s_config.new_client_from_config(config_file=str(sandbox.kubeconfig)) as api:
        start_pods(sandbox.kubeconfig, 4)
        wait_for(lambda: (sandbox.pod("default", "p1") or {}).get("status", {}).get("phase") == "Running",
                 what="p1 running")
        resp = open_exec(k8s.CoreV1Api(api), "p1", ["sleep", "300"], container=AGENT)
        instance = sandbox.runtime.instance
        wait_for(lambda: labelled(instance) >= 8, what="4 infra containers, 2 init agents, 2 sidecars, 2 apps")
    resp.close()
    assert docker_leftovers(instance) == []
    assert not sandbox.kubeconfig.exists()
    sandbox.stop()  # idempotent


def test_stop_runs_when_the_with_block_raises(tmp_path):
    require("docker")
    with pytest.raises(RuntimeError):
        with Sandbox(workdir=tmp_path, runtime="docker") as sandbox:
            start_pods(sandbox.kubeconfig, 2)
            instance = sandbox.runtime.instance
            wait_for(lambda: labelled(instance) >= 4, what="containers")
            raise RuntimeError("test body failed")
    assert docker_leftovers(instance) == []


def test_a_failed_start_leaves_nothing(tmp_path):
    require("docker")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        sandbox = Sandbox(port=busy.getsockname()[1], workdir=tmp_path, runtime="docker")
        with pytest.raises(OSError):
            sandbox.start()
    assert docker_leftovers(sandbox.runtime.instance) == []  # its network was made, then removed
    assert not (tmp_path / "kubeconfig").exists()


@pytest.mark.skipif(not CLI.exists(), reason="the console script is not installed")
def test_sigterm_to_serve_runtime_docker_removes_everything(tmp_path):
    require("docker")
    kubeconfig = tmp_path / "kc" / "config"
    with subprocess.Popen([str(CLI), "serve", "--runtime", "docker", "--kubeconfig", str(kubeconfig)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        instance = f"{proc.pid}-1"
        try:
            assert proc.stdout.readline().strip() == str(kubeconfig)
            start_pods(kubeconfig, 3)
            wait_for(lambda: labelled(instance) >= 6, what="the pods' containers")
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=60)
            assert proc.returncode == 0, stderr
        finally:
            if proc.poll() is None:
                proc.kill()
    assert docker_leftovers(f"{proc.pid}-") == []
    assert not kubeconfig.exists()


def test_leftovers_of_a_dead_sandbox_are_removed_at_start_those_of_a_live_one_kept(tmp_path):
    require("docker")
    dead = subprocess.Popen(["true"])
    dead.wait()
    live = subprocess.Popen(["sleep", "300"])
    labels = {"dead": f"{dead.pid}-1", "live": f"{live.pid}-1"}
    try:
        with docker_client() as client:
            for which, value in labels.items():
                network = client.networks.create(f"kvcsb-{value}", labels={LABEL: value})
                client.containers.create("busybox:latest", ["sleep", "1"], name=f"kvcsb-{value}_x",
                                         labels={LABEL: value}, network=network.name)
        with Sandbox(workdir=tmp_path, runtime="docker"):
            assert docker_leftovers(labels["dead"]) == []
            assert len(docker_leftovers(labels["live"])) == 2  # a container and a network
    finally:
        live.kill()
        live.wait()
        with docker_client() as client:
            for value in labels.values():
                for container in client.api.containers(all=True, filters={"label": f"{LABEL}={value}"}):
                    client.api.remove_container(container["Id"], force=True)
                for network in client.api.networks(filters={"label": f"{LABEL}={value}"}):
                    client.api.remove_network(network["Id"])


@pytest.mark.skipif(not CLI.exists(), reason="the console script is not installed")
def test_without_an_engine_serve_refuses_in_one_line_and_start_raises(tmp_path, monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("needs root: serve refuses to run otherwise")
    nowhere = f"unix://{tmp_path}/no-docker.sock"
    env = {**os.environ, "DOCKER_HOST": nowhere}
    proc = subprocess.run([str(CLI), "serve", "--runtime", "docker", "--kubeconfig", str(tmp_path / "kc")],
                          capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode != 0 and proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert line.startswith("kube-vxlan-sandbox serve: the docker runtime needs a Docker engine, and none answers "
                           f"at {nowhere} (")
    assert not (tmp_path / "kc").exists()

    monkeypatch.setenv("DOCKER_HOST", nowhere)
    with pytest.raises(RuntimeUnavailable, match="none answers at"):
        Sandbox(workdir=tmp_path, runtime="docker").start()
