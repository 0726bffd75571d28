"""PodStream against the sandbox API: what the controller's watcher will see, faults included (root)."""

from __future__ import annotations

import threading
import time

import pytest

from kube_vxlan_controller.backoff import Backoff
from kube_vxlan_controller.k8s.execs import Executor
from kube_vxlan_controller.k8s.pods import AGENT_CONTAINER, INIT_AGENT_CONTAINER, PodChanged, PodDeleted, PodsListed, PodStream

from .conftest import Recorder
from polling import wait_for

pytestmark = pytest.mark.root

SELECTOR = "app=x"


def fast_backoff() -> Backoff:
    return Backoff(initial=0.05, cap=0.2)


@pytest.fixture
def pod_stream(cluster, runner):
    """Start a PodStream on `app=x` in default; returns (stream, recorder, observer outcomes)."""

    def start(**kwargs):
        events, heard = Recorder(), Recorder()
        kwargs.setdefault("backoff", fast_backoff())
        stream = PodStream(cluster, label_selector=SELECTOR, namespace="default", on_event=events,
                           observer=heard, **kwargs)
        runner.start(stream)
        events.wait(lambda e: isinstance(e, PodsListed), what="the first list")
        return stream, events, heard

    return start


def changed(name: str, condition=lambda pod: True):
    return lambda e: isinstance(e, PodChanged) and e.pod.name == name and condition(e.pod)


def names(events: Recorder) -> set[str]:
    return {e.pod.name for e in events.items if isinstance(e, PodChanged)}


def test_stream_sees_a_created_pod_its_ip_and_its_agents_starting_and_stopping(core, sandbox, cluster, make_pod,
                                                                             pod_stream):
    stream, events, _ = pod_stream()
    created = make_pod("p1")
    events.wait(changed("p1"), what="p1 added")
    setup = events.wait(changed("p1", lambda p: p.init_agent_running and p.ip), what="p1 init agent running")
    assert setup.pod.uid == created.metadata.uid
    assert setup.pod.namespace == "default" and setup.pod.labels["app"] == "x"
    assert not setup.pod.agent_running
    assert setup.pod.ip == sandbox.pod("default", "p1")["status"]["podIP"]

    Executor(cluster).run("default", "p1", INIT_AGENT_CONTAINER, ["kill", "-TERM", "1"])
    sidecar = events.wait(changed("p1", lambda p: p.agent_running and not p.init_agent_running),
                          what="p1 sidecar agent running")
    assert sidecar.pod.ip == setup.pod.ip

    core.delete_namespaced_pod("p1", "default")
    gone = events.wait(lambda e: isinstance(e, PodDeleted) and e.pod.name == "p1", what="p1 deleted")
    assert gone.pod.uid == created.metadata.uid


def test_sidecar_agent_restart_is_seen_as_a_new_restart_count(cluster, make_pod, pod_stream):
    _, events, _ = pod_stream()
    make_pod("p1")
    events.wait(changed("p1", lambda p: p.init_agent_running))
    executor = Executor(cluster)
    executor.run("default", "p1", INIT_AGENT_CONTAINER, ["kill", "-TERM", "1"])
    first = events.wait(changed("p1", lambda p: p.agent_running), what="sidecar running")
    executor.run("default", "p1", AGENT_CONTAINER, ["kill", "-TERM", "1"])
    restarted = events.wait(changed("p1", lambda p: p.agent_running and p.agent_restarts == first.pod.agent_restarts + 1),
                            what="sidecar restarted")
    assert restarted.pod.uid == first.pod.uid


def test_stream_ignores_pods_without_the_label(make_pod, pod_stream):
    _, events, _ = pod_stream()
    make_pod("other", labels={"app": "y"})
    make_pod("mine")
    events.wait(changed("mine"))
    assert "other" not in names(events)


def test_first_list_holds_the_existing_pods_and_the_seed_log_line_names_its_version(make_pod, pod_stream, logs):
    make_pod("early-1")
    make_pod("early-2")
    _, events, _ = pod_stream()
    listed = events.items[0]
    assert {p.name for p in listed.pods} == {"early-1", "early-2"}
    wait_for(lambda: f"Watching pods (selector: {SELECTOR}) from version: {listed.resource_version}" in logs,
             what="the seed's watching line")


def test_dropped_watch_reconnects_from_the_last_version_and_misses_nothing(sandbox, make_pod, pod_stream):
    _, events, heard = pod_stream()
    make_pod("before")
    events.wait(changed("before"))
    sandbox.faults.drop_watches()
    for i in range(3):  # created while the stream is reconnecting
        make_pod(f"during-{i}")
    for i in range(3):
        events.wait(changed(f"during-{i}"), what=f"during-{i} after the drop")
    sandbox.faults.drop_watches()
    make_pod("after")
    events.wait(changed("after"))
    assert sum(isinstance(e, PodsListed) for e in events.items) == 1, "a dropped watch must not relist"
    assert "expired" not in heard.items


def test_compacted_history_gives_410_and_a_fresh_list(sandbox, make_pod, pod_stream):
    _, events, heard = pod_stream()
    make_pod("kept")
    events.wait(changed("kept", lambda p: p.init_agent_running))  # no change of it is on its way now
    seen = len(events.items)
    # Changes the stream does not see (another label) move the version on; compaction then makes
    # the stream's last version too old, and the dropped watch comes back to a 410.
    make_pod("unseen", labels={"app": "y"})
    sandbox.faults.compact()
    sandbox.faults.drop_watches()
    relisted = events.wait(lambda e: isinstance(e, PodsListed), after=seen, what="a relist after 410")
    assert {p.name for p in relisted.pods} == {"kept"}
    assert "expired" in heard.items
    make_pod("later")
    events.wait(changed("later"), what="events after the relist")


def test_failing_api_is_retried_with_backoff_until_it_recovers(sandbox, make_pod, pod_stream):
    backoff = Backoff(initial=0.05, cap=0.2)
    _, events, heard = pod_stream(backoff=backoff)
    sandbox.faults.fail_requests(1.0)
    sandbox.faults.drop_watches()
    wait_for(lambda: heard.items.count("error") >= 3, what="three failed reconnects")
    assert backoff.attempts >= 3
    sandbox.faults.fail_requests(0.0)
    make_pod("recovered")
    events.wait(changed("recovered"), what="events once the API answers again")


def test_stop_ends_a_live_watch_at_once(cluster, runner):
    events = Recorder()
    stream = PodStream(cluster, label_selector=SELECTOR, namespace="default", on_event=events, watch_timeout=300)
    stop = threading.Event()
    thread = threading.Thread(target=stream.run, args=(stop,), daemon=True)
    thread.start()
    events.wait(lambda e: isinstance(e, PodsListed))
    time.sleep(0.2)  # let it enter the watch's blocking read
    started = time.monotonic()
    stream.stop()
    thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 1.0
    assert stop.is_set()


def test_all_namespaces_when_no_namespace_is_given(core, cluster, make_pod, runner):
    core.create_namespace({"metadata": {"name": "other"}})
    events = Recorder()
    runner.start(PodStream(cluster, label_selector=SELECTOR, on_event=events, backoff=fast_backoff()))
    events.wait(lambda e: isinstance(e, PodsListed))
    make_pod("here")
    make_pod("there", namespace="other")
    events.wait(changed("here"))
    there = events.wait(changed("there"))
    assert there.pod.key == "other/there"
