"""apps/v1 Deployments (through a ReplicaSet per pod template, as the real controllers do) and the
garbage collector that makes deletes cascade along ownerReferences.

Concurrency contract: event loop only. Both are store listeners that never write from inside the
listener call: they note what to look at and run on the next loop iteration (`call_soon`), coalescing
any number of events for one deployment into one reconcile. A reconcile is level-based: it compares the
pods that exist with `spec.replicas` and the current template, creates or deletes the difference, and
writes the status only when it changed (so its own writes settle instead of looping).

Pods are named like real ones: `<deployment>-<10-char template hash>-<5 chars>`, labelled with the template's
labels plus `pod-template-hash`, owned by the ReplicaSet `<deployment>-<hash>`, itself owned by the
Deployment. A template change replaces the old pods (no surge/unavailable budget).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import secrets

from loguru import logger

from . import errors
from .kubelet import Kubelet
from .resources import DEPLOYMENTS, PODS, REPLICASETS, RESOURCES
from .store import Event, Store, now_rfc3339

#: the API server's alphabet for generated names (no vowels, no look-alikes).
ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def random_suffix(length: int = 5) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def template_hash(template: dict) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(ALPHABET[b % len(ALPHABET)] for b in digest[:10])


def _owner(obj: dict) -> dict:
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def _owned_by(obj: dict, uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


def _controller_uid(obj: dict) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("uid")
    return None


def _pod_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def admit(deploy: dict) -> None:
    """Validate a new Deployment and fill the API server's defaults."""
    name = deploy["metadata"]["name"]
    spec = deploy.get("spec")
    if not isinstance(spec, dict):
        raise errors.invalid(DEPLOYMENTS, name, "spec: Required value")
    selector = (spec.get("selector") or {}).get("matchLabels")
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not selector:
        raise errors.invalid(DEPLOYMENTS, name, "spec.selector: Required value")
    if any(labels.get(k) != v for k, v in selector.items()):
        raise errors.invalid(DEPLOYMENTS, name, "spec.template.metadata.labels: Invalid value: "
                                                f"{json.dumps(labels)}: `selector` does not match template `labels`")
    if not ((spec.get("template") or {}).get("spec") or {}).get("containers"):
        raise errors.invalid(DEPLOYMENTS, name, "spec.template.spec.containers: Required value")
    spec.setdefault("replicas", 1)
    spec.setdefault("strategy", {"type": "RollingUpdate",
                                 "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    deploy.setdefault("status", {})


class Deployments:
    def __init__(self, store: Store, kubelet: Kubelet):
        self._store, self._kubelet = store, kubelet
        self._pending: set[tuple[str, str]] = set()
        self._scheduled = False
        store.listeners.append(self._on_event)

    def _on_event(self, event: Event) -> None:
        m = event.obj["metadata"]
        if event.resource == DEPLOYMENTS and event.type != "DELETED":
            self._request(m.get("namespace", ""), m["name"])
        elif event.resource in (PODS, REPLICASETS):
            owner_uid = _controller_uid(event.obj)
            if owner_uid is None:
                return
            if event.resource == PODS:
                rs = next((r for r in self._store.list(REPLICASETS, m.get("namespace", ""))
                           if r["metadata"]["uid"] == owner_uid), None)
                if rs is None:
                    return
                owner_uid = _controller_uid(rs)
            deploy = next((d for d in self._store.list(DEPLOYMENTS, m.get("namespace", ""))
                           if d["metadata"]["uid"] == owner_uid), None)
            if deploy is not None:
                self._request(m.get("namespace", ""), deploy["metadata"]["name"])

    def _request(self, namespace: str, name: str) -> None:
        self._pending.add((namespace, name))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._run)

    def _run(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, set()
        for namespace, name in sorted(pending):
            try:
                self._reconcile(namespace, name)
            except Exception:
                logger.exception("sandbox: reconciling deployment {}/{} failed", namespace, name)

    def _replicaset(self, deploy: dict, pod_hash: str) -> dict:
        namespace, name = deploy["metadata"]["namespace"], deploy["metadata"]["name"]
        rs_name = f"{name}-{pod_hash}"
        rs = self._store.get(REPLICASETS, namespace, rs_name)
        spec = deploy["spec"]
        if rs is None:
            template = copy.deepcopy(spec["template"])
            template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = pod_hash
            labels = dict(template["metadata"]["labels"])
            rs = self._store.create(REPLICASETS, {
                "metadata": {"name": rs_name, "namespace": namespace, "labels": labels,
                             "ownerReferences": [_owner(deploy)],
                             "annotations": {"deployment.kubernetes.io/desired-replicas": str(spec["replicas"])}},
                "spec": {"replicas": spec["replicas"],
                         "selector": {"matchLabels": {**spec["selector"]["matchLabels"],
                                                      "pod-template-hash": pod_hash}},
                         "template": template},
                "status": {"replicas": 0},
            })
        return rs

    def _create_pod(self, rs: dict) -> None:
        template = rs["spec"]["template"]
        rs_name = rs["metadata"]["name"]
        pod = {
            "metadata": {"generateName": f"{rs_name}-", "namespace": rs["metadata"]["namespace"],
                         "labels": dict(template["metadata"].get("labels") or {}),
                         "ownerReferences": [_owner(rs)]},
            "spec": copy.deepcopy(template.get("spec") or {}),
        }
        if template["metadata"].get("annotations"):
            pod["metadata"]["annotations"] = dict(template["metadata"]["annotations"])
        pod["metadata"]["name"] = f"{rs_name}-{random_suffix()}"
        self._kubelet.admit(pod)
        for _ in range(10):
            try:
                self._store.create(PODS, pod)
                return
            except errors.ApiError as e:
                if e.code != 409:
                    raise
                pod["metadata"]["name"] = f"{rs_name}-{random_suffix()}"

    def _reconcile(self, namespace: str, name: str) -> None:
        deploy = self._store.get(DEPLOYMENTS, namespace, name)
        if deploy is None or deploy["metadata"].get("deletionTimestamp"):
            return
        spec = deploy["spec"]
        replicas = int(spec.get("replicas", 1))
        pod_hash = template_hash(spec["template"])
        current = self._replicaset(deploy, pod_hash)
        owned_rs = [rs for rs in self._store.list(REPLICASETS, namespace) if _owned_by(rs, deploy["metadata"]["uid"])]
        all_pods = self._store.list(PODS, namespace)
        live_by_rs: dict[str, list[dict]] = {}
        for rs in owned_rs:
            live_by_rs[rs["metadata"]["uid"]] = [
                p for p in all_pods
                if _owned_by(p, rs["metadata"]["uid"]) and not p["metadata"].get("deletionTimestamp")]
        for rs in owned_rs:
            pods = live_by_rs[rs["metadata"]["uid"]]
            want = replicas if rs is current or rs["metadata"]["uid"] == current["metadata"]["uid"] else 0
            if len(pods) < want:
                for _ in range(want - len(pods)):
                    self._create_pod(rs)
            elif len(pods) > want:
                newest_first = sorted(pods, key=lambda p: int(p["metadata"]["resourceVersion"]), reverse=True)
                for pod in newest_first[: len(pods) - want]:
                    self._kubelet.delete(namespace, pod["metadata"]["name"])
            self._set_rs_status(rs, want)
        self._set_status(deploy, current, owned_rs)

    def _set_rs_status(self, rs: dict, want: int) -> None:
        uid = rs["metadata"]["uid"]
        pods = [p for p in self._store.list(PODS, rs["metadata"]["namespace"])
                if _owned_by(p, uid) and not p["metadata"].get("deletionTimestamp")]
        ready = sum(_pod_ready(p) for p in pods)

        def change(obj: dict) -> None:
            obj["spec"]["replicas"] = want
            obj["status"] = {"replicas": len(pods), "fullyLabeledReplicas": len(pods), "readyReplicas": ready,
                             "availableReplicas": ready, "observedGeneration": obj["metadata"].get("generation", 1)}

        self._store.update(REPLICASETS, rs["metadata"]["namespace"], rs["metadata"]["name"], change)

    def _set_status(self, deploy: dict, current: dict, owned_rs: list[dict]) -> None:
        namespace, name = deploy["metadata"]["namespace"], deploy["metadata"]["name"]
        uids = {rs["metadata"]["uid"] for rs in owned_rs}
        pods = [p for p in self._store.list(PODS, namespace)
                if _controller_uid(p) in uids and not p["metadata"].get("deletionTimestamp")]
        updated = [p for p in pods if _controller_uid(p) == current["metadata"]["uid"]]
        ready = sum(_pod_ready(p) for p in pods)
        replicas = int(deploy["spec"].get("replicas", 1))

        def change(obj: dict) -> None:
            old = obj.get("status") or {}
            available = ready >= replicas
            conditions = {c["type"]: c for c in old.get("conditions") or []}
            stamp = now_rfc3339()
            for type_, value, reason, message in (
                ("Available", available, "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                 "Deployment has minimum availability." if available
                 else "Deployment does not have minimum availability."),
                ("Progressing", True, "NewReplicaSetAvailable",
                 f'ReplicaSet "{current["metadata"]["name"]}" has successfully progressed.'),
            ):
                status = "True" if value else "False"
                previous = conditions.get(type_)
                if previous is None or previous["status"] != status or previous["reason"] != reason:
                    conditions[type_] = {"type": type_, "status": status, "lastUpdateTime": stamp,
                                         "lastTransitionTime": stamp, "reason": reason, "message": message}
            obj["status"] = {
                "observedGeneration": obj["metadata"].get("generation", 1),
                "replicas": len(pods),
                "updatedReplicas": len(updated),
                "readyReplicas": ready,
                "availableReplicas": ready,
                "conditions": [conditions["Available"], conditions["Progressing"]],
            }
            if len(pods) - ready > 0:
                obj["status"]["unavailableReplicas"] = len(pods) - ready

        self._store.update(DEPLOYMENTS, namespace, name, change)


class GarbageCollector:
    """Deletes the dependents of a deleted object (ownerReferences), as background cascading deletion does."""

    def __init__(self, store: Store, kubelet: Kubelet):
        self._store, self._kubelet = store, kubelet
        self._gone: list[str] = []
        #: every UID some object names as its owner (never shrinks: a stale entry only costs one scan).
        self._owners: set[str] = set()
        store.listeners.append(self._on_event)

    def _on_event(self, event: Event) -> None:
        if event.type != "DELETED":
            self._owners.update(ref.get("uid") for ref in event.obj["metadata"].get("ownerReferences") or [])
            return
        uid = event.obj["metadata"]["uid"]
        if uid not in self._owners:
            return  # owns nothing: spare the scan of every object
        self._owners.discard(uid)
        if not self._gone:
            asyncio.get_running_loop().call_soon(self._run)
        self._gone.append(uid)

    def _run(self) -> None:
        gone, self._gone = set(self._gone), []
        for resource in RESOURCES:
            for obj in self._store.list(resource):
                refs = obj["metadata"].get("ownerReferences") or []
                if not any(ref.get("uid") in gone for ref in refs):
                    continue
                m = obj["metadata"]
                try:
                    if resource == PODS:
                        self._kubelet.delete(m.get("namespace", ""), m["name"])
                    else:
                        self._store.delete(resource, m.get("namespace", ""), m["name"])
                except errors.ApiError:
                    pass
