"""httpGet probes as the kubelet runs them: thresholds, named ports, readiness flips, liveness restarts."""

from __future__ import annotations

import asyncio

from kvc_sandbox.probes import Probe, probes_of, run_probe

CONTAINER = {"name": "c", "ports": [{"name": "health", "containerPort": 8080}],
             "readinessProbe": {"httpGet": {"path": "/readyz", "port": "health"}, "periodSeconds": 5},
             "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "initialDelaySeconds": 10,
                               "failureThreshold": 3, "timeoutSeconds": 3}}


def test_probes_are_parsed_with_the_kubelets_defaults_and_named_ports():
    readiness, liveness = probes_of(CONTAINER)
    assert readiness == Probe("readiness", 8080, "/readyz", period=5.0, timeout=1.0, failure_threshold=3)
    assert liveness == Probe("liveness", 8080, "/healthz", initial_delay=10.0, period=10.0, timeout=3.0,
                             failure_threshold=3)
    assert probes_of({"name": "x", "readinessProbe": {"exec": {"command": ["true"]}}}) == []
    assert probes_of({"name": "x", "readinessProbe": {"httpGet": {"port": "nope"}}}) == []


def run(probe: Probe, answers: list, steps: int):
    """Run `probe` against scripted answers (a status, or an exception to raise); returns the calls made."""
    readiness, dead = [], []

    async def http_get(port, path, timeout):
        answer = answers.pop(0) if answers else 200
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def main():
        task = asyncio.create_task(run_probe(probe, http_get, on_ready=readiness.append,
                                             on_dead=lambda: dead.append(True)))
        for _ in range(steps):
            await asyncio.sleep(0)
            if task.done():
                break
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    return readiness, dead


def test_readiness_becomes_ready_on_success_and_unready_after_the_failure_threshold():
    probe = Probe("readiness", 1, "/", period=0.0, failure_threshold=2)
    readiness, dead = run(probe, [200, 500, 200, 500, ConnectionRefusedError(), 200], 60)
    assert readiness == [True, False, True] and dead == []


def test_liveness_restarts_once_after_the_failure_threshold():
    probe = Probe("liveness", 1, "/", period=0.0, failure_threshold=3)
    readiness, dead = run(probe, [200, 500, 500, 200, 503, 404, 500, 500], 60)
    assert readiness == [] and dead == [True]


def test_redirects_count_as_success():
    probe = Probe("liveness", 1, "/", period=0.0, failure_threshold=1)
    _, dead = run(probe, [301, 302, 399], 20)
    assert dead == []
