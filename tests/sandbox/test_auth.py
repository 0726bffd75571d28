"""The sandbox in-cluster style: HTTPS with its own CA, bearer tokens, RBAC for service accounts (root only).

Every test runs a `Sandbox(tls=True)`: its kubeconfig points at HTTPS with the admin's token; plain HTTP
on loopback stays for the local user. Service accounts connect as a pod would, through the official
client's `load_incluster_config()` on files written to tmp_path.
"""

from __future__ import annotations

import json
import os
import ssl
import time
import urllib.error
import urllib.request

import pytest
from apihelpers import (AGENT_INIT, incluster_api, pod_manifest, service_account_token, status_codes_as_nobody,
                        token_kubeconfig)
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException
from kubernetes.stream import stream

from kvc_sandbox import Sandbox
from polling import wait_for

pytestmark = pytest.mark.root

RBAC = "rbac.authorization.k8s.io"


@pytest.fixture
def sandbox(tmp_path):
    """Overrides the plain one: this module's sandbox serves HTTPS too, and its kubeconfig uses it."""
    with Sandbox(workdir=tmp_path, tls=True) as sb:
        yield sb


def request(sandbox, path: str, token: str | None = None, method: str = "GET", *, headers: dict | None = None,
            body: dict | None = None) -> tuple[int, dict]:
    context = ssl.create_default_context(cadata=sandbox.in_cluster.ca_pem.decode())
    headers = {**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
    data = None if body is None else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(sandbox.url + path, data=data, headers=headers,
                                                           method=method), context=context, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def grant(rbac: k8s.RbacAuthorizationV1Api, namespace: str, name: str, rules: list[dict],
          subject: dict) -> None:
    """A Role `name` in `namespace` with `rules`, bound to `subject`."""
    rbac.create_namespaced_role(namespace, {"metadata": {"name": name}, "rules": rules})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": name}, "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": name},
        "subjects": [subject]})


def started_pod(sandbox, core: k8s.CoreV1Api, name: str) -> None:
    core.create_namespaced_pod("default", pod_manifest(name))
    wait_for(lambda: any(s.get("state", {}).get("running") for s in
                         (sandbox.pod("default", name) or {}).get("status", {}).get("initContainerStatuses") or []),
             what=f"{name}'s init agent running")


def exec_code(core: k8s.CoreV1Api, name: str, argv: list[str], container: str = AGENT_INIT) -> int:
    resp = stream(core.connect_get_namespaced_pod_exec, name, "default", command=argv, container=container,
                  stdin=False, stdout=True, stderr=True, tty=False, _preload_content=False)
    try:
        resp.run_forever(timeout=10)
        return resp.returncode
    finally:
        resp.close()


# authentication ----------------------------------------------------------------------------------------
def test_https_without_a_token_or_with_a_bad_one_is_401(sandbox):
    unauthorized = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "Unauthorized", "reason": "Unauthorized", "code": 401}
    for credential in (None, "not-a-token", sandbox.token_for("default", "default") + "x"):
        for path in ("/api/v1/pods", "/version", "/sandbox/faults"):
            assert request(sandbox, path, credential) == (401, unauthorized), (credential, path)
    assert request(sandbox, "/api/v1/pods", "x", method="DELETE")[0] == 401


def test_the_kubeconfig_user_is_all_powerful_over_https_and_the_local_user_over_plain_http(sandbox, core):
    assert sandbox.url.startswith("https://127.0.0.1:") and sandbox.local_url.startswith("http://127.0.0.1:")
    assert os.stat(sandbox.kubeconfig).st_mode & 0o077 == 0  # it holds the admin's token
    core.create_namespace({"metadata": {"name": "team"}})
    assert core.list_pod_for_all_namespaces().items == []
    with urllib.request.urlopen(f"{sandbox.local_url}/api/v1/secrets", timeout=5) as response:
        assert response.status == 200
    assert request(sandbox, "/api/v1/secrets", "bad")[0] == 401


def test_another_local_user_is_refused_on_both_listeners(sandbox):
    """Plain HTTP refuses another user outright (403); HTTPS asks it for a credential it cannot read (401)."""
    codes = status_codes_as_nobody([f"{sandbox.local_url}/api/v1/pods", f"{sandbox.url}/api/v1/pods"],
                                   sandbox.in_cluster.ca_pem)
    assert codes == [403, 401]


