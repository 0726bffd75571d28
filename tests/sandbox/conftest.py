"""Fixtures for the sandbox API tests: the official client and kubectl, pointed at the `sandbox` fixture."""

from __future__ import annotations

import os
import subprocess

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config


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
