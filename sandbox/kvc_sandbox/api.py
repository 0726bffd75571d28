"""The sandbox's HTTP API: the routes of a Kubernetes API server, in its wire format.

Serves `/version`, discovery, `/openapi/v2` (JSON or protobuf) and `/openapi/v3` (openapi.py), and for
every kind of resources.py: create, get, list, watch, update, merge/strategic/JSON patch, delete and
deletecollection, with label and field selectors; the `status` and `scale` subresources; pod `exec`
(websocket, handed to execws.py) and `log` (the runtime's, through the kubelet; empty on the netns
runtime); a ServiceAccount's `token` (TokenRequest, the token from authn.py). Every error is a `Status` object. Every JSON answer is written as kube-apiserver writes it
(`respond`, `encode`). kubectl's Table requests (`Accept: …;as=Table;…`) get Table responses, watches too.
`POST /sandbox/faults` sets faults from another process (JSON body; see `Api.faults_endpoint`). Before
any handler, the middleware lets access.py authenticate, impersonate and authorize the request (401/403);
SelfSubjectAccessReviews are answered there too. `GET /sandbox/stats` tells what the server saw (see
`Api.stats_endpoint`): benchmarks count every client's execs here, server side, the same way whoever the
client is, and tests see by whom (the authenticated user) and whether two users ever exec'd at once.
`Api.exec_log` keeps the last execs (pod, container, argv, stdin) and `Api.patches` counts PATCH
requests by object and subresource, for tests that compare what a client ran or wrote (`GET /sandbox/execs`
serves the log to other processes).

Concurrency contract: every handler runs on the sandbox's event loop and touches the store, the kubelet
and the deployment controller synchronously, so each request sees and makes one consistent change. Only
the runtime's work leaves the loop (execws.py, kubelet.py); exec and log streams are awaited in their
handler task. A watch is one handler
task reading its own queue, fed by the store; it ends on `timeoutSeconds`, a dropped connection,
`drop_watches` or shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import collections
import json
import random
import time
from typing import Awaitable, Callable

from aiohttp import web
from loguru import logger

from . import deployments, errors, execws, openapi, openapi_proto, patches, tables
from .access import REVIEWS_PATH, Access
from .authn import User
from .faults import Faults
from .jsoncopy import copy_json
from .kubelet import Kubelet
from .resources import (BY_PATH, DEPLOYMENTS, NAMESPACES, PODS, RESOURCES, VERSION, Resource, core_versions,
                        group, group_list, resource_list)
from .selectors import SelectorError, object_filter, parse_labels
from .store import CLOSE, Store

JSON = "application/json"
#: how many execs the exec log keeps
EXEC_LOG = 10_000
#: TokenRequest: the default and the shortest lifetime (seconds), and the audience, as kube-apiserver's
TOKEN_SECONDS, MIN_TOKEN_SECONDS = 3600, 600
TOKEN_AUDIENCE = "https://kubernetes.default.svc.cluster.local"
#: paths `fail_requests` never fails: the control endpoint, the version (kubectl's dispatcher reads it).
_NEVER_FAIL = ("/sandbox/", "/version")
#: server-set metadata a client cannot set on create.
#: the authenticated user of a request, set by the middleware.
USER = web.RequestKey("user", User)
_SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
                  "deletionGracePeriodSeconds", "generation", "managedFields", "selfLink")


def encode(obj) -> bytes:
    """One JSON value as kube-apiserver's encoder (Go's `json.Encoder`) writes it: compact, then a newline.
    Clients rely on the newline: the Erlang original reads a body up to it."""
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


def respond(obj, status: int = 200) -> web.Response:
    """A JSON response as kube-apiserver sends every object, list, Table and Status: the body from `encode`,
    `Content-Type: application/json` exactly — no charset (aiohttp's `text=` would add one, and lightkube then
    takes an error Status for a plain HTTP error), no `;as=Table` echoed for a Table (kube-apiserver's
    `WriteObjectNegotiated` leaves the Accept's parameters out)."""
    return web.Response(body=encode(obj), status=status, content_type=JSON)


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


def _not_served(path: str) -> errors.ApiError:
    return errors.ApiError(404, "NotFound", "the server could not find the requested resource",
                           {"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]}
                           if path.startswith("/openapi") else None)


class Target:
    """What a resource URL names: the kind, the namespace (None: all), the object, the subresource."""

    def __init__(self, resource: Resource, namespace: str | None, name: str | None, sub: str | None):
        self.resource, self.namespace, self.name, self.sub = resource, namespace, name, sub

    @classmethod
    def parse(cls, path: str) -> "Target":
        parts = [p for p in path.split("/") if p]
        if len(parts) >= 2 and parts[0] == "api":
            group_name, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group_name, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise _not_served(path)
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces" and (group_name, version, rest[2]) in BY_PATH:
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise _not_served(path)
        resource = BY_PATH.get((group_name, version, rest[0]))
        if resource is None:
            raise _not_served(path)
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if resource.namespaced and name is not None and namespace is None:
            raise _not_served(path)
        if not resource.namespaced and namespace is not None:
            raise _not_served(path)
        if sub is not None and sub not in resource.subresources:
            raise _not_served(path)
        return cls(resource, namespace, name, sub)


class Api:
    def __init__(self, store: Store, kubelet: Kubelet, faults: Faults, access: Access):
        self.store, self.kubelet, self.faults = store, kubelet, faults
        #: authentication and RBAC, checked in the middleware before every handler.
        self.access = access
        self._random = random.Random()
        #: the open watch handlers, ended on shutdown.
        self.watches: set[asyncio.Task] = set()
        #: execs accepted (websocket upgraded), by container name, by user and by pod (`namespace/name`),
        #: since the sandbox started: a long-lived exec counts once, when it is opened.
        self.exec_counts: collections.Counter[str] = collections.Counter()
        self.exec_users: collections.Counter[str] = collections.Counter()
        self.exec_pods: collections.Counter[str] = collections.Counter()
        #: execs running now (upgraded, command not ended) by user, the most users ever at once, and the
        #: most execs ever open at once.
        self.exec_running: collections.Counter[str] = collections.Counter()
        self.most_exec_users = 0
        self.most_execs_open = 0
        #: the last EXEC_LOG execs, oldest first: {namespace, pod, container, argv, stdin}
        self.exec_log: collections.deque[dict] = collections.deque(maxlen=EXEC_LOG)
        #: the execs running now (`execws.ExecSession`) → their pod's labels
        self.live_execs: dict = {}
        #: PATCH requests by (resource, subresource or "", namespace, name)
        self.patches: collections.Counter[tuple[str, str, str, str]] = collections.Counter()

    # application ---------------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=16 * 1024 * 1024)
        def static(make: Callable[[], object]):
            async def handler(request: web.Request) -> web.Response:
                return respond(make())
            return handler

        async def ok(request: web.Request) -> web.Response:
            return web.Response(text="ok")

        app.router.add_get("/version", static(lambda: VERSION))
        app.router.add_get("/version/", static(lambda: VERSION))
        for path in ("/healthz", "/readyz", "/livez"):
            app.router.add_get(path, ok)
        app.router.add_get("/api", static(core_versions))
        app.router.add_get("/apis", static(group_list))
        app.router.add_get("/openapi/v2", self._openapi_v2)
        app.router.add_get("/openapi/v3", static(openapi.index))
        app.router.add_get("/openapi/v3/{gv:.*}", self._openapi_gv)
        app.router.add_post("/sandbox/faults", self.faults_endpoint)
        app.router.add_post(REVIEWS_PATH, self._access_review)
        app.router.add_get("/sandbox/stats", self.stats_endpoint)
        app.router.add_get("/sandbox/execs", self.execs_endpoint)
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[[web.Request], Awaitable]):
        try:
            request[USER] = self.access.check(request)
            if (self.faults.fail_share > 0 and not request.path.startswith(_NEVER_FAIL)
                    and not request.path.endswith("/exec")
                    and self._random.random() < self.faults.fail_share):
                raise errors.ApiError(500, "InternalError", "Internal error occurred: injected fault (sandbox)")
            return await handler(request)
        except errors.ApiError as e:
            if e.code >= 500:
                logger.debug("sandbox: {} {} → {} {}", request.method, request.path_qs, e.code, e.message)
            return respond(e.status(), e.code)
        except web.HTTPException as e:
            return respond(errors.status(e.status, e.reason.replace(" ", ""), e.reason), e.status)
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as e:
            logger.exception("sandbox: {} {} failed", request.method, request.path_qs)
            return respond(errors.status(500, "InternalError", f"Internal error occurred: {e}"), 500)

    @staticmethod
    async def _openapi_v2(request: web.Request) -> web.Response:
        doc = openapi.swagger()
        if openapi_proto.wanted(request.headers.get("Accept", "")):
            return web.Response(body=openapi_proto.encode(doc), content_type=openapi_proto.MEDIA_TYPE)
        return respond(doc)

    async def _openapi_gv(self, request: web.Request) -> web.Response:
        parts = request.match_info["gv"].split("/")
        doc = None
        if len(parts) == 2 and parts[0] == "api":
            doc = openapi.group_version_doc("", parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            doc = openapi.group_version_doc(parts[1], parts[2])
        if doc is None:
            raise _not_served(request.path)
        return respond(doc)

    async def _access_review(self, request: web.Request) -> web.Response:
        return respond(self.access.review(request[USER], await self._body(request)), 201)

    async def faults_endpoint(self, request: web.Request) -> web.Response:
        """Body keys (all optional, applied in this order): clear, sever_execs (a selector), exec_latency, hang_selector, lift_hangs,
        fail_share, drop_watches, compact, cut_node, restore_node (a node's name). Answers with the faults now
        in force."""
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            if body.get("hang_selector"):
                parse_labels(body["hang_selector"])
            latency = float(body.get("exec_latency", 0))
            share = float(body.get("fail_share", 0))
        except (ValueError, TypeError) as e:  # JSONDecodeError and SelectorError are ValueErrors
            raise errors.bad_request(f"invalid fault request: {e}") from e
        f = self.faults
        if body.get("clear"):
            f.clear()
        if body.get("sever_execs") is not None:
            f.sever_execs(str(body["sever_execs"]))
        if "exec_latency" in body:
            f.set_exec_latency(latency)
        if body.get("hang_selector"):
            f.hang_execs(body["hang_selector"])
        if body.get("lift_hangs"):
            f.lift_hangs()
        if "fail_share" in body:
            f.fail_requests(share)
        if body.get("drop_watches"):
            f.drop_watches()
        if body.get("compact"):
            f.compact()
        try:
            if body.get("cut_node"):
                f.cut_node(str(body["cut_node"]))
            if body.get("restore_node"):
                f.restore_node(str(body["restore_node"]))
        except ValueError as e:
            raise errors.bad_request(f"invalid fault request: {e}") from e
        return respond(f.snapshot())

    async def stats_endpoint(self, request: web.Request) -> web.Response:
        """`execs`: {total, by_container, by_user, by_pod (`namespace/name`)} accepted since start (a
        long-lived exec, such as a session, counts once: when it is opened), `open`: running now (from the
        upgrade to the command's end) and `most_open`: the most ever open at once, and `most_users_at_once`:
        the most users whose execs ran at the same time (two controllers that both exec'd at once make it
        2); `watches`: watch streams open now; `netns`: pod UID → the name of its network namespace (under
        /run/netns), for tools that read the kernel."""
        netns = {}
        for pod in self.store.list(PODS):
            m = pod["metadata"]
            name = self.kubelet.netns(m["namespace"], m["name"])
            if name is not None:
                netns[m["uid"]] = name
        return respond({"execs": {"total": sum(self.exec_counts.values()), "by_container": dict(self.exec_counts),
                                  "by_user": dict(self.exec_users), "by_pod": dict(self.exec_pods),
                                  "open": sum(self.exec_running.values()), "most_open": self.most_execs_open,
                                  "most_users_at_once": self.most_exec_users},
                        "watches": len(self.watches), "netns": netns})

    async def execs_endpoint(self, request: web.Request) -> web.Response:
        """The exec log (`exec_log`), oldest first."""
        return respond({"execs": list(self.exec_log)})

    # dispatch ------------------------------------------------------------------------------------------
    async def dispatch(self, request: web.Request):
        path, method = request.path, request.method
        parts = [p for p in path.split("/") if p]
        if method == "GET":
            if parts == ["api", "v1"] or (len(parts) == 3 and parts[0] == "apis"):
                doc = resource_list(*(("", "v1") if parts[0] == "api" else (parts[1], parts[2])))
                if doc is None:
                    raise _not_served(path)
                return respond(doc)
            if len(parts) == 2 and parts[0] == "apis":
                doc = group(parts[1])
                if doc is None:
                    raise _not_served(path)
                return respond(doc)
        target = Target.parse(path)
        r, q = target.resource, request.query
        if target.sub == "exec":
            if method not in ("GET", "POST"):
                raise errors.ApiError(405, "MethodNotAllowed", "the server does not allow this method on the "
                                                               "requested resource")
            return await self.exec(request, target)
        if target.sub == "log":
            return await self.log(request, target)
        if target.sub == "token":
            if method != "POST":
                raise errors.ApiError(405, "MethodNotAllowed", "the server does not allow this method on the "
                                                               "requested resource")
            return self.token_request(target, await self._body(request))
        if target.name is None:
            if method == "GET":
                if _flag(q.get("watch")):
                    return await self.watch(request, target)
                return self.list(request, target)
            if method == "POST":
                return self.create(target, await self._body(request), dry_run=bool(q.get("dryRun")))
            if method == "DELETE":
                return await self.delete_collection(request, target)
        else:
            if method == "GET":
                return self.get(request, target)
            if method == "PUT":
                return self.update(target, await self._body(request), dry_run=bool(q.get("dryRun")))
            if method == "PATCH":
                return self.patch(request, target, await request.read())
            if method == "DELETE":
                return await self.delete(request, target)
        raise errors.ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested "
                                                       "resource")

    @staticmethod
    async def _body(request: web.Request) -> dict:
        try:
            body = json.loads(await request.read() or b"{}")
        except json.JSONDecodeError as e:
            raise errors.bad_request(f"invalid JSON in the request body: {e}") from e
        if not isinstance(body, dict):
            raise errors.bad_request("the request body must be a JSON object")
        return body

    # reads ---------------------------------------------------------------------------------------------
    @staticmethod
    def _filter(request: web.Request):
        try:
            return object_filter(request.query.get("labelSelector"), request.query.get("fieldSelector"))
        except SelectorError as e:
            raise errors.bad_request(str(e)) from e

    def get(self, request: web.Request, target: Target) -> web.Response:
        obj = self.store.require(target.resource, target.namespace or "", target.name)
        if target.sub == "scale":
            return respond(self._scale(obj))
        if tables.wants_table(request.headers.get("Accept", "")):
            return respond(tables.table(target.resource, [obj], obj["metadata"]["resourceVersion"],
                                        request.query.get("includeObject", "Metadata")))
        return respond(obj)

    def list(self, request: web.Request, target: Target) -> web.Response:
        r = target.resource
        items = self.store.list(r, target.namespace, self._filter(request))
        rv = str(self.store.rv)
        if tables.wants_table(request.headers.get("Accept", "")):
            return respond(tables.table(r, items, rv, request.query.get("includeObject", "Metadata")))
        listed = []
        for obj in items:
            item = dict(obj)
            item.pop("kind", None)
            item.pop("apiVersion", None)
            listed.append(item)
        return respond({"kind": f"{r.kind}List", "apiVersion": r.api_version, "metadata": {"resourceVersion": rv},
                        "items": listed})

    async def watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        q = request.query
        predicate = self._filter(request)
        rv_param = q.get("resourceVersion", "")
        try:
            since = int(rv_param) if rv_param not in ("", "0") else None
        except ValueError:
            raise errors.bad_request(f"invalid resourceVersion {rv_param!r}") from None
        timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else 1800.0
        as_table = tables.wants_table(request.headers.get("Accept", ""))
        include = q.get("includeObject", "Metadata")
        response = web.StreamResponse(status=200, headers={"Content-Type": JSON, "Cache-Control": "no-cache"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            watcher = self.store.watch(target.resource, target.namespace, predicate, since)
        except errors.ApiError as e:
            await response.write(encode({"type": "ERROR", "object": e.status()}))
            await response.write_eof()
            return response
        task = asyncio.current_task()
        self.watches.add(task)
        deadline = time.monotonic() + timeout
        first = True
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    item = await asyncio.wait_for(watcher.queue.get(), min(left, 5.0))
                except asyncio.TimeoutError:
                    if request.transport is None or request.transport.is_closing():
                        break
                    continue
                if item is CLOSE:
                    break
                kind, obj = item
                if as_table:
                    obj = tables.table(target.resource, [obj], obj["metadata"]["resourceVersion"], include,
                                       with_columns=first)
                first = False
                await response.write(encode({"type": kind, "object": obj}))
            await response.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.store.unwatch(watcher)
            self.watches.discard(task)
        return response

    # writes --------------------------------------------------------------------------------------------
    def _check_kind(self, r: Resource, body: dict) -> None:
        if body.get("kind") and body["kind"] != r.kind:
            raise errors.bad_request(f"the body of the request was in an unknown format: kind {body['kind']!r} "
                                     f"does not match {r.kind}")

    def create(self, target: Target, body: dict, dry_run: bool = False) -> web.Response:
        r = target.resource
        if target.sub:
            raise errors.ApiError(405, "MethodNotAllowed", "the server does not allow this method")
        self._check_kind(r, body)
        m = body.setdefault("metadata", {})
        if r.namespaced:
            if m.get("namespace") and m["namespace"] != target.namespace:
                raise errors.bad_request("the namespace of the provided object does not match the namespace "
                                         "sent on the request")
            m["namespace"] = target.namespace
        for key in _SERVER_FIELDS:
            m.pop(key, None)
        if not m.get("name"):
            if not m.get("generateName"):
                raise errors.invalid(r, "", "metadata.name: Required value: name or generateName is required")
            m["name"] = m["generateName"] + deployments.random_suffix()
        if r == PODS:
            self.kubelet.admit(body)
        elif r == DEPLOYMENTS:
            deployments.admit(body)
        elif r == NAMESPACES:
            body.setdefault("spec", {"finalizers": ["kubernetes"]})
            body["status"] = {"phase": "Active"}
            m.setdefault("labels", {})["kubernetes.io/metadata.name"] = m["name"]
        if dry_run:
            if self.store.get(r, target.namespace or "", m["name"]) is not None:
                raise errors.already_exists(r, m["name"])
            return respond(body, 201)
        return respond(self.store.create(r, body), 201)

    def _replace(self, target: Target, current: dict, new: dict) -> dict:
        """The object `new` would make of `current`: server fields kept, status/spec split by subresource."""
        r = target.resource
        self._check_kind(r, new)
        m = new.setdefault("metadata", {})
        if m.get("name", target.name) != target.name:
            raise errors.bad_request(f'the name of the object ({m.get("name")}) does not match the name on the URL '
                                     f'({target.name})')
        wanted_rv = m.get("resourceVersion")
        if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
            raise errors.conflict(r, target.name)
        for key in ("name", "namespace", "uid", "creationTimestamp", "generation", "deletionTimestamp",
                    "deletionGracePeriodSeconds"):
            if key in current["metadata"]:
                m[key] = current["metadata"][key]
            else:
                m.pop(key, None)
        if "status" in r.subresources:
            if target.sub == "status":
                new = {**copy_json(current), "status": new.get("status", {})}
            elif "status" in current:
                new["status"] = copy_json(current["status"])
            else:
                new.pop("status", None)
            if new.get("spec") != current.get("spec"):
                new["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        return new

    def update(self, target: Target, body: dict, dry_run: bool = False) -> web.Response:
        r = target.resource
        current = self.store.require(r, target.namespace or "", target.name)
        if target.sub == "scale":
            return self._set_scale(current, body, dry_run)
        new = self._replace(target, current, body)
        if dry_run:
            return respond(new)
        return respond(self.store.put(r, new))

    def patch(self, request: web.Request, target: Target, raw: bytes) -> web.Response:
        r = target.resource
        self.patches[(r.plural, target.sub or "", target.namespace or "", target.name)] += 1
        current = self.store.require(r, target.namespace or "", target.name)
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        try:
            patch = json.loads(raw or b"null")
        except json.JSONDecodeError as e:
            raise errors.bad_request(f"invalid JSON patch: {e}") from e
        base = self._scale(current) if target.sub == "scale" else current
        if content_type == "application/json-patch+json":
            patched = patches.json_patch(base, patch)
        elif content_type in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            if not isinstance(patch, dict):
                raise errors.bad_request("a merge patch must be a JSON object")
            patched = patches.merge(base, patch, strategic=content_type.startswith("application/strategic"))
        else:
            raise errors.ApiError(415, "UnsupportedMediaType",
                                  f"the body of the request was in an unknown format - accepted media types "
                                  f"include: application/json-patch+json, application/merge-patch+json, "
                                  f"application/strategic-merge-patch+json (not {content_type!r})")
        dry_run = bool(request.query.get("dryRun"))
        if target.sub == "scale":
            return self._set_scale(current, patched, dry_run)
        if patched.get("metadata", {}).get("resourceVersion") == current["metadata"]["resourceVersion"]:
            patched["metadata"].pop("resourceVersion")
        new = self._replace(target, current, patched)
        if dry_run:
            return respond(new)
        return respond(self.store.put(r, new) if new != current else current)

    @staticmethod
    def _scale(deploy: dict) -> dict:
        if deploy["kind"] != "Deployment":
            raise errors.bad_request("scale is served for deployments only")
        labels = deploy["spec"]["selector"].get("matchLabels") or {}
        m = deploy["metadata"]
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {k: m[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")},
                "spec": {"replicas": deploy["spec"].get("replicas", 1)},
                "status": {"replicas": (deploy.get("status") or {}).get("replicas", 0),
                           "selector": ",".join(f"{k}={v}" for k, v in labels.items())}}

    def _set_scale(self, deploy: dict, scale: dict, dry_run: bool) -> web.Response:
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise errors.invalid(DEPLOYMENTS, deploy["metadata"]["name"],
                                 f"spec.replicas: Invalid value: {replicas!r}: must be greater than or equal to 0")
        wanted_rv = (scale.get("metadata") or {}).get("resourceVersion")
        if wanted_rv and wanted_rv != deploy["metadata"]["resourceVersion"]:
            raise errors.conflict(DEPLOYMENTS, deploy["metadata"]["name"])
        if dry_run:
            return respond({**self._scale(deploy), "spec": {"replicas": replicas}})

        def change(obj: dict) -> None:
            if obj["spec"].get("replicas") != replicas:
                obj["spec"]["replicas"] = replicas
                obj["metadata"]["generation"] = obj["metadata"].get("generation", 1) + 1

        m = deploy["metadata"]
        return respond(self._scale(self.store.update(DEPLOYMENTS, m["namespace"], m["name"], change)))

    async def _delete_options(self, request: web.Request) -> dict:
        options: dict = {}
        if request.can_read_body:
            try:
                options = json.loads(await request.read() or b"{}") or {}
            except json.JSONDecodeError as e:
                raise errors.bad_request(f"invalid DeleteOptions: {e}") from e
        if "gracePeriodSeconds" in request.query:
            options["gracePeriodSeconds"] = int(request.query["gracePeriodSeconds"])
        return options

    def _delete_one(self, r: Resource, namespace: str, name: str, options: dict, dry_run: bool):
        current = self.store.require(r, namespace, name)
        uid = (options.get("preconditions") or {}).get("uid")
        if uid and uid != current["metadata"]["uid"]:
            raise errors.ApiError(409, "Conflict", f"Precondition failed: UID in precondition: {uid}, UID in "
                                                   f"object meta: {current['metadata']['uid']}")
        if dry_run:
            return current
        if r == PODS:
            return self.kubelet.delete(namespace, name, options.get("gracePeriodSeconds"))
        if r == NAMESPACES:
            for resource in RESOURCES:
                if resource.namespaced:
                    for obj in self.store.list(resource, name):
                        self._delete_one(resource, name, obj["metadata"]["name"], {}, False)
        gone = self.store.delete(r, namespace, name)
        details = {"name": name, "kind": r.plural, "uid": gone["metadata"]["uid"]}
        if r.group:
            details["group"] = r.group
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}

    async def delete(self, request: web.Request, target: Target) -> web.Response:
        options = await self._delete_options(request)
        return respond(self._delete_one(target.resource, target.namespace or "", target.name, options,
                                        bool(request.query.get("dryRun"))))

    async def delete_collection(self, request: web.Request, target: Target) -> web.Response:
        options = await self._delete_options(request)
        r = target.resource
        items = self.store.list(r, target.namespace, self._filter(request))
        deleted = []
        for obj in items:
            m = obj["metadata"]
            try:
                result = self._delete_one(r, m.get("namespace", ""), m["name"], options,
                                          bool(request.query.get("dryRun")))
            except errors.ApiError as e:
                if e.code != 404:
                    raise
                continue
            deleted.append(obj if result.get("kind") == "Status" else result)
        return respond({"kind": f"{r.kind}List", "apiVersion": r.api_version,
                        "metadata": {"resourceVersion": str(self.store.rv)}, "items": deleted})

    # TokenRequest --------------------------------------------------------------------------------------
    def token_request(self, target: Target, body: dict) -> web.Response:
        """`kubectl create token NAME`: a new token of the ServiceAccount (authn.py), as kube-apiserver
        answers a TokenRequest (default 1 h; less than 10 min is invalid)."""
        self.store.require(target.resource, target.namespace or "", target.name)
        spec = body.get("spec") or {}
        seconds = spec.get("expirationSeconds") or TOKEN_SECONDS
        if not isinstance(seconds, int) or seconds < MIN_TOKEN_SECONDS:
            raise errors.ApiError(422, "Invalid", f'TokenRequest.authentication.k8s.io "{target.name}" is invalid: '
                                                  f"spec.expirationSeconds: Invalid value: {seconds}: may not specify "
                                                  "a duration less than 10 minutes")
        token, expires = self.access.tokens.request_token(target.namespace or "", target.name, seconds)
        return respond({
            "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": target.name, "namespace": target.namespace, "creationTimestamp": None},
            "spec": {"audiences": spec.get("audiences") or [TOKEN_AUDIENCE], "expirationSeconds": seconds,
                     "boundObjectRef": spec.get("boundObjectRef")},
            "status": {"token": token,
                       "expirationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))},
        }, 201)

    # exec ----------------------------------------------------------------------------------------------
    async def exec(self, request: web.Request, target: Target) -> web.StreamResponse:
        q = request.query
        argv = q.getall("command", [])
        if not argv:
            raise errors.bad_request("you must specify at least 1 command")
        container, runner = self.kubelet.exec_target(target.namespace, target.name, q.get("container"))
        if request.headers.get("Upgrade", "").lower() != "websocket":
            raise errors.ApiError(400, "BadRequest", "Upgrade request required")
        user = request[USER].name
        self.exec_counts[container.name] += 1
        self.exec_users[user] += 1
        self.exec_pods[f"{target.namespace}/{target.name}"] += 1
        record = {"namespace": target.namespace, "pod": target.name, "container": container.name, "argv": argv,
                  "stdin": ""}
        self.exec_log.append(record)

        def on_stdin(data: bytes) -> None:
            record["stdin"] += data.decode("utf-8", "replace")
        labels = dict((self.store.get(PODS, target.namespace, target.name) or {}).get("metadata", {})
                      .get("labels") or {})
        faults = self.faults

        def is_hung() -> bool:
            return faults.hangs(labels)

        if faults.broken(labels, argv):
            runner = execws.Unrunnable()

        self.exec_running[user] += 1
        self.most_exec_users = max(self.most_exec_users, sum(1 for n in self.exec_running.values() if n))
        self.most_execs_open = max(self.most_execs_open, sum(self.exec_running.values()))
        try:
            return await execws.serve_exec(
                request, container=runner, argv=argv, stdin=_flag(q.get("stdin")),
                stdout=_flag(q.get("stdout", "true")), stderr=_flag(q.get("stderr", "true")),
                latency=faults.exec_latency, is_hung=is_hung,
                target=f"{target.namespace}/{target.name}:{container.name}", on_stdin=on_stdin,
                live=self.live_execs, tag=labels)
        finally:
            self.exec_running[user] -= 1

    def sever_execs(self, selector: str) -> None:
        """Close the execs running now into pods matching `selector` (the `sever_execs` fault)."""
        matches = parse_labels(selector)
        for session, labels in list(self.live_execs.items()):
            if matches(labels):
                asyncio.get_running_loop().create_task(session.sever())

    # log -----------------------------------------------------------------------------------------------
    async def log(self, request: web.Request, target: Target) -> web.StreamResponse:
        """`GET …/pods/NAME/log`: `container`, `previous`, `follow`, `tailLines`, `timestamps`."""
        q = request.query
        try:
            tail = int(q["tailLines"]) if q.get("tailLines") else None
        except ValueError:
            raise errors.bad_request(f"invalid tailLines {q['tailLines']!r}") from None
        chunks = self.kubelet.logs(target.namespace, target.name, q.get("container"), previous=_flag(q.get("previous")),
                                   follow=_flag(q.get("follow")), tail=tail, timestamps=_flag(q.get("timestamps")))
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        async with contextlib.aclosing(chunks):
            try:
                async for chunk in chunks:
                    await response.write(chunk)
                await response.write_eof()
            except ConnectionError:
                pass  # the client went away (a `kubectl logs -f` ended)
        return response

    async def close(self) -> None:
        """End every open watch (shutdown)."""
        self.store.close_watches()
        for task in list(self.watches):
            task.cancel()
        if self.watches:
            await asyncio.wait(list(self.watches), timeout=2.0)

