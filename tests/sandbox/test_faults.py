"""Every fault switch of the sandbox does what it says, from Python and over the control endpoint (root only)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest
from apihelpers import AGENT, pod_manifest
from polling import wait_for
from kubernetes.client.rest import ApiException
from kubernetes.stream import stream

pytestmark = pytest.mark.root


def control(sandbox, **body) -> dict:
    request = urllib.request.Request(f"{sandbox.url}/sandbox/faults", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


class RawWatch:
    """A pod watch read line by line on a thread: `ended` is set when the server closes the stream."""

    def __init__(self, sandbox, query: str = ""):
        self.response = urllib.request.urlopen(
            f"{sandbox.url}/api/v1/namespaces/default/pods?watch=true{query}", timeout=30)
        self.events: list[dict] = []
        self.ended = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            while line := self.response.readline():
                self.events.append(json.loads(line))
        finally:
            self.response.close()
            self.ended.set()


@pytest.mark.parametrize("how", ["python", "endpoint"])
def test_drop_watches_closes_every_open_watch_now(sandbox, core, how):
    watches = [RawWatch(sandbox), RawWatch(sandbox, "&labelSelector=app%3Dx")]
    core.create_namespaced_pod("default", pod_manifest("p"))
    wait_for(lambda: watches[0].events, what="the first watch's event")
    assert not any(w.ended.is_set() for w in watches)
    if how == "python":
        sandbox.faults.drop_watches()
    else:
        assert control(sandbox, drop_watches=True)["watch_drops"] == 1
    for w in watches:
        assert w.ended.wait(5), "the watch stayed open"
    # new watches work as before
    again = RawWatch(sandbox)
    wait_for(lambda: again.events, what="a new watch's first event")
    assert not again.ended.is_set()
    sandbox.faults.drop_watches()
    assert again.ended.wait(5)


def test_compact_over_the_endpoint_makes_older_versions_410_in_the_watch_stream(sandbox, core):
    old = core.list_namespaced_pod("default").metadata.resource_version
    core.create_namespaced_pod("default", pod_manifest("p"))
    control(sandbox, compact=True)
    w = RawWatch(sandbox, f"&resourceVersion={old}")
    assert w.ended.wait(5)
    assert w.response.status == 200
    [event] = w.events
    assert event["type"] == "ERROR"
    assert {k: event["object"][k] for k in ("kind", "status", "reason", "code")} == {
        "kind": "Status", "status": "Failure", "reason": "Expired", "code": 410}


def test_fail_share_one_fails_every_api_request_and_zero_none(sandbox, core):
    sandbox.faults.fail_requests(1.0)
    with pytest.raises(ApiException) as raised:
        core.list_namespaced_pod("default")
    assert raised.value.status == 500
    assert json.loads(raised.value.body)["reason"] == "InternalError"
    with urllib.request.urlopen(f"{sandbox.url}/version", timeout=5) as response:  # never failed
        assert json.loads(response.read())["minor"] == "31"
    assert control(sandbox, fail_share=0)["fail_share"] == 0
    assert core.list_namespaced_pod("default").items == []
    control(sandbox, fail_share=1.0)
    with pytest.raises(ApiException):
        core.create_namespaced_pod("default", pod_manifest("p"))
    control(sandbox, clear=True)
    core.create_namespaced_pod("default", pod_manifest("p"))


def test_fail_share_half_fails_about_half(sandbox, core):
    sandbox.faults.fail_requests(0.5)
    failures = 0
    for _ in range(200):
        try:
            core.list_namespaced_pod("default")
        except ApiException as e:
            assert e.status == 500
            failures += 1
    assert 50 < failures < 150


def _exec(core, name: str, argv: list[str], timeout: float):
    resp = stream(core.connect_get_namespaced_pod_exec, name, "default", command=argv, container=AGENT,
                  stdin=False, stdout=True, stderr=True, tty=False, _preload_content=False)
    resp.run_forever(timeout=timeout)
    code = resp.returncode
    resp.close()
    return code


def test_exec_latency_and_hangs_for_matching_pods_until_lifted(sandbox, core):
    core.create_namespaced_pod("default", pod_manifest("h", {"app": "h"}, init=[]))
    core.create_namespaced_pod("default", pod_manifest("n", {"app": "n"}, init=[]))
    for name in ("h", "n"):
        wait_for(lambda n=name: (sandbox.pod("default", n) or {}).get("status", {}).get("phase") == "Running",
                 what=f"{name} running")
    snapshot = control(sandbox, exec_latency=0.3, hang_selector="app=h")
    assert snapshot["exec_latency"] == 0.3 and snapshot["hang_selectors"] == ["app=h"]
    start = time.monotonic()
    assert _exec(core, "n", ["true"], timeout=5) == 0
    assert time.monotonic() - start >= 0.3
    assert _exec(core, "h", ["true"], timeout=1.0) is None  # still hanging
    sandbox.faults.lift_hangs()
    sandbox.faults.set_exec_latency(0)
    assert _exec(core, "h", ["true"], timeout=5) == 0


def test_the_control_endpoint_refuses_a_bad_selector(sandbox):
    with pytest.raises(urllib.error.HTTPError) as raised:
        control(sandbox, hang_selector="app in (x")
    assert raised.value.code == 400
    assert json.loads(raised.value.read())["kind"] == "Status"
