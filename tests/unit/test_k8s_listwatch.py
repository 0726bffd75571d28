"""The list+watch loop's decisions (relist, re-watch, backoff, stop), against a scripted list call.

What crosses the wire is tested against the sandbox in tests/k8s/; here the API is a script of answers
so that every branch of the loop is reached deterministically.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from kube_vxlan_controller.k8s.listwatch import ListWatch


def pod(name: str, rv: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "resourceVersion": rv}}


def line(kind: str, obj: dict) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


def expired() -> bytes:
    return line("ERROR", {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version"})


class Socket:
    def __init__(self) -> None:
        self.down = threading.Event()

    def shutdown(self, how: int) -> None:
        self.down.set()


class Response:
    """A watch response: its chunks, then (if `block`) a read that waits until the socket is shut down."""

    def __init__(self, *chunks: bytes, block: bool = False) -> None:
        self.chunks = chunks
        self.block = block
        self.connection = type("Connection", (), {})()
        self.connection.sock = Socket()
        self.closed = False

    def stream(self, amt=None, decode_content=False):
        yield from self.chunks
        if self.block:
            assert self.connection.sock.down.wait(10), "nobody shut the watch down"
            raise urllib3.exceptions.ProtocolError("Response ended prematurely")

    def close(self) -> None:
        self.closed = True

    def release_conn(self) -> None:
        pass


class Listing:
    """A list call's raw response (`_preload_content=False`)."""

    for_list = True

    def __init__(self, body: dict) -> None:
        self.data = json.dumps(body).encode()

    def release_conn(self) -> None:
        pass


def listing(rv: str, *names: str) -> Listing:
    return Listing({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": rv},
                    "items": [pod(n, rv) for n in names]})


class Api:
    """Answers list and watch calls from a script; records every call's keyword arguments."""

    def __init__(self, *answers) -> None:
        self.answers = list(answers)
        self.calls: list[dict] = []

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        answer = self.answers.pop(0)
        expects_watch = not getattr(answer, "for_list", False)
        assert kwargs.get("watch", False) == expects_watch, (kwargs, answer)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def watched_from(self) -> list[str | None]:
        return [c.get("resource_version") for c in self.calls if c.get("watch")]

    def lists(self) -> int:
        return sum(1 for c in self.calls if not c.get("watch"))


class Recorder:
    def __init__(self) -> None:
        self.seen: list = []

    def on_list(self, items, rv) -> None:
        self.seen.append(("LISTED", tuple(i["metadata"]["name"] for i in items), rv))

    def on_change(self, kind, obj) -> None:
        self.seen.append((kind, obj["metadata"]["name"], obj["metadata"]["resourceVersion"]))


class Delays:
    """A backoff that records what it was asked and never waits long."""

    def __init__(self) -> None:
        self.failures = 0
        self.healthy = 0

    def next(self) -> float:
        self.failures += 1
        return 0.0

    def healthy_since(self, t=None) -> None:
        self.healthy += 1

    def reset(self) -> None:
        pass


def make(api: Api, recorder: Recorder | None = None, backoff: Delays | None = None, **kwargs):
    recorder = recorder or Recorder()
    loop = ListWatch(what="pods (selector: app=x)", list_call=api, on_list=recorder.on_list,
                     on_change=recorder.on_change,
                     backoff=backoff or Delays(), watch_timeout=5, **kwargs)
    return loop, recorder


def list_error(exc: Exception) -> Exception:
    exc.for_list = True
    return exc


def test_lists_then_watches_from_the_lists_version_and_rewatches_from_the_last_event():
    api = Api(
        listing("10", "a"),
        Response(line("ADDED", pod("b", "11")), line("MODIFIED", pod("a", "12")), line("DELETED", pod("b", "13"))),
        Response(line("MODIFIED", pod("a", "14"))),
    )
    loop, seen = make(api)
    loop.run(iterations=3)
    assert seen.seen == [("LISTED", ("a",), "10"), ("ADDED", "b", "11"), ("MODIFIED", "a", "12"),
                         ("DELETED", "b", "13"), ("MODIFIED", "a", "14")]
    assert api.watched_from() == ["10", "13"]
    assert loop.resource_version == "14"


def test_watch_asks_for_bookmarks_and_a_server_side_timeout():
    api = Api(listing("10"), Response(line("ADDED", pod("a", "11"))))
    loop, _ = make(api)
    loop.run(iterations=2)
    watch = api.calls[1]
    assert watch["allow_watch_bookmarks"] is True
    assert watch["timeout_seconds"] == 5
    assert watch["_preload_content"] is False
    assert watch["_request_timeout"][1] > 5


def test_bookmarks_move_the_version_without_an_event():
    api = Api(listing("10"), Response(line("ADDED", pod("a", "11")),
                                      line("BOOKMARK", {"kind": "Pod", "metadata": {"resourceVersion": "20"}})),
              Response())
    loop, seen = make(api)
    loop.run(iterations=3)
    assert [s[0] for s in seen.seen] == ["LISTED", "ADDED"]
    assert api.watched_from() == ["10", "20"]


def test_chunks_split_anywhere_still_give_whole_events():
    data = line("ADDED", pod("a", "11")) + line("MODIFIED", pod("a", "12"))
    api = Api(listing("10"), Response(data[:7], data[7:60], data[60:]))
    loop, seen = make(api)
    loop.run(iterations=2)
    assert [s[2] for s in seen.seen] == ["10", "11", "12"]


