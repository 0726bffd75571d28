"""connect(): configuration from a kubeconfig or the pod's service account; the controller's namespace."""

from __future__ import annotations

import threading

import pytest
import yaml

from kube_vxlan_controller.k8s.client import connect
from kube_vxlan_controller.settings import DEFAULT_NAMESPACE, own_namespace
from kube_vxlan_controller.k8s.errors import K8sError


@pytest.fixture
def kubeconfig(tmp_path):
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "http://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"token": "t0ken"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }))
    return path


def test_kubeconfig_gives_the_server_and_credentials_without_touching_the_global_default(kubeconfig):
    from kubernetes import client

    before = client.Configuration.get_default_copy().host
    cluster = connect(str(kubeconfig), namespace="net")
    assert cluster.host == "http://127.0.0.1:6443"
    assert cluster.configuration.auth_settings()["BearerToken"]["value"] == "Bearer t0ken"
    assert cluster.namespace == "net"
    assert client.Configuration.get_default_copy().host == before


def test_missing_kubeconfig_is_a_k8s_error(tmp_path):
    with pytest.raises(K8sError, match="kubeconfig"):
        connect(str(tmp_path / "nope"))


def test_in_cluster_without_a_service_account_is_a_k8s_error(monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(K8sError, match="in-cluster"):
        connect(None)


def test_own_namespace_comes_from_the_service_account_file(tmp_path):
    path = tmp_path / "namespace"
    path.write_text("vxlan\n")
    assert own_namespace(path) == "vxlan"


def test_own_namespace_defaults_to_kube_system(tmp_path):
    assert own_namespace(tmp_path / "missing") == DEFAULT_NAMESPACE == "kube-system"


def test_exec_clients_are_lent_one_per_call_at_a_time_and_never_the_shared_one(kubeconfig):
    cluster = connect(str(kubeconfig))
    with cluster.exec_core() as mine:
        assert mine.api_client is not cluster.core().api_client
        with cluster.exec_core() as meanwhile:  # another thread's exec at the same time
            assert meanwhile.api_client is not mine.api_client
    other: list = []
    thread = threading.Thread(target=lambda: other.append(cluster.exec_core().__enter__()))
    thread.start()
    thread.join()
    assert other[0] in (mine, meanwhile)  # reused from the pool, not one more per thread
