"""Fixtures for every test folder: a sandbox cluster (netns runtime unless a folder or module says
otherwise), the official client and kubectl pointed at it, and the actor-registry teardown."""

import os
import subprocess

import pykka
import pytest
import runtimes
from kubernetes import client as k8s
from kubernetes import config as k8s_config


def pytest_configure(config):
    config.addinivalue_line("markers", "root: needs root (network namespaces); skipped otherwise")


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root: creates network namespaces (CI runs as root)")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _stop_all_actors():
    """Actor threads are not daemons: a leaked one would hang pytest at exit."""
    yield
    pykka.ActorRegistry.stop_all()


@pytest.fixture
def sandbox(tmp_path):
    """A fresh sandbox cluster for one test (netns runtime): API on a free loopback port, kubeconfig in
    tmp_path. tests/docker overrides it with the docker runtime, the runtime contract with both."""
    yield from runtimes.sandbox_on("netns", tmp_path)


@pytest.fixture
def api_client(sandbox):
    api = k8s_config.new_client_from_config(config_file=str(sandbox.kubeconfig))
    yield api
    api.close()


@pytest.fixture
def core(api_client) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(api_client)


@pytest.fixture
def apps(api_client) -> k8s.AppsV1Api:
    return k8s.AppsV1Api(api_client)


@pytest.fixture
def kubectl(sandbox, tmp_path):
    """Run the machine's kubectl against the sandbox: `kubectl("get", "pods")` → CompletedProcess."""
    env = {**os.environ, "HOME": str(tmp_path), "KUBECONFIG": str(sandbox.kubeconfig)}
    base = ["kubectl", "--kubeconfig", str(sandbox.kubeconfig), "--cache-dir", str(tmp_path / "kube-cache")]

    def run(*args: str, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess:
        proc = subprocess.run(base + list(args), capture_output=True, text=True, env=env, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}")
        return proc

    run.base, run.env = base, env
    return run
