"""httpGet probes, as the kubelet runs them: readiness decides a container's `ready` (and so the pod's
Ready condition), a failing liveness probe restarts the container.

    prober = Prober(container_spec, http_get, on_ready=…, on_dead=…)
    task = loop.create_task(prober.run())     # one per running container instance; cancelled when it ends

Semantics (pkg/kubelet/prober): a probe waits `initialDelaySeconds` (default 0), then runs every
`periodSeconds` (default 10) with a `timeoutSeconds` deadline (default 1); a result is a success for an
HTTP status in [200, 400), a failure otherwise (or on a timeout or a refused connection). The state
flips to failed after `failureThreshold` (default 3) failures in a row, and back to ok after
`successThreshold` (default 1) successes in a row. Readiness starts as not ready; liveness starts as ok,
and once it fails the container is restarted (`on_dead`, called once) — the prober of the next instance
starts afresh. `port` is a number or the name of one of the container's `ports`. Only httpGet is
supported (what deploy/bundle.yaml uses); other probe kinds are ignored, with a warning.

Concurrency contract: `run()` is one task on the sandbox's event loop; `http_get` must not block the loop
and returns the HTTP status, or raises on a connection failure; callbacks are called on the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from loguru import logger

HttpGet = Callable[[int, str, float], Awaitable[int]]


@dataclass(frozen=True)
class Probe:
    kind: str  # readiness | liveness
    port: int
    path: str
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    failure_threshold: int = 1
    success_threshold: int = 1

    @classmethod
    def parse(cls, kind: str, spec: dict, container: dict) -> "Probe | None":
        """The probe `spec` of `container` (its `readinessProbe`/`livenessProbe`), None when absent or not
        httpGet (or its named port is unknown)."""
        if not spec:
            return None
        http = spec.get("httpGet")
        if not http:
            logger.warning("sandbox: {} probe of container {} is not httpGet: not run", kind, container.get("name"))
            return None
        port = http.get("port")
        if isinstance(port, str) and not port.isdigit():
            named = [p.get("containerPort") for p in container.get("ports") or [] if p.get("name") == port]
            if not named:
                logger.warning("sandbox: {} probe of container {} names unknown port {!r}: not run", kind,
                               container.get("name"), port)
                return None
            port = named[0]
        return cls(kind=kind, port=int(port), path=http.get("path") or "/",
                   initial_delay=float(spec.get("initialDelaySeconds", 0)),
                   period=float(spec.get("periodSeconds", 10)), timeout=float(spec.get("timeoutSeconds", 1)),
                   failure_threshold=int(spec.get("failureThreshold", 3)),
                   success_threshold=int(spec.get("successThreshold", 1)))


def probes_of(container: dict) -> list[Probe]:
    found = [Probe.parse("readiness", container.get("readinessProbe") or {}, container),
             Probe.parse("liveness", container.get("livenessProbe") or {}, container)]
    return [p for p in found if p is not None]


async def _succeeds(probe: Probe, http_get: HttpGet) -> bool:
    try:
        async with asyncio.timeout(probe.timeout):  # not wait_for: in 3.11 it can swallow a cancellation
            status = await http_get(probe.port, probe.path, probe.timeout)
    except (asyncio.TimeoutError, OSError, ConnectionError):
        return False
    except Exception as exc:  # noqa: BLE001 - any client error is a failed probe, as the kubelet counts it
        logger.debug("sandbox: probe {}:{} failed: {}", probe.port, probe.path, exc)
        return False
    return 200 <= status < 400


async def run_probe(probe: Probe, http_get: HttpGet, *, on_ready: Callable[[bool], None],
                    on_dead: Callable[[], None], name: str = "") -> None:
    """Run `probe` until cancelled (readiness) or until the container is declared dead (liveness)."""
    ok = probe.kind == "liveness"
    streak = 0
    await asyncio.sleep(probe.initial_delay)
    while True:
        success = await _succeeds(probe, http_get)
        if success == ok:
            streak = 0
        else:
            streak += 1
            if streak >= (probe.success_threshold if success else probe.failure_threshold):
                ok, streak = success, 0
                logger.info("sandbox: {} {} probe {}", name, probe.kind, "succeeded" if ok else "failed")
                if probe.kind == "readiness":
                    on_ready(ok)
                elif not ok:
                    on_dead()
                    return
        await asyncio.sleep(probe.period)
