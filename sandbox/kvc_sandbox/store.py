"""The object store: every object of every kind, one global resourceVersion, the event history, watchers.

Concurrency contract: a `Store` belongs to the sandbox's event loop. Every method is synchronous and is
called on that loop only, so each one is atomic with respect to the others (a watch registers and
replays history in one step, no event can slip in between). Stored objects are never mutated in place:
writers deep-copy, change, and `put` the new dict, so history entries and the dicts handed to watchers
may be shared freely without copying.

History: every change is kept (up to `history_limit` events) so a watch from an older resourceVersion
replays what it missed. `compact()` forgets it all: a watch from a version older than the compaction
point gets 410 Expired, like a real API server after etcd compaction.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

from . import errors
from .jsoncopy import copy_json
from .resources import Resource

Predicate = Callable[[dict], bool]


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(obj: dict) -> dict:
    return obj.setdefault("metadata", {})


@dataclass(frozen=True, slots=True)
class Event:
    rv: int
    resource: Resource
    type: str  # ADDED, MODIFIED, DELETED
    obj: dict
    #: the object before a MODIFIED change (for selectors: a pod that stops matching is DELETED for that watch).
    old: dict | None = None


#: put on a watcher's queue to end its stream (drop_watches, stop).
CLOSE = object()


@dataclass(eq=False)
class Watcher:
    resource: Resource
    namespace: str | None
    predicate: Predicate
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)

    def offer(self, event: Event) -> None:
        """Queue the event as this watch sees it (a change across the selector is an ADDED or DELETED)."""
        if event.resource != self.resource:
            return
        if self.namespace is not None and event.obj["metadata"].get("namespace", "") != self.namespace:
            return
        new_match = self.predicate(event.obj)
        if event.type == "MODIFIED" and event.old is not None:
            old_match = self.predicate(event.old)
            if new_match and old_match:
                self.queue.put_nowait(("MODIFIED", event.obj))
            elif new_match:
                self.queue.put_nowait(("ADDED", event.obj))
            elif old_match:
                self.queue.put_nowait(("DELETED", event.obj))
        elif new_match:
            self.queue.put_nowait((event.type, event.obj))


class Store:
    def __init__(self, history_limit: int = 50_000):
        self.rv = 0
        self._objects: dict[Resource, dict[tuple[str, str], dict]] = {}
        self._history: deque[Event] = deque()
        self._history_limit = history_limit
        #: watches from a version older than this get 410 Expired.
        self._compacted_rv = 0
        self._watchers: set[Watcher] = set()
        #: called on the loop after every change (controllers: deployments, garbage collection).
        self.listeners: list[Callable[[Event], None]] = []

    # reads ---------------------------------------------------------------------------------------------
    def get(self, resource: Resource, namespace: str, name: str) -> dict | None:
        return self._objects.get(resource, {}).get((namespace if resource.namespaced else "", name))

    def require(self, resource: Resource, namespace: str, name: str) -> dict:
        obj = self.get(resource, namespace, name)
        if obj is None:
            raise errors.not_found(resource, name)
        return obj

    def list(self, resource: Resource, namespace: str | None = None,
             predicate: Predicate | None = None) -> list[dict]:
        items = [obj for (ns, _), obj in sorted(self._objects.get(resource, {}).items())
                 if namespace is None or ns == namespace]
        return [obj for obj in items if predicate is None or predicate(obj)]

    # writes --------------------------------------------------------------------------------------------
    def create(self, resource: Resource, obj: dict) -> dict:
        """Store a new object (the caller's dict, now owned by the store), filling the server-set metadata."""
        m = meta(obj)
        key = (m.get("namespace", "") if resource.namespaced else "", m["name"])
        if key in self._objects.get(resource, {}):
            raise errors.already_exists(resource, m["name"])
        if not resource.namespaced:
            m.pop("namespace", None)
        m["uid"] = str(uuid.uuid4())
        m["creationTimestamp"] = now_rfc3339()
        m.setdefault("generation", 1)
        obj["kind"], obj["apiVersion"] = resource.kind, resource.api_version
        self._commit(resource, "ADDED", key, obj, None)
        return obj

    def put(self, resource: Resource, obj: dict) -> dict:
        """Replace an existing object with `obj` (a new dict): a MODIFIED event."""
        m = meta(obj)
        key = (m.get("namespace", "") if resource.namespaced else "", m["name"])
        old = self._objects.get(resource, {}).get(key)
        if old is None:
            raise errors.not_found(resource, m["name"])
        obj["kind"], obj["apiVersion"] = resource.kind, resource.api_version
        self._commit(resource, "MODIFIED", key, obj, old)
        return obj

    def update(self, resource: Resource, namespace: str, name: str, change: Callable[[dict], None]) -> dict:
        """Copy the object, apply `change` to the copy, store it; the copy unchanged → no event."""
        old = self.require(resource, namespace, name)
        new = copy_json(old)
        change(new)
        if new == old:
            return old
        return self.put(resource, new)

    def delete(self, resource: Resource, namespace: str, name: str) -> dict:
        key = (namespace if resource.namespaced else "", name)
        old = self._objects.get(resource, {}).get(key)
        if old is None:
            raise errors.not_found(resource, name)
        gone = copy_json(old)
        self._commit(resource, "DELETED", key, gone, None)
        return gone

    def _commit(self, resource: Resource, kind: str, key: tuple[str, str], obj: dict, old: dict | None) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        bucket = self._objects.setdefault(resource, {})
        if kind == "DELETED":
            del bucket[key]
        else:
            bucket[key] = obj
        event = Event(self.rv, resource, kind, obj, old)
        self._history.append(event)
        while len(self._history) > self._history_limit:
            self._compacted_rv = self._history.popleft().rv
        for watcher in list(self._watchers):
            watcher.offer(event)
        for listener in list(self.listeners):
            listener(event)

    # watches -------------------------------------------------------------------------------------------
    def watch(self, resource: Resource, namespace: str | None, predicate: Predicate,
              since: int | None) -> Watcher:
        """Register a watch; its queue starts with what it missed since `since`.

        `since` None (no resourceVersion, or "0"): the current objects as ADDED events, then live changes.
        An older version than the compaction point raises 410 Expired.
        """
        watcher = Watcher(resource, namespace, predicate)
        if since is None:
            for obj in self.list(resource, namespace, predicate):
                watcher.queue.put_nowait(("ADDED", obj))
        else:
            if since < self._compacted_rv:
                raise errors.expired(f"too old resource version: {since} ({self._compacted_rv})")
            for event in self._history:
                if event.rv > since:
                    watcher.offer(event)
        self._watchers.add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    def close_watches(self) -> None:
        """End every open watch stream now (clients see the response end and reconnect)."""
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(CLOSE)
        self._watchers.clear()

    def compact(self) -> None:
        """Forget the history: a watch from any version before now gets 410 Expired."""
        self._history.clear()
        self._compacted_rv = self.rv