def test_expired_event_relists_and_watches_from_the_new_list():
    api = Api(listing("10", "a"), Response(line("ADDED", pod("b", "11")), expired()),
              listing("30", "a", "b", "c"), Response(line("ADDED", pod("d", "31"))))
    loop, seen = make(api)
    loop.run(iterations=4)
    assert seen.seen[-2:] == [("LISTED", ("a", "b", "c"), "30"), ("ADDED", "d", "31")]
    assert api.watched_from() == ["10", "30"]


def test_http_410_on_the_watch_request_relists():
    api = Api(listing("10"), ApiException(status=410, reason="Gone"), listing("30", "a"))
    loop, seen = make(api)
    loop.run(iterations=3)
    assert seen.seen == [("LISTED", (), "10"), ("LISTED", ("a",), "30")]


def test_expiring_again_at_once_waits_for_the_backoff_before_relisting():
    backoff = Delays()
    api = Api(listing("10"), Response(expired()), listing("11"), Response(expired()), listing("12"))
    loop, _ = make(api, backoff=backoff)
    loop.run(iterations=3)
    assert backoff.failures == 0  # the first expiry relists at once
    loop.run(iterations=2)
    assert backoff.failures == 1


def test_watch_failure_backs_off_and_rewatches_from_the_last_version_without_relisting():
    backoff = Delays()
    api = Api(listing("10"), Response(line("ADDED", pod("a", "11"))),
              urllib3.exceptions.ProtocolError("Connection broken"),
              ApiException(status=500, reason="Internal Server Error"),
              Response(line("ADDED", pod("b", "12"))))
    loop, seen = make(api, backoff=backoff)
    loop.run(iterations=5)
    assert api.lists() == 1
    assert api.watched_from() == ["10", "11", "11", "11"]
    assert backoff.failures == 2
    assert seen.seen[-1] == ("ADDED", "b", "12")


def test_list_failure_backs_off_and_lists_again():
    backoff = Delays()
    api = Api(list_error(ApiException(status=503, reason="Unavailable")), listing("10", "a"))
    loop, seen = make(api, backoff=backoff)
    loop.run(iterations=2)
    assert seen.seen == [("LISTED", ("a",), "10")]
    assert backoff.failures == 1


def test_error_event_other_than_410_is_a_failure_not_a_relist():
    backoff = Delays()
    api = Api(listing("10"), Response(line("ERROR", {"kind": "Status", "code": 500, "reason": "InternalError",
                                                     "message": "etcd"})),
              Response())
    loop, _ = make(api, backoff=backoff)
    loop.run(iterations=3)
    assert api.lists() == 1
    assert backoff.failures >= 1


def test_a_watch_that_ends_at_once_without_events_counts_as_a_failure():
    backoff = Delays()
    api = Api(listing("10"), Response())
    loop, _ = make(api, backoff=backoff)
    loop.run(iterations=2)
    assert backoff.failures == 1


def test_health_is_marked_when_a_list_or_watch_answers():
    backoff = Delays()
    api = Api(listing("10"), Response(line("ADDED", pod("a", "11"))))
    loop, _ = make(api, backoff=backoff)
    loop.run(iterations=2)
    assert backoff.healthy == 2


def test_observer_hears_lists_expiries_and_errors():
    heard: list[str] = []
    api = Api(listing("10"), Response(expired()), listing("11"), ApiException(status=500, reason="x"))
    loop, _ = make(api, observer=heard.append)
    loop.run(iterations=4)
    assert heard == ["listed", "expired", "listed", "error"]


def test_consumer_exception_ends_run_and_closes_the_watch():
    response = Response(line("ADDED", pod("a", "11")), line("ADDED", pod("b", "12")))
    api = Api(listing("10"), response)

    def on_change(kind, obj):
        raise RuntimeError("consumer is dead")

    loop = ListWatch(what="pods", list_call=api,
                     on_list=lambda items, rv: None, on_change=on_change, backoff=Delays())
    with pytest.raises(RuntimeError, match="consumer is dead"):
        loop.run()
    assert response.closed


def test_stop_from_another_thread_ends_a_blocked_watch_at_once():
    response = Response(line("ADDED", pod("a", "11")), block=True)
    api = Api(listing("10"), response)
    loop, seen = make(api)
    runner = threading.Thread(target=loop.run)
    runner.start()
    deadline = time.monotonic() + 5
    while len(seen.seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(seen.seen) == 2
    started = time.monotonic()
    loop.stop()
    runner.join(5)
    assert not runner.is_alive()
    assert time.monotonic() - started < 1
    assert response.connection.sock.down.is_set() and response.closed


def test_stop_event_set_before_run_makes_no_call():
    api = Api()
    loop, _ = make(api)
    stop = threading.Event()
    stop.set()
    loop.run(stop)
    assert api.calls == []


def test_stop_ends_a_backoff_wait_at_once():
    api = Api(list_error(ApiException(status=503, reason="Unavailable")))
    loop = ListWatch(what="pods", list_call=api,
                     on_list=lambda items, rv: None, on_change=lambda kind, obj: None)  # real backoff: 0.8 s
    stop = threading.Event()
    runner = threading.Thread(target=loop.run, args=(stop,))
    runner.start()
    deadline = time.monotonic() + 5
    while not api.calls and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    loop.stop()
    runner.join(5)
    assert not runner.is_alive() and time.monotonic() - started < 0.5
    assert stop.is_set()