def test_kubectl_works_over_https_with_the_kubeconfig(sandbox, core, kubectl):
    started_pod(sandbox, core, "p")
    assert "pod/p" in kubectl("get", "pods", "-o", "name").stdout
    assert kubectl("exec", "p", "-c", AGENT_INIT, "--", "sh", "-c", "exit 3", check=False).returncode == 3
    assert "namespace/team created" in kubectl("create", "namespace", "team").stdout


def test_every_namespace_gets_a_default_service_account_with_a_token(sandbox, core):
    for namespace in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert service_account_token(sandbox, namespace, "default")
    core.create_namespace({"metadata": {"name": "later"}})
    assert service_account_token(sandbox, "later", "default")
    assert [a.metadata.name for a in core.list_namespaced_service_account("later").items] == ["default"]


def test_a_service_account_token_lives_as_long_as_its_account(sandbox, core, tmp_path, monkeypatch):
    core.create_namespaced_service_account("default", {"metadata": {"name": "bot"}})
    first = service_account_token(sandbox, "default", "bot")
    bot = k8s.CoreV1Api(incluster_api(sandbox, tmp_path / "sa", monkeypatch, "default", "bot"))
    assert k8s.VersionApi(bot.api_client).get_code().major == "1"
    core.delete_namespaced_service_account("bot", "default")
    assert request(sandbox, "/version", first)[0] == 401
    core.create_namespaced_service_account("default", {"metadata": {"name": "bot"}})
    assert service_account_token(sandbox, "default", "bot") != first


# RBAC through the API ----------------------------------------------------------------------------------
def test_a_service_account_through_load_incluster_config_gets_what_its_roles_grant(sandbox, api_client, core,
                                                                                   tmp_path, monkeypatch):
    core.create_namespace({"metadata": {"name": "team"}})
    core.create_namespaced_service_account("team", {"metadata": {"name": "bot"}})
    service_account_token(sandbox, "team", "bot")
    bot = k8s.CoreV1Api(incluster_api(sandbox, tmp_path / "sa", monkeypatch, "team", "bot"))
    assert bot.api_client.configuration.host == sandbox.in_cluster.url
    assert bot.get_api_resources().group_version == "v1"  # discovery: every authenticated user

    with pytest.raises(ApiException) as denied:
        bot.list_namespaced_pod("team")
    assert denied.value.status == 403
    assert json.loads(denied.value.body)["message"] == (
        'pods is forbidden: User "system:serviceaccount:team:bot" cannot list resource "pods" in API group "" '
        'in the namespace "team"')

    grant(k8s.RbacAuthorizationV1Api(api_client), "team", "pod-reader",
          [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
          {"kind": "ServiceAccount", "name": "bot", "namespace": "team"})
    assert bot.list_namespaced_pod("team").items == []
    with pytest.raises(ApiException) as elsewhere:
        bot.list_pod_for_all_namespaces()
    assert json.loads(elsewhere.value.body)["message"] == (
        'pods is forbidden: User "system:serviceaccount:team:bot" cannot list resource "pods" in API group "" '
        'at the cluster scope')
    with pytest.raises(ApiException) as delete:
        bot.delete_namespaced_pod("p", "team")
    assert delete.value.status == 403 and json.loads(delete.value.body)["details"] == {"name": "p", "kind": "pods"}


def test_exec_needs_create_on_pods_exec(sandbox, api_client, core, tmp_path, monkeypatch):
    started_pod(sandbox, core, "p")
    bot = k8s.CoreV1Api(incluster_api(sandbox, tmp_path / "sa", monkeypatch, "default", "default"))
    rbac = k8s.RbacAuthorizationV1Api(api_client)
    grant(rbac, "default", "reader", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}],
          {"kind": "ServiceAccount", "name": "default"})
    with pytest.raises(ApiException) as websocket:
        exec_code(bot, "p", ["true"])
    assert "403 Forbidden" in str(websocket.value.reason)
    status, body = request(sandbox, "/api/v1/namespaces/default/pods/p/exec?command=true",
                           sandbox.token_for("default", "default"), method="POST")
    assert (status, body["reason"], body["message"]) == (403, "Forbidden", (
        'pods "p" is forbidden: User "system:serviceaccount:default:default" cannot create resource "pods/exec" '
        'in API group "" in the namespace "default"'))

    grant(rbac, "default", "exec", [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create", "get"]}],
          {"kind": "Group", "name": "system:serviceaccounts:default"})
    assert exec_code(bot, "p", ["sh", "-c", "exit 3"]) == 3


def test_kubectl_auth_can_i_with_a_service_account_kubeconfig(sandbox, api_client, kubectl, tmp_path):
    config = token_kubeconfig(sandbox, tmp_path / "sa.kubeconfig",
                              service_account_token(sandbox, "default", "default"))

    def can_i(*args: str) -> str:
        proc = kubectl("--kubeconfig", str(config), "auth", "can-i", *args, check=False)
        assert proc.returncode in (0, 1), proc.stderr
        return proc.stdout.strip()

    assert can_i("list", "pods") == "no"
    assert can_i("create", "pods", "--subresource=exec") == "no"  # `pods/exec` would mean the pod named exec
    grant(k8s.RbacAuthorizationV1Api(api_client), "default", "exec",
          [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}],
          {"kind": "ServiceAccount", "name": "default", "namespace": "default"})
    assert can_i("create", "pods", "--subresource=exec") == "yes"
    assert can_i("create", "pods", "--subresource=exec", "-n", "kube-system") == "no"
    assert can_i("create", "pods") == "no"
    assert can_i("get", "/version") == "yes"
    assert can_i("list", "secrets", "--kubeconfig", str(sandbox.kubeconfig)) == "yes"


