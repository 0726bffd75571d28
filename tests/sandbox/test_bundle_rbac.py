"""deploy/bundle.yaml's ServiceAccount, roles and bindings give the controller exactly what it calls.
(The bundle is the kustomize base rendered: tests/unit/test_manifests.py checks they are the same.)

What kube_vxlan_controller/k8s/ calls: list and watch pods in all namespaces (pods.py), get, list and
watch its ConfigMap in its own namespace (configmaps.py), exec in pods' agent containers (execs.py: a
websocket GET, so `create` and `get` on pods/exec), create core/v1 Events in the pods' namespaces
(events.py), patch pods/status (podstatus.py: the Wired condition), and in its own namespace create its
Lease, then get, update, list and watch that one Lease by name (leases.py). Two ways: the evaluator over
every verb of every kind the sandbox serves, in the controller's namespace, another one and
cluster-wide; and the controller's own k8s code in-cluster, with the ServiceAccount's token, against a
sandbox holding the bundle and deploy/networks.yaml (root only).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from apihelpers import AGENT_INIT, incluster_api, pod_manifest, service_account_token
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException
from kubernetes.utils import create_from_dict

from kube_vxlan_controller.k8s.client import connect
from kube_vxlan_controller.k8s.configmaps import ConfigMapStream, read_configmap
from kube_vxlan_controller.k8s.events import record_event
from kube_vxlan_controller.k8s.errors import Forbidden
from kube_vxlan_controller.k8s.execs import Executor
from kube_vxlan_controller.k8s.leases import LeaseLock, LeaseWatch
from kube_vxlan_controller.k8s.pods import PodsListed, PodStream
from kube_vxlan_controller.k8s.podstatus import patch_condition
from kube_vxlan_controller.model import Condition, LeaseRecord, Pod
from kube_vxlan_controller.wired import CONDITION_TYPE
from kvc_sandbox import Sandbox, rbac
from kvc_sandbox.authn import service_account_user
from kvc_sandbox.requestinfo import checks
from kvc_sandbox.resources import RESOURCES
from polling import wait_for

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
HOME = "kube-system"
CONTROLLER = service_account_user(HOME, "kube-vxlan-controller")
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
#: (API group, resource, verb, namespace or "" for cluster-wide) the controller's calls need.
NEEDED = ({("", "pods", verb, ns) for verb in ("list", "watch") for ns in ("", HOME, "default")}
          | {("", "configmaps", verb, HOME) for verb in ("get", "list", "watch")}
          | {("", "pods/exec", verb, ns) for verb in ("create", "get") for ns in (HOME, "default")}
          | {("", "events", "create", ns) for ns in (HOME, "default")}
          | {("", "pods/status", "patch", ns) for ns in (HOME, "default")}
          | {("coordination.k8s.io", "leases", "create", HOME)})
LEASE = "kube-vxlan-controller"
#: on its own Lease only (by name: a list or watch of it carries a field selector on its name)
NEEDED_ON_ITS_LEASE = {(verb, HOME) for verb in ("get", "update", "list", "watch")}
#: granted beyond that, on purpose (the bundle's comments): get of a single pod, and Events through
#: events.k8s.io for a controller version that would use that API.
EXTRA = ({("", "pods", "get", ns) for ns in (HOME, "default")}
         | {("events.k8s.io", "events", "create", ns) for ns in (HOME, "default")})


def bundle_docs(*kinds: str, name: str = "bundle.yaml") -> list[dict]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / name).read_text())
            if doc and (not kinds or doc["kind"] in kinds)]


def request_path(group: str, resource: str, verb: str, namespace: str, name: str = "x") -> tuple[str, str, dict]:
    """method, path and query of a request with these attributes (lists, watches and deletecollections of
    one object by name when `name` is not "x", which stands for any object)."""
    plural, _, sub = resource.partition("/")
    base = f"/apis/{group}/v1" if group else "/api/v1"
    collection = f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"
    one = f"{collection}/{name}" + (f"/{sub}" if sub else "")
    named = {} if name == "x" else {"fieldSelector": f"metadata.name={name}"}
    return {"get": ("GET", one, {}), "list": ("GET", collection, named),
            "watch": ("GET", collection, {"watch": "true", **named}),
            "create": ("POST", one if sub else collection, {}), "update": ("PUT", one, {}),
            "patch": ("PATCH", one, {}), "delete": ("DELETE", one, {}),
            "deletecollection": ("DELETE", collection, named)}[verb]


def test_the_bundle_grants_exactly_what_the_controller_needs():
    policy = rbac.Objects(bundle_docs())
    granted = set()
    for r in RESOURCES:
        for resource in (r.plural, *(f"{r.plural}/{s}" for s in r.subresources)):
            for namespace in ((HOME, "default", "") if r.namespaced else ("",)):
                for verb in VERBS:
                    collection_verb = verb in ("list", "watch", "deletecollection")
                    if (namespace == "" and r.namespaced and not collection_verb) or ("/" in resource and collection_verb):
                        continue  # no such request (one namespaced object is in a namespace; a subresource is of one)
                    method, path, query = request_path(r.group, resource, verb, namespace)
                    if all(rbac.authorize(CONTROLLER, a, policy).allowed for a in checks(method, path, query, False)):
                        granted.add((r.group, resource, verb, namespace))
    assert NEEDED <= granted, f"the bundle misses {sorted(NEEDED - granted)}"
    assert granted == NEEDED | EXTRA, f"the bundle grants more: {sorted(granted - NEEDED - EXTRA)}"


def test_the_bundle_grants_its_own_lease_by_name_and_no_other():
    policy = rbac.Objects(bundle_docs())

    def granted(name: str) -> set[tuple[str, str]]:
        return {(verb, namespace) for verb in VERBS for namespace in (HOME, "default")
                if all(rbac.authorize(CONTROLLER, a, policy).allowed for a in
                       checks(*request_path("coordination.k8s.io", "leases", verb, namespace, name), False))}

    assert granted(LEASE) == NEEDED_ON_ITS_LEASE | {("create", HOME)}
    assert granted("someone-elses") == {("create", HOME)}


@pytest.mark.root
def test_the_controllers_own_calls_work_with_the_bundle_in_cluster_and_nothing_more(tmp_path, monkeypatch):
    with Sandbox(workdir=tmp_path, tls=True) as sandbox:
        admin = k8s_config.new_client_from_config(config_file=str(sandbox.kubeconfig))
        core = k8s.CoreV1Api(admin)
        for doc in bundle_docs("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding") \
                + bundle_docs(name="networks.yaml"):
            create_from_dict(admin, doc)
        core.create_namespaced_pod("default", pod_manifest("p", labels={"vxlan.openvnf.org": "true"}))
        wait_for(lambda: any(s.get("state", {}).get("running") for s in
                             (sandbox.pod("default", "p") or {}).get("status", {}).get("initContainerStatuses") or []),
                 what="p's init agent running")
        service_account_token(sandbox, HOME, "kube-vxlan-controller")
        incluster_api(sandbox, tmp_path / "sa", monkeypatch, HOME, "kube-vxlan-controller")  # env + files
        cluster = connect(None, namespace=HOME)

        assert dict(read_configmap(cluster))["vxeth1"] == "id=101 up"
        seen: list = []
        ConfigMapStream(cluster, on_change=seen.append, watch_timeout=1).run(iterations=2)
        assert seen and seen[0]["vxeth0"] == "id=100 up"
        events: list = []
        PodStream(cluster, label_selector="vxlan.openvnf.org=true", on_event=events.append,
                  watch_timeout=1).run(iterations=2)
        listed = [e for e in events if isinstance(e, PodsListed)]
        assert listed and [p.name for p in listed[0].pods] == ["p"]
        result = Executor(cluster).run("default", "p", AGENT_INIT, ["sh", "-c", "exit 3"])
        assert result.exit_code == 3
        uid = core.read_namespaced_pod("p", "default").metadata.uid
        record_event(cluster, Pod(uid=uid, namespace="default", name="p"), reason="Probe", message="m")
        assert [e.reason for e in core.list_namespaced_event("default").items] == ["Probe"]
        patch_condition(cluster, Pod(uid=uid, namespace="default", name="p"), Condition(False, "SettingUp"),
                        transition=True)
        assert CONDITION_TYPE in {c.type for c in core.read_namespaced_pod_status("p", "default").status.conditions}
        lease = LeaseLock(cluster, namespace=HOME, name=LEASE)
        assert lease.get(5) is None
        lease.create(LeaseRecord(holder="me", lease_duration=15), 5)
        lease.update(LeaseRecord(holder="", lease_duration=1), 5)
        assert lease.get(5).holder == ""
        looks: list = []
        LeaseWatch(cluster, namespace=HOME, name=LEASE, on_change=lambda: looks.append(1), watch_timeout=1).run(
            iterations=2)
        assert looks
        with pytest.raises(Forbidden):
            LeaseLock(cluster, namespace=HOME, name="someone-elses").get(5)

        controller = k8s.CoreV1Api(cluster.api_client)  # the generated API: calls beyond the controller's own
        denied = {
            "delete a pod": lambda: controller.delete_namespaced_pod("p", "default"),
            "read a secret": lambda: controller.read_namespaced_secret("s", HOME),
            "list configmaps elsewhere": lambda: controller.list_namespaced_config_map("default"),
            "patch an event": lambda: controller.patch_namespaced_event("e", "default", {"message": "x"}),
            "patch a pod": lambda: controller.patch_namespaced_pod("p", "default", {"metadata": {"labels": {"x": "y"}}}),
            "create a pod": lambda: controller.create_namespaced_pod("default", pod_manifest("q")),
        }
        for what, call in denied.items():
            with pytest.raises(ApiException) as e:
                call()
            assert e.value.status == 403, what
            assert 'User "system:serviceaccount:kube-system:kube-vxlan-controller" cannot' in \
                json.loads(e.value.body)["message"], what
        cluster.close()
        admin.close()

