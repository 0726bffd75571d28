"""The health endpoint as the kubelet and Prometheus see it: /livez (the liveness probe), /healthz,
/readyz, and /metrics with the build info and the process metrics beside the controller's own."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from kube_vxlan_controller import __version__, admin
from kube_vxlan_controller.metrics import Metrics


@pytest.fixture
def health():
    state = {"alive": True, "ready": False}
    server = admin.Server("health", "127.0.0.1:0", admin.health_routes(
        alive=lambda: state["alive"], ready=lambda: state["ready"], metrics=Metrics())).start()
    yield server.address, state
    server.stop()


def get(address: str, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_livez_and_healthz_say_whether_the_process_goes_on_readyz_whether_it_is_ready(health):
    address, state = health
    assert [get(address, p)[0] for p in ("/livez", "/healthz", "/readyz")] == [200, 200, 503]
    state.update(alive=False, ready=True)
    assert [get(address, p)[0] for p in ("/livez", "/healthz", "/readyz")] == [503, 503, 200]


def test_metrics_carry_the_build_info_and_the_process_metrics(health):
    status, text = get(health[0], "/metrics")
    lines = text.splitlines()
    assert status == 200
    assert f'kvc_build_info{{version="{__version__}"}} 1.0' in lines
    for name in ("process_start_time_seconds", "process_resident_memory_bytes", "process_cpu_seconds_total",
                 "process_open_fds"):
        assert any(line.startswith(f"{name} ") for line in lines), name
    assert any(line.startswith("python_info{") for line in lines)
    assert any(line.startswith("kvc_leader ") for line in lines)


def test_two_controllers_in_one_process_each_have_the_process_metrics():
    assert all(b"process_start_time_seconds" in Metrics().exposition() for _ in range(2))