def test_kubectl_auth_can_i_as_a_service_account_tells_what_its_roles_grant(sandbox, api_client, kubectl):
    """`--as` (Impersonate-User): the admin asks for the account, and the answer follows its roles."""
    rbac = k8s.RbacAuthorizationV1Api(api_client)
    k8s.CoreV1Api(api_client).create_namespaced_service_account("kube-system", {"metadata": {"name": "ctl"}})
    as_ctl = "--as=system:serviceaccount:kube-system:ctl"

    def can_i(*args: str) -> str:
        proc = kubectl("auth", "can-i", *args, as_ctl, check=False)
        assert proc.returncode in (0, 1), proc.stderr
        return proc.stdout.strip()

    assert can_i("create", "pods", "--subresource=exec", "-n", "kube-system") == "no"
    grant(rbac, "kube-system", "exec", [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}],
          {"kind": "ServiceAccount", "name": "ctl", "namespace": "kube-system"})
    assert can_i("create", "pods", "--subresource=exec", "-n", "kube-system") == "yes"
    assert can_i("create", "pods", "--subresource=exec", "-n", "default") == "no"
    rbac.patch_namespaced_role("exec", "kube-system", {"rules": [{"apiGroups": [""], "resources": ["pods/exec"],
                                                                  "verbs": ["get"]}]})
    assert can_i("create", "pods", "--subresource=exec", "-n", "kube-system") == "no"
    # its groups come with it: a binding to system:serviceaccounts:kube-system counts
    grant(rbac, "kube-system", "all-accounts", [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
          {"kind": "Group", "name": "system:serviceaccounts:kube-system", "apiGroup": RBAC})
    assert can_i("list", "configmaps", "-n", "kube-system") == "yes"
    assert kubectl("-n", "kube-system", "get", "configmaps", as_ctl).returncode == 0
    denied = kubectl("-n", "kube-system", "get", "pods", as_ctl, check=False)
    assert 'User "system:serviceaccount:kube-system:ctl" cannot list resource "pods"' in denied.stderr, denied.stderr


def test_impersonation_needs_the_impersonate_verb_on_each_user_and_group(sandbox, api_client, kubectl, tmp_path):
    core, rbac = k8s.CoreV1Api(api_client), k8s.RbacAuthorizationV1Api(api_client)
    for name in ("boss", "ctl"):
        core.create_namespaced_service_account("default", {"metadata": {"name": name}})
    boss = str(token_kubeconfig(sandbox, tmp_path / "boss.kubeconfig", service_account_token(sandbox, "default",
                                                                                            "boss")))
    boss_token = service_account_token(sandbox, "default", "boss")
    as_ctl = "--as=system:serviceaccount:default:ctl"
    # kubectl's discovery is refused first, and client-go words that "Forbidden: unknown", as against a real cluster
    assert "Error from server (Forbidden)" in kubectl("--kubeconfig", boss, "get", "configmaps", as_ctl,
                                                      check=False).stderr
    code, body = request(sandbox, "/api/v1/namespaces/default/configmaps", boss_token,
                         headers={"Impersonate-User": "system:serviceaccount:default:ctl"})
    assert (code, body["message"]) == (403, 'serviceaccounts "ctl" is forbidden: User "system:serviceaccount:default:'
                                            'boss" cannot impersonate resource "serviceaccounts" in API group "" in '
                                            'the namespace "default"'), body
    grant(rbac, "default", "impersonate-ctl", [{"apiGroups": [""], "resources": ["serviceaccounts"],
                                                "resourceNames": ["ctl"], "verbs": ["impersonate"]}],
          {"kind": "ServiceAccount", "name": "boss", "namespace": "default"})
    grant(rbac, "default", "ctl-reads", [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
          {"kind": "ServiceAccount", "name": "ctl", "namespace": "default"})
    assert kubectl("--kubeconfig", boss, "get", "configmaps", as_ctl).returncode == 0
    assert kubectl("--kubeconfig", boss, "get", "configmaps", check=False).returncode == 1  # boss itself may not
    code, body = request(sandbox, "/api/v1/namespaces/default/configmaps", boss_token,
                         headers={"Impersonate-User": "system:serviceaccount:default:ctl",
                                  "Impersonate-Group": "system:masters"})
    assert (code, body["message"]) == (403, 'groups "system:masters" is forbidden: User "system:serviceaccount:'
                                            'default:boss" cannot impersonate resource "groups" in API group "" at '
                                            'the cluster scope'), body
    code, body = request(sandbox, "/api/v1/namespaces/default/configmaps", boss_token,
                         headers={"Impersonate-User": "system:serviceaccount:default:boss"})
    assert code == 403 and body["message"].startswith('serviceaccounts "boss" is forbidden'), body
    code, body = request(sandbox, "/api/v1/namespaces/default/configmaps", boss_token,
                         headers={"Impersonate-Group": "system:masters"})
    assert (code, body["reason"]) == (500, "InternalError"), body


def test_kubectl_create_token_gives_a_token_of_the_account_that_dies_with_it(sandbox, api_client, kubectl, tmp_path):
    core, rbac = k8s.CoreV1Api(api_client), k8s.RbacAuthorizationV1Api(api_client)
    core.create_namespaced_service_account("default", {"metadata": {"name": "bot"}})
    grant(rbac, "default", "bot", [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
          {"kind": "ServiceAccount", "name": "bot", "namespace": "default"})
    token = kubectl("create", "token", "bot").stdout.strip()
    assert token and token != service_account_token(sandbox, "default", "bot")
    bot = str(token_kubeconfig(sandbox, tmp_path / "bot.kubeconfig", token))
    assert kubectl("--kubeconfig", bot, "get", "configmaps").returncode == 0
    assert "cannot list resource \"pods\"" in kubectl("--kubeconfig", bot, "get", "pods", check=False).stderr
    assert kubectl("--kubeconfig", bot, "auth", "can-i", "list", "configmaps").stdout.strip() == "yes"
    short = kubectl("create", "token", "bot", "--duration=60s", check=False)
    assert "may not specify a duration less than 10 minutes" in short.stderr, short.stderr
    assert 'serviceaccounts "nobody" not found' in kubectl("create", "token", "nobody", check=False).stderr
    code, body = request(sandbox, "/api/v1/namespaces/default/serviceaccounts/bot/token", token, method="POST",
                         body={"spec": {"expirationSeconds": 600}})
    assert code == 403 and 'cannot create resource "serviceaccounts/token"' in body["message"], body
    core.delete_namespaced_service_account("bot", "default")
    wait_for(lambda: kubectl("--kubeconfig", bot, "get", "configmaps", check=False).returncode == 1,
             what="the requested token revoked with its account")
    assert "Unauthorized" in kubectl("--kubeconfig", bot, "get", "configmaps", check=False).stderr


def test_a_requested_token_expires(sandbox, api_client, kubectl, monkeypatch):
    """The sandbox runs in this process: its clock is moved past the token's 10 minutes."""
    k8s.CoreV1Api(api_client).create_namespaced_service_account("default", {"metadata": {"name": "bot"}})
    service_account_token(sandbox, "default", "bot")
    created = json.loads(kubectl("create", "token", "bot", "--duration=10m", "-o", "json").stdout)
    assert created["kind"] == "TokenRequest" and created["spec"]["expirationSeconds"] == 600, created
    token = created["status"]["token"]
    assert request(sandbox, "/api/v1/namespaces/default/serviceaccounts/bot", token)[0] == 403  # known, not allowed
    later = time.time() + 601
    monkeypatch.setattr("kvc_sandbox.authn.time.time", lambda: later)
    assert request(sandbox, "/api/v1/namespaces/default/serviceaccounts/bot", token)[0] == 401
