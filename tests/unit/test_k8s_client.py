"""connect(): configuration from a kubeconfig or the pod's service account; the controller's namespace."""

from __future__ import annotations


import pytest
import yaml

from kube_vxlan_controller.k8s.client import connect
from kube_vxlan_controller.k8s.client import DEFAULT_NAMESPACE, own_namespace
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


def test_in_a_pod_without_a_service_account_token_is_a_k8s_error_saying_what_to_mount(monkeypatch):
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(K8sError, match="pod's service account: .*automountServiceAccountToken"):
        connect(None)


def test_outside_a_pod_kubeconfig_is_found_as_kubectl_finds_it(kubeconfig, tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{kubeconfig}")  # missing files are skipped
    assert connect(None).host == "http://127.0.0.1:6443"
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(K8sError, match=r"kubeconfig .*/\.kube/config: no such file, KUBECONFIG is unset and this is "
                                       r"not a pod .*give --kubeconfig PATH or set KUBECONFIG"):
        connect(None)
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text(kubeconfig.read_text())
    assert connect(None).host == "http://127.0.0.1:6443"


def test_a_malformed_kubeconfig_says_where_it_is_not_yaml(tmp_path):
    bad = tmp_path / "bad"
    bad.write_text("clusters: [\n  - bad: {")
    with pytest.raises(K8sError, match=r"kubeconfig .*bad is not valid YAML \(.*bad, line 2, column 3: "):
        connect(str(bad))


def test_own_namespace_comes_from_the_service_account_file(tmp_path):
    path = tmp_path / "namespace"
    path.write_text("vxlan\n")
    assert own_namespace(path) == "vxlan"


def test_own_namespace_defaults_to_kube_system(tmp_path):
    assert own_namespace(tmp_path / "missing") == DEFAULT_NAMESPACE == "kube-system"
