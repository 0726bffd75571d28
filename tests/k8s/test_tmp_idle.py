import time
import pytest, runtimes

@pytest.fixture
def sandbox(tmp_path):
    yield from runtimes.sandbox_on('netns', tmp_path, tls=True)

from kube_vxlan_controller.agentsession import parse_reply, reply_end, request, session_argv
from kube_vxlan_controller.k8s.execs import Executor
from kube_vxlan_controller.k8s.pods import INIT_AGENT_CONTAINER as CONTAINER

def test_idle_session(sandbox, cluster, running_pod):
    running_pod("p1")
    executor = Executor(cluster)
    session = executor.open_session("default", "p1", CONTAINER, session_argv(5))
    print(parse_reply(1, session.ask(request(1, "state"), reply_end(1), deadline=5)).exit_code)
    t0 = time.monotonic()
    time.sleep(85)
    print("live", sandbox.live_execs(), flush=True)
    print(round(time.monotonic()-t0), parse_reply(2, session.ask(request(2, "state"), reply_end(2), deadline=5)).exit_code, session.why, flush=True)
